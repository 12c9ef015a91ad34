package migration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fhir-migrator/fhir-migrator/internal/bus"
	"github.com/fhir-migrator/fhir-migrator/internal/fhir"
	"github.com/fhir-migrator/fhir-migrator/internal/store"
)

// ndjsonStream generates a file of n Observations line by line, never holding more than one line.
type ndjsonStream struct {
	file, n, i int
	buf        bytes.Buffer
}

func (s *ndjsonStream) Read(p []byte) (int, error) {
	for s.buf.Len() < len(p) && s.i < s.n {
		fmt.Fprintf(&s.buf, `{"resourceType":"Observation","id":"obs-%d-%d","meta":{"versionId":"1","lastUpdated":"2025-01-01T00:00:00Z"},`+
			`"status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4","display":"Heart rate"}]},`+
			`"subject":{"reference":"Patient/p-%d"},"effectiveDateTime":"2024-05-01T10:00:00Z","valueQuantity":{"value":72,"unit":"beats/minute"}}`+"\n",
			s.file, s.i, s.i%1000)
		s.i++
	}
	if s.buf.Len() == 0 {
		return 0, io.EOF
	}
	return s.buf.Read(p)
}

type streamStaging struct {
	*fakeStaging // never called: the benchmark only opens files
	perFile      int
}

func (s streamStaging) Open(_ context.Context, u string) (io.ReadCloser, error) {
	n, err := strconv.Atoi(u[strings.LastIndex(u, "-")+1 : len(u)-len(".ndjson")])
	if err != nil {
		return nil, err
	}
	return io.NopCloser(&ndjsonStream{file: n, n: s.perFile}), nil
}

// allFound is an in-process destination that holds every id it is asked for (it only searches).
type allFound struct{ *fakeServer }

func (allFound) Search(_ context.Context, typ string, q url.Values, each func(json.RawMessage) error) error {
	for id := range strings.SplitSeq(q.Get("_id"), ",") {
		if err := each(json.RawMessage(`{"resourceType":"` + typ + `","id":"` + id + `"}`)); err != nil {
			return err
		}
	}
	return nil
}

// BenchmarkVerifyIDs streams 100 files of 10,000 resources (1,000,000 ids) through the id check against an
// in-process destination, and reports ids/s and the process's peak RSS.
func BenchmarkVerifyIDs(b *testing.B) {
	const files, perFile = 100, 10_000
	policy, _ := fhir.ParseHostPolicy("")
	svc, err := NewService(Config{Tuning: DefaultTuning(), Store: store.NewMemory(), Bus: &bus.Memory{}, Policy: policy, Staging: streamStaging{perFile: perFile},
		FHIR: func(string) (FHIRClient, error) { return nil, fmt.Errorf("unused") }})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ResetTimer()
	start := time.Now()
	var ids int64
	for range b.N {
		for f := range files {
			res, err := svc.checkFile(ctx, allFound{}, nil, File{Type: "Observation", URL: fmt.Sprintf("%s/c/obs-%d.ndjson", blobBase, f)}, nil, comparison{importMode: ModeIncremental}, true, svc.cfg.PollConcurrency)
			if err != nil {
				b.Fatal(err)
			}
			t := res.types["Observation"]
			if t.Checked != perFile || t.Missing != 0 {
				b.Fatalf("file %d: %+v", f, t)
			}
			ids += t.Checked
		}
	}
	b.ReportMetric(float64(ids)/time.Since(start).Seconds(), "ids/s")
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(ms.Sys)/(1<<20), "MB-sys")
	if status, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, line := range strings.Split(string(status), "\n") {
			if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
				kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
				b.ReportMetric(float64(kb)/1024, "MB-peak-rss")
			}
		}
	}
}
