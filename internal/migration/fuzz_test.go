package migration

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"
)

// FuzzStart: any start request that JSON can express is either accepted or refused with an *Error of a known
// code, never a panic or an internal failure.
func FuzzStart(f *testing.F) {
	for _, seed := range []string{
		`{` + endpoints + `}`,
		`{` + endpoints + `,"types":["Patient"],"typeFilter":["Patient?active=true"],"dryRun":true}`,
		`{` + endpoints + `,"since":"2020-01-01T00:00:00Z","till":"2019-01-01T00:00:00+02:00"}`,
		`{"source":null}`, `[]`, `"x"`, `{"verifySample":1e99}`, ``,
	} {
		f.Add([]byte(seed))
	}
	h := newHarness(f, nil)
	f.Fuzz(func(t *testing.T, body []byte) {
		var req StartRequest
		if json.Unmarshal(body, &req) != nil {
			return // the API refuses it before the engine sees it
		}
		res, err := h.svc.Start(context.Background(), req)
		if err == nil {
			if res == nil || (res.Migration == nil) == (res.Plan == nil) {
				t.Fatalf("accepted without exactly one of migration and plan: %+v", res)
			}
			return
		}
		var refusal *Error
		if !errors.As(err, &refusal) || refusal.Code == "" || !slices.ContainsFunc(Codes(), func(c Code) bool {
			return c.Code == refusal.Code && c.Kind == refusal.Kind
		}) {
			t.Fatalf("refusal is not one of the engine's codes: %v", err)
		}
	})
}

// FuzzMessages: any message body is acknowledged or reported as transient, never a panic.
func FuzzMessages(f *testing.F) {
	for _, seed := range []string{`{"migrationId":"m-test-1","jobId":"import-x-1"}`, `{"migrationId":"m-test-1","generation":1}`,
		`{"migrationId":"../../hosts/x","jobId":"y"}`, `{}`, `null`, `{"generation":"1"}`} {
		f.Add([]byte(seed))
	}
	h := newHarness(f, nil)
	h.start(`{` + endpoints + `,"types":["Patient"]}`)
	f.Fuzz(func(t *testing.T, body []byte) {
		if err := h.svc.RunImport(context.Background(), body); err != nil {
			t.Fatalf("run-import: %v", err)
		}
		if err := h.svc.Verify(context.Background(), body); err != nil {
			t.Fatalf("verify: %v", err)
		}
	})
}
