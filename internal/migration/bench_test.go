package migration

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/fhir-migrator/fhir-migrator/internal/azuritetest"
	"github.com/fhir-migrator/fhir-migrator/internal/store"
)

// BenchmarkPollSweep sweeps 50 migrations of 20 running exports each, every export polled once per sweep.
func BenchmarkPollSweep(b *testing.B) {
	h := newHarness(b, nil)
	h.src.exportPending = 1 << 30
	ctx := context.Background()
	now := h.clock.Now()
	for i := range 50 {
		m := &Migration{ID: fmt.Sprintf("m-bench-%02d", i), Status: StatusExporting, CreatedAt: now, UpdatedAt: now,
			Request: Request{Source: srcBase, Destination: dstBase, ExportStrategy: StrategyPerType,
				ImportMode: ModeIncremental, Container: fmt.Sprintf("m-bench-%02d", i), Verify: VerifyModeCounts}}
		for k := range 20 {
			typ := fmt.Sprintf("Type%02d", k)
			cl, err := h.src.ExportKickoff(ctx, exportRequest(m, &Job{Types: []string{typ}}))
			if err != nil {
				b.Fatal(err)
			}
			m.Jobs = append(m.Jobs, &Job{ID: "export-" + typ, Kind: KindExport, Types: []string{typ}, State: JobRunning,
				ContentLocation: cl, Attempts: []Attempt{{N: 1, StartedAt: now, ContentLocation: cl}}, CreatedAt: now})
		}
		data, err := encodeDoc(m)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := h.store.Put(ctx, docName(m.ID), data, "", docMetadata(m)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		h.clock.Advance(3 * time.Minute)
		if err := h.svc.Poll(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if polls := h.src.exports[h.get("m-bench-00").Jobs[0].ContentLocation].polls; polls < b.N {
		b.Fatalf("each sweep polls every export: %d polls for %d sweeps", polls, b.N)
	}
}

// BenchmarkWindowedDocument plans a migration of 500 windows through the engine, on the Azurite document store,
// exports every window (200 files each: 100,000 files), and then sweeps over its document: it reports the
// document's size with every import still queued and the time of one sweep, then the size once every import is
// done (finished jobs moved to pages).
func BenchmarkWindowedDocument(b *testing.B) {
	ctx := context.Background()
	az, err := azuritetest.Start()
	if err != nil {
		b.Fatal(err)
	}
	defer az.Stop()
	client, err := az.Client()
	if err != nil {
		b.Fatal(err)
	}
	container, err := az.CreateContainer(ctx, "bench-docs")
	if err != nil {
		b.Fatal(err)
	}
	docs, err := store.NewBlob(ctx, client, container)
	if err != nil {
		b.Fatal(err)
	}
	h, got := manyWindowsExported(b, 500, func(c *Config) { c.Store = docs })
	windows := len(exportWindows(got))
	raw, _, err := docs.Get(ctx, docName(got.ID))
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if err := h.svc.Poll(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	// Then every import finishes: the finished jobs leave the document in pages.
	done := driveManyWindows(b, h, got.ID, windows)
	final, _, err := docs.Get(ctx, docName(got.ID))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(len(raw)), "doc-bytes")
	b.ReportMetric(float64(len(final)), "done-doc-bytes")
	b.ReportMetric(float64(len(done.JobPages)), "pages")
	b.ReportMetric(float64(windows), "windows")
	b.ReportMetric(float64(exportedFileCount(got)), "files")
}

// manyWindowsExported plans a migration of the given number of windows through the engine (Observations a day
// apart, 10 at one instant each day: windows of 10), every export writing 200 files (500 windows: 100,000 files),
// and sweeps until every window is exported. Nothing delivers the import messages, so every import is still queued.
// tune runs after the harness's own settings (a benchmark sets its document store there).
func manyWindowsExported(tb testing.TB, windows int, tune func(*Config)) (*harness, *Migration) {
	tb.Helper()
	var obs []time.Time
	for d := range windows {
		for range 10 {
			obs = append(obs, time.Date(2018, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, d))
		}
	}
	h, _ := newPlanningHarness(tb, func(c *Config) {
		c.MaxExportsPerSource = 1000
		if tune != nil {
			tune(c)
		}
	}, map[string][]time.Time{"Observation": obs})
	files := make([]int64, 200)
	for i := range files {
		files[i] = 10_000
	}
	h.src.setFiles("Observation", files...)
	m := h.start(`{` + endpoints + `,"types":["Observation"],"windowTarget":10,"till":"2026-01-01T00:00:00Z","verify":"none"}`)
	for range 200 {
		if got := h.get(m.ID); got.Status != StatusPlanning && allExportsDone(got) {
			break
		}
		h.clock.Advance(10 * time.Second)
		h.poll()
	}
	got := h.get(m.ID)
	if !allExportsDone(got) || len(exportWindows(got)) != windows {
		tb.Fatalf("%d windows, every export done %t, want %d exported: %s",
			len(exportWindows(got)), allExportsDone(got), windows, got.Status)
	}
	return h, got
}

// driveManyWindows delivers and sweeps the migration of manyWindowsExported until it completes with an export and
// an import for each of its windows.
func driveManyWindows(tb testing.TB, h *harness, id string, windows int) *Migration {
	tb.Helper()
	done := h.drive(id, 10*time.Second, 400)
	if done.Status != StatusCompleted || len(done.Jobs) != 2*windows {
		tb.Fatalf("migration %s with %d jobs, want completed with %d", done.Status, len(done.Jobs), 2*windows)
	}
	return done
}

func allExportsDone(m *Migration) bool {
	for _, j := range m.Jobs {
		if j.Kind == KindExport && j.State != JobDone {
			return false
		}
	}
	return len(m.Jobs) > 0
}
