package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"

	"github.com/fhir-migrator/fhir-migrator/internal/funcs"
	"github.com/fhir-migrator/fhir-migrator/internal/migration"
)

// maxRequestBody bounds what is read of a start or action request: one byte over the engine's limit, so that the
// engine sees an oversized body and answers it with a 400.
const maxRequestBody = migration.MaxStartBody + 1

func (a *app) startMigration(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxRequestBody))
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_body", "the request body could not be read", "")
		return
	}
	res, err := a.svc.Start(r.Context(), body)
	if err != nil {
		a.writeServiceError(w, r, err)
		return
	}
	if res.Migration != nil {
		w.Header().Set("Location", "/api/migrations/"+res.Migration.ID)
		writeJSON(w, res.Status, res.Migration)
		return
	}
	writeJSON(w, res.Status, res.Plan)
}

func (a *app) listMigrations(w http.ResponseWriter, r *http.Request) {
	list, err := a.svc.List(r.Context())
	if err != nil {
		a.writeServiceError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"migrations": list})
}

func (a *app) getMigration(w http.ResponseWriter, r *http.Request) {
	m, err := a.svc.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		a.writeServiceError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, m)
}

func (a *app) cancelMigration(w http.ResponseWriter, r *http.Request) {
	m, err := a.svc.Cancel(r.Context(), r.PathValue("id"))
	if err != nil {
		a.writeServiceError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, m)
}

// writeServiceError answers an engine error: its own status and code for an *APIError, else a 500 whose details
// stay in the log.
func (a *app) writeServiceError(w http.ResponseWriter, r *http.Request, err error) {
	var apiErr *migration.APIError
	if errors.As(err, &apiErr) {
		writeError(w, apiErr.Status, apiErr.Code, apiErr.Message, apiErr.Field)
		return
	}
	a.logger.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	writeError(w, http.StatusInternalServerError, "internal_error", "the request failed; see the function's log", "")
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

func writeError(w http.ResponseWriter, status int, code, message, field string) {
	writeJSON(w, status, errorBody{Error: errorDetail{Code: code, Message: message, Field: field}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
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
	return a.svc.Poll(ctx)
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
