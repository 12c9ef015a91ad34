package devhost

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/fhir-migrator/fhir-migrator/internal/hostroute"
)

var errFunctionNotFound = errors.New("function not found")

// maxMessageIDLength is Service Bus's limit on MessageId.
const maxMessageIDLength = 128

func (h *Host) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /admin/servicebus/queues/{queue}/messages", h.adminSend)
	mux.HandleFunc("GET /admin/servicebus/queues", h.adminQueues)
	mux.HandleFunc("GET /admin/servicebus/queues/{queue}/deadletters", h.adminDeadLetters)
	mux.HandleFunc("POST /admin/functions/{name}", h.adminInvoke)
	mux.HandleFunc("POST /admin/handler/kill", h.adminKill)
	mux.HandleFunc("GET /admin/stats", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, h.Stats()) })
	// The host matches its admin routes before any function route (WebJobsApplicationBuilderExtension.cs: MVC,
	// then the function routes), so a function's catch-all never shadows them. Every other request goes to the
	// function routes as sent: a ServeMux would first redirect a path with "//" to a cleaned one, which the host
	// does not do.
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := r.URL.EscapedPath(); strings.HasPrefix(p, "/admin/") {
			mux.ServeHTTP(w, r)
			return
		}
		h.serveFunction(w, r)
	})
}

type apiError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func writeError(w http.ResponseWriter, status int, code, message string) {
	var e apiError
	e.Error.Code, e.Error.Message = code, message
	writeJSON(w, status, e)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// sendRequest is the body of POST /admin/servicebus/queues/{queue}/messages.
type sendRequest struct {
	MessageID            string `json:"messageId"`
	Body                 string `json:"body"`
	ContentType          string `json:"contentType"`
	CorrelationID        string `json:"correlationId"`
	ScheduledEnqueueTime string `json:"scheduledEnqueueTimeUtc"`
}

func (h *Host) adminSend(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("queue")
	q, ok := h.queues[name]
	if !ok {
		writeError(w, http.StatusNotFound, "queue_not_found", "no function is triggered by queue "+strconv.Quote(name))
		return
	}
	var req sendRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_body", "want {\"messageId\",\"body\",\"contentType\",\"scheduledEnqueueTimeUtc\"}: "+err.Error())
		return
	}
	if len(req.MessageID) > maxMessageIDLength {
		writeError(w, http.StatusBadRequest, "invalid_message_id", "messageId is longer than 128 characters")
		return
	}
	var notBefore time.Time
	if req.ScheduledEnqueueTime != "" {
		t, err := time.Parse(time.RFC3339Nano, req.ScheduledEnqueueTime)
		if err != nil {
			writeError(w, http.StatusBadRequest, "invalid_scheduled_time", "scheduledEnqueueTimeUtc: want RFC 3339: "+err.Error())
			return
		}
		notBefore = t
	}
	id := h.enqueue(q, req.MessageID, req.Body, req.ContentType, req.CorrelationID, notBefore)
	// 201 for a dropped duplicate or a lost message too: Service Bus does not tell the sender.
	writeJSON(w, http.StatusCreated, map[string]string{"messageId": id})
}

func (h *Host) adminKill(w http.ResponseWriter, _ *http.Request) {
	if err := h.KillHandler(); err != nil {
		writeError(w, http.StatusConflict, "handler_not_running", err.Error())
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"status": "killed"})
}

func (h *Host) adminQueues(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, h.Stats().Queues)
}

func (h *Host) adminDeadLetters(w http.ResponseWriter, r *http.Request) {
	list, err := h.DeadLetters(r.PathValue("queue"))
	if err != nil {
		writeError(w, http.StatusNotFound, "queue_not_found", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, list)
}

func (h *Host) adminInvoke(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Input string `json:"input"`
	}
	raw, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_body", err.Error())
		return
	}
	if len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, &req); err != nil {
			writeError(w, http.StatusBadRequest, "invalid_body", "want {\"input\":\"...\"}: "+err.Error())
			return
		}
	}
	name := r.PathValue("name")
	if err := h.triggerNow(name, req.Input); err != nil {
		if errors.Is(err, errFunctionNotFound) {
			writeError(w, http.StatusNotFound, "function_not_found", "no function "+strconv.Quote(name))
			return
		}
		writeError(w, http.StatusBadRequest, "not_triggerable", err.Error())
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

// serveFunction routes a request to an HTTP-triggered function as the host does (internal/hostroute names the
// host's sources): the path with its dot segments resolved (Kestrel), then the functions' routes under the prefix
// tried in the order of the functions' names; a route whose template matches and whose methods do not take the
// request's method is passed over for the next. A request no route takes is answered as the host answers it: 404
// with no body (and the host's home page at /).
func (h *Host) serveFunction(w http.ResponseWriter, r *http.Request) {
	if p := hostroute.RemoveDotSegments(r.URL.EscapedPath()); p != r.URL.EscapedPath() {
		// Kestrel hands routing, and the host forwards, the resolved path.
		r = r.Clone(r.Context())
		if u, err := url.Parse(p); err == nil {
			r.URL.Path, r.URL.RawPath = u.Path, u.RawPath
		}
	}
	if route, params, ok := h.app.Routes.Route(r.Method, r.URL.EscapedPath()); ok {
		fn := h.app.Functions[route.Name]
		// App Service authentication's part: the client's principal headers out, the configured principal's in.
		r = h.withPrincipal(r)
		if fn.Forward {
			h.forward(w, r, fn)
		} else {
			h.payload(w, r, fn, params)
		}
		return
	}
	if r.URL.Path == "/" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "Your Functions 4.0 app is up and running (local host)\n")
		return
	}
	h.log.Info("no function route takes this request", "method", r.Method, "path", r.URL.Path)
	w.WriteHeader(http.StatusNotFound)
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// forward relays the raw request to the handler at the same path and query and its answer as is.
func (h *Host) forward(w http.ResponseWriter, r *http.Request, fn *function) {
	ctx, cancel := context.WithTimeout(r.Context(), h.app.FunctionTimeout)
	defer cancel()
	base, err := h.worker.endpoint(ctx)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "handler_unavailable", "the handler is not running")
		return
	}
	target, err := url.Parse(base)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "handler_unavailable", "bad handler address")
		return
	}
	id := newUUID()
	start := time.Now()
	h.countInvocation(fn.Name)
	rec := &statusRecorder{ResponseWriter: w}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
			pr.Out.Header.Set("X-Azure-Functions-InvocationId", id)
			pr.Out.Header.Set("X-Azure-Functions-HostVersion", HostVersion)
		},
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			h.worker.suspect(base)
			h.log.Warn("forwarded request failed", "function", fn.Name, "invocationId", id, "err", err)
			writeError(w, http.StatusInternalServerError, "invocation_failed", "the function invocation failed")
		},
	}
	proxy.ServeHTTP(rec, r.WithContext(ctx))
	h.log.Info("invocation", "function", fn.Name, "invocationId", id, "status", rec.status,
		"duration", time.Since(start).Round(time.Millisecond), "method", r.Method, "path", r.URL.Path)
}

// payload sends the request in the payload form to /{FunctionName} and turns Outputs.{res} into the answer.
func (h *Host) payload(w http.ResponseWriter, r *http.Request, fn *function, params map[string]string) {
	env, err := encodeHTTP(fn.Name, fn.Trigger.Name, r, params, h.now())
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_body", err.Error())
		return
	}
	status, body, err := h.invoke(r.Context(), fn, env)
	if err != nil || status/100 != 2 {
		writeError(w, http.StatusInternalServerError, "invocation_failed", "the function invocation failed")
		return
	}
	var resp struct {
		Outputs     map[string]json.RawMessage `json:"Outputs"`
		ReturnValue json.RawMessage            `json:"ReturnValue"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		h.log.Warn("handler answered a malformed invocation response", "function", fn.Name, "err", err)
		writeError(w, http.StatusInternalServerError, "invocation_failed", "the handler's response is not an invocation response")
		return
	}
	var res json.RawMessage
	switch fn.HTTPOut {
	case "":
	case "$return":
		res = resp.ReturnValue
	default:
		res = resp.Outputs[fn.HTTPOut]
	}
	writeHTTPOutput(w, res)
}

// writeHTTPOutput writes an http output binding value: {statusCode, body, headers}.
func writeHTTPOutput(w http.ResponseWriter, res json.RawMessage) {
	if len(res) == 0 || string(bytes.TrimSpace(res)) == "null" {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	var out map[string]json.RawMessage
	if err := json.Unmarshal(res, &out); err != nil {
		// A bare value is the body.
		var s string
		if json.Unmarshal(res, &s) == nil {
			_, _ = io.WriteString(w, s)
			return
		}
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		_, _ = w.Write(res)
		return
	}
	field := func(name string) json.RawMessage {
		for k, v := range out {
			if strings.EqualFold(k, name) {
				return v
			}
		}
		return nil
	}
	status := http.StatusOK
	if raw := field("statusCode"); raw != nil {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			s = string(raw)
		}
		if n, err := strconv.Atoi(strings.TrimSpace(s)); err == nil && n >= 100 && n <= 999 {
			status = n
		}
	}
	if raw := field("headers"); raw != nil {
		var hdrs map[string]json.RawMessage
		if json.Unmarshal(raw, &hdrs) == nil {
			for k, v := range hdrs {
				var s string
				var list []string
				switch {
				case json.Unmarshal(v, &s) == nil:
					w.Header().Set(k, s)
				case json.Unmarshal(v, &list) == nil:
					for _, item := range list {
						w.Header().Add(k, item)
					}
				}
			}
		}
	}
	var body []byte
	if raw := field("body"); raw != nil && string(bytes.TrimSpace(raw)) != "null" {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			body = []byte(s)
		} else {
			body = raw
			if w.Header().Get("Content-Type") == "" {
				w.Header().Set("Content-Type", "application/json; charset=utf-8")
			}
		}
	}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
