package fhirsim

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestDateFilterPrecision(t *testing.T) {
	t.Parallel()
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339Nano, s)
		require.NoError(t, err)
		return v
	}
	cases := []struct {
		filter string
		t      string
		want   bool
	}{
		{"2022-05", "2022-05-31T23:59:59.999Z", true},
		{"2022-05", "2022-06-01T00:00:00Z", false},
		{"eq2022-05-03", "2022-05-03T12:00:00Z", true},
		{"ne2022-05-03", "2022-05-03T12:00:00Z", false},
		{"le2022-05-03T10:00:00Z", "2022-05-03T10:00:00.999Z", true},
		{"le2022-05-03T10:00:00.5Z", "2022-05-03T10:00:00.599Z", true},
		{"le2022-05-03T10:00:00.500Z", "2022-05-03T10:00:00.501Z", false},
		{"lt2022-05-03T10:00:00Z", "2022-05-03T10:00:00Z", false},
		{"gt2022-05-03", "2022-05-03T23:59:59Z", false},
		{"gt2022-05-03", "2022-05-04T00:00:00Z", true},
		{"ge2022-05-03T12:00:00+02:00", "2022-05-03T10:00:00Z", true},
		{"ge2022-05-03T12:00:00+02:00", "2022-05-03T09:59:59Z", false},
		{"le2020", "2020-12-31T23:59:59Z", true},
		{"2024-02-29", "2024-02-29T01:00:00Z", true},
	}
	for _, tc := range cases {
		f, err := parseDateFilter(tc.filter)
		require.NoError(t, err, tc.filter)
		require.Equal(t, tc.want, f.match(at(tc.t)), "%s vs %s", tc.filter, tc.t)
	}
	for _, bad := range []string{"", "yesterday", "2023-02-29", "2022-13", "sa2022", "2022-05-03T25:00:00Z", "2022-05-03T10:00:00 01:00", "ge"} {
		_, err := parseDateFilter(bad)
		require.Error(t, err, bad)
	}
}

func FuzzParseDateFilter(f *testing.F) {
	for _, s := range []string{"ge2022-05-03T12:00:00+02:00", "2022", "lt2020-01-01T00:00:00.1234567Z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := parseDateFilter(s)
		if err == nil && !d.r.start.Before(d.r.end) {
			t.Fatalf("%q: empty range %v..%v", s, d.r.start, d.r.end)
		}
	})
}
