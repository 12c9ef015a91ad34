package fhirsim_test

import (
	"bytes"
	"cmp"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/fhirsim"
)

type searchBundle struct {
	Type  string `json:"type"`
	Total *int   `json:"total"`
	Link  []struct {
		Relation string `json:"relation"`
		URL      string `json:"url"`
	} `json:"link"`
	Entry []struct {
		FullURL  string `json:"fullUrl"`
		Resource struct {
			ResourceType string `json:"resourceType"`
			ID           string `json:"id"`
		} `json:"resource"`
	} `json:"entry"`
}

func (b searchBundle) next() string {
	for _, l := range b.Link {
		if l.Relation == "next" {
			return l.URL
		}
	}
	return ""
}

func TestSearchPagingCountsAndLastUpdated(t *testing.T) {
	t.Parallel()
	const patients, seed = 2, 3
	s := startSim(t, fhirsim.WithSeed(patients, seed))
	set := generatedSet(t, patients, seed)

	countWhere := func(keep func(generated) bool) int {
		n := 0
		for _, g := range set {
			if keep(g) {
				n++
			}
		}
		return n
	}

	t.Run("paging visits every Observation once", func(t *testing.T) {
		t.Parallel()
		var ids []string
		pages := 0
		for next := "/Observation?_count=7"; next != ""; pages++ {
			var b searchBundle
			s.getJSON(t, next, &b)
			require.Nil(t, b.Total)
			require.LessOrEqual(t, len(b.Entry), 7)
			for _, e := range b.Entry {
				require.Equal(t, s.URL+"/Observation/"+e.Resource.ID, e.FullURL)
				ids = append(ids, e.Resource.ID)
			}
			next = b.next()
		}
		want := countWhere(func(g generated) bool { return g.Type == "Observation" })
		require.Len(t, ids, want)
		require.Greater(t, pages, 1)
		sorted := slices.Clone(ids)
		slices.Sort(sorted)
		require.Len(t, slices.Compact(sorted), want, "no resource appears twice")
		require.Equal(t, want, s.count(t, "/Observation?_summary=count"))
	})

	t.Run("system search pages across types", func(t *testing.T) {
		t.Parallel()
		seen := 0
		for next := "/?_count=1000"; next != ""; {
			var b searchBundle
			s.getJSON(t, next, &b)
			seen += len(b.Entry)
			next = b.next()
		}
		require.Equal(t, len(set), seen)
		require.Equal(t, len(set), s.count(t, "/?_summary=count"))
	})

	from := time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC)
	to := time.Date(2023, 7, 1, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		name  string
		query url.Values
		keep  func(generated) bool
	}{
		{"ge and lt", url.Values{"_lastUpdated": {"ge2021-01-01", "lt2023-07-01T00:00:00Z"}},
			func(g generated) bool { return !g.LastUpdated.Before(from) && g.LastUpdated.Before(to) }},
		{"gt a day", url.Values{"_lastUpdated": {"gt2021-01-01"}},
			func(g generated) bool { return !g.LastUpdated.Before(from.AddDate(0, 0, 1)) }},
		{"le a year means to its end", url.Values{"_lastUpdated": {"le2022"}},
			func(g generated) bool { return g.LastUpdated.Before(time.Date(2023, 1, 1, 0, 0, 0, 0, time.UTC)) }},
		{"eq a year", url.Values{"_lastUpdated": {"2022"}},
			func(g generated) bool { return g.LastUpdated.Year() == 2022 }},
		{"zone offset", url.Values{"_lastUpdated": {"ge2021-01-01T02:00:00+02:00"}},
			func(g generated) bool { return !g.LastUpdated.Before(from) }},
		{"unknown parameter ignored", url.Values{"_lastUpdated": {"lt2023-07-01"}, "family": {"Smith"}},
			func(g generated) bool { return g.LastUpdated.Before(to) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			q := url.Values{"_summary": {"count"}}
			for k, v := range tc.query {
				q[k] = v
			}
			want := countWhere(func(g generated) bool { return g.Type == "Encounter" && tc.keep(g) })
			require.Positive(t, want)
			require.Equal(t, want, s.count(t, "/Encounter?"+q.Encode()))

			delete(q, "_summary")
			q.Set("_count", "1000")
			var b searchBundle
			s.getJSON(t, "/Encounter?"+q.Encode(), &b)
			require.Len(t, b.Entry, want)
		})
	}

	t.Run("_id list and read", func(t *testing.T) {
		t.Parallel()
		var a, b string
		for _, g := range set {
			if g.Type == "Condition" {
				a, b = b, g.ID
			}
		}
		var got searchBundle
		s.getJSON(t, "/Condition?_id="+a+","+b+",missing", &got)
		require.Len(t, got.Entry, 2)
		resp := s.do(t, request{path: "/Condition/" + a})
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.Equal(t, `W/"1"`, resp.Header.Get("ETag"))
	})
}

func TestBatchPutUpserts(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	s := startSim(t, fhirsim.WithFlavor(fhirsim.FlavorAHDS), fhirsim.WithClock(func() time.Time { return now }))
	batch := `{"resourceType":"Bundle","type":"batch","entry":[
	 {"resource":{"resourceType":"SearchParameter","id":"sp-1","url":"http://example.org/sp","status":"active"},"request":{"method":"PUT","url":"SearchParameter/sp-1"}},
	 {"resource":{"resourceType":"Patient","id":"p-1"},"request":{"method":"PUT","url":"Patient/other"}},
	 {"resource":{"resourceType":"Patient","id":"p-2"},"request":{"method":"PUT","url":"Observation/p-2"}}]}`
	post := func() []string {
		resp := s.do(t, request{method: http.MethodPost, path: "/", headers: map[string]string{"Content-Type": "application/fhir+json"}, body: batch})
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
		var b struct {
			Type  string
			Entry []struct {
				Response struct {
					Status  string
					Outcome json.RawMessage
				}
			}
		}
		require.NoError(t, json.Unmarshal(body, &b))
		require.Equal(t, "batch-response", b.Type)
		var statuses []string
		for _, e := range b.Entry {
			statuses = append(statuses, e.Response.Status)
			if e.Response.Status == "400" {
				require.True(t, bytes.Contains(e.Response.Outcome, []byte("OperationOutcome")))
			}
		}
		return statuses
	}
	require.Equal(t, []string{"201", "400", "400"}, post())
	require.Equal(t, []string{"200", "400", "400"}, post())

	var sp struct {
		URL  string
		Meta struct{ VersionID, LastUpdated string }
	}
	s.getJSON(t, "/SearchParameter/sp-1", &sp)
	require.Equal(t, "http://example.org/sp", sp.URL)
	require.Equal(t, "2", sp.Meta.VersionID)
	require.Equal(t, "2025-01-02T03:04:05.000Z", sp.Meta.LastUpdated, "the clock stood still: version 2 shares version 1's millisecond")
	require.Equal(t, 1, s.count(t, "/?_summary=count"))
	require.Equal(t, http.StatusNotFound, s.do(t, request{path: "/Patient/p-1"}).StatusCode)
}

func TestGenerateIsDeterministic(t *testing.T) {
	t.Parallel()
	a := fhirsim.Generate(100, 42)
	b := fhirsim.Generate(100, 42)
	require.Equal(t, a, b, "same seed, same bytes")
	require.GreaterOrEqual(t, len(a), 10_000)
	require.NotEqual(t, a[0], fhirsim.Generate(1, 43)[0], "another seed, other data")

	types := map[string]int{}
	ids := map[string]bool{}
	patients := map[string]bool{}
	for _, raw := range a {
		var r struct {
			ResourceType, ID string
			Subject          *struct{ Reference string }
			Encounter        *struct{ Reference string }
		}
		require.NoError(t, json.Unmarshal(raw, &r))
		types[r.ResourceType]++
		require.False(t, ids[r.ResourceType+"/"+r.ID], "duplicate id")
		ids[r.ResourceType+"/"+r.ID] = true
		switch r.ResourceType {
		case "Patient":
			patients["Patient/"+r.ID] = true
		case "Observation", "Condition":
			require.True(t, ids[r.Encounter.Reference], "%s references an earlier Encounter", r.ID)
			fallthrough
		case "Encounter", "MedicationRequest":
			require.True(t, patients[r.Subject.Reference], "%s references an earlier Patient", r.ID)
		}
	}
	require.Equal(t, 100, types["Patient"])
	require.Len(t, types, 6)
	require.GreaterOrEqual(t, types["SearchParameter"], 3)
	require.LessOrEqual(t, types["SearchParameter"], 5)
}

func TestMetadataListsTypesAndFlavorOperation(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		flavor fhirsim.Flavor
		op     string
	}{{fhirsim.FlavorAPIForFHIR, "export"}, {fhirsim.FlavorAHDS, "import"}} {
		s := startSim(t, fhirsim.WithFlavor(tc.flavor))
		var cs struct {
			ResourceType string
			FHIRVersion  string `json:"fhirVersion"`
			Rest         []struct {
				Resource  []struct{ Type string }
				Operation []struct{ Name string }
			}
		}
		s.getJSON(t, "/metadata", &cs)
		require.Equal(t, "CapabilityStatement", cs.ResourceType)
		require.Equal(t, "4.0.1", cs.FHIRVersion)
		var types []string
		for _, r := range cs.Rest[0].Resource {
			types = append(types, r.Type)
		}
		for _, want := range []string{"Patient", "Encounter", "Observation", "Condition", "MedicationRequest", "SearchParameter", "Practitioner"} {
			require.Contains(t, types, want)
		}
		require.Equal(t, tc.op, cs.Rest[0].Operation[0].Name)
	}
}

// TestSearchSortsByLastUpdatedAndSubsets: _sort=_lastUpdated (and -_lastUpdated) orders by the time index and
// pages through every match once; _elements answers a subsetted resource, marked as the service marks it.
func TestSearchSortsByLastUpdatedAndSubsets(t *testing.T) {
	t.Parallel()
	const patients, seed = 3, 4
	s := startSim(t, fhirsim.WithSeed(patients, seed))
	var obs []generated
	for _, g := range generatedSet(t, patients, seed) {
		if g.Type == "Observation" {
			obs = append(obs, g)
		}
	}
	slices.SortFunc(obs, func(a, b generated) int { return cmp.Or(a.LastUpdated.Compare(b.LastUpdated), cmp.Compare(a.ID, b.ID)) })

	var oldest, newest searchBundle
	s.getJSON(t, "/Observation?_sort=_lastUpdated&_count=1", &oldest)
	require.Len(t, oldest.Entry, 1)
	require.Equal(t, obs[0].ID, oldest.Entry[0].Resource.ID)
	s.getJSON(t, "/Observation?_sort=-_lastUpdated&_count=1", &newest)
	require.Equal(t, obs[len(obs)-1].ID, newest.Entry[0].Resource.ID)

	var ids []string
	for next := "/Observation?_sort=_lastUpdated&_count=9&_lastUpdated=ge2020-01-01"; next != ""; {
		var b searchBundle
		s.getJSON(t, next, &b)
		for _, e := range b.Entry {
			ids = append(ids, e.Resource.ID)
		}
		next = b.next()
	}
	var want []string
	for _, g := range obs {
		if !g.LastUpdated.Before(time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)) {
			want = append(want, g.ID)
		}
	}
	require.Equal(t, want, ids, "every match once, in time order, across pages")

	resp := s.do(t, request{path: "/Observation?_sort=status"})
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)

	var sub struct {
		Entry []struct {
			Resource map[string]json.RawMessage `json:"resource"`
		} `json:"entry"`
	}
	s.getJSON(t, "/Observation?_id="+obs[0].ID+"&_elements=id", &sub)
	require.Len(t, sub.Entry, 1)
	require.ElementsMatch(t, []string{"resourceType", "id", "meta"}, slices.Collect(maps.Keys(sub.Entry[0].Resource)))
	require.Contains(t, string(sub.Entry[0].Resource["meta"]), "SUBSETTED")
}

// TestIndexesFollowWrites: a write after a query is seen by the next one (the sorted views are rebuilt).
func TestIndexesFollowWrites(t *testing.T) {
	t.Parallel()
	s := startSim(t, fhirsim.WithSeed(1, 2))
	before := s.count(t, "/Patient?_summary=count")
	inRange := s.count(t, "/Patient?_lastUpdated=ge2030-01-01&_summary=count")
	require.Zero(t, inRange)
	batch := `{"resourceType":"Bundle","type":"batch","entry":[{"resource":{"resourceType":"Patient","id":"late"},"request":{"method":"PUT","url":"Patient/late"}}]}`
	resp := s.do(t, request{method: http.MethodPost, path: "/", headers: map[string]string{"Content-Type": "application/fhir+json"}, body: batch})
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, before+1, s.count(t, "/Patient?_summary=count"))
	require.Equal(t, 1, s.count(t, "/Patient?_lastUpdated=ge2026-01-01&_summary=count"), "the new resource is in the time index")
	var b searchBundle
	s.getJSON(t, "/Patient?_sort=-_lastUpdated&_count=1", &b)
	require.Equal(t, "late", b.Entry[0].Resource.ID)
}
