package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/bus"
	"github.com/fhir-migrator/fhir-migrator/internal/fhirsim"
	"github.com/fhir-migrator/fhir-migrator/internal/migration"
	"github.com/fhir-migrator/fhir-migrator/internal/store"
)

// brokenStore fails every call, as a storage account the handler cannot reach.
type brokenStore struct{}

var errStorageDown = errors.New("storage unreachable")

func (brokenStore) Get(context.Context, string) ([]byte, string, error) {
	return nil, "", errStorageDown
}
func (brokenStore) Put(context.Context, string, []byte, string, map[string]string) (string, error) {
	return "", errStorageDown
}
func (brokenStore) List(context.Context, string) ([]store.Item, error) { return nil, errStorageDown }
func (brokenStore) ListPage(context.Context, string, int, string) ([]store.Item, string, error) {
	return nil, "", errStorageDown
}

// The two codes the end-to-end test of every described code cannot produce through a host (internal/e2e
// codes_test.go): internal_error, from every operation that reaches a store that is down (the start past its
// checks of both servers, real simulators), and invalid_body, from every operation with a body that cannot be
// read (a chunked body cut short).
func TestInternalErrorAndInvalidBodyAreAnswered(t *testing.T) {
	t.Parallel()
	src := httptest.NewServer(fhirsim.New(fhirsim.WithAuth(false)))
	defer src.Close()
	dst := httptest.NewServer(fhirsim.New(fhirsim.WithFlavor(fhirsim.FlavorAHDS), fhirsim.WithAuth(false)))
	defer dst.Close()
	clients, policy, _, err := fhirClients(&Config{AllowedHosts: "127.0.0.1", FHIRCredential: "dev"}, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	svc, err := migration.NewService(migration.Config{Tuning: migration.DefaultTuning(), Store: brokenStore{}, Bus: &bus.Memory{},
		Policy: policy, Staging: noStaging{}, FHIR: clients})
	require.NoError(t, err)
	a := &app{svc: svc, assess: testAssess(t, brokenStore{}, svc), logger: slog.New(slog.DiscardHandler)}
	srv := httptest.NewServer(a.Routes())
	defer srv.Close()

	_, doc := readOpenAPI(t)
	produced := map[string]bool{}
	for path, methods := range doc.Paths {
		for method, op := range methods {
			route := strings.ReplaceAll(path, "{id}", "m-1")
			body := ""
			if op.RequestBody != nil {
				body = fmt.Sprintf(`{"source":%q,"destination":%q,"types":["Patient"]}`, src.URL, dst.URL)
				if !strings.HasSuffix(path, "/api/migrations") && !strings.HasSuffix(path, "/api/assessments") {
					body = `{}`
				}
			}
			for _, code := range op.codes() {
				switch code {
				case "internal_error":
					req, err := http.NewRequest(strings.ToUpper(method), srv.URL+route, strings.NewReader(body))
					require.NoError(t, err)
					resp, err := http.DefaultClient.Do(req)
					require.NoError(t, err)
					var e struct{ Error struct{ Code string } }
					require.NoError(t, json.NewDecoder(resp.Body).Decode(&e), "%s %s", method, route)
					_ = resp.Body.Close()
					require.Equal(t, http.StatusInternalServerError, resp.StatusCode, "%s %s", method, route)
					require.Equal(t, "internal_error", e.Error.Code, "%s %s", method, route)
					produced[op.OperationID+" internal_error"] = true
				case "invalid_body":
					status, got := cutBody(t, srv.URL, strings.ToUpper(method), route)
					require.Equal(t, http.StatusBadRequest, status, "%s %s", method, route)
					require.Equal(t, "invalid_body", got, "%s %s", method, route)
					produced[op.OperationID+" invalid_body"] = true
				}
			}
		}
	}
	require.NotEmpty(t, produced)
	require.True(t, produced["startMigration internal_error"])
	require.True(t, produced["cleanUp invalid_body"])
}

// cutBody sends a request whose chunked body breaks off with a malformed chunk, and reads the error code.
func cutBody(t *testing.T, base, method, path string) (int, string) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	require.NoError(t, err)
	defer conn.Close()
	_, err = fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"a\":\r\nzz\r\n", method, path)
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	defer resp.Body.Close()
	var e struct{ Error struct{ Code string } }
	_ = json.NewDecoder(resp.Body).Decode(&e)
	return resp.StatusCode, e.Error.Code
}
