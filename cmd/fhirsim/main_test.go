package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/azuritetest"
	"github.com/fhir-migrator/fhir-migrator/internal/fhirsim"
)

var azurite *azuritetest.Azurite

func TestMain(m *testing.M) { azuritetest.Main(m, &azurite) }

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
		{"unknown fault", []string{"--addr", "127.0.0.1:0", "--faults", "status-500=0.1,statsu-503=0.1"}, `--faults: unknown fault "statsu-503"`},
		{"bad fault probability", []string{"--addr", "127.0.0.1:0", "--faults", "drop-conn=2"}, `--faults: fault "drop-conn": probability "2"`},
		{"negative import hold", []string{"--addr", "127.0.0.1:0", "--import-hold", "-1s"}, "--import-hold"},
		{"negative max imports", []string{"--addr", "127.0.0.1:0", "--max-imports", "-1"}, "--max-imports"},
		{"zero weight", []string{"--addr", "127.0.0.1:0", "--rate-model", "--weight", "0"}, "--rate-model"},
		{"zero time scale", []string{"--addr", "127.0.0.1:0", "--rate-model", "--time-scale", "0"}, "--rate-model"},
		{"NaN export rate", []string{"--addr", "127.0.0.1:0", "--rate-model", "--export-rate", "NaN"}, "rate model"},
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

func TestParseOptionsFaults(t *testing.T) {
	t.Parallel()
	o, err := parseOptions([]string{"--faults", "kickoff-429=0.25,import-drop=0.1", "--fault-seed", "0",
		"--import-hold", "2s", "--max-imports", "5"}, io.Discard)
	require.NoError(t, err)
	require.Equal(t, fhirsim.Faults{"kickoff-429": 0.25, "import-drop": 0.1}, o.faults)
	require.True(t, o.faultSeedSet, "an explicit --fault-seed 0 is a seed")
	require.Zero(t, o.faultSeed)
	require.Equal(t, 2*time.Second, o.importHold)
	require.Equal(t, 5, o.maxImports)

	o, err = parseOptions(nil, io.Discard)
	require.NoError(t, err)
	require.Empty(t, o.faults)
	require.False(t, o.faultSeedSet)
	require.Equal(t, fhirsim.DefaultImportHold, o.importHold)
}

func TestRunServesStatsWithTheFaultSeed(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	out, announce := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--addr", "127.0.0.1:0", "--flavor", "ahds", "--storage", "", "--faults", "status-503=0.5",
			"--fault-seed", "99"}, announce)
		_ = announce.Close()
	}()
	line, err := bufio.NewReader(out).ReadString('\n')
	require.NoError(t, err)
	m := regexp.MustCompile(`listening on (http://127\.0\.0\.1:\d+)\n$`).FindStringSubmatch(line)
	require.NotNil(t, m, line)

	resp, err := http.Get(m[1] + "/_sim/stats")
	require.NoError(t, err)
	var st fhirsim.Stats
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&st))
	_ = resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.EqualValues(t, 99, st.FaultSeed)
	require.NotNil(t, st.FaultsInjected)

	cancel()
	require.NoError(t, <-done)
}

// TestStopReleasesAHeldImportStatus: stopping the binary answers a status call held by import-hold and exits cleanly
// instead of waiting out the hold.
func TestStopReleasesAHeldImportStatus(t *testing.T) {
	t.Parallel()
	container, err := azurite.CreateContainer(t.Context(), "held")
	require.NoError(t, err)
	c, err := azurite.Client()
	require.NoError(t, err)
	_, err = c.UploadBuffer(t.Context(), container, "Patient-1.ndjson",
		[]byte(`{"resourceType":"Patient","id":"p1","meta":{"versionId":"1","lastUpdated":"2021-01-01T00:00:00Z"}}`+"\n"), nil)
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	out, announce := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--addr", "127.0.0.1:0", "--flavor", "ahds", "--storage", azurite.ConnectionString,
			"--faults", "import-hold=1", "--import-hold", "1h", "--job-delay", "1ms", "--polls-before-done", "0"}, announce)
		_ = announce.Close()
	}()
	line, err := bufio.NewReader(out).ReadString('\n')
	require.NoError(t, err)
	m := regexp.MustCompile(`listening on (http://127\.0\.0\.1:\d+)\n$`).FindStringSubmatch(line)
	require.NotNil(t, m, line)
	base := m[1]
	call := func(method, path, body string, header map[string]string) *http.Response {
		r, err := http.NewRequest(method, path, strings.NewReader(body))
		require.NoError(t, err)
		r.Header.Set("Authorization", "Bearer "+fhirsim.DevToken(base))
		for k, v := range header {
			r.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(r)
		require.NoError(t, err)
		return resp
	}
	body := `{"resourceType":"Parameters","parameter":[{"name":"inputFormat","valueString":"application/fhir+ndjson"},` +
		`{"name":"input","part":[{"name":"url","valueUri":"` + azurite.BlobEndpoint + "/" + container + `/Patient-1.ndjson"}]}]}`
	resp := call(http.MethodPost, base+"/$import", body, map[string]string{"Prefer": "respond-async", "Content-Type": "application/fhir+json"})
	_ = resp.Body.Close()
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
	location := resp.Header.Get("Content-Location")

	held := make(chan int, 1)
	go func() {
		for {
			r, err := http.NewRequest(http.MethodGet, location, nil)
			if err != nil {
				held <- 0
				return
			}
			r.Header.Set("Authorization", "Bearer "+fhirsim.DevToken(base))
			resp, err := http.DefaultClient.Do(r)
			if err != nil {
				held <- 0
				return
			}
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusAccepted {
				held <- resp.StatusCode
				return
			}
		}
	}()
	require.Eventually(t, func() bool {
		resp, err := http.Get(base + "/_sim/stats")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var st fhirsim.Stats
		return json.NewDecoder(resp.Body).Decode(&st) == nil && st.FaultsInjected["import-hold"] == 1
	}, 20*time.Second, 5*time.Millisecond)

	cancel()
	require.NoError(t, <-done, "the held call must not outlast the shutdown")
	require.Equal(t, http.StatusOK, <-held)
}

func TestParseOptionsRateModel(t *testing.T) {
	t.Parallel()
	o, err := parseOptions(nil, io.Discard)
	require.NoError(t, err)
	require.Nil(t, o.rates, "off by default")
	require.Zero(t, o.maxImports)

	o, err = parseOptions([]string{"--rate-model", "--weight", "1000", "--time-scale", "120"}, io.Discard)
	require.NoError(t, err)
	require.Equal(t, &fhirsim.RateModel{Weight: 1000, ExportRate: fhirsim.DefaultExportRate, ExportSlots: fhirsim.DefaultExportSlots,
		ImportRate: fhirsim.DefaultImportRate, TimeScale: 120}, o.rates)
	require.Equal(t, fhirsim.DefaultImportSlots, o.maxImports, "C_i defaults to the documented five")

	o, err = parseOptions([]string{"--rate-model", "--max-imports", "2", "--export-rate", "100.5"}, io.Discard)
	require.NoError(t, err)
	require.Equal(t, 2, o.maxImports)
	require.Equal(t, 100.5, o.rates.ExportRate)
	require.Zero(t, o.rates.SearchRate, "searches and counts take no time unless asked")

	o, err = parseOptions([]string{"--rate-model", "--search-rate", "16000", "--count-rate", "1e7", "--count-latency", "0.02"}, io.Discard)
	require.NoError(t, err)
	require.Equal(t, 16000.0, o.rates.SearchRate)
	require.Equal(t, 1e7, o.rates.CountRate)
	require.Equal(t, 0.02, o.rates.CountLatency)
	_, err = parseOptions([]string{"--rate-model", "--count-rate", "-1"}, io.Discard)
	require.Error(t, err)
}

// The configurations an assessment tells apart: an STU3 service and a service whose import is off.
func TestParseOptionsAssessmentKnobs(t *testing.T) {
	t.Parallel()
	o, err := parseOptions([]string{"--fhir-version", "3.0.2", "--import-disabled"}, io.Discard)
	require.NoError(t, err)
	require.Equal(t, "3.0.2", o.fhirVersion)
	require.True(t, o.importDisabled)
	o, err = parseOptions(nil, io.Discard)
	require.NoError(t, err)
	require.Equal(t, fhirsim.DefaultFHIRVersion, o.fhirVersion)
	require.False(t, o.importDisabled)
}
