package chaos

import (
	"context"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fhir-migrator/fhir-migrator/internal/fhirsim"
)

// faultRecord is one fault a simulator logged ("fault injected"), with what its log line names: the request's
// method, path and answer's status for a drop-conn, the operation of a kick-off fault, the job of a job fault or
// of a status fault, the kick-off's query of an $export kick-off-429.
type faultRecord struct {
	At     time.Time
	Fault  string
	Op     string
	Method string
	Path   string
	Status int
	JobID  string
	Query  string
}

// faultLog is a simulator's logger (fhirsim.WithLogger) that keeps the faults it logs: the simulator's own record
// of each request fault it injected and on what, which its Stats only count by name.
type faultLog struct {
	mu   sync.Mutex
	recs []faultRecord
}

func (l *faultLog) logger() *slog.Logger { return slog.New(&faultHandler{log: l}) }

// records returns a copy of what was recorded so far.
func (l *faultLog) records() []faultRecord {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.recs)
}

// faultMessage is the message of every fault injection the simulator logs.
const faultMessage = "fault injected"

type faultHandler struct {
	log   *faultLog
	attrs []slog.Attr
}

func (h *faultHandler) Enabled(_ context.Context, level slog.Level) bool {
	return level >= slog.LevelInfo
}

func (h *faultHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message != faultMessage {
		return nil
	}
	rec := faultRecord{At: r.Time}
	set := func(a slog.Attr) bool {
		v := a.Value.Resolve().String()
		switch a.Key {
		case "fault":
			rec.Fault = v
		case "op":
			rec.Op = v
		case "method":
			rec.Method = v
		case "path":
			rec.Path = v
		case "status":
			rec.Status, _ = strconv.Atoi(v)
		case "job_id":
			rec.JobID = v
		case "query":
			rec.Query = v
		}
		return true
	}
	for _, a := range h.attrs {
		set(a)
	}
	r.Attrs(set)
	h.log.mu.Lock()
	h.log.recs = append(h.log.recs, rec)
	h.log.mu.Unlock()
	return nil
}

func (h *faultHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &faultHandler{log: h.log, attrs: append(slices.Clip(h.attrs), as...)}
}

func (h *faultHandler) WithGroup(string) slog.Handler { return h }

// jobOfPath returns the server job a request path names: /_operations/export/<id> or /_operations/import/<id>.
func jobOfPath(path string) (id string, ok bool) {
	for _, kind := range []string{"export", "import"} {
		if id, ok := strings.CutPrefix(path, "/_operations/"+kind+"/"); ok && id != "" && !strings.Contains(id, "/") {
			return id, true
		}
	}
	return "", false
}

// isKickoffPath tells an $export or $import kick-off.
func isKickoffPath(path string) bool { return path == "/$export" || path == "/$import" }

// statusFaults counts, per server job, the request faults on the job's own status (and DELETE) answers: a
// drop-conn by the path it cut, status-500 and status-503 by the job the simulator names when it logs them.
func statusFaults(recs []faultRecord) map[string]map[string]int {
	out := map[string]map[string]int{}
	add := func(id, fault string) {
		if out[id] == nil {
			out[id] = map[string]int{}
		}
		out[id][fault]++
	}
	for _, r := range recs {
		switch r.Fault {
		case fhirsim.FaultDropConn:
			if id, ok := jobOfPath(r.Path); ok {
				add(id, r.Fault)
			}
		case fhirsim.FaultStatus500, fhirsim.FaultStatus503:
			if r.JobID != "" {
				add(r.JobID, r.Fault)
			}
		}
	}
	return out
}

// kickoff429s counts the $export kick-offs answered kickoff-429, by the kick-off's query (as the simulator's job
// records spell it), when the simulator logs the query.
func kickoff429s(recs []faultRecord) map[string]int {
	out := map[string]int{}
	for _, r := range recs {
		if r.Fault == fhirsim.FaultKickoff429 && r.Op == "$export" && r.Query != "" {
			out[r.Query]++
		}
	}
	return out
}

// lostKickoffs counts the kick-offs whose answer (202, the job created) a drop-conn cut: the engine never learns
// of that server job.
func lostKickoffs(recs []faultRecord) int {
	n := 0
	for _, r := range recs {
		if r.Fault == fhirsim.FaultDropConn && isKickoffPath(r.Path) && r.Status == 202 {
			n++
		}
	}
	return n
}

// searchDrops counts the drop-conns on requests that are neither a kick-off nor a job's status call (searches,
// counts, reads, writes) logged within [from, to].
func searchDrops(recs []faultRecord, from, to time.Time) int {
	n := 0
	for _, r := range recs {
		if r.Fault != fhirsim.FaultDropConn || isKickoffPath(r.Path) || r.At.Before(from) || r.At.After(to) {
			continue
		}
		if _, ok := jobOfPath(r.Path); !ok {
			n++
		}
	}
	return n
}

// containerOf is the _container of an export kick-off query.
func containerOf(query string) string {
	q, err := url.ParseQuery(query)
	if err != nil {
		return ""
	}
	return q.Get("_container")
}
