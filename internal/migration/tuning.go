package migration

import (
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Tuning is every knob of the engine's pacing and bounds. DefaultTuning names the defaults, Validate is the one
// check, and Settings lists the knobs an operator sets as app settings (by these field names).
type Tuning struct {
	// MaxExportsPerSource bounds running exports per source host across all migrations.
	MaxExportsPerSource int
	// MaxImportsPerDestination bounds running imports per destination host across all migrations.
	MaxImportsPerDestination int
	// PollInitial is the first status poll delay and the backoff base; PollMax caps the backoff.
	PollInitial time.Duration
	PollMax     time.Duration
	// RetryDelay delays a scheduled retry when a destination throttles with no Retry-After, and is the base of
	// a verification's retries.
	RetryDelay time.Duration
	// RedriveAfter: a message-driven step with no progress after this long is re-sent by the sweep.
	RedriveAfter time.Duration
	// ExportDeadline: an export accepted this long ago and still not finished is canceled and exported again.
	ExportDeadline time.Duration
	// ConfirmDelay: a completed export whose manifest falls short of the source's counts is polled again after
	// this delay before it is judged.
	ConfirmDelay time.Duration
	// MaxReexports bounds the times one export job is exported again after a stall, a short manifest or a
	// failure on the server.
	MaxReexports int
	// MaxAttempts bounds kick-off attempts per job, DELETEs of one server job, and the faults of one
	// verification round.
	MaxAttempts int
	// MaxPollFailures bounds consecutive failed status polls of one job.
	MaxPollFailures int
	// PollConcurrency bounds the concurrent FHIR calls of one migration in a step.
	PollConcurrency int
	// MaxPlanningCounts bounds the count calls of one migration's planning; past it, the ranges not yet split are
	// exported as they are.
	MaxPlanningCounts int
}

// DefaultTuning is the engine's tuning unless told otherwise.
func DefaultTuning() Tuning {
	return Tuning{
		MaxExportsPerSource:      4,
		MaxImportsPerDestination: 5,
		PollInitial:              5 * time.Second,
		PollMax:                  2 * time.Minute,
		RetryDelay:               30 * time.Second,
		RedriveAfter:             2 * time.Minute,
		ExportDeadline:           6 * time.Hour,
		ConfirmDelay:             time.Minute,
		MaxReexports:             3,
		MaxAttempts:              5,
		MaxPollFailures:          10,
		PollConcurrency:          8,
		MaxPlanningCounts:        2000,
	}
}

// TuningSetting is one knob of Tuning as an app setting: its name, the field it sets (Int or Duration) and its
// default written as a setting.
type TuningSetting struct {
	Name     string
	Int      *int
	Duration *time.Duration
	Default  string
}

// Settings lists the knobs read from app settings, each pointing into t.
func (t *Tuning) Settings() []TuningSetting {
	def := DefaultTuning()
	i := func(name string, p *int, d int) TuningSetting {
		return TuningSetting{Name: name, Int: p, Default: strconv.Itoa(d)}
	}
	dur := func(name string, p *time.Duration, d time.Duration) TuningSetting {
		return TuningSetting{Name: name, Duration: p, Default: formatSetting(d)}
	}
	return []TuningSetting{
		i("MaxExportsPerSource", &t.MaxExportsPerSource, def.MaxExportsPerSource),
		i("MaxImportsPerDestination", &t.MaxImportsPerDestination, def.MaxImportsPerDestination),
		dur("PollInitial", &t.PollInitial, def.PollInitial),
		dur("PollMax", &t.PollMax, def.PollMax),
		dur("RetryDelay", &t.RetryDelay, def.RetryDelay),
		dur("RedriveAfter", &t.RedriveAfter, def.RedriveAfter),
		dur("ExportDeadline", &t.ExportDeadline, def.ExportDeadline),
		dur("ConfirmDelay", &t.ConfirmDelay, def.ConfirmDelay),
		i("MaxReexports", &t.MaxReexports, def.MaxReexports),
	}
}

// formatSetting writes a duration as an operator would: 30s, 2m, 6h.
func formatSetting(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	case d%time.Minute == 0:
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	}
	return d.String()
}

// Validate reports every knob that is not positive, and a PollMax below PollInitial.
func (t Tuning) Validate() error {
	var errs []error
	for _, k := range []struct {
		name  string
		value int64
	}{
		{"MaxExportsPerSource", int64(t.MaxExportsPerSource)}, {"MaxImportsPerDestination", int64(t.MaxImportsPerDestination)},
		{"PollInitial", int64(t.PollInitial)}, {"PollMax", int64(t.PollMax)}, {"RetryDelay", int64(t.RetryDelay)},
		{"RedriveAfter", int64(t.RedriveAfter)}, {"ExportDeadline", int64(t.ExportDeadline)},
		{"ConfirmDelay", int64(t.ConfirmDelay)}, {"MaxReexports", int64(t.MaxReexports)}, {"MaxAttempts", int64(t.MaxAttempts)},
		{"MaxPollFailures", int64(t.MaxPollFailures)}, {"PollConcurrency", int64(t.PollConcurrency)},
		{"MaxPlanningCounts", int64(t.MaxPlanningCounts)},
	} {
		if k.value <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive", k.name))
		}
	}
	if t.PollInitial > 0 && t.PollMax < t.PollInitial {
		errs = append(errs, fmt.Errorf("PollMax (%s) must not be below PollInitial (%s)", t.PollMax, t.PollInitial))
	}
	return errors.Join(errs...)
}
