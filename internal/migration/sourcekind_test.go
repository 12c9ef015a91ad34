package migration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestSourceKindFromTheHost: an AHDS FHIR service's host implies fhir-service, another Azure host api-for-fhir,
// a loopback host (the local simulators) api-for-fhir; any other host must name its kind, and a named kind is
// checked.
func TestSourceKindFromTheHost(t *testing.T) {
	t.Parallel()
	for host, want := range map[string]string{
		"https://ws-svc.fhir.azurehealthcareapis.com":      SourceKindFHIRService,
		"https://WS-SVC.FHIR.AzureHealthcareAPIs.com/":     SourceKindFHIRService,
		"https://contoso.azurehealthcareapis.com":          SourceKindAPIForFHIR,
		"http://127.0.0.1:8081":                            SourceKindAPIForFHIR,
		"http://localhost:8081/fhir":                       SourceKindAPIForFHIR,
		"https://ehr.example.com/fhir":                     "",
		"https://fhir.azurehealthcareapis.com.example.com": "",
	} {
		require.Equal(t, want, defaultSourceKind(host), host)
	}
	kind, refusal := checkSourceKind(nil, "https://ehr.example.com/fhir")
	require.Empty(t, kind)
	require.Equal(t, "missing_field", refusal.Code)
	require.Equal(t, "sourceKind", refusal.Field)
	named := SourceKindFHIRService
	kind, refusal = checkSourceKind(&named, "https://ehr.example.com/fhir")
	require.Nil(t, refusal)
	require.Equal(t, SourceKindFHIRService, kind)
	unknown := "cosmos"
	_, refusal = checkSourceKind(&unknown, "https://contoso.azurehealthcareapis.com")
	require.Equal(t, "invalid_source_kind", refusal.Code)
	require.Equal(t, "sourceKind", refusal.Field)
}

// TestFHIRVersionsMustAgree: servers whose fhirVersion differ in major.minor are refused at start, naming both;
// a patch level may differ.
func TestFHIRVersionsMustAgree(t *testing.T) {
	t.Parallel()
	require.Nil(t, checkFHIRVersions("4.0.1", "4.0.0"))
	require.Nil(t, checkFHIRVersions("4.0", "4.0.1"))
	for _, pair := range [][2]string{{"3.0.2", "4.0.1"}, {"4.3.0", "4.0.1"}, {"", "4.0.1"}, {"4.x", "4.0.1"}} {
		require.NotNil(t, checkFHIRVersions(pair[0], pair[1]), pair)
	}

	h := newHarness(t, nil)
	h.src.fhirVersion = "3.0.2"
	_, err := h.svc.Start(context.Background(), decode[StartRequest](t, `{`+endpoints+`}`))
	var refusal *Error
	require.True(t, errors.As(err, &refusal), "%v", err)
	require.Equal(t, "fhir_version_mismatch", refusal.Code)
	require.Equal(t, Invalid, refusal.Kind)
	require.Equal(t, "source", refusal.Field)
	require.Contains(t, refusal.Message, `"3.0.2"`)
	require.Contains(t, refusal.Message, `"4.0.1"`)
	list, err := h.svc.List(context.Background(), ListRequest{})
	require.NoError(t, err)
	require.Empty(t, list.Migrations, "nothing stored")
}

// TestFHIRServiceWindowsAreExactAtMilliseconds: on a fhir-service source, many resources sharing milliseconds are
// planned into windows cut at milliseconds, each holding its resources once; every window's export is parallel
// with a _till equal to the next window's _since, and counted with the same ends (ge, lt); a window with a
// typeFilter is exported non-parallel with its last millisecond as an inclusive _till.
func TestFHIRServiceWindowsAreExactAtMilliseconds(t *testing.T) {
	t.Parallel()
	from := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	var obs []time.Time
	for i := range 20 {
		for range 5 {
			obs = append(obs, from.Add(time.Duration(i*3)*time.Millisecond)) // 20 instants, 5 resources on each
		}
	}
	h, src := newPlanningHarness(t, nil, map[string][]time.Time{"Observation": obs})
	till := from.Add(time.Second)
	m := h.start(`{` + endpoints + `,"sourceKind":"fhir-service","types":["Observation"],"windowTarget":12,` +
		`"since":"2024-01-01T00:00:00Z","till":"` + till.Format(time.RFC3339Nano) + `"}`)
	require.Equal(t, SourceKindFHIRService, m.Request.SourceKind, "the kind is in the document")
	h.poll()
	m = h.get(m.ID)
	require.Equal(t, StatusExporting, m.Status)
	windows := exportWindows(m)
	require.Greater(t, len(windows), 5)
	held := 0
	var tiles [][2]time.Time
	for _, w := range windows {
		require.Equal(t, w.Since.Truncate(time.Millisecond), *w.Since, w.ID)
		require.Equal(t, w.Till.Truncate(time.Millisecond), *w.Till, w.ID)
		n := 0
		for _, at := range obs {
			if !at.Before(*w.Since) && !at.After(*w.Till) {
				n++
			}
		}
		require.Equal(t, int64(n), w.Planned, w.ID)
		require.LessOrEqual(t, n, 12, w.ID)
		held += n
		tiles = append(tiles, [2]time.Time{*w.Since, *w.Till})
	}
	for _, r := range m.Planning.Empty {
		tiles = append(tiles, [2]time.Time{*r.Since, r.Till})
	}
	slices.SortFunc(tiles, func(a, b [2]time.Time) int { return a[0].Compare(b[0]) })
	for i := 1; i < len(tiles); i++ {
		require.Equal(t, tiles[i-1][1].Add(time.Millisecond), tiles[i][0], "contiguous at %d", i)
	}
	require.Equal(t, len(obs), held, "every resource in exactly one window")

	// Kick-offs: parallel, each _till one millisecond after its window's last, the next window's _since.
	for range 10 {
		h.poll()
	}
	src.mu.Lock()
	kicks := slices.Clone(h.src.exportKickoffs)
	src.mu.Unlock()
	require.NotEmpty(t, kicks)
	sinces := map[time.Time]bool{}
	for _, w := range windows {
		sinces[*w.Since] = true
	}
	for _, k := range kicks {
		require.NotNil(t, k.IsParallel)
		require.True(t, *k.IsParallel)
		require.Equal(t, k.Till.Truncate(time.Millisecond), *k.Till)
		w := slices.IndexFunc(windows, func(w *Job) bool { return w.Since.Equal(*k.Since) })
		require.GreaterOrEqual(t, w, 0)
		require.Equal(t, windows[w].Till.Add(time.Millisecond), *k.Till)
		if !k.Till.Equal(till.Truncate(time.Millisecond).Add(time.Millisecond)) {
			require.True(t, sinces[*k.Till] || slices.ContainsFunc(m.Planning.Empty, func(r PlanRange) bool { return r.Since.Equal(*k.Till) }),
				"the _till %s starts the next range", k.Till)
		}
	}
	// The count before a kick-off uses the export's ends.
	b := fhirServiceKind{}.Bounds()
	q := windowQuery(b, windows[0].Since, windows[0].Till)
	require.Equal(t, []string{"ge" + fmt.Sprint(windows[0].Since.Format("2006-01-02T15:04:05.0000000Z07:00")),
		"lt" + windows[0].Till.Add(time.Millisecond).Format("2006-01-02T15:04:05.0000000Z07:00")}, q["_lastUpdated"])

	// A filtered window is exported non-parallel (the service splits only unfiltered exports), inclusively.
	filtered := &Job{Kind: KindExport, Types: []string{"Observation"}, Since: windows[0].Since, Till: windows[0].Till,
		TypeFilter: []string{"Observation?status=final"}}
	r := fhirServiceKind{}.ExportRequest(&m.Request, filtered)
	require.False(t, *r.IsParallel)
	require.Equal(t, *windows[0].Till, *r.Till)
	// Azure API for FHIR's kick-off sends no _isParallel and its window's own till.
	r = apiForFHIRKind{}.ExportRequest(&m.Request, windows[0])
	require.Nil(t, r.IsParallel)
	require.Equal(t, *windows[0].Till, *r.Till)
}

// TestWindowBounds: each kind's boundaries: the next window's start, the count's end, the _till sent, a round's
// held range, and splits down to one tick.
func TestWindowBounds(t *testing.T) {
	t.Parallel()
	at := time.Date(2024, 5, 6, 7, 8, 9, 123_456_789, time.UTC)
	api, svc := apiForFHIRKind{}.Bounds(), fhirServiceKind{}.Bounds()
	ms := at.Truncate(time.Millisecond)

	require.Equal(t, at.Truncate(instant).Add(instant), api.next(at.Truncate(instant)))
	require.Equal(t, "le2024-05-06T07:08:09.1234567Z", api.countTill(at))
	require.Equal(t, at, api.exportTill(at))
	require.Equal(t, at, api.heldAt(at))

	require.Equal(t, ms.Add(time.Millisecond), svc.next(ms))
	require.Equal(t, "lt2024-05-06T07:08:09.1240000Z", svc.countTill(ms))
	require.Equal(t, ms.Add(time.Millisecond), svc.exportTill(ms))
	require.Equal(t, ms.Add(-time.Millisecond), svc.heldAt(at), "the export ended before the millisecond of its transactionTime")

	// Two milliseconds split into one each; one millisecond does not split.
	left, right, ok := svc.split(ms, ms.Add(time.Millisecond))
	require.True(t, ok)
	require.Equal(t, ms, left)
	require.Equal(t, ms.Add(time.Millisecond), right)
	_, _, ok = svc.split(ms, ms)
	require.False(t, ok)
	_, _, ok = svc.split(at, at.Add(500*time.Microsecond).Truncate(time.Millisecond))
	require.False(t, ok, "within one millisecond")
	left, right, ok = api.split(ms, ms.Add(time.Millisecond))
	require.True(t, ok)
	require.Equal(t, instant, right.Sub(left))
}

// TestADocumentFromBeforeSourceKindIsAzureAPIForFHIR: a stored document without request.sourceKind reads as
// api-for-fhir, the only kind there was.
func TestADocumentFromBeforeSourceKindIsAzureAPIForFHIR(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	m := h.start(`{` + endpoints + `}`)
	require.Equal(t, SourceKindAPIForFHIR, m.Request.SourceKind)
	raw, etag, err := h.store.Get(context.Background(), docName(m.ID))
	require.NoError(t, err)
	var doc map[string]any
	require.NoError(t, json.Unmarshal(raw, &doc))
	delete(doc["request"].(map[string]any), "sourceKind")
	old, err := json.Marshal(doc)
	require.NoError(t, err)
	_, err = h.store.Put(context.Background(), docName(m.ID), old, etag, docMetadata(m))
	require.NoError(t, err)
	require.Equal(t, SourceKindAPIForFHIR, h.get(m.ID).Request.SourceKind)
}
