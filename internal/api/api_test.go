package api

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/migration"
)

type body struct {
	Name  *string `json:"name"`
	Count *int    `json:"count"`
	Flag  bool    `json:"flag"`
}

func TestDecode(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, in  string
		optional  bool
		code, fld string
	}{
		{"object", `{"name":"x","count":2}`, false, "", ""},
		{"empty optional", "  ", true, "", ""},
		{"empty required", "", false, "invalid_json", ""},
		{"unknown field", `{"nmae":"x"}`, false, "unknown_field", "nmae"},
		{"wrong type", `{"count":"two"}`, false, "invalid_json", "count"},
		{"wrong type bool", `{"flag":1}`, false, "invalid_json", "flag"},
		{"not an object", `[]`, false, "invalid_json", ""},
		{"malformed", `{"name":`, false, "invalid_json", ""},
		{"trailing", `{} []`, false, "invalid_json", ""},
		{"too large", `{"name":"` + strings.Repeat("a", 100) + `"}`, false, "body_too_large", ""},
	} {
		var b body
		got := Decode(strings.NewReader(tc.in), 64, tc.optional, &b)
		if tc.code == "" {
			require.Nil(t, got, tc.name)
			continue
		}
		require.NotNil(t, got, tc.name)
		require.Equal(t, tc.code, got.Code, tc.name)
		require.Equal(t, tc.fld, got.Field, tc.name)
		require.Equal(t, http.StatusBadRequest, got.Status, tc.name)
	}
	var b body
	got := Decode(iotest.ErrReader(errors.New("connection reset")), 64, false, &b)
	require.Equal(t, "invalid_body", got.Code)
}

func TestFromError(t *testing.T) {
	t.Parallel()
	for kind, status := range map[migration.ErrorKind]int{migration.Invalid: 400, migration.NotFound: 404,
		migration.Conflict: 409, migration.Unavailable: 502} {
		answer, internal := FromError(fmt.Errorf("wrapped: %w", &migration.Error{Kind: kind, Code: "c", Field: "f", Message: "m"}))
		require.False(t, internal)
		require.Equal(t, &Error{Status: status, Code: "c", Field: "f", Message: "m"}, answer)
	}
	answer, internal := FromError(errors.New("storage account key=secret unreachable"))
	require.True(t, internal)
	require.Equal(t, 500, answer.Status)
	require.Equal(t, "internal_error", answer.Code)
	require.NotContains(t, answer.Message, "secret", "an internal failure's details stay in the log")
}

// TestEveryCodeHasOneStatus: the table holds every engine code once, with its kind's status.
func TestEveryCodeHasOneStatus(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for _, c := range Codes() {
		require.False(t, seen[c.Code], "%s twice", c.Code)
		seen[c.Code] = true
		require.Equal(t, StatusOf(c.Kind), c.Status, c.Code)
		require.NotEqual(t, 0, c.Status)
	}
	for _, c := range migration.Codes() {
		require.True(t, seen[c.Code], c.Code)
	}
	require.Equal(t, 500, StatusOf(Internal))
	require.Equal(t, 405, StatusOf(Method))
	require.Equal(t, 401, StatusOf(Unauthenticated))
	require.Equal(t, 403, StatusOf(Forbidden))
}

var update = flag.Bool("update", false, "rewrite the API reference's error table from Codes")

// TestTheREADMEErrorTableIsTheTable: the error table of the API reference (docs/api.md) is MarkdownTable, row for
// row (go test ./internal/api -run README -update rewrites it).
func TestTheREADMEErrorTableIsTheTable(t *testing.T) {
	const path = "../../docs/api.md"
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	const begin, end = "<!-- error codes: rendered from internal/api.Codes -->\n", "<!-- end of error codes -->"
	text := string(raw)
	i, j := strings.Index(text, begin), strings.Index(text, end)
	require.True(t, i >= 0 && j > i, "the README marks its error table")
	if *update {
		require.NoError(t, os.WriteFile(path, []byte(text[:i+len(begin)]+MarkdownTable()+text[j:]), 0o644))
		return
	}
	require.Equal(t, MarkdownTable(), text[i+len(begin):j], "run go test ./internal/api -run README -update")
}

func FuzzDecode(f *testing.F) {
	for _, seed := range []string{`{"name":"x"}`, `{"count":1e99}`, `{"flag":null}`, `{}`, `[]`, `"x"`, ``, `{"name":"\u0000"}`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var b body
		got := Decode(strings.NewReader(string(in)), 1<<10, false, &b)
		if got != nil && (got.Status != 400 || got.Code == "") {
			t.Fatalf("refusal is not a 400 with a code: %+v", got)
		}
		var again body
		if got == nil && Decode(io.MultiReader(strings.NewReader(string(in))), 1<<10, false, &again) != nil {
			t.Fatal("decoding is not repeatable")
		}
	})
}
