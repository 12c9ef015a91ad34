package bus

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestSDKMessage(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name      string
		notBefore time.Time
		scheduled bool
	}{
		{"immediate", time.Time{}, false},
		{"past time is immediate", now.Add(-time.Second), false},
		{"future time is scheduled", now.Add(30 * time.Second), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := SDKMessage(Message{Queue: QueueRunImport, ID: "m-1/run-import/import-1/2", Body: []byte(`{"a":1}`), NotBefore: tt.notBefore}, now)
			require.NotNil(t, m.MessageID)
			require.Equal(t, "m-1/run-import/import-1/2", *m.MessageID)
			require.Equal(t, `{"a":1}`, string(m.Body))
			require.Equal(t, "application/json", *m.ContentType)
			if tt.scheduled {
				require.NotNil(t, m.ScheduledEnqueueTime)
				require.True(t, m.ScheduledEnqueueTime.Equal(tt.notBefore))
			} else {
				require.Nil(t, m.ScheduledEnqueueTime)
			}
		})
	}
}

func TestDevHostSender(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var got []devHostMessage
	var paths []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m devHostMessage
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		paths = append(paths, r.URL.Path)
		got = append(got, m)
		mu.Unlock()
		if r.URL.Path == "/admin/servicebus/queues/nope/messages" {
			http.Error(w, `{"error":"unknown queue"}`, http.StatusNotFound)
			return
		}
		w.WriteHeader(http.StatusCreated)
	}))
	t.Cleanup(srv.Close)

	d, err := NewDevHost(srv.URL)
	require.NoError(t, err)
	at := time.Date(2026, 1, 1, 10, 0, 30, 0, time.UTC)
	require.NoError(t, d.Send(context.Background(), Message{Queue: QueueVerifyCounts, ID: "m-1/verify/1/1", Body: []byte(`{"migrationId":"m-1"}`), NotBefore: at}))
	err = d.Send(context.Background(), Message{Queue: "nope", ID: "x", Body: []byte(`{}`)})
	require.ErrorContains(t, err, "404")
	require.ErrorContains(t, d.Send(context.Background(), Message{Queue: QueueVerifyCounts, Body: []byte(`{}`)}), "message id is required")

	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []string{"/admin/servicebus/queues/verify-counts/messages", "/admin/servicebus/queues/nope/messages"}, paths)
	require.Equal(t, "m-1/verify/1/1", got[0].MessageID)
	require.Equal(t, `{"migrationId":"m-1"}`, got[0].Body)
	require.Equal(t, "2026-01-01T10:00:30Z", got[0].ScheduledEnqueueTime)
	require.Empty(t, got[1].ScheduledEnqueueTime)
}

func TestDevHostRefusesNonLoopback(t *testing.T) {
	t.Parallel()
	for _, base := range []string{"http://10.0.0.1:7071", "https://127.0.0.1:7071", "127.0.0.1:7071", ""} {
		_, err := NewDevHost(base)
		require.Error(t, err, base)
	}
}
