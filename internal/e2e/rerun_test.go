package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

// rowDoc is a verification row as the tests of overlap and scope read it.
type rowDoc struct {
	Type           string `json:"type"`
	Source         int64  `json:"source"`
	Exported       int64  `json:"exported"`
	Checked        int64  `json:"checked"`
	Missing        int64  `json:"missing"`
	Overlap        bool   `json:"overlap"`
	NothingInRange bool   `json:"nothingInRange"`
	Proven         bool   `json:"proven"`
	Match          bool   `json:"match"`
	Explanation    string `json:"explanation"`
}

// htmlReport reads the HTML report as a browser asks for it.
func (s *stack) htmlReport(id string) string {
	s.t.Helper()
	req, err := http.NewRequestWithContext(s.t.Context(), http.MethodGet, s.host.URL()+"/api/migrations/"+id+"/report", nil)
	require.NoError(s.t, err)
	req.Header.Set("Accept", "text/html")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(s.t, err)
	defer func() { _ = resp.Body.Close() }()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(s.t, err)
	require.Equal(s.t, http.StatusOK, resp.StatusCode, string(raw))
	return string(raw)
}

// TestARerunIntoAPopulatedDestinationIsProvenByIDs: a second migration of types already copied, verified by
// counts (the default), completes: counts cannot prove a destination that held the types, so their ids are
// looked up, and the reports say so. Both reports open with the scope and list every requested type, one with
// nothing in range included; a filtered migration's reports name its filter.
func TestARerunIntoAPopulatedDestinationIsProvenByIDs(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{patients: 6})
	req := map[string]any{"source": s.source.URL, "destination": s.dest.URL, "types": []string{"Patient", "Encounter", "Device"}}
	first := s.verified(s.start(req))
	require.Equal(t, "completed", first.Status, "%+v", first)

	id := s.start(req)
	_, raw := s.await(id, nil)
	var d struct {
		Status       string `json:"status"`
		Verification struct {
			Mode   string   `json:"mode"`
			Passed bool     `json:"passed"`
			Rows   []rowDoc `json:"rows"`
		} `json:"verification"`
	}
	require.NoError(t, json.Unmarshal(raw, &d))
	require.Equal(t, "completed", d.Status, "a re-run into a destination holding every resource completes: %s", raw)
	require.Equal(t, "counts", d.Verification.Mode)
	rows := map[string]rowDoc{}
	for _, r := range d.Verification.Rows {
		rows[r.Type] = r
	}
	require.Len(t, rows, 3, "every requested type has a row: %s", raw)
	for _, typ := range []string{"Patient", "Encounter"} {
		r := rows[typ]
		require.True(t, r.Overlap, typ)
		require.Positive(t, r.Exported, typ)
		require.Equal(t, r.Exported, r.Checked, "%s: every exported id looked up", typ)
		require.Zero(t, r.Missing, typ)
		require.True(t, r.Proven, typ)
		require.Contains(t, r.Explanation, "counts cannot prove it", typ)
	}
	require.True(t, rows["Device"].NothingInRange)
	require.Zero(t, rows["Device"].Source)
	require.Contains(t, rows["Device"].Explanation, "nothing in range")

	status, md := s.api(http.MethodGet, "/api/migrations/"+id+"/report", nil)
	require.Equal(t, http.StatusOK, status, string(md))
	for _, want := range []string{"- Result: **PASSED**", "## Scope", "- Source: " + s.source.URL, "- Types: Patient, Encounter, Device",
		"- Type filters: none", "- Verification: counts", "| Device | 0 | 0 |", "nothing in range |", "counts cannot prove it"} {
		require.Contains(t, string(md), want)
	}
	page := s.htmlReport(id)
	require.Contains(t, page, `<td data-figure="scope.Types">Patient, Encounter, Device</td>`)
	require.Contains(t, page, `<td data-figure="Device.result">nothing in range`)

	filtered := s.start(map[string]any{"source": s.source.URL, "destination": s.dest.URL, "types": []string{"MedicationRequest"},
		"typeFilter": []string{"MedicationRequest?status=active"}, "verify": "ids"})
	fd := s.verified(filtered)
	require.Equal(t, "completed", fd.Status, "%+v", fd)
	status, md = s.api(http.MethodGet, "/api/migrations/"+filtered+"/report", nil)
	require.Equal(t, http.StatusOK, status, string(md))
	require.Contains(t, string(md), "- Type filters: MedicationRequest?status=active (only matching resources were migrated)")
	require.Contains(t, s.htmlReport(filtered), "MedicationRequest?status=active (only matching resources were migrated)")
}
