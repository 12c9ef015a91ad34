package fhirsim

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"
)

// RateModel makes the simulator take the time a real service takes, counted in modelled resources, so that a run
// on this machine can stand for a migration of any size. The zero value models nothing (the default).
//
//   - Weight: each stored resource stands for Weight modelled ones in every count the simulator answers (search
//     totals, export manifests, import results). Only counts carry the weight: files hold the stored resources.
//   - ExportRate: modelled resources a running export job produces per second (R_e).
//   - ExportSlots: export jobs running at once (C_e); more are accepted and wait, answering 202, as the service
//     queues them. 0: no limit.
//   - ImportRate: modelled resources per second the destination imports in all, shared equally by its running
//     imports (C_i, their number, is WithMaxImports): one import uses the whole service and concurrent imports add
//     no throughput.
//   - SearchRate: modelled resources per second the service reads for searches in all (every id an _id search
//     asks for, every entry a listing or a _history page answers), shared equally by the searches running at
//     once; 0: searches take no modelled time.
//   - CountRate: modelled resources per second the service scans for counts in all (_summary=count over a range
//     scans the range's rows), shared equally by the counts running at once; CountLatency: modelled seconds each
//     count takes besides (not shared). 0: counts take no modelled time.
//   - TimeScale: divides every modelled duration (S); 0 means 1. Server.SetTimeScale changes it while running.
type RateModel struct {
	Weight       int64
	ExportRate   float64
	ExportSlots  int
	ImportRate   float64
	SearchRate   float64
	CountRate    float64
	CountLatency float64
	TimeScale    float64
}

// Defaults of the rate model, assumptions stated as such: an export job produces 2,900 resources/s (a non-parallel
// Cosmos export in the fhir-server project's own measurements: 89M resources in 8.5 h), 4 exports run at once on a
// source, the destination imports 10,000 resources/s in all, and 5 imports run at once (the documented limit).
const (
	DefaultExportRate  = 2900
	DefaultExportSlots = 4
	DefaultImportRate  = 10_000
	DefaultImportSlots = 5
	// DefaultSearchRate, DefaultCountRate and DefaultCountLatency are what the cutover benchmark assumes of both
	// services (none of them is published; see the README's "Cutover benchmark"): an _id search of 100 ids with
	// _elements=id answered in 50 ms with 8 in flight (16,000 ids/s), and a count over a _lastUpdated range as a
	// range scan of the narrow index on (ResourceTypeId, ResourceSurrogateId) of current resources at 10 million
	// rows/s, plus 20 ms a query. DefaultRateModel leaves them off.
	DefaultSearchRate   = 16_000
	DefaultCountRate    = 10_000_000
	DefaultCountLatency = 0.02
	defaultModelWeight  = 1
	defaultModelScale   = 1
)

// DefaultRateModel is the rate model with the default figures, each resource standing for itself, in real time.
func DefaultRateModel() RateModel {
	return RateModel{Weight: defaultModelWeight, ExportRate: DefaultExportRate, ExportSlots: DefaultExportSlots,
		ImportRate: DefaultImportRate, TimeScale: defaultModelScale}
}

// Validate refuses negative or non-finite figures.
func (m RateModel) Validate() error {
	for name, v := range map[string]float64{"weight": float64(m.Weight), "export rate": m.ExportRate,
		"export slots": float64(m.ExportSlots), "import rate": m.ImportRate, "search rate": m.SearchRate,
		"count rate": m.CountRate, "count latency": m.CountLatency, "time scale": m.TimeScale} {
		if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("rate model: %s %v is not a non-negative number", name, v)
		}
	}
	return nil
}

// WithRateModel sets the rate model (default none); an invalid one is logged and ignored.
func WithRateModel(m RateModel) Option { return func(c *config) { c.rates = m } }

// weight is how many modelled resources one stored resource stands for.
func (m RateModel) weight() int64 { return max(m.Weight, 1) }

// scale is S, by which every modelled duration is divided: TimeScale, 0 meaning 1. Exports and imports both take
// it from here, so that a scale below 1 slows both alike.
func (m RateModel) scale() float64 {
	if m.TimeScale > 0 {
		return m.TimeScale
	}
	return 1
}

// scaled is the wall time of a modelled duration of seconds.
func (m RateModel) scaled(seconds float64) time.Duration {
	return time.Duration(seconds / m.scale() * float64(time.Second))
}

// exportTime is the wall time an export of n stored resources takes to produce them.
func (m RateModel) exportTime(n int) time.Duration {
	if m.ExportRate <= 0 || n == 0 {
		return 0
	}
	return m.scaled(float64(int64(n)*m.weight()) / m.ExportRate)
}

// exportGate holds the export slots of the rate model: a job takes one before it runs.
type exportGate chan struct{}

// enter waits for a slot (forever when there is no gate) and returns its release.
func (g exportGate) enter(ctx context.Context) (func(), error) {
	if g == nil {
		return func() {}, nil
	}
	select {
	case g <- struct{}{}:
		return func() { <-g }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// importMeter shares the destination's import rate equally among its running imports (processor sharing). An
// import joins when it starts, so that its own reading and writing overlap the time it is served, and tells its
// modelled resources once it has read them; it ends when it has been served that many.
type importMeter struct {
	// rate is modelled resources per wall second (the base rate x S, as scale gives it).
	rate   float64
	base   float64
	now    func() time.Time
	mu     sync.Mutex
	active map[*meterJob]bool
	last   time.Time
}

// meterJob is one running import: served so far, and its work once known (unknown: it cannot finish yet).
type meterJob struct {
	served float64
	work   float64
	known  bool
}

func (j *meterJob) left() float64 {
	if !j.known {
		return math.Inf(1)
	}
	return j.work - j.served
}

func newImportMeter(m RateModel, now func() time.Time) *importMeter {
	return newShareMeter(m.ImportRate, m.scale(), now)
}

// newShareMeter is a meter serving rate modelled resources per modelled second in all, under time scale scale;
// nil (nothing metered) without a rate.
func newShareMeter(rate, scale float64, now func() time.Time) *importMeter {
	if rate <= 0 {
		return nil
	}
	return &importMeter{rate: rate * scale, base: rate, now: now, active: map[*meterJob]bool{}}
}

// setScale serves what ran so far at the old scale, then goes on at the new one.
func (m *importMeter) setScale(scale float64) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.advanceLocked(m.now())
	m.rate = m.base * scale
}

// serve meters work modelled resources as one job from now on (a search or a count) and waits until it is served.
func (m *importMeter) serve(ctx context.Context, work float64) error {
	if m == nil || work <= 0 {
		return nil
	}
	return m.finish(ctx, m.join(), work)
}

// advanceLocked serves the running imports from the last advance to now, exactly: the rate is split equally
// while the set is unchanged, and a job that is served in full leaves the set at that instant.
func (m *importMeter) advanceLocked(now time.Time) {
	dt := now.Sub(m.last).Seconds()
	m.last = now
	for dt > 0 && len(m.active) > 0 {
		n := float64(len(m.active))
		least := math.Inf(1)
		for j := range m.active {
			least = min(least, j.left())
		}
		t := least * n / m.rate
		if t > dt {
			for j := range m.active {
				j.served += m.rate * dt / n
			}
			return
		}
		for j := range m.active {
			j.served += least
			if j.left() <= 1e-9 {
				delete(m.active, j)
			}
		}
		dt -= t
	}
}

// join starts serving an import whose work is not known yet.
func (m *importMeter) join() *meterJob {
	if m == nil {
		return nil
	}
	j := &meterJob{}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.advanceLocked(m.now())
	m.active[j] = true
	return j
}

// leave stops serving j (its import failed or was canceled).
func (m *importMeter) leave(j *meterJob) {
	if m == nil || j == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.advanceLocked(m.now())
	delete(m.active, j)
}

// finish sets j's work in modelled resources and waits until it has been served that many.
func (m *importMeter) finish(ctx context.Context, j *meterJob, work float64) error {
	if m == nil || j == nil {
		return nil
	}
	m.mu.Lock()
	m.advanceLocked(m.now())
	j.work, j.known = work, true
	if j.left() <= 1e-9 {
		delete(m.active, j)
	}
	m.mu.Unlock()
	for {
		m.mu.Lock()
		m.advanceLocked(m.now())
		if !m.active[j] {
			m.mu.Unlock()
			return nil
		}
		// Done by then if nothing joins; check again sooner so that a job leaving speeds this one up.
		wait := time.Duration(j.left() * float64(len(m.active)) / m.rate * float64(time.Second))
		m.mu.Unlock()
		t := time.NewTimer(min(max(wait, time.Millisecond), 50*time.Millisecond))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			m.leave(j)
			return ctx.Err()
		}
	}
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// SetTimeScale changes the rate model's time scale S while the simulator runs (a benchmark that runs one phase
// fast and measures another slowly): what the meters served so far stays served at the old scale, and every
// duration decided from now on (an export's time, a search's or a count's share, an import's share) takes the new
// one. Without a rate model it does nothing.
func (s *Server) SetTimeScale(scale float64) {
	if scale <= 0 || math.IsNaN(scale) || math.IsInf(scale, 0) || s.cfg.rates == (RateModel{}) {
		return
	}
	s.scale.Store(math.Float64bits(scale))
	for _, m := range []*importMeter{s.importMeter, s.searchMeter, s.countMeter} {
		m.setScale(scale)
	}
}

// rateModel is the rate model with the time scale now in force.
func (s *Server) rateModel() RateModel {
	r := s.cfg.rates
	if r != (RateModel{}) {
		r.TimeScale = math.Float64frombits(s.scale.Load())
	}
	return r
}

// chargeSearch takes the modelled time of a search that read n stored resources (asked for by id, or answered),
// its share of the service's search rate; chargeCount that of a count over n stored resources: its latency, then
// its share of the count rate. Both wait in the request, as the service answers when it is done.
func (s *Server) chargeSearch(ctx context.Context, n int) {
	_ = s.searchMeter.serve(ctx, float64(int64(n)*s.cfg.rates.weight()))
}

func (s *Server) chargeCount(ctx context.Context, n int) {
	r := s.rateModel()
	if r.CountRate <= 0 && r.CountLatency <= 0 {
		return
	}
	if err := sleepCtx(ctx, r.scaled(r.CountLatency)); err != nil {
		return
	}
	_ = s.countMeter.serve(ctx, float64(int64(n)*r.weight()))
}
