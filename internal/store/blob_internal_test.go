package store

import (
	"errors"
	"fmt"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/stretchr/testify/require"
)

// TestOnlyTheConditionIsARace: a write refused by its If-Match / If-None-Match is a conflict to retry; any other
// refusal, a 409 included (a full store), is an error that names itself.
func TestOnlyTheConditionIsARace(t *testing.T) {
	for _, tc := range []struct {
		status int
		code   string
		etag   string
		race   bool
	}{
		{412, "ConditionNotMet", `"0x1"`, true},
		{412, "", `"0x1"`, true},
		{409, "BlobAlreadyExists", "", true},
		{404, "BlobNotFound", `"0x1"`, true},
		{404, "BlobNotFound", "", false},
		{409, "MemoryExtentStoreAtSizeLimit", `"0x1"`, false},
		{409, "LeaseIdMissing", `"0x1"`, false},
		{412, "LeaseIdMismatchWithBlobOperation", `"0x1"`, false},
		{500, "InternalError", `"0x1"`, false},
	} {
		err := fmt.Errorf("upload: %w", &azcore.ResponseError{StatusCode: tc.status, ErrorCode: tc.code})
		require.Equal(t, tc.race, lostRace(err, tc.etag), "%d %s", tc.status, tc.code)
	}
	require.False(t, lostRace(errors.New("connection reset"), `"0x1"`))
}
