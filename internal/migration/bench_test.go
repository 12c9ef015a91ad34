package migration

import (
	"context"
	"fmt"
	"testing"
	"time"
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
