package assess

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/fhir"
	"github.com/fhir-migrator/fhir-migrator/internal/migration"
	"github.com/fhir-migrator/fhir-migrator/internal/store"
)

// fakeServer is a FHIR server that answers the reads and probes an assessment makes. It embeds a nil
// migration.FHIRClient: any other call, every write among them (imports, batches, deletes), panics the test.
type fakeServer struct {
	migration.FHIRClient
	base     string
	version  string
	types    []string
	held     map[string]int64 // resources per type
	countErr error            // every count fails with it
	lock     int              // the status of POST /metadata
	staging  *memStaging      // where an export's container appears

	mu       sync.Mutex
	calls    []string
	canceled []string
	polls    int
}

func (f *fakeServer) call(name string) {
	f.mu.Lock()
	f.calls = append(f.calls, name)
	f.mu.Unlock()
}

func (f *fakeServer) BaseURL() string { return f.base }
func (f *fakeServer) Capability(context.Context) (*fhir.Capability, error) {
	f.call("metadata")
	return &fhir.Capability{FHIRVersion: f.version, Types: f.types}, nil
}
func (f *fakeServer) ImportProbe(_ context.Context, inputURL string) (*fhir.ProbeAnswer, error) {
	f.call("import probe " + inputURL)
	return &fhir.ProbeAnswer{Status: 400, Message: "Requested operation does not support resource type: SearchParameter."}, nil
}
func (f *fakeServer) LockProbe(context.Context) (*fhir.ProbeAnswer, error) {
	f.call("lock probe")
	return &fhir.ProbeAnswer{Status: f.lock}, nil
}
func (f *fakeServer) Count(_ context.Context, typ string, _ url.Values) (int64, error) {
	f.call("count " + typ)
	if f.countErr != nil {
		return 0, f.countErr
	}
	return f.held[typ], nil
}
func (f *fakeServer) SearchPage(_ context.Context, typ string, q url.Values, _ string) ([]json.RawMessage, string, error) {
	f.call("search " + typ)
	if f.held[typ] == 0 {
		return nil, "", nil
	}
	return []json.RawMessage{json.RawMessage(`{"resourceType":"` + typ + `","id":"x","meta":{"lastUpdated":"2024-01-02T03:04:05.678Z"}}`)}, "", nil
}
func (f *fakeServer) Search(_ context.Context, typ string, _ url.Values, each func(json.RawMessage) error) error {
	f.call("search " + typ)
	return nil
}
func (f *fakeServer) ExportKickoff(_ context.Context, r fhir.ExportRequest) (string, error) {
	f.call("export " + strings.Join(r.Types, ","))
	if r.Since == nil || r.Container == "" {
		return "", errors.New("a probe export names a since and a container")
	}
	f.staging.create(r.Container)
	return f.base + "/_operations/export/1", nil
}
func (f *fakeServer) ExportStatus(context.Context, string) (*fhir.ExportStatus, error) {
	f.mu.Lock()
	f.polls++
	done := f.polls > 1
	f.mu.Unlock()
	if !done {
		return &fhir.ExportStatus{}, nil
	}
	return &fhir.ExportStatus{Done: true, Manifest: &fhir.Manifest{}}, nil
}
func (f *fakeServer) CancelJob(_ context.Context, cl string) error {
	f.mu.Lock()
	f.canceled = append(f.canceled, cl)
	f.mu.Unlock()
	return nil
}

// memStaging is a staging account in memory: containers and their blobs.
type memStaging struct {
	mu         sync.Mutex
	containers map[string]map[string][]byte
}

func (m *memStaging) create(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.containers[name] == nil {
		m.containers[name] = map[string][]byte{}
	}
}

func (m *memStaging) Endpoint() string { return "https://acct.blob.core.windows.net" }
func (m *memStaging) ContainerExists(_ context.Context, name string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.containers[name] != nil, nil
}
func (m *memStaging) ClaimContainer(_ context.Context, name, _ string) error {
	m.create(name)
	return nil
}
func (m *memStaging) PutBlob(_ context.Context, c, name, _ string, data []byte) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.containers[c][name] = data
	return c + "/" + name, nil
}
func (m *memStaging) Open(_ context.Context, u string) (io.ReadCloser, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, name, _ := strings.Cut(u, "/")
	return io.NopCloser(strings.NewReader(string(m.containers[c][name]))), nil
}
func (m *memStaging) DeleteContainer(_ context.Context, name, _ string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.containers, name)
	return nil
}

// okValidator accepts every request as it is.
type okValidator struct{}

func (okValidator) ValidateStart(raw migration.StartRequest) (*migration.Request, *migration.Error) {
	return &migration.Request{Source: *raw.Source, Destination: *raw.Destination, Types: raw.Types,
		ImportMode: migration.ModeIncremental, Verify: migration.VerifyModeCounts, ExportStrategy: migration.StrategyPerType}, nil
}

func newTestService(t *testing.T, src, dst *fakeServer, st *memStaging, clock func() time.Time) *Service {
	t.Helper()
	svc, err := NewService(Config{Store: store.NewMemory(), Staging: st, Validator: okValidator{}, Clock: clock,
		PollInterval: time.Second, MaxFailures: 3,
		FHIR: func(base string) (Client, error) {
			switch base {
			case src.base:
				return src, nil
			case dst.base:
				return dst, nil
			}
			return nil, fmt.Errorf("no server %s", base)
		}})
	require.NoError(t, err)
	return svc
}

// sweepUntilEnd advances the assessment sweep after sweep, the clock a second later each time, until it ends.
func sweepUntilEnd(t *testing.T, svc *Service, id string, now *time.Time) *Assessment {
	t.Helper()
	for range 50 {
		require.NoError(t, svc.Poll(context.Background()))
		a, err := svc.Get(context.Background(), id)
		require.NoError(t, err)
		if a.Status != StatusRunning {
			return a
		}
		*now = now.Add(time.Second)
	}
	require.FailNow(t, "the assessment did not end in 50 sweeps")
	return nil
}

// An assessment runs to completion in the sweeps, its probe export polled across them: every check ok on a ready
// pair, the destination's overlap counted, the probe's container gone, and no write to either server (a write
// would panic the fake).
func TestAdvanceCompletesAndWritesNothing(t *testing.T) {
	t.Parallel()
	st := &memStaging{containers: map[string]map[string][]byte{}}
	src := &fakeServer{base: "https://src", version: "4.0.1", types: []string{"Patient", "Observation"},
		held: map[string]int64{"Patient": 10, "Observation": 90}, staging: st}
	dst := &fakeServer{base: "https://dst", version: "4.0.1", types: []string{"Patient", "Observation"},
		held: map[string]int64{"Observation": 4}, lock: 405, staging: st}
	now := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	svc := newTestService(t, src, dst, st, func() time.Time { return now })
	s, d := src.base, dst.base
	a, err := svc.Start(context.Background(), migration.StartRequest{Source: &s, Destination: &d, Types: []string{"Patient", "Observation"}})
	require.NoError(t, err)

	a = sweepUntilEnd(t, svc, a.ID, &now)
	require.Equal(t, StatusCompleted, a.Status, "%+v", a.Progress)
	require.Equal(t, Warning, a.Verdict, "the destination holds Observations")
	for _, it := range a.Items {
		want := OK
		if it.Code == CodeOverlap {
			want = Warning
			require.Contains(t, it.Detail, "Observation: 4 (the source holds 90 in range)")
		}
		require.Equal(t, want, it.Status, "%s: %s", it.Code, it.Detail)
	}
	require.Equal(t, exportCompleted, a.Export.State)
	require.GreaterOrEqual(t, a.Export.Polls, 2, "polled across sweeps")
	require.True(t, a.Staging.Wrote && a.Staging.Read && a.Staging.Deleted)
	require.Empty(t, st.containers, "no container left")
	require.Equal(t, int64(100), a.Plan.Resources)
	require.NotNil(t, a.Estimate)
	require.NotEmpty(t, a.Checklist)
	require.Contains(t, dst.calls, "import probe https://acct.blob.core.windows.net/"+a.ID+"/assessment-probe.ndjson")
	require.Empty(t, src.canceled)
}

// A step that keeps failing (the source answers every count with 503) fails the assessment after MaxFailures
// sweeps, with what failed; its probe export is canceled and its container deleted.
func TestAdvanceFailsAfterRepeatedFailures(t *testing.T) {
	t.Parallel()
	st := &memStaging{containers: map[string]map[string][]byte{}}
	src := &fakeServer{base: "https://src", version: "4.0.1", types: []string{"Patient"}, held: map[string]int64{"Patient": 1},
		countErr: &fhir.Error{Op: "count", StatusCode: 503, Message: "Service Unavailable"}, staging: st}
	dst := &fakeServer{base: "https://dst", version: "4.0.1", types: []string{"Patient"}, lock: 405, staging: st}
	now := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	svc := newTestService(t, src, dst, st, func() time.Time { return now })
	// The probe export never finishes here: it is running when the assessment fails.
	src.polls = -1000
	s, d := src.base, dst.base
	a, err := svc.Start(context.Background(), migration.StartRequest{Source: &s, Destination: &d, Types: []string{"Patient"}})
	require.NoError(t, err)

	a = sweepUntilEnd(t, svc, a.ID, &now)
	require.Equal(t, StatusFailed, a.Status)
	require.Equal(t, "assessment_incomplete", a.Error.Code)
	require.Contains(t, a.Error.Message, "step survey failed 3 times in a row")
	require.Contains(t, a.Error.Message, "Service Unavailable")
	require.Equal(t, []string{"https://src/_operations/export/1"}, src.canceled, "the probe export canceled")
	require.Empty(t, st.containers, "its container deleted")
}
