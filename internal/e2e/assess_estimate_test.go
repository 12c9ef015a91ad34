package e2e

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/assess"
	"github.com/fhir-migrator/fhir-migrator/internal/fhirsim"
)

// Rate-model figures of TestAssessmentEstimate: each stored resource stands for estimateWeight, and a wall second
// is estimateScale modelled ones, so that a migration of about a million modelled resources (several modelled
// minutes) runs in seconds.
const (
	estimateWeight = 3000
	estimateScale  = 40
)

// TestAssessmentEstimate: on simulators that take the time the rate model gives the real services (its documented
// default rates, which the estimate assumes), the assessment's estimate of the migration's duration is within a
// factor of 2 of the migration that follows, both in modelled seconds.
func TestAssessmentEstimate(t *testing.T) {
	t.Parallel()
	model := fhirsim.DefaultRateModel()
	model.Weight, model.TimeScale = estimateWeight, estimateScale
	rated := []fhirsim.Option{fhirsim.WithRateModel(model), fhirsim.WithJobDelay(0), fhirsim.WithPollsBeforeDone(0)}
	s := newStack(t, stackOptions{patients: 4, sourceOptions: rated, destOptions: rated})
	req := map[string]any{"source": s.source.URL, "destination": s.dest.URL, "types": []string{"Patient", "Observation"}}

	a := s.awaitAssessment(s.assessNow(req))
	require.Equal(t, assess.StatusCompleted, a.Status, "%+v", a.Error)
	e := a.Estimate
	require.NotNil(t, e)
	require.Greater(t, e.Resources, int64(100_000), "the plan counts modelled resources")

	id := s.start(req)
	final, raw := s.await(id, nil)
	require.Equal(t, "completed", final.Status, string(raw))
	var m struct {
		CreatedAt time.Time `json:"createdAt"`
		UpdatedAt time.Time `json:"updatedAt"`
	}
	require.NoError(t, json.Unmarshal(raw, &m))
	measured := m.UpdatedAt.Sub(m.CreatedAt).Seconds() * estimateScale
	ratio := e.TotalSeconds / measured
	t.Logf("estimate %.0f s (copy %.0f s, exports %.0f s, verification %.0f s) for %d resources; the migration took %.0f modelled s (%.1f wall s): ratio %.2f",
		e.TotalSeconds, e.CopySeconds, e.ExportSeconds, e.VerifySeconds, e.Resources, measured, measured/estimateScale, ratio)
	require.True(t, ratio >= 0.5 && ratio <= 2, "estimate %.0f s against %.0f s measured (ratio %.2f)", e.TotalSeconds, measured, ratio)
}
