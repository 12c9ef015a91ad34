package devhost

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
)

// chaos rolls the host's injected Service Bus faults (Config.DuplicateRate, Config.DropRate) from one seeded source.
type chaos struct {
	duplicateRate float64
	dropRate      float64

	mu  sync.Mutex
	rng *rand.Rand
}

func newChaos(duplicateRate, dropRate float64, seed int64) (*chaos, error) {
	for _, r := range []struct {
		name string
		p    float64
	}{{"DuplicateRate", duplicateRate}, {"DropRate", dropRate}} {
		if math.IsNaN(r.p) || r.p < 0 || r.p > 1 {
			return nil, fmt.Errorf("%s %v is not a probability in [0,1]", r.name, r.p)
		}
	}
	return &chaos{duplicateRate: duplicateRate, dropRate: dropRate,
		rng: rand.New(rand.NewPCG(uint64(seed), 0x5851f42d4c957f2d))}, nil
}

func (c *chaos) roll(p float64) bool {
	if c == nil || p <= 0 {
		return false
	}
	if p >= 1 {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rng.Float64() < p
}

// duplicate decides whether a delivery loses its lock, so the message is delivered a second time.
func (c *chaos) duplicate() bool { return c != nil && c.roll(c.duplicateRate) }

// drop decides whether an accepted message is lost before it reaches the queue.
func (c *chaos) drop() bool { return c != nil && c.roll(c.dropRate) }
