package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/fhir-migrator/fhir-migrator/internal/api"
	"github.com/fhir-migrator/fhir-migrator/internal/funcs"
	"github.com/fhir-migrator/fhir-migrator/internal/migration"
)

func (a *app) startMigration(w http.ResponseWriter, r *http.Request) {
	var req migration.StartRequest
	if bad := api.Decode(r.Body, api.MaxStartBody, false, &req); bad != nil {
		api.Write(w, bad)
		return
	}
	auditFields(r.Context(), req)
	res, err := a.svc.Start(r.Context(), req)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	if res.Plan != nil {
		api.WriteJSON(w, http.StatusOK, res.Plan)
		return
	}
	w.Header().Set("Location", "/api/migrations/"+res.Migration.ID)
	api.WriteJSON(w, http.StatusAccepted, res.Migration)
}

func (a *app) listMigrations(w http.ResponseWriter, r *http.Request) {
	req := migration.ListRequest{ContinuationToken: r.URL.Query().Get("continuationToken")}
	if v := r.URL.Query().Get("top"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n == 0 {
			n = -1 // refused by the engine as invalid_top
		}
		req.Top = n
	}
	list, err := a.svc.List(r.Context(), req)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	api.WriteJSON(w, http.StatusOK, list)
}

func (a *app) getMigration(w http.ResponseWriter, r *http.Request) {
	m, err := a.svc.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	api.WriteJSON(w, http.StatusOK, m)
}

func (a *app) cancelMigration(w http.ResponseWriter, r *http.Request) {
	m, err := a.svc.Cancel(r.Context(), r.PathValue("id"))
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	api.WriteJSON(w, http.StatusOK, m)
}

// writeError answers a failed request by the API's error table; an internal failure's details stay in the log.
func (a *app) writeError(w http.ResponseWriter, r *http.Request, err error) {
	answer, internal := api.FromError(err)
	if internal {
		a.logger.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	api.Write(w, answer)
}

// invocation adapts a non-HTTP function: decode the host's envelope, run the step, answer the host's response
// shape. A non-2xx tells the host the invocation failed (a Service Bus message is then redelivered at once), so
// it is kept for transient faults; a malformed envelope is acknowledged after logging, since a retry cannot fix it.
func (a *app) invocation(name string, step func(ctx context.Context, log *slog.Logger, req *funcs.InvokeRequest) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		log := a.logger.With("function", name, "invocationId", r.Header.Get("X-Azure-Functions-InvocationId"))
		var req funcs.InvokeRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 8<<20)).Decode(&req); err != nil {
			log.Error("malformed invocation envelope, acknowledged without action", "err", err)
			funcs.WriteInvokeResponse(w, http.StatusOK, funcs.InvokeResponse{Logs: []string{"malformed envelope: " + err.Error()}})
			return
		}
		if err := step(r.Context(), log, &req); err != nil {
			log.Error("invocation failed", "err", err)
			funcs.WriteInvokeResponse(w, http.StatusInternalServerError, funcs.InvokeResponse{Logs: []string{err.Error()}})
			return
		}
		funcs.WriteInvokeResponse(w, http.StatusOK, funcs.InvokeResponse{Outputs: map[string]any{}, Logs: []string{name + " done"}})
	}
}

func (a *app) pollJob(ctx context.Context, log *slog.Logger, req *funcs.InvokeRequest) error {
	if t, err := req.Timer("timer"); err == nil && t.IsPastDue {
		log.Info("timer is past due")
	}
	// The migrations' sweep, then the assessments' (each bounded by its step budget); one failing does not stop
	// the other.
	return errors.Join(a.svc.Poll(ctx), a.assess.Poll(ctx))
}

func (a *app) runImport(ctx context.Context, log *slog.Logger, req *funcs.InvokeRequest) error {
	msg, err := req.ServiceBusMessage("msg")
	if err != nil {
		log.Error("unreadable run-import message, acknowledged", "err", err)
		return nil
	}
	log.Info("run-import", "messageId", msg.MessageID, "deliveryCount", msg.DeliveryCount)
	return a.svc.RunImport(ctx, msg.Body)
}

func (a *app) verifyCounts(ctx context.Context, log *slog.Logger, req *funcs.InvokeRequest) error {
	msg, err := req.ServiceBusMessage("msg")
	if err != nil {
		log.Error("unreadable verify-counts message, acknowledged", "err", err)
		return nil
	}
	log.Info("verify-counts", "messageId", msg.MessageID, "deliveryCount", msg.DeliveryCount)
	return a.svc.Verify(ctx, msg.Body)
}
