package fhirsim

import (
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestTypeFilterCriteria(t *testing.T) {
	t.Parallel()
	obs := &resource{
		Type: "Observation", ID: "o1", LastUpdated: time.Date(2022, 5, 3, 0, 0, 0, 0, time.UTC),
		Raw: []byte(`{"resourceType":"Observation","id":"o1","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]}}`),
	}
	cases := []struct {
		query string
		want  bool
	}{
		{"status=final", true},
		{"status=amended,final", true},
		{"status=amended", false},
		{"code=8867-4", true},
		{"code=http://loinc.org|8867-4", true},
		{"code=http%3A%2F%2Floinc.org%7C8867-4", true},
		{"code=http://snomed.info/sct|8867-4", false},
		{"code=|8867-4", false},
		{"code=http://loinc.org|", true},
		{"status=final&_lastUpdated=lt2022-05-03", false},
		{"status=final&_lastUpdated=ge2022-05", true},
	}
	for _, tc := range cases {
		q, err := url.ParseQuery(tc.query)
		require.NoError(t, err)
		c, err := parseCriteria("Observation", q, true, false)
		require.NoError(t, err, tc.query)
		require.Equal(t, tc.want, c.match(obs), tc.query)
	}

	_, err := parseCriteria("Observation", url.Values{"subject": {"Patient/1"}}, true, false)
	require.ErrorContains(t, err, "subject", "a typeFilter parameter the simulator cannot apply is refused, not ignored")
	_, err = parseCriteria("Patient", url.Values{"status": {"final"}}, true, false)
	require.Error(t, err)
	c, err := parseCriteria("Patient", url.Values{"family": {"Smith"}}, false, false)
	require.NoError(t, err, "search ignores unknown parameters")
	require.True(t, c.match(obs))
}
