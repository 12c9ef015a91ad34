package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRunRefusesBadOptions(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		args     []string
		contains string
	}{
		{"all interfaces", []string{"--addr", "0.0.0.0:8081"}, "loopback"},
		{"empty host", []string{"--addr", ":8081"}, "loopback"},
		{"private address", []string{"--addr", "10.0.0.1:8081"}, "loopback"},
		{"host name", []string{"--addr", "example.com:80"}, "loopback"},
		{"unknown flavor", []string{"--addr", "127.0.0.1:0", "--flavor", "gcp"}, "flavor"},
		{"bad storage", []string{"--addr", "127.0.0.1:0", "--storage", "not-a-connection-string"}, "--storage"},
		{"extra argument", []string{"--addr", "127.0.0.1:0", "serve"}, "unexpected"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := run(t.Context(), tc.args, io.Discard)
			require.ErrorContains(t, err, tc.contains)
		})
	}
}

func TestRunAnnouncesServesAndStops(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	out, announce := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--addr", "127.0.0.1:0", "--flavor", "ahds", "--seed-patients", "1", "--storage", ""}, announce)
		_ = announce.Close()
	}()
	line, err := bufio.NewReader(out).ReadString('\n')
	require.NoError(t, err)
	m := regexp.MustCompile(`^fhirsim: ahds listening on (http://127\.0\.0\.1:\d+)\n$`).FindStringSubmatch(line)
	require.NotNil(t, m, line)

	resp, err := http.Get(m[1] + "/metadata")
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	cancel()
	require.NoError(t, <-done)
}
