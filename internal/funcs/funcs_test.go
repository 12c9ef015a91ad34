package funcs

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

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339Nano, s)
	require.NoError(t, err)
	return v
}

// TestFixtures decodes every captured envelope under testdata/host the way the handler does.
func TestFixtures(t *testing.T) {
	t.Parallel()
	runImportBody := `{"migrationId":"m-20260101-000000-ab12cd","jobId":"import-export-Patient-1"}`
	type want struct {
		envelopeErr string // DecodeInvokeRequest fails with this
		sys         *Sys
		timer       *TimerInfo
		message     *ServiceBusMessage
		http        *HTTPRequestData
		bindingErr  string // the binding decoder fails with this
		metaStrings map[string]string
	}
	cases := map[string]want{
		"timer.json": {
			sys: &Sys{MethodName: "PollJob", UtcNow: mustTime(t, "2026-01-01T00:00:30.0021345Z"), RandGuid: "9c1f0d1e-4b5a-4f7e-9a3b-2d6c8e0f1a2b"},
			timer: &TimerInfo{Schedule: TimerSchedule{AdjustForDST: true}, ScheduleStatus: &ScheduleStatus{
				Last: mustTime(t, "2026-01-01T00:00:00Z"), Next: mustTime(t, "2026-01-01T00:00:30Z"),
				LastUpdated: mustTime(t, "2026-01-01T00:00:00.0104567Z"),
			}},
		},
		"timer-null-status.json": {
			sys:   &Sys{MethodName: "PollJob", UtcNow: mustTime(t, "2026-01-01T00:01:00.5Z"), RandGuid: "0d6f1e2a-7c3b-4e9d-8a1f-5b2c4d6e8f00"},
			timer: &TimerInfo{Schedule: TimerSchedule{AdjustForDST: true}, IsPastDue: true},
		},
		"servicebus-run-import.json": {
			sys: &Sys{MethodName: "RunImport", UtcNow: mustTime(t, "2026-01-01T00:00:05.1234567Z"), RandGuid: "3e4f5a6b-7c8d-4e9f-a0b1-c2d3e4f5a6b7"},
			message: &ServiceBusMessage{
				Body:            []byte(runImportBody),
				MessageID:       "m-20260101-000000-ab12cd/run-import/import-export-Patient-1/1",
				DeliveryCount:   1,
				EnqueuedTimeUtc: mustTime(t, "2026-01-01T00:00:05Z"),
				ContentType:     "application/json",
				SequenceNumber:  42,
			},
			metaStrings: map[string]string{"migrationId": "m-20260101-000000-ab12cd", "jobId": "import-export-Patient-1",
				"LockToken": "6a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"},
		},
		"servicebus-redelivery.json": {
			sys: &Sys{MethodName: "VerifyCounts", UtcNow: mustTime(t, "2026-01-01T00:10:02.25Z"), RandGuid: "8f9e0d1c-2b3a-4f5e-8d7c-6b5a4f3e2d1c"},
			message: &ServiceBusMessage{
				Body:            []byte(`{"migrationId":"m-20260101-000000-ab12cd","generation":1}`),
				MessageID:       "m-20260101-000000-ab12cd/verify/1/1",
				DeliveryCount:   3,
				EnqueuedTimeUtc: mustTime(t, "2026-01-01T00:10:00Z"),
				ContentType:     "application/json",
				SequenceNumber:  57,
				CorrelationID:   "m-20260101-000000-ab12cd",
			},
			metaStrings: map[string]string{"generation": "1"},
		},
		"servicebus-body-doublequoted.json": {
			message: &ServiceBusMessage{
				Body:            []byte(runImportBody),
				MessageID:       "m-20260101-000000-ab12cd/run-import/import-export-Patient-1/2",
				DeliveryCount:   1,
				EnqueuedTimeUtc: mustTime(t, "2026-01-01T00:00:05Z"),
				ContentType:     "application/json",
				SequenceNumber:  43,
			},
		},
		"servicebus-body-base64.json": {
			message: &ServiceBusMessage{
				Body:            []byte(runImportBody),
				MessageID:       "m-20260101-000000-ab12cd/run-import/import-export-Patient-1/3",
				DeliveryCount:   2,
				EnqueuedTimeUtc: mustTime(t, "2026-01-01T00:00:07.5Z"),
				ContentType:     "application/json",
				SequenceNumber:  44,
			},
		},
		"http-payload.json": {
			sys: &Sys{MethodName: "Migrations", UtcNow: mustTime(t, "2026-01-01T00:02:00.75Z"), RandGuid: "6c7d8e9f-0a1b-4c2d-9e3f-4a5b6c7d8e9f"},
			http: &HTTPRequestData{
				URL:    "http://localhost:7071/api/migrations/m-20260101-000000-ab12cd?verbose=true",
				Method: "GET",
				Query:  map[string]string{"verbose": "true"},
				Headers: map[string][]string{"Accept": {"application/json"}, "Host": {"localhost:7071"},
					"User-Agent": {"curl/8.5.0"}},
				Params: map[string]string{"id": "m-20260101-000000-ab12cd"},
			},
			metaStrings: map[string]string{"id": "m-20260101-000000-ab12cd"},
		},
		"bad-not-json.json":             {envelopeErr: "decode invocation envelope"},
		"bad-data-not-object.json":      {envelopeErr: "decode invocation envelope"},
		"bad-missing-binding.json":      {message: &ServiceBusMessage{}, bindingErr: `binding "msg": absent`},
		"bad-servicebus-null-body.json": {message: &ServiceBusMessage{}, bindingErr: `binding "msg": null`},
		"bad-timer-wrong-types.json":    {timer: &TimerInfo{}, bindingErr: `timer binding "timer"`},
		"bad-sys-time.json":             {sys: &Sys{}, bindingErr: "sys.UtcNow"},
		"bad-http-headers.json":         {http: &HTTPRequestData{}, bindingErr: `header "Content-Type"`},
	}

	files, err := filepath.Glob(filepath.Join(fixtureDir, "*.json"))
	require.NoError(t, err)
	require.Len(t, files, len(cases), "every fixture has a case and every case a fixture")

	for _, file := range files {
		name := filepath.Base(file)
		w, ok := cases[name]
		require.True(t, ok, "fixture %s has no case", name)
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			raw, err := os.ReadFile(file)
			require.NoError(t, err)
			req, err := DecodeInvokeRequest(raw)
			if w.envelopeErr != "" {
				require.ErrorContains(t, err, w.envelopeErr)
				return
			}
			require.NoError(t, err)
			if w.bindingErr != "" {
				var err error
				switch {
				case w.message != nil:
					_, err = req.ServiceBusMessage("msg")
				case w.timer != nil:
					_, err = req.Timer("timer")
				case w.sys != nil:
					_, err = req.Sys()
				case w.http != nil:
					_, err = req.HTTPRequest("req")
				}
				require.ErrorContains(t, err, w.bindingErr)
				return
			}
			if w.sys != nil {
				got, err := req.Sys()
				require.NoError(t, err)
				require.Equal(t, *w.sys, got)
			}
			if w.timer != nil {
				got, err := req.Timer("timer")
				require.NoError(t, err)
				require.Equal(t, *w.timer, got)
			}
			if w.message != nil {
				got, err := req.ServiceBusMessage("msg")
				require.NoError(t, err)
				require.Equal(t, string(w.message.Body), string(got.Body))
				got.Body = w.message.Body
				require.Equal(t, *w.message, got)
			}
			if w.http != nil {
				got, err := req.HTTPRequest("req")
				require.NoError(t, err)
				require.NotEmpty(t, got.Identities)
				got.Identities = nil
				require.Equal(t, *w.http, got)
			}
			for k, v := range w.metaStrings {
				got, ok := req.MetadataString(k)
				require.True(t, ok, k)
				require.Equal(t, v, got, k)
			}
		})
	}
}

func TestMetadataScalars(t *testing.T) {
	t.Parallel()
	req, err := DecodeInvokeRequest([]byte(`{"Metadata":{"quoted":"\"a\"","plain":"a","null":null,"obj":{},
		"countStr":"3","countNum":4,"countBad":"x","date":"2026-01-01T00:00:05"}}`))
	require.NoError(t, err)
	tests := []struct {
		key    string
		str    string
		strOK  bool
		num    int64
		numOK  bool
		timeOK bool
	}{
		{key: "quoted", str: "a", strOK: true},
		{key: "plain", str: "a", strOK: true},
		{key: "null"},
		{key: "absent"},
		{key: "obj"},
		{key: "countStr", str: "3", strOK: true, num: 3, numOK: true},
		{key: "countNum", str: "4", strOK: true, num: 4, numOK: true},
		{key: "countBad", str: "x", strOK: true},
		{key: "date", str: "2026-01-01T00:00:05", strOK: true, timeOK: true},
	}
	for _, tt := range tests {
		s, ok := req.MetadataString(tt.key)
		require.Equal(t, tt.strOK, ok, tt.key)
		require.Equal(t, tt.str, s, tt.key)
		n, ok := req.MetadataInt(tt.key)
		require.Equal(t, tt.numOK, ok, tt.key)
		require.Equal(t, tt.num, n, tt.key)
		_, ok = req.MetadataTime(tt.key)
		require.Equal(t, tt.timeOK, ok, tt.key)
	}
}

func TestParseHostTime(t *testing.T) {
	t.Parallel()
	want := time.Date(2026, 1, 1, 0, 0, 5, 0, time.UTC)
	for _, in := range []string{"2026-01-01T00:00:05Z", "2026-01-01T00:00:05", "2026-01-01T00:00:05+00:00",
		"2026-01-01T01:00:05+01:00", "01/01/2026 00:00:05", "2026-01-01 00:00:05"} {
		got, err := ParseHostTime(in)
		require.NoError(t, err, in)
		require.True(t, want.Equal(got), "%s -> %s", in, got)
		require.Equal(t, time.UTC, got.Location(), in)
	}
	_, err := ParseHostTime("soon")
	require.Error(t, err)
}

func TestInvokeResponseWire(t *testing.T) {
	t.Parallel()
	rec := httptest.NewRecorder()
	WriteInvokeResponse(rec, 500, InvokeResponse{Logs: []string{"boom"}})
	require.Equal(t, 500, rec.Code)
	require.Equal(t, "application/json; charset=utf-8", rec.Header().Get("Content-Type"))
	require.JSONEq(t, `{"Outputs":{},"Logs":["boom"],"ReturnValue":null}`, rec.Body.String())

	rec = httptest.NewRecorder()
	WriteInvokeResponse(rec, 200, InvokeResponse{Outputs: map[string]any{"res": map[string]any{"statusCode": "202"}}})
	var got map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &got))
	require.JSONEq(t, `{"res":{"statusCode":"202"}}`, string(got["Outputs"]))
}

func TestListenAddr(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		env     map[string]string
		want    string
		wantErr string
	}{
		{name: "custom handler port", env: map[string]string{"FUNCTIONS_CUSTOMHANDLER_PORT": "4711"}, want: "127.0.0.1:4711"},
		{name: "legacy port", env: map[string]string{"FUNCTIONS_HTTPWORKER_PORT": "4712"}, want: "127.0.0.1:4712"},
		{name: "new wins", env: map[string]string{"FUNCTIONS_CUSTOMHANDLER_PORT": "1", "FUNCTIONS_HTTPWORKER_PORT": "2"}, want: "127.0.0.1:1"},
		{name: "missing", env: map[string]string{}, wantErr: "FUNCTIONS_CUSTOMHANDLER_PORT"},
		{name: "invalid", env: map[string]string{"FUNCTIONS_CUSTOMHANDLER_PORT": "70000"}, wantErr: "FUNCTIONS_CUSTOMHANDLER_PORT"},
		{name: "invalid legacy", env: map[string]string{"FUNCTIONS_HTTPWORKER_PORT": "x"}, wantErr: "FUNCTIONS_HTTPWORKER_PORT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ListenAddr(func(k string) string { return tt.env[k] })
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func FuzzDecodeInvokeRequest(f *testing.F) {
	files, err := filepath.Glob(filepath.Join(fixtureDir, "*.json"))
	if err != nil {
		f.Fatal(err)
	}
	for _, file := range files {
		raw, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		req, err := DecodeInvokeRequest(raw)
		if err != nil {
			return
		}
		_, _ = req.Sys()
		for name := range req.Data {
			_, _ = req.Timer(name)
			_, _ = req.ServiceBusMessage(name)
			_, _ = req.HTTPRequest(name)
		}
		for key := range req.Metadata {
			_, _ = req.MetadataString(key)
			_, _ = req.MetadataInt(key)
			_, _ = req.MetadataTime(key)
		}
		if m, err := req.ServiceBusMessage("msg"); err == nil && strings.TrimSpace(string(m.Body)) == "" && req.Data["msg"] != nil {
			// An empty body decodes only from an empty string.
			var s string
			if json.Unmarshal(req.Data["msg"], &s) != nil {
				t.Fatalf("empty body from non-string %s", req.Data["msg"])
			}
		}
	})
}
