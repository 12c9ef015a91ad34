package main

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/migration"
	"github.com/fhir-migrator/fhir-migrator/internal/staging"
)

func TestStagingErrorsBecomeTheEngines(t *testing.T) {
	t.Parallel()
	other := errors.New("storage unreachable")
	tests := []struct {
		name   string
		in     error
		engine error // nil: passed on unchanged
	}{
		{"container taken", fmt.Errorf("%w: c is owned by m-2", staging.ErrContainerTaken), migration.ErrContainerTaken},
		{"container not owned", fmt.Errorf("%w: c is not m-1's", staging.ErrNotOwned), migration.ErrContainerNotOwned},
		{"blob not found", fmt.Errorf("%w: c/b", staging.ErrBlobNotFound), migration.ErrBlobNotFound},
		{"other", other, nil},
		{"none", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := stagingError(tt.in)
			if tt.engine == nil {
				require.Equal(t, tt.in, got)
				return
			}
			require.ErrorIs(t, got, tt.engine)
			require.ErrorIs(t, got, tt.in, "the staging error stays in the chain")
		})
	}
}
