package migration

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestEstimateFromFinishedJobs(t *testing.T) {
	t.Parallel()
	t0 := h0()
	at := func(s int) *time.Time { return timePtr(t0.Add(time.Duration(s) * time.Second)) }
	window := func(id string, done bool) *Job {
		j := &Job{ID: id, Kind: KindExport, Planned: 100, State: JobRunning, StartedAt: at(0)}
		if done {
			j.State, j.Counts, j.FinishedAt = JobDone, map[string]int64{"Patient": 90}, at(100)
		}
		return j
	}
	m := &Migration{Status: StatusExporting, Jobs: []*Job{window("w1", true), window("w2", true), window("w3", false), window("w4", false),
		{ID: "import-w1-1", Kind: KindImport, State: JobDone, StartedAt: at(100), FinishedAt: at(150), Counts: map[string]int64{"Patient": 90}}}}
	now := t0.Add(180 * time.Second)
	e := m.estimate(now)
	require.Equal(t, int64(380), e.Expected, "the finished windows' counts and the plan's for the others")
	require.Equal(t, int64(180), e.Exported)
	require.Equal(t, int64(90), e.Imported)
	require.InDelta(t, 1.0, e.ExportRate, 1e-9, "180 resources in 180 s")
	require.InDelta(t, 90.0/80, e.ImportRate, 1e-9)
	require.Equal(t, now.Add(200*time.Second), *e.ExportEnd)
	require.Equal(t, now.Add(seconds(290/(90.0/80))), *e.ImportEnd)
	require.Equal(t, "2 of 4 windows exported, 90 of 380 resources imported", e.Basis)

	// Every window exported: the exports ended when the last one did; the imports cannot end before.
	for _, j := range m.Jobs[2:4] {
		j.State, j.Counts, j.FinishedAt = JobDone, map[string]int64{"Patient": 100}, at(170)
	}
	m.Status = StatusImporting
	e = m.estimate(now)
	require.Equal(t, t0.Add(170*time.Second), *e.ExportEnd)
	require.True(t, e.ImportEnd.After(now))

	// Nothing finished yet: no rate, no end.
	fresh := &Migration{Status: StatusExporting, Jobs: []*Job{window("w1", false)}}
	e = fresh.estimate(now)
	require.Zero(t, e.ExportRate)
	require.Nil(t, e.ExportEnd)
	require.Nil(t, e.ImportEnd)

	m.Status = StatusVerifying
	require.Nil(t, m.estimate(now), "no estimate once the copy is over")
}

// A tiny rate over a large remainder is clamped to a century: the end stays in the future instead of overflowing
// a Duration into the past.
func TestEstimateEndIsClampedToACentury(t *testing.T) {
	t.Parallel()
	t0 := h0()
	now := t0.Add(1000 * time.Hour)
	m := &Migration{Status: StatusExporting, Jobs: []*Job{
		{ID: "w1", Kind: KindExport, State: JobDone, Counts: map[string]int64{"Patient": 1}, StartedAt: &t0, FinishedAt: &now},
		{ID: "w2", Kind: KindExport, State: JobRunning, Planned: 1 << 62, StartedAt: &t0},
	}}
	e := m.estimate(now)
	require.Greater(t, e.ExportRate, 0.0)
	require.NotNil(t, e.ExportEnd)
	require.True(t, e.ExportEnd.After(now), "the end is ahead, not wrapped into the past: %s", e.ExportEnd)
	require.Equal(t, now.Add(100*365*24*time.Hour), *e.ExportEnd, "clamped to a century")
}

// The SearchParameter copy is no import: its few resources written in seconds make no import rate.
func TestEstimateLeavesCopiesOut(t *testing.T) {
	t.Parallel()
	t0 := h0()
	now := t0.Add(10 * time.Second)
	m := &Migration{Status: StatusExporting, Jobs: []*Job{
		{ID: "w1", Kind: KindExport, State: JobDone, Counts: map[string]int64{"Patient": 100}, StartedAt: &t0, FinishedAt: &now},
		{ID: "w2", Kind: KindExport, State: JobRunning, Planned: 200000, StartedAt: &t0},
		{ID: "copy-w1-1", Kind: KindCopy, State: JobDone, Counts: map[string]int64{"SearchParameter": 4}, StartedAt: &t0, FinishedAt: &now},
	}}
	e := m.estimate(now)
	require.Zero(t, e.Imported)
	require.Zero(t, e.ImportRate, "no import rate from the copy")
	require.Nil(t, e.ImportEnd)
}
