package migration

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestTuningDefaultsValidateAndEveryKnobIsChecked(t *testing.T) {
	t.Parallel()
	require.NoError(t, DefaultTuning().Validate())
	err := Tuning{}.Validate()
	require.Error(t, err)
	for _, name := range []string{"MaxExportsPerSource", "MaxImportsPerDestination", "PollInitial", "PollMax", "RetryDelay",
		"RedriveAfter", "ExportDeadline", "ConfirmDelay", "MaxReexports", "MaxAttempts", "MaxPollFailures", "PollConcurrency"} {
		require.Contains(t, err.Error(), name+" must be positive")
	}
	bad := DefaultTuning()
	bad.PollMax = time.Second
	require.ErrorContains(t, bad.Validate(), "PollMax (1s) must not be below PollInitial (5s)")
	_, err = NewService(Config{Tuning: bad, Store: nil})
	require.Error(t, err)
}

func TestTuningSettingsPointIntoTheStruct(t *testing.T) {
	t.Parallel()
	tu := DefaultTuning()
	settings := tu.Settings()
	defaults := map[string]string{}
	for _, s := range settings {
		defaults[s.Name] = s.Default
		require.True(t, (s.Int == nil) != (s.Duration == nil), s.Name)
		if s.Int != nil {
			*s.Int = 77
		} else {
			*s.Duration = 77 * time.Second
		}
	}
	require.Equal(t, map[string]string{"MaxExportsPerSource": "4", "MaxImportsPerDestination": "5", "PollInitial": "5s",
		"PollMax": "2m", "RetryDelay": "30s", "RedriveAfter": "2m", "ExportDeadline": "6h", "ConfirmDelay": "1m",
		"MaxReexports": "3"}, defaults)
	require.Equal(t, 77, tu.MaxExportsPerSource)
	require.Equal(t, 77*time.Second, tu.ConfirmDelay)
	require.Equal(t, 77, tu.MaxReexports)
	require.Equal(t, 5, tu.MaxAttempts, "not an app setting")
}
