package e2e

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

// The API's description is served through the Functions host (function folder OpenAPI), as Postman imports it.
func TestOpenAPIIsServedThroughTheHost(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{patients: 1})
	status, raw := s.api(http.MethodGet, "/api/openapi.json", nil)
	require.Equal(t, http.StatusOK, status, string(raw))
	var doc struct {
		OpenAPI string                    `json:"openapi"`
		Paths   map[string]map[string]any `json:"paths"`
	}
	require.NoError(t, json.Unmarshal(raw, &doc))
	require.Equal(t, "3.1.0", doc.OpenAPI)
	require.Contains(t, doc.Paths, "/api/migrations/{id}/cutover")
}
