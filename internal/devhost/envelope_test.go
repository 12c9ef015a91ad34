package devhost

import (
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const fixtureDir = "../../testdata/host"

// volatile are values that differ on every invocation: only their JSON kind is compared.
var volatile = map[string]bool{"UtcNow": true, "RandGuid": true, "LockToken": true, "Identifier": true,
	"FullyQualifiedNamespace": true}

// requireSameShape compares two decoded JSON documents: same keys everywhere, same values except volatile ones.
func requireSameShape(t *testing.T, want, got any, path string) {
	t.Helper()
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		require.True(t, ok, "%s: want an object, got %T", path, got)
		require.ElementsMatch(t, keys(w), keys(g), "%s: keys", path)
		for k, wv := range w {
			if volatile[k] {
				require.IsType(t, wv, g[k], "%s.%s", path, k)
				continue
			}
			requireSameShape(t, wv, g[k], path+"."+k)
		}
	case []any:
		g, ok := got.([]any)
		require.True(t, ok, "%s: want an array, got %T", path, got)
		require.Len(t, g, len(w), path)
		for i := range w {
			requireSameShape(t, w[i], g[i], path+"[]")
		}
	default:
		require.Equal(t, want, got, path)
	}
}

func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func loadJSON(t *testing.T, raw []byte) any {
	t.Helper()
	var v any
	require.NoError(t, json.Unmarshal(raw, &v))
	return v
}

func fixture(t *testing.T, name string) any {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(fixtureDir, name))
	require.NoError(t, err)
	return loadJSON(t, raw)
}

// TestEnvelopesMatchFixtures encodes the invocations captured in testdata/host and compares them with the captures
// the handler's decoder is tested against.
func TestEnvelopesMatchFixtures(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 30, 0, time.UTC)
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339Nano, s)
		require.NoError(t, err)
		return v
	}
	tests := []struct {
		fixture string
		encode  func() ([]byte, error)
	}{
		{"timer.json", func() ([]byte, error) {
			return encodeTimer("PollJob", "timer", &timerStatus{Last: at("2026-01-01T00:00:00Z"),
				Next: at("2026-01-01T00:00:30Z"), LastUpdated: at("2026-01-01T00:00:00.0104567Z")}, false, now)
		}},
		{"timer-null-status.json", func() ([]byte, error) { return encodeTimer("PollJob", "timer", nil, true, now) }},
		{"servicebus-run-import.json", func() ([]byte, error) {
			return encodeServiceBus("RunImport", "msg", delivery{
				MessageID:      "m-20260101-000000-ab12cd/run-import/import-export-Patient-1/1",
				Body:           `{"migrationId":"m-20260101-000000-ab12cd","jobId":"import-export-Patient-1"}`,
				ContentType:    "application/json",
				SequenceNumber: 42, DeliveryCount: 1, EnqueuedAt: at("2026-01-01T00:00:05.25Z"), LockToken: newUUID(),
			}, now)
		}},
		{"servicebus-redelivery.json", func() ([]byte, error) {
			return encodeServiceBus("VerifyCounts", "msg", delivery{
				MessageID:      "m-20260101-000000-ab12cd/verify/1/1",
				Body:           `{"migrationId":"m-20260101-000000-ab12cd","generation":1}`,
				ContentType:    "application/json",
				CorrelationID:  "m-20260101-000000-ab12cd",
				SequenceNumber: 57, DeliveryCount: 3, EnqueuedAt: at("2026-01-01T00:10:00Z"), LockToken: newUUID(),
			}, now)
		}},
		{"http-payload.json", func() ([]byte, error) {
			r := httptest.NewRequest("GET", "http://localhost:7071/api/migrations/m-20260101-000000-ab12cd?verbose=true", strings.NewReader(""))
			r.Header.Set("Accept", "application/json")
			r.Header.Set("User-Agent", "curl/8.5.0")
			return encodeHTTP("Migrations", "req", r, map[string]string{"id": "m-20260101-000000-ab12cd"}, now)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.fixture, func(t *testing.T) {
			t.Parallel()
			raw, err := tt.encode()
			require.NoError(t, err)
			got := loadJSON(t, raw)
			want := fixture(t, tt.fixture)
			// The method name is stable; the rest of sys is volatile.
			require.Equal(t, want.(map[string]any)["Metadata"].(map[string]any)["sys"].(map[string]any)["MethodName"],
				got.(map[string]any)["Metadata"].(map[string]any)["sys"].(map[string]any)["MethodName"])
			requireSameShape(t, want, got, "$")
		})
	}
}

func TestEncodedServiceBusQuirks(t *testing.T) {
	t.Parallel()
	raw, err := encodeServiceBus("RunImport", "msg", delivery{MessageID: "id-1", Body: `{"s":"x","n":2,"b":true,"o":{"a":1},"z":null,"MessageId":"spoof"}`,
		DeliveryCount: 2, SequenceNumber: 7, EnqueuedAt: time.Date(2026, 1, 1, 0, 0, 5, 0, time.UTC)}, time.Now())
	require.NoError(t, err)
	var env struct {
		Data     map[string]string
		Metadata map[string]any
	}
	require.NoError(t, json.Unmarshal(raw, &env))
	require.Equal(t, `{"s":"x","n":2,"b":true,"o":{"a":1},"z":null,"MessageId":"spoof"}`, env.Data["msg"])
	m := env.Metadata
	require.Equal(t, `"id-1"`, m["MessageId"], "a body field never overrides system metadata")
	require.Equal(t, "2", m["DeliveryCount"])
	require.Equal(t, "7", m["SequenceNumber"])
	require.Equal(t, "2026-01-01T00:00:05", m["EnqueuedTimeUtc"])
	require.Nil(t, m["ContentType"])
	require.Equal(t, `"x"`, m["s"])
	require.Equal(t, "2", m["n"])
	require.Equal(t, "true", m["b"])
	require.Equal(t, `{"a":1}`, m["o"])
	require.Contains(t, m, "z")
	require.Nil(t, m["z"])
}
