package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// newmanReport is the part of Newman's JSON report the test reads.
type newmanReport struct {
	Run struct {
		Stats map[string]struct {
			Total  int `json:"total"`
			Failed int `json:"failed"`
		} `json:"stats"`
		Executions []struct {
			Item struct {
				Name string `json:"name"`
			} `json:"item"`
			Response *struct {
				Code int `json:"code"`
			} `json:"response"`
			Assertions []struct {
				Assertion string `json:"assertion"`
				Skipped   bool   `json:"skipped"`
				Error     *struct {
					Message string `json:"message"`
				} `json:"error"`
			} `json:"assertions"`
		} `json:"executions"`
		Failures []struct {
			Error struct {
				Name    string `json:"name"`
				Message string `json:"message"`
				Test    string `json:"test"`
			} `json:"error"`
			At     string `json:"at"`
			Source struct {
				Name string `json:"name"`
			} `json:"source"`
		} `json:"failures"`
	} `json:"run"`
}

// TestPostmanCollectionRunsWithNewman runs the checked-in Postman collection (generated from the OpenAPI
// description: every operation, in an order that runs top to bottom) with Newman against the local stack, and
// requires every request sent and every test script's every assertion passed: the description's walkthrough
// works on the real handler behind the local Functions host, not only on paper.
func TestPostmanCollectionRunsWithNewman(t *testing.T) {
	t.Parallel()
	newman := filepath.Join(repoRoot, ".tools", "node_modules", ".bin", "newman")
	if testing.Short() {
		t.Skip("stack-level test; run without -short")
	}
	_, err := os.Stat(newman)
	require.NoError(t, err, "newman is installed by scripts/install-tools.sh (make tools)")
	collectionPath := filepath.Join(repoRoot, "postman", "fhir-migrator.postman_collection.json")
	var collection struct {
		Item []struct {
			Name  string `json:"name"`
			Event []struct {
				Listen string `json:"listen"`
			} `json:"event"`
		} `json:"item"`
	}
	raw, err := os.ReadFile(collectionPath)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(raw, &collection))
	waits := map[string]bool{} // the requests a wait sends again
	for _, it := range collection.Item {
		for _, e := range it.Event {
			if e.Listen == "prerequest" {
				waits[it.Name] = true
			}
		}
	}
	require.NotEmpty(t, waits)

	s := newStack(t, stackOptions{patients: 3})
	out := filepath.Join(repoRoot, "test-output")
	require.NoError(t, os.MkdirAll(out, 0o755))
	reportPath := filepath.Join(out, "newman.json")
	_ = os.Remove(reportPath)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, newman, "run", collectionPath,
		"--env-var", "baseUrl="+s.host.URL(),
		// The local host takes any key; the collection sends it in x-functions-key as Azure needs.
		"--env-var", "functionKey=local",
		"--env-var", "sourceUrl="+s.source.URL,
		"--env-var", "destinationUrl="+s.dest.URL,
		"--env-var", "pollMillis=250",
		"--env-var", "maxPolls=480",
		"--timeout-request", "30000",
		"--reporters", "cli,json", "--reporter-json-export", reportPath,
		"--color", "off", "--disable-unicode")
	cmd.Dir = repoRoot
	cli, runErr := cmd.CombinedOutput()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("newman:\n%s", cli)
		}
	})

	data, err := os.ReadFile(reportPath)
	require.NoError(t, err, "newman wrote no report (%v)", runErr)
	var rep newmanReport
	require.NoError(t, json.Unmarshal(data, &rep))
	for _, f := range rep.Run.Failures {
		t.Errorf("%s: %s %s: %s %s", f.Source.Name, f.At, f.Error.Name, f.Error.Test, f.Error.Message)
	}
	require.NoError(t, runErr, "newman failed")
	require.Empty(t, rep.Run.Failures)
	for _, stat := range []string{"requests", "assertions", "testScripts", "prerequestScripts"} {
		require.Zero(t, rep.Run.Stats[stat].Failed, "failed %s", stat)
	}

	// Every request of the collection was sent, in order, and answered; each but a wait once.
	sent := map[string]int{}
	var order []string
	assertions := 0
	for _, ex := range rep.Run.Executions {
		name := ex.Item.Name
		require.NotNil(t, ex.Response, "%s got no answer", name)
		if len(order) == 0 || order[len(order)-1] != name {
			order = append(order, name)
		}
		sent[name]++
		for _, a := range ex.Assertions {
			require.False(t, a.Skipped, "%s: %s skipped", name, a.Assertion)
			require.Nil(t, a.Error, "%s: %s", name, a.Assertion)
			assertions++
		}
	}
	var names []string
	for _, it := range collection.Item {
		names = append(names, it.Name)
		if !waits[it.Name] {
			require.Equal(t, 1, sent[it.Name], "%s is sent once", it.Name)
		}
	}
	require.Equal(t, names, order, "every request, in the collection's order")
	polls := 0
	for name := range waits {
		polls += sent[name] - 1
	}
	require.Equal(t, len(collection.Item)+polls, rep.Run.Stats["requests"].Total, "the collection's requests and the waits' repeats")
	require.Equal(t, assertions, rep.Run.Stats["assertions"].Total)
	require.GreaterOrEqual(t, assertions, 3*len(collection.Item), "each answer's status, content type and fields are tested")
	t.Logf("newman: %d requests (%d of them waiting), %d assertions, all passed", rep.Run.Stats["requests"].Total, polls, assertions)
}
