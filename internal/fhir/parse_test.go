package fhir

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		header map[string]string
		want   time.Duration
	}{
		{name: "absent", want: 0},
		{name: "seconds", header: map[string]string{"Retry-After": "5"}, want: 5 * time.Second},
		{name: "fractional seconds", header: map[string]string{"Retry-After": "1.5"}, want: 1500 * time.Millisecond},
		{name: "zero clamps up", header: map[string]string{"Retry-After": "0"}, want: 100 * time.Millisecond},
		{name: "huge clamps down", header: map[string]string{"Retry-After": "86400"}, want: 60 * time.Second},
		{name: "enormous clamps down", header: map[string]string{"Retry-After": "1e300"}, want: 60 * time.Second},
		{name: "negative ignored", header: map[string]string{"Retry-After": "-3"}, want: 0},
		{name: "garbage ignored", header: map[string]string{"Retry-After": "soon"}, want: 0},
		{name: "http date", header: map[string]string{"Retry-After": now.Add(30 * time.Second).Format(http.TimeFormat)}, want: 30 * time.Second},
		{name: "http date past", header: map[string]string{"Retry-After": now.Add(-time.Hour).Format(http.TimeFormat)}, want: 100 * time.Millisecond},
		{name: "http date far", header: map[string]string{"Retry-After": now.Add(time.Hour).Format(http.TimeFormat)}, want: 60 * time.Second},
		{name: "ms header", header: map[string]string{"x-ms-retry-after-ms": "2500"}, want: 2500 * time.Millisecond},
		{name: "ms header wins", header: map[string]string{"x-ms-retry-after-ms": "250", "Retry-After": "1"}, want: 250 * time.Millisecond},
		{name: "ms header tiny", header: map[string]string{"x-ms-retry-after-ms": "1"}, want: 100 * time.Millisecond},
		{name: "bad ms header falls back", header: map[string]string{"x-ms-retry-after-ms": "x", "Retry-After": "2"}, want: 2 * time.Second},
		{name: "NaN", header: map[string]string{"Retry-After": "NaN"}, want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := http.Header{}
			for k, v := range tt.header {
				h.Set(k, v)
			}
			require.Equal(t, tt.want, ParseRetryAfter(h, now))
		})
	}
}

const goodManifest = `{"transactionTime":"2023-06-20T21:20:39.5337086+00:00",
 "request":"https://src.azurehealthcareapis.com/$export?_type=Patient",
 "requiresAccessToken":false,
 "output":[{"type":"Patient","url":"https://acct.blob.core.windows.net/cont/20230620T212039-5f1c/Patient-1.ndjson","count":32536},
           {"type":"Observation","url":"https://acct.blob.core.windows.net/cont/20230620T212039-5f1c/Observation-1.ndjson","count":0}],
 "error":[],"issues":[]}`

func TestParseManifest(t *testing.T) {
	t.Parallel()
	m, err := ParseManifest([]byte(goodManifest))
	require.NoError(t, err)
	require.Equal(t, "2023-06-20T21:20:39.5337086+00:00", m.TransactionTime)
	require.Equal(t, []ManifestFile{
		{Type: "Patient", URL: "https://acct.blob.core.windows.net/cont/20230620T212039-5f1c/Patient-1.ndjson", Count: 32536},
		{Type: "Observation", URL: "https://acct.blob.core.windows.net/cont/20230620T212039-5f1c/Observation-1.ndjson", Count: 0},
	}, m.Output)
	require.Empty(t, m.Error)

	tests := []struct {
		name    string
		body    string
		wantErr string
	}{
		{name: "canceled by system, no output", body: `{"transactionTime":"t","output":[],"error":[]}`},
		{name: "output absent", body: `{"transactionTime":"t"}`},
		{name: "count as float integer", body: `{"output":[{"type":"Patient","url":"https://a/b","count":3.0}]}`},
		{name: "error file without count", body: `{"output":[],"error":[{"type":"OperationOutcome","url":"https://a/e"}]}`},
		{name: "empty", body: ``, wantErr: "malformed"},
		{name: "null", body: `null`, wantErr: "malformed"},
		{name: "array", body: `[]`, wantErr: "malformed"},
		{name: "trailing data", body: goodManifest + `{}`, wantErr: "malformed"},
		{name: "missing type", body: `{"output":[{"url":"https://a/b","count":1}]}`, wantErr: "output[0] has no valid type"},
		{name: "bad type", body: `{"output":[{"type":"../x","url":"https://a/b","count":1}]}`, wantErr: "type"},
		{name: "missing url", body: `{"output":[{"type":"Patient","count":1}]}`, wantErr: "url"},
		{name: "relative url", body: `{"output":[{"type":"Patient","url":"/cont/x.ndjson","count":1}]}`, wantErr: "url"},
		{name: "missing count", body: `{"output":[{"type":"Patient","url":"https://a/b"}]}`, wantErr: "count"},
		{name: "negative count", body: `{"output":[{"type":"Patient","url":"https://a/b","count":-1}]}`, wantErr: "count"},
		{name: "fraction count", body: `{"output":[{"type":"Patient","url":"https://a/b","count":1.5}]}`, wantErr: "count"},
		{name: "numeric string count", body: `{"output":[{"type":"Patient","url":"https://a/b","count":"1"}]}`},
		{name: "string count", body: `{"output":[{"type":"Patient","url":"https://a/b","count":"x"}]}`, wantErr: "malformed"},
		{name: "second entry bad", body: `{"output":[{"type":"Patient","url":"https://a/b","count":1},{"type":"Patient"}]}`, wantErr: "output[1]"},
		{name: "error file negative", body: `{"error":[{"type":"OperationOutcome","url":"https://a/e","count":-2}]}`, wantErr: "error[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := ParseManifest([]byte(tt.body))
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				require.ErrorContains(t, err, "malformed")
				return
			}
			require.NoError(t, err)
		})
	}
}

const goodImportResult = `{"transactionTime":"2021-07-16T06:46:52.3873388+00:00","request":"https://dest.fhir.azurehealthcareapis.com/$import",
 "output":[{"type":"Patient","count":10000,"inputUrl":"https://acct.blob.core.windows.net/cont/Patient.ndjson"}],
 "error":[{"type":"OperationOutcome","count":51,"inputUrl":"https://acct.blob.core.windows.net/cont/CarePlan.ndjson",
           "url":"https://acct.blob.core.windows.net/fhirlogs/CarePlan06b8.ndjson"}]}`

func TestParseImportResult(t *testing.T) {
	t.Parallel()
	r, err := ParseImportResult([]byte(goodImportResult))
	require.NoError(t, err)
	require.Equal(t, []ImportOutput{{Type: "Patient", Count: 10000, InputURL: "https://acct.blob.core.windows.net/cont/Patient.ndjson"}}, r.Output)
	require.Equal(t, []ImportErrorFile{{Type: "OperationOutcome", Count: 51,
		InputURL: "https://acct.blob.core.windows.net/cont/CarePlan.ndjson",
		URL:      "https://acct.blob.core.windows.net/fhirlogs/CarePlan06b8.ndjson"}}, r.Error)

	for _, bad := range []string{``, `"x"`, `{"output":[{"type":"Patient"}]}`, `{"output":[{"count":-1}]}`,
		`{"error":[{"count":1.25}]}`, `{"output":{}}`} {
		_, err := ParseImportResult([]byte(bad))
		require.ErrorContains(t, err, "import result is malformed", bad)
	}
}

func TestOutcomeMessage(t *testing.T) {
	t.Parallel()
	require.Equal(t, "export operation failed for reason: storage forbidden",
		outcomeMessage([]byte(`{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"exception","diagnostics":"export operation failed for reason: storage forbidden"}]}`)))
	require.Equal(t, "first; second",
		outcomeMessage([]byte(`{"resourceType":"OperationOutcome","issue":[{"diagnostics":"first"},{"details":{"text":"second"}}]}`)))
	require.Equal(t, "plain text error", outcomeMessage([]byte("plain text error\n")))
	long := make([]byte, 500)
	for i := range long {
		long[i] = 'x'
	}
	require.Len(t, outcomeMessage(long), 203)
	require.Equal(t, "a b", outcomeMessage([]byte("a\x00b")))
}

func TestParseCapabilityTypes(t *testing.T) {
	t.Parallel()
	types, err := parseCapabilityTypes([]byte(`{"resourceType":"CapabilityStatement","rest":[
		{"mode":"client","resource":[{"type":"Basic"}]},
		{"mode":"server","resource":[{"type":"Patient"},{"type":"Observation"},{"type":"Patient"}]}]}`))
	require.NoError(t, err)
	require.Equal(t, []string{"Patient", "Observation"}, types)

	for _, bad := range []string{`{"resourceType":"Bundle"}`, `{"resourceType":"CapabilityStatement","rest":[]}`,
		`{"resourceType":"CapabilityStatement","rest":[{"mode":"server","resource":[{"type":"a/b"}]}]}`, `[1]`} {
		_, err := parseCapabilityTypes([]byte(bad))
		require.Error(t, err, bad)
	}
}

func TestBackoffJitterBounds(t *testing.T) {
	t.Parallel()
	for attempt := 0; attempt < 8; attempt++ {
		d := retryBaseDelay << attempt
		if d > retryMaxDelay {
			d = retryMaxDelay
		}
		for range 50 {
			got := backoff(attempt)
			require.GreaterOrEqual(t, got, d/2)
			require.LessOrEqual(t, got, d)
		}
	}
}

func FuzzParseManifest(f *testing.F) {
	for _, seed := range []string{goodManifest, `{}`, `{"output":[{"type":"Patient","url":"https://a/b","count":1e400}]}`,
		`{"output":[{"type":"Patient","url":"https://a/b","count":9223372036854775807}]}`, `{"output":null}`, `nul`,
		`{"error":[{"count":-0}]}`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseManifest(data)
		if err != nil {
			require.Nil(t, m)
			return
		}
		for _, o := range m.Output {
			require.NotEmpty(t, o.Type)
			require.True(t, absoluteHTTPURL(o.URL))
			require.GreaterOrEqual(t, o.Count, int64(0))
		}
	})
}

func FuzzParseImportStatus(f *testing.F) {
	for _, seed := range []string{goodImportResult, `{}`, `{"output":[{"count":0}]}`, `{"error":[{"count":"x"}]}`,
		`{"output":[{"count":18446744073709551616}]}`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseImportResult(data)
		if err != nil {
			require.Nil(t, r)
			return
		}
		for _, o := range r.Output {
			require.GreaterOrEqual(t, o.Count, int64(0))
		}
		for _, e := range r.Error {
			require.GreaterOrEqual(t, e.Count, int64(0))
		}
	})
}

func TestParseCapabilitiesOperations(t *testing.T) {
	t.Parallel()
	caps, err := parseCapabilities([]byte(`{"resourceType":"CapabilityStatement","fhirVersion":"4.0.1","rest":[
		{"mode":"server","operation":[{"name":"export","definition":"http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"}],
		 "resource":[{"type":"Patient","operation":[{"name":"patient-export","definition":"http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export|2.0.0"}]},
		             {"type":"Group","operation":[{"name":"group-export","definition":"http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export"}]}]},
		{"mode":"client","operation":[{"name":"import","definition":"http://example.org/import"}]}]}`))
	require.NoError(t, err)
	require.Equal(t, []string{"Patient", "Group"}, caps.Types)
	require.Equal(t, map[string]string{
		"export":         "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export",
		"patient-export": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export|2.0.0",
		"group-export":   "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export",
	}, caps.Operations, "a client-mode rest entry declares nothing of the server")
}
