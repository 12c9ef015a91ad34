package chaos

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/fhirsim"
)

var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

func failedDoc(code, msg string, rows ...documentRow) *document {
	d := &document{Status: "failed"}
	d.Error = &struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}{code, msg}
	if rows != nil {
		d.Verification = &struct {
			Rows []documentRow `json:"rows"`
		}{rows}
	}
	return d
}

// exportJob is a server export job of the source: polled (gets) or not, canceled (deletes) or not, with its fault.
func exportJob(id, query, fault string, gets, deletes int, created time.Time) fhirsim.ExportJobStats {
	return fhirsim.ExportJobStats{JobStats: fhirsim.JobStats{ID: id, Created: created, Gets: gets, Deletes: deletes},
		Query: query, Fault: fault}
}

const (
	qPatient = "_container=m-1&_since=2026-01-01T00%3A00%3A00.0000000Z&_type=Patient"
	qObs     = "_container=m-1&_type=Observation"
	qOther   = "_container=m-2&_type=Patient"
)

func exportFacts(msg string, exports ...fhirsim.ExportJobStats) *facts {
	f := &facts{id: "m-1", container: "m-1", doc: failedDoc("export_failed", "export job w-3 failed: "+msg),
		dest: fhirsim.Stats{FaultsInjected: map[string]int{}}}
	for _, j := range exports {
		if containerOf(j.Query) == f.container {
			f.exports = append(f.exports, j)
		}
	}
	return f
}

// TestFailedExportIsExcusedOnlyByItsOwnJobsFaults: an export failure is excused by the faults on the server jobs of
// one of its own kick-off queries (its container), as many as the engine counts, ending with the fault the error
// names; never by the shared source's counters or another migration's jobs.
func TestFailedExportIsExcusedOnlyByItsOwnJobsFaults(t *testing.T) {
	t.Parallel()
	const reexported = "exported 5 times without a complete result, the last: manifest short of the source's counts: " +
		"Patient 20 of 40, still after a re-poll"
	five := []fhirsim.ExportJobStats{
		exportJob("e1", qPatient, fhirsim.FaultExportFail, 3, 0, t0),
		exportJob("e2", qPatient, fhirsim.FaultExportStall, 9, 1, t0.Add(time.Second)),
		exportJob("e3", qPatient, fhirsim.FaultExportCancel, 4, 0, t0.Add(2*time.Second)),
		exportJob("e4", qPatient, fhirsim.FaultExportFail, 2, 0, t0.Add(3*time.Second)),
		exportJob("e5", qPatient, fhirsim.FaultExportCancel, 4, 0, t0.Add(4*time.Second)),
	}
	f := exportFacts(reexported, five...)
	excuse, why := excuseFor(f)
	require.Contains(t, excuse, "container m-1", why)
	require.Contains(t, excuse, "e5 export-cancel")

	// One of the five attempts had no fault: four faults do not explain five attempts given up.
	four := append([]fhirsim.ExportJobStats{}, five...)
	four[1].Fault = ""
	excuse, why = excuseFor(exportFacts(reexported, four...))
	require.Empty(t, excuse)
	require.Contains(t, why, "at most 4")
	// ... unless a kill landed while that attempt was due and the engine canceled it as stalled.
	withKill := exportFacts(reexported, four...)
	withKill.kills = []time.Time{t0.Add(3 * time.Second)}
	excuse, _ = excuseFor(withKill)
	require.Contains(t, excuse, "e2 kill")

	// The faults are spread over two queries (engine jobs): none had five.
	spread := append([]fhirsim.ExportJobStats{}, five...)
	spread[0].Query, spread[1].Query = qObs, qObs
	excuse, _ = excuseFor(exportFacts(reexported, spread...))
	require.Empty(t, excuse)

	// The last attempt's fault is not the one the error names.
	excuse, why = excuseFor(exportFacts(strings.Replace(reexported, "manifest short", "export operation failed for reason", 1), five...))
	require.Empty(t, excuse)
	require.Contains(t, why, "export-fail")

	// Another migration's jobs took the faults (the shared source's counters would show every fault, but the judge
	// reads only the jobs of its own container): not excused.
	var others []fhirsim.ExportJobStats
	for _, j := range five {
		j.Query = qOther
		others = append(others, j)
	}
	f = exportFacts(reexported, others...)
	f.exports = append(f.exports, exportJob("e9", qPatient, "", 3, 0, t0))
	excuse, _ = excuseFor(f)
	require.Empty(t, excuse, "another migration's faults explain nothing")
}

// TestFailedExportKickoffsAndPolls: kick-off attempts are excused by the 429s the source logged for that very
// query and by the server jobs of that query never polled (their answer lost); polls in a row by the faulty
// status answers of that query's server jobs. Global counts excuse nothing.
func TestFailedExportKickoffsAndPolls(t *testing.T) {
	t.Parallel()
	const kickoffs = "5 kick-off attempts failed, the last: export kick-off: HTTP 429: throttled"
	// e1's answer was lost; e2's came after the attempt was given up, and the engine canceled it; e3 was polled.
	lost := []fhirsim.ExportJobStats{exportJob("e1", qPatient, "", 0, 0, t0), exportJob("e2", qPatient, "", 0, 1, t0),
		exportJob("e3", qPatient, "", 4, 0, t0)}
	f := exportFacts(kickoffs, lost...)
	excuse, why := excuseFor(f)
	require.Empty(t, excuse, "two lost answers are not five failed attempts")
	require.Contains(t, why, "at most 2")
	// A 429 logged without its query cannot be claimed by any job.
	for range 3 {
		f.srcFaults = append(f.srcFaults, faultRecord{Fault: fhirsim.FaultKickoff429, Op: "$export"})
	}
	excuse, why = excuseFor(f)
	require.Empty(t, excuse)
	require.Contains(t, why, "logged 3 kickoff-429 without the kick-off's query")

	rec429 := func(q string) faultRecord {
		return faultRecord{Fault: fhirsim.FaultKickoff429, Op: "$export", Query: q}
	}
	f.srcFaults = []faultRecord{rec429(qPatient), rec429(qPatient), rec429(qOther), rec429(qOther), rec429(qObs)}
	excuse, _ = excuseFor(f)
	require.Empty(t, excuse, "the 429s of other queries explain nothing")
	f.srcFaults = append(f.srcFaults, rec429(qPatient))
	excuse, why = excuseFor(f)
	require.Contains(t, excuse, "kickoff-429 x3, 2 kick-off answers lost", why)

	// Kick-offs all refused leave no server job: the 429 records alone name the query.
	f = exportFacts(kickoffs)
	for range 5 {
		f.srcFaults = append(f.srcFaults, rec429(qObs))
	}
	excuse, _ = excuseFor(f)
	require.Contains(t, excuse, "_type=Observation")

	const polls = "11 status polls in a row failed, the last: export status: HTTP 503"
	jobs := []fhirsim.ExportJobStats{exportJob("e1", qPatient, "", 20, 0, t0), exportJob("e7", qOther, "", 20, 0, t0)}
	f = exportFacts(polls, jobs...)
	for range 6 {
		f.srcFaults = append(f.srcFaults, faultRecord{Fault: fhirsim.FaultStatus500, JobID: "e1"},
			faultRecord{Fault: fhirsim.FaultStatus503, JobID: "e7"})
	}
	for range 4 {
		f.srcFaults = append(f.srcFaults, faultRecord{Fault: fhirsim.FaultDropConn, Path: "/_operations/export/e1", Status: 202})
	}
	excuse, why = excuseFor(f)
	require.Empty(t, excuse, "10 faulty answers of its job, 6 of another's")
	require.Contains(t, why, "at most 10")
	f.srcFaults = append(f.srcFaults, faultRecord{Fault: fhirsim.FaultDropConn, Path: "/_operations/export/e1", Status: 200})
	excuse, _ = excuseFor(f)
	require.Contains(t, excuse, "e1 drop-conn x5 status-500 x6")
}

// TestFailedImportIsExcusedByItsOwnDestination: an import failure is excused by its own destination's refusals
// and faulty status answers, as many as the engine counts.
func TestFailedImportIsExcusedByItsOwnDestination(t *testing.T) {
	t.Parallel()
	f := &facts{id: "m-1", doc: failedDoc("import_failed", "import job w-9 failed: 5 kick-off attempts failed, the last: HTTP 423"),
		dest: fhirsim.Stats{FaultsInjected: map[string]int{fhirsim.FaultKickoff429: 1, fhirsim.FaultImportBusy: 2}, ImportsThrottled: 1}}
	excuse, why := excuseFor(f)
	require.Empty(t, excuse)
	require.Contains(t, why, "4 kick-offs, fewer than 5")
	f.destFaults = []faultRecord{{Fault: fhirsim.FaultDropConn, Path: "/$import", Status: 202}}
	excuse, _ = excuseFor(f)
	require.Contains(t, excuse, "refused 5 kick-offs")

	f.doc = failedDoc("import_failed", "import job w-9 failed: 11 status polls in a row failed, the last: HTTP 500")
	f.dest.FaultsInjected = map[string]int{fhirsim.FaultStatus500: 6, fhirsim.FaultStatus503: 4, fhirsim.FaultDropConn: 7}
	f.dest.Imports = []fhirsim.ImportJobStats{{JobStats: fhirsim.JobStats{ID: "i1"}}}
	f.destFaults = []faultRecord{{Fault: fhirsim.FaultDropConn, Path: "/Patient", Status: 200}}
	excuse, _ = excuseFor(f)
	require.Empty(t, excuse, "a dropped search is no status answer")
	f.destFaults = append(f.destFaults, faultRecord{Fault: fhirsim.FaultDropConn, Path: "/_operations/import/i1", Status: 200})
	excuse, _ = excuseFor(f)
	require.Contains(t, excuse, "11 faulty status answers")

	f.doc = failedDoc("import_failed", "import job w-9 failed: import operation failed for reason: disk")
	excuse, _ = excuseFor(f)
	require.Empty(t, excuse)
}

// TestVerificationFailedNeedsItsServersDrops: a verification or planning that gave up is excused only by as many
// dropped connections of the server its error names, on searches, while it ran.
func TestVerificationFailedNeedsItsServersDrops(t *testing.T) {
	t.Parallel()
	f := &facts{id: "m-1", srcURL: "http://127.0.0.1:1000", destURL: "http://127.0.0.1:2000", started: t0, ended: t0.Add(time.Hour),
		doc: failedDoc("verification_failed", "verification could not be done (attempt 5): count Patient: GET "+
			"http://127.0.0.1:2000/Patient: connection reset by peer"),
		dest: fhirsim.Stats{FaultsInjected: map[string]int{fhirsim.FaultDropConn: 40}}}
	drop := func(path string, at time.Time) faultRecord {
		return faultRecord{Fault: fhirsim.FaultDropConn, Path: path, Status: 200, At: at}
	}
	for range 5 {
		f.srcFaults = append(f.srcFaults, drop("/Patient", t0.Add(time.Minute)))                 // the other server
		f.destFaults = append(f.destFaults, drop("/_operations/import/i1", t0.Add(time.Minute))) // no search
	}
	f.destFaults = append(f.destFaults, drop("/Patient", t0.Add(-time.Minute))) // before it started
	for range 4 {
		f.destFaults = append(f.destFaults, drop("/Patient", t0.Add(time.Minute)))
	}
	excuse, why := excuseFor(f)
	require.Empty(t, excuse, "any dropped connection was the old excuse")
	require.Contains(t, why, "4 connections")
	f.destFaults = append(f.destFaults, drop("/Observation", t0.Add(2*time.Minute)))
	excuse, _ = excuseFor(f)
	require.Contains(t, excuse, "its destination dropped 5")
	f.destURL = "http://127.0.0.1:200"
	excuse, why = excuseFor(f)
	require.Empty(t, excuse, "port 2000 is not port 200")
	require.Contains(t, why, "names neither")
	f.destURL = "http://127.0.0.1:2000"

	f.doc = failedDoc("source_count_unavailable", "planning could not count the source after 5 attempts: count: EOF")
	excuse, _ = excuseFor(f)
	require.Contains(t, excuse, "the source dropped 5")
	f.srcFaults = f.srcFaults[1:]
	excuse, _ = excuseFor(f)
	require.Empty(t, excuse)
}

func mismatchFacts() *facts {
	return &facts{id: "m-1", container: "m-1", lossy: true, compared: true,
		doc: failedDoc("verification_mismatch", "Observation: 3 of 220 exported ids are not in the destination",
			documentRow{Type: "Patient"}, documentRow{Type: "Observation", Reason: "missing"}),
		missing: []string{"Observation/a", "Observation/b", "Observation/c"},
		dest: fhirsim.Stats{FaultsInjected: map[string]int{fhirsim.FaultImportDrop: 2, fhirsim.FaultImportLineErrors: 1},
			DroppedResources: []string{"Observation/a", "Observation/c"}},
		refused: []string{"Observation/b"}}
}

// TestMismatchIsExcusedOnlyByWhatItsDestinationLost: a failed verification is excused only on a lossy destination,
// when every missing resource is one the import-drop fault dropped or whose line the destination refused, and no
// row claims a problem a destination fault cannot cause (export_short among them).
func TestMismatchIsExcusedOnlyByWhatItsDestinationLost(t *testing.T) {
	t.Parallel()
	excuse, why := excuseFor(mismatchFacts())
	require.Contains(t, excuse, "every one of 3 missing", why)

	for name, spoil := range map[string]func(f *facts){
		"a missing id neither dropped nor refused": func(f *facts) { f.missing = append(f.missing, "Observation/d") },
		"a refused line not read back":             func(f *facts) { f.refused = nil },
		"not a lossy destination":                  func(f *facts) { f.lossy = false },
		"a resource the source lacks":              func(f *facts) { f.extra = []string{"Observation/x"} },
		"nothing missing":                          func(f *facts) { f.missing = nil },
		"destination not read":                     func(f *facts) { f.compared = false },
		"a different resource not refused":         func(f *facts) { f.different = []string{"Patient/p"} },
		"count_mismatch with an export_short row": func(f *facts) {
			f.doc = failedDoc("count_mismatch", "Patient: the source holds 40 in the migrated range and the export wrote "+
				"38: 2 were never exported", documentRow{Type: "Patient", Reason: "export_short"},
				documentRow{Type: "Observation", Reason: "count_mismatch"})
		},
		"an export_short row behind a missing one": func(f *facts) {
			f.doc = failedDoc("verification_mismatch", "Observation: 3 of 220 exported ids are not in the destination",
				documentRow{Type: "Patient", Reason: "export_short"}, documentRow{Type: "Observation", Reason: "missing"})
		},
		"staged files short": func(f *facts) {
			f.doc.Verification.Rows[1].Reason = "staged_mismatch"
		},
	} {
		f := mismatchFacts()
		spoil(f)
		excuse, why := excuseFor(f)
		require.Empty(t, excuse, name)
		require.NotEmpty(t, why, name)
	}
}

// TestEveryMigrationCompletesOrFailsExcused: the summary counts an unexcused failure as such, whatever the others
// did, and the judge fails the run for it.
func TestEveryMigrationCompletesOrFailsExcused(t *testing.T) {
	t.Parallel()
	completed := &facts{id: "m-1", doc: &document{Status: "completed"}, compared: true, held: 2400}
	excused := mismatchFacts()
	unexcused := exportFacts("exported 5 times without a complete result, the last: stalled: not finished 10s after the source accepted it; canceled")
	unexcused.id = "m-3"
	s := Summary{Migrations: 3, Reasons: map[string]string{}, Kills: 9, FaultKinds: 12, FaultKindsConfigured: 12}
	s.add([]*facts{completed, excused, unexcused})
	require.Equal(t, 1, s.Completed)
	require.Equal(t, 2, s.Failed)
	require.Equal(t, 1, s.Injected)
	require.Contains(t, s.Reasons["m-3"], "no injected fault explains it")
	s.judge(Options{Kills: 5, MinResources: 2000})
	require.Equal(t, []string{"1 migrations failed for a reason no injected fault explains"}, s.Problems)
}

// TestSmallestIsCountedOnTheDestination: the smallest migration is what a completed migration's destination holds
// of its scope, not the source's scope, and a failed migration proves no size.
func TestSmallestIsCountedOnTheDestination(t *testing.T) {
	t.Parallel()
	full := &facts{id: "m-1", doc: &document{Status: "completed"}, compared: true, held: 2400}
	short := &facts{id: "m-2", doc: &document{Status: "completed"}, compared: true, held: 1500,
		missing: make([]string, 900)}
	failed := &facts{id: "m-3", doc: failedDoc("export_failed", "x"), compared: true, held: 10}
	s := Summary{Migrations: 3, Reasons: map[string]string{}}
	s.add([]*facts{full, short, failed})
	require.Equal(t, 1500, s.Smallest)
	require.Equal(t, 900, s.Missing)

	s = Summary{Migrations: 2, Reasons: map[string]string{}}
	s.add([]*facts{full, failed})
	require.Equal(t, 2400, s.Smallest, "the failed migration's destination is not counted")
	s.judge(Options{MinResources: 2500})
	require.Contains(t, s.Problems, "the smallest completed migration's destination holds 2400 resources, fewer than 2500")
}

// TestRefusedLinesAreReadBack: an import error file names each refused line; the resource comes from that line of
// the input; the file's name gives its job and input.
func TestRefusedLinesAreReadBack(t *testing.T) {
	t.Parallel()
	// An empty line is not numbered (as the service reads its input); a CRLF ends a line as LF does.
	input := []byte(`{"resourceType":"Observation","id":"o1"}` + "\r\n\n" + `{"resourceType":"Observation","id":"o2"}` + "\n" +
		`{"resourceType":"Observation","id":"o3"}`)
	errs := []byte(`{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"processing","diagnostics":"Failed to process resource at line: 3 with stream start offset: 0","details":{"text":"the data store timed out"}}]}` + "\n" +
		`{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"processing","diagnostics":"Failed to process resource at line: 1 with stream start offset: 0"}]}` + "\n")
	keys, err := refusedKeys(errs, input)
	require.NoError(t, err)
	require.Equal(t, []string{"Observation/o3", "Observation/o1"}, keys)
	_, err = refusedKeys([]byte(`{"resourceType":"OperationOutcome","issue":[{"diagnostics":"Failed to process resource at line: 9"}]}`), input)
	require.Error(t, err)

	jobs := map[string][]string{"0123456789abcdef0123456789abcdef": {"u1", "u2"}, "ffff": {"u3"}}
	job, in, ok := errorFileInput("Observation0123456789abcdef0123456789abcdef-2.ndjson", jobs)
	require.True(t, ok)
	require.Equal(t, "0123456789abcdef0123456789abcdef", job)
	require.Equal(t, 1, in)
	_, _, ok = errorFileInput("Observation0123456789abcdef0123456789abcdef-3.ndjson", jobs)
	require.False(t, ok, "no third input")
	_, _, ok = errorFileInput("Observationaaaa-1.ndjson", jobs)
	require.False(t, ok, "another destination's job")
}

// TestFaultLogReadsTheSimulatorsLines: the simulator's own "fault injected" lines are what the chaos attributes;
// a dropped connection names its path and the status it cut.
func TestFaultLogReadsTheSimulatorsLines(t *testing.T) {
	t.Parallel()
	log := &faultLog{}
	sim := fhirsim.New(fhirsim.WithSeed(1, 7), fhirsim.WithFaults(fhirsim.Faults{fhirsim.FaultDropConn: 1}),
		fhirsim.WithFaultSeed(1), fhirsim.WithLogger(log.logger()))
	t.Cleanup(sim.Close)
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, srv.URL+"/Patient", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+fhirsim.DevToken(srv.URL))
	if resp, err := srv.Client().Do(req); err == nil {
		_ = resp.Body.Close()
	}
	recs := log.records()
	require.Len(t, recs, 1)
	require.Equal(t, fhirsim.FaultDropConn, recs[0].Fault)
	require.Equal(t, "/Patient", recs[0].Path)
	require.Equal(t, http.StatusOK, recs[0].Status)
	require.Equal(t, 1, searchDrops(recs, recs[0].At.Add(-time.Second), recs[0].At.Add(time.Second)))
	require.Zero(t, lostKickoffs(recs))

	// The lines as the simulator writes them for a kick-off, a status answer and a kick-off-429 (with its query).
	l := log.logger().With("flavor", "api-for-fhir")
	l.Info(faultMessage, "fault", fhirsim.FaultDropConn, "method", "GET", "path", "/$export", "status", 202)
	l.Info(faultMessage, "fault", fhirsim.FaultDropConn, "method", "GET", "path", "/_operations/export/e1", "status", 200)
	l.Info(faultMessage, "fault", fhirsim.FaultStatus503, "kind", "export", "job_id", "e1")
	l.Info(faultMessage, "fault", fhirsim.FaultKickoff429, "op", "$export", "query", qPatient)
	l.Debug(faultMessage, "fault", fhirsim.FaultKickoff429, "op", "$export", "query", qPatient)
	l.Log(context.Background(), slog.LevelInfo, "export queued", "job_id", "e1")
	recs = log.records()[1:]
	require.Len(t, recs, 4)
	require.Equal(t, 1, lostKickoffs(recs))
	require.Equal(t, map[string]map[string]int{"e1": {fhirsim.FaultDropConn: 1, fhirsim.FaultStatus503: 1}}, statusFaults(recs))
	require.Equal(t, map[string]int{qPatient: 1}, kickoff429s(recs))
}
