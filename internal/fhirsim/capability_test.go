package fhirsim

import (
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestResourceTypesSorted: knownType binary-searches the list, so an entry out of order would silently vanish.
func TestResourceTypesSorted(t *testing.T) {
	t.Parallel()
	require.True(t, slices.IsSorted(resourceTypes))
	for _, typ := range resourceTypes {
		require.True(t, knownType(typ), typ)
	}
	require.False(t, knownType("Spaceship"))
}
