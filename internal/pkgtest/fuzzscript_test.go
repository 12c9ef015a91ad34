package pkgtest

// scripts/fuzz.sh (`make fuzz`) judged without a fuzzer: a fake go prints a chosen fuzzer output, leaves a failing
// input in the corpus as the fuzzer does, and passes or fails `go test -run`. The script runs from a copy of it in a
// temporary tree holding a fake package, so the real testdata is never touched.

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const (
	fakeFuzzPkg    = "internal/fake"
	fakeFuzzTarget = "FuzzFake"
	fakeFuzzInput  = "582528ddfad69eb5" // the name the fake fuzzer gives the failing input it writes
	fakeFuzzSeed   = "seed-kept"        // a seed already in the corpus before fuzzing
)

// Outputs of `go test -fuzz`, as Go 1.26 prints them.
const (
	fuzzLostWorker = `fuzz: elapsed: 0s, gathering baseline coverage: 0/12 completed
fuzz: elapsed: 0s, gathering baseline coverage: 12/12 completed, now fuzzing with 2 workers
fuzz: elapsed: 3s, execs: 81034 (27010/sec), new interesting: 0 (total: 12)
--- FAIL: FuzzFake (3.21s)
    fuzzing process hung or terminated unexpectedly: exit status 2
    Failing input written to testdata/fuzz/FuzzFake/582528ddfad69eb5
    To re-run:
    go test -run=FuzzFake/582528ddfad69eb5
FAIL
exit status 1
FAIL	github.com/fhir-migrator/fhir-migrator/internal/fake	3.302s
`
	fuzzLostWhileMinimizing = `fuzz: elapsed: 0s, gathering baseline coverage: 12/12 completed, now fuzzing with 2 workers
fuzz: minimizing 57-byte failing input file
--- FAIL: FuzzFake (1.90s)
    fuzzing process hung or terminated unexpectedly while minimizing: EOF
    Failing input written to testdata/fuzz/FuzzFake/582528ddfad69eb5
    To re-run:
    go test -run=FuzzFake/582528ddfad69eb5
FAIL
`
	fuzzKilledBySignal = `fuzz: elapsed: 0s, gathering baseline coverage: 12/12 completed, now fuzzing with 2 workers
--- FAIL: FuzzFake (2.04s)
    fuzzing process terminated by unexpected signal; no crash will be recorded: signal: killed
FAIL
`
	fuzzPanic = `fuzz: elapsed: 0s, gathering baseline coverage: 12/12 completed, now fuzzing with 2 workers
fuzz: minimizing 31-byte failing input file
fuzz: elapsed: 1s, minimizing
--- FAIL: FuzzFake (1.12s)
    --- FAIL: FuzzFake (0.00s)
        testing.go:1591: panic: runtime error: index out of range [3] with length 3
            goroutine 25 [running]:
    Failing input written to testdata/fuzz/FuzzFake/582528ddfad69eb5
    To re-run:
    go test -run=FuzzFake/582528ddfad69eb5
FAIL
`
	// The message only quoted inside a failure of the target (not the engine's own line): a finding.
	fuzzQuotesTheMessage = `--- FAIL: FuzzFake (0.52s)
    --- FAIL: FuzzFake (0.00s)
        fake_test.go:12: got "fuzzing process hung or terminated unexpectedly: exit status 2"
    Failing input written to testdata/fuzz/FuzzFake/582528ddfad69eb5
    To re-run:
    go test -run=FuzzFake/582528ddfad69eb5
FAIL
`
	// The engine's message for a target that calls F.Fail before F.Fuzz: not a lost worker.
	fuzzInternalFailure = `--- FAIL: FuzzFake (0.20s)
    fuzzing process exited unexpectedly due to an internal failure: exit status 70
FAIL
`
)

type fuzzCase struct {
	fuzzOut   string // what go test -fuzz prints; "" : fuzzing passes
	writes    bool   // go test -fuzz writes fakeFuzzInput into the corpus
	rerunPass bool   // go test -run passes
}

type fuzzRun struct {
	out, calls       string
	exitCode         int
	corpus, lostFile string
}

// runFuzzScript runs a copy of scripts/fuzz.sh in a temporary tree holding a fake package with one seed, with GO
// set to a fake go acting out c.
func runFuzzScript(t *testing.T, c fuzzCase) fuzzRun {
	t.Helper()
	tree := t.TempDir()
	script, err := os.ReadFile(filepath.Join(repoRoot(t), "scripts", "fuzz.sh"))
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(filepath.Join(tree, "scripts"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(tree, "scripts", "fuzz.sh"), script, 0o755))
	corpus := filepath.Join(tree, fakeFuzzPkg, "testdata", "fuzz", fakeFuzzTarget)
	require.NoError(t, os.MkdirAll(corpus, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(corpus, fakeFuzzSeed), []byte("go test fuzz v1\n[]byte(\"seed\")\n"), 0o644))

	fakes := t.TempDir()
	calls := filepath.Join(fakes, "calls.txt")
	output := filepath.Join(fakes, "fuzz-output.txt")
	require.NoError(t, os.WriteFile(output, []byte(c.fuzzOut), 0o644))
	fuzzExit, write, rerunExit := "0", "", "1"
	if c.fuzzOut != "" {
		fuzzExit = "1"
	}
	if c.writes {
		// Relative to the module root, where the script runs go.
		dir := fakeFuzzPkg + "/testdata/fuzz/" + fakeFuzzTarget
		write = `mkdir -p ` + dir + ` && printf 'go test fuzz v1\n[]byte("crash")\n' >` + dir + `/` + fakeFuzzInput
	}
	if c.rerunPass {
		rerunExit = "0"
	}
	fakeGo := filepath.Join(fakes, "go")
	require.NoError(t, os.WriteFile(fakeGo, []byte(`#!/bin/sh
echo "go $*" >>`+calls+`
case " $* " in
*" -fuzz "*) cat `+output+`; `+write+`
  exit `+fuzzExit+` ;;
*" -run "*) echo "--- FAIL: FuzzFake/582528ddfad69eb5 (rerun, exit `+rerunExit+`)"; exit `+rerunExit+` ;;
esac
exit 2
`), 0o755))

	cmd := exec.Command("bash", filepath.Join(tree, "scripts", "fuzz.sh"), fakeFuzzPkg+":"+fakeFuzzTarget)
	cmd.Env = append(os.Environ(), "GO="+fakeGo, "FUZZTIME=1s")
	cmd.Dir = t.TempDir()
	out, err := cmd.CombinedOutput()
	r := fuzzRun{out: string(out), corpus: corpus,
		lostFile: filepath.Join(tree, "test-output", "fuzz-lost", fakeFuzzPkg, fakeFuzzTarget, fakeFuzzInput)}
	if err != nil {
		exitErr, ok := err.(*exec.ExitError)
		require.True(t, ok, "running fuzz.sh: %v\n%s", err, out)
		r.exitCode = exitErr.ExitCode()
	}
	data, err := os.ReadFile(calls)
	require.NoError(t, err)
	r.calls = string(data)
	// Whatever happens, the seed that was there stays.
	require.FileExists(t, filepath.Join(corpus, fakeFuzzSeed), "fuzz.sh output:\n%s", out)
	return r
}

func TestFuzzScriptMovesTheInputALostWorkerLeft(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name, fuzzOut, signature string
	}{
		{"hung or terminated", fuzzLostWorker, "fuzzing process hung or terminated unexpectedly"},
		{"while minimizing", fuzzLostWhileMinimizing, "fuzzing process hung or terminated unexpectedly while minimizing"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r := runFuzzScript(t, fuzzCase{fuzzOut: c.fuzzOut, writes: true, rerunPass: true})
			require.Equal(t, 0, r.exitCode, "a lost worker whose input passes does not fail make fuzz:\n%s", r.out)
			require.Contains(t, r.out, "LOST A FUZZING WORKER")
			require.Contains(t, r.out, `"`+c.signature+`"`, "names the message it matched")
			require.NoFileExists(t, filepath.Join(r.corpus, fakeFuzzInput), "moved out of the seed corpus:\n%s", r.out)
			require.FileExists(t, r.lostFile, "kept, not deleted:\n%s", r.out)
			data, err := os.ReadFile(r.lostFile)
			require.NoError(t, err)
			require.Equal(t, "go test fuzz v1\n[]byte(\"crash\")\n", string(data))
			require.Contains(t, r.out, "test-output/fuzz-lost/"+fakeFuzzPkg+"/"+fakeFuzzTarget+"/"+fakeFuzzInput)
			require.Contains(t, r.calls, "go test -count=1 -run ^FuzzFake$ ./internal/fake\n",
				"the saved inputs are run again")
		})
	}
}

func TestFuzzScriptPassesAWorkerKilledWithoutAnInput(t *testing.T) {
	t.Parallel()
	r := runFuzzScript(t, fuzzCase{fuzzOut: fuzzKilledBySignal, rerunPass: true})
	require.Equal(t, 0, r.exitCode, r.out)
	require.Contains(t, r.out, `"fuzzing process terminated by unexpected signal; no crash will be recorded"`)
	require.NoDirExists(t, filepath.Dir(r.lostFile))
}

func TestFuzzScriptPassesWhenFuzzingPasses(t *testing.T) {
	t.Parallel()
	r := runFuzzScript(t, fuzzCase{})
	require.Equal(t, 0, r.exitCode, r.out)
	require.NotContains(t, r.calls, "-count=1", "nothing to run again")
}

func TestFuzzScriptFailsOnAFindingAndKeepsItsInput(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		fuzzCase
	}{
		// A crash that does not reproduce under go test -run is still a finding.
		{"panic, rerun passes", fuzzCase{fuzzOut: fuzzPanic, writes: true, rerunPass: true}},
		{"panic, rerun fails", fuzzCase{fuzzOut: fuzzPanic, writes: true}},
		// A worker died on an input that kills it again under go test -run: a real crash.
		{"lost worker, rerun fails", fuzzCase{fuzzOut: fuzzLostWorker, writes: true}},
		{"while minimizing, rerun fails", fuzzCase{fuzzOut: fuzzLostWhileMinimizing, writes: true}},
		{"message quoted by the target", fuzzCase{fuzzOut: fuzzQuotesTheMessage, writes: true, rerunPass: true}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r := runFuzzScript(t, c.fuzzCase)
			require.NotEqual(t, 0, r.exitCode, "a finding fails make fuzz:\n%s", r.out)
			require.FileExists(t, filepath.Join(r.corpus, fakeFuzzInput), "the failing input stays in testdata:\n%s", r.out)
			require.NoFileExists(t, r.lostFile)
			require.Contains(t, r.out, "failing input kept: "+fakeFuzzPkg+"/testdata/fuzz/"+fakeFuzzTarget+"/"+fakeFuzzInput)
			require.Contains(t, r.out, "-run '^FuzzFake$/^"+fakeFuzzInput+"$' ./"+fakeFuzzPkg, "the command to reproduce it")
			require.NotContains(t, r.out, "LOST A FUZZING WORKER")
		})
	}
}

func TestFuzzScriptFailsOnOtherEngineErrors(t *testing.T) {
	t.Parallel()
	r := runFuzzScript(t, fuzzCase{fuzzOut: fuzzInternalFailure, rerunPass: true})
	require.NotEqual(t, 0, r.exitCode, r.out)
	require.Contains(t, r.out, "the fuzzer saved no input; to reproduce:")
}

// The messages fuzz.sh takes for a lost worker are the fuzzing engine's own, in the Go toolchain this runs with.
func TestFuzzScriptSignaturesAreTheEnginesMessages(t *testing.T) {
	t.Parallel()
	script, err := os.ReadFile(filepath.Join(repoRoot(t), "scripts", "fuzz.sh"))
	require.NoError(t, err)
	block := regexp.MustCompile(`(?s)lost_worker_signatures=\((.*?)\n\)`).FindSubmatch(script)
	require.NotNil(t, block, "the lost_worker_signatures array in fuzz.sh")
	sigs := regexp.MustCompile(`'([^']+)'`).FindAllSubmatch(block[1], -1)
	require.Len(t, sigs, 3)
	worker, err := os.ReadFile(filepath.Join(runtime.GOROOT(), "src", "internal", "fuzz", "worker.go"))
	require.NoError(t, err)
	for _, s := range sigs {
		sig := string(s[1])
		require.True(t, strings.HasSuffix(sig, ": "), "%q ends where the engine adds the error", sig)
		require.Contains(t, string(worker), `"`+sig+`%`, "%q is a message of internal/fuzz/worker.go", sig)
	}
}
