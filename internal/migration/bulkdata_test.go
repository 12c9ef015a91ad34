package migration

import (
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/fhir"
	"github.com/fhir-migrator/fhir-migrator/internal/fhirsim"
	"github.com/fhir-migrator/fhir-migrator/internal/identity"
)

// bulkSource is the bulk-data simulator (tokens not checked: Prepare's reading is under test, not SMART) and the
// project's FHIR client of it.
func bulkSource(t *testing.T) (FHIRClient, fhir.Capabilities) {
	t.Helper()
	group := []byte(`{"resourceType":"Group","id":"g1","type":"person","actual":true,"meta":{"versionId":"1","lastUpdated":"2024-01-01T00:00:00.000Z"},"member":[]}`)
	sim := fhirsim.New(fhirsim.WithFlavor(fhirsim.FlavorBulkData), fhirsim.WithAuth(false), fhirsim.WithResources(group))
	srv := httptest.NewServer(sim)
	t.Cleanup(func() { srv.Close(); sim.Close() })
	policy, err := fhir.ParseHostPolicy("127.0.0.1")
	require.NoError(t, err)
	c, err := fhir.New(srv.URL, fhir.Config{Credential: identity.DevCredential{}, Policy: policy})
	require.NoError(t, err)
	caps, err := c.Capabilities(t.Context())
	require.NoError(t, err)
	return c, caps
}

func TestBulkDataPrepareReadsWhatTheSourceDeclares(t *testing.T) {
	src, caps := bulkSource(t)
	require.Contains(t, caps.Operations, "group-export")
	k := bulkDataKind{}

	req := &Request{SourceKind: SourceKindBulkData, Verify: VerifyModeIDs}
	require.Nil(t, k.Prepare(t.Context(), src, caps, req))
	require.Equal(t, &BulkDataExport{Path: "", Params: []string{"_outputFormat", "_since", "_type", "_typeFilter"}, Counts: true}, req.BulkData)
	require.True(t, k.CountsExports(req))

	since := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	till := since.Add(time.Hour)
	er := k.ExportRequest(req, &Job{Types: []string{"Patient"}, Since: &since, Till: &till, TypeFilter: []string{"Patient?gender=male"}})
	require.Equal(t, fhir.ExportRequest{Types: []string{"Patient"}, Since: &since, TypeFilter: []string{"Patient?gender=male"}}, er,
		"no till, container, parallel flag or associated data: only what the source declares")

	group := &Request{SourceKind: SourceKindBulkData, Group: "g1", Verify: VerifyModeCounts}
	require.Nil(t, k.Prepare(t.Context(), src, caps, group))
	require.Equal(t, "Group/g1/$export", group.BulkData.Path)
	require.False(t, k.CountsExports(group), "a compartment: verified by the manifest's lines")

	// A server that declares fewer parameters: _typeFilter is not sent, and a request that needs it is refused.
	narrow := &Request{SourceKind: SourceKindBulkData, BulkData: &BulkDataExport{Params: []string{"_since"}}}
	er = k.ExportRequest(narrow, &Job{Types: []string{"Patient"}, Since: &since})
	require.Empty(t, er.Types)
	require.Equal(t, &since, er.Since)

	for field, r := range map[string]*Request{
		"history":    {History: true},
		"deletes":    {Deletes: true},
		"till":       {Till: &till},
		"sync":       {Group: "g1", Sync: true, Verify: VerifyModeCounts},
		"verify":     {Group: "g1", Verify: VerifyModeIDs},
		"group":      {Group: "nope", Verify: VerifyModeCounts},
		"typeFilter": {Group: "g1", Verify: VerifyModeCounts, TypeFilter: []string{"Patient?x=y"}},
	} {
		r.SourceKind = SourceKindBulkData
		if field == "typeFilter" {
			caps := caps
			caps.Operations = map[string]string{"group-export": "http://example.org/OperationDefinition/unknown-def"}
			refusal := k.Prepare(t.Context(), src, caps, r)
			require.NotNil(t, refusal, field)
			require.Equal(t, field, refusal.Field, "a server that serves no OperationDefinition takes the IG's defaults, which have no _typeFilter")
			continue
		}
		refusal := k.Prepare(t.Context(), src, caps, r)
		require.NotNil(t, refusal, field)
		require.Equal(t, field, refusal.Field)
	}

	// A server that declares _until takes the request's till as it.
	withUntil := fhirsim.New(fhirsim.WithFlavor(fhirsim.FlavorBulkData), fhirsim.WithAuth(false), fhirsim.WithDeclaredUntil(true))
	srv := httptest.NewServer(withUntil)
	t.Cleanup(func() { srv.Close(); withUntil.Close() })
	policy, err := fhir.ParseHostPolicy("127.0.0.1")
	require.NoError(t, err)
	untilSrc, err := fhir.New(srv.URL, fhir.Config{Credential: identity.DevCredential{}, Policy: policy})
	require.NoError(t, err)
	untilCaps, err := untilSrc.Capabilities(t.Context())
	require.NoError(t, err)
	bounded := &Request{SourceKind: SourceKindBulkData, Till: &till, Verify: VerifyModeCounts}
	require.Nil(t, k.Prepare(t.Context(), untilSrc, untilCaps, bounded))
	require.Contains(t, bounded.BulkData.Params, "_until")
	er = k.ExportRequest(bounded, &Job{Since: &since, Till: &till})
	require.Equal(t, &till, er.Until)
	require.Nil(t, er.Till)

	// An Azure kind takes no group.
	refusal := apiForFHIRKind{}.Prepare(t.Context(), src, caps, &Request{Group: "g1", SourceKind: SourceKindAPIForFHIR})
	require.NotNil(t, refusal)
	require.Equal(t, "unsupported_by_source_kind", refusal.Code)
}
