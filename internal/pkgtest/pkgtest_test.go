package pkgtest

import (
	"archive/zip"
	"bytes"
	"debug/elf"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// repoRoot is the module root, two folders up from this package.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	require.NoError(t, err)
	require.FileExists(t, filepath.Join(root, HostJSON))
	return root
}

func goTool() string {
	if p := filepath.Join(runtime.GOROOT(), "bin", "go"); fileExists(p) {
		return p
	}
	return "go"
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// TestPackageScriptBuildsWhatTheHostExpects runs scripts/package.sh (what `make package` runs) into a temporary
// folder and inspects the zip it wrote.
func TestPackageScriptBuildsWhatTheHostExpects(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the linux handler")
	}
	t.Parallel()
	root := repoRoot(t)
	dist := t.TempDir()
	cmd := exec.Command("bash", filepath.Join(root, "scripts", "package.sh"))
	cmd.Env = append(os.Environ(), "DIST_DIR="+dist, "GO="+goTool())
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "package.sh:\n%s", out)

	zipPath := filepath.Join(dist, "fhir-migrator.zip")
	require.NoError(t, Check(zipPath, root))

	host, err := os.ReadFile(filepath.Join(root, HostJSON))
	require.NoError(t, err)
	exe, err := ExecutablePath(host)
	require.NoError(t, err)
	folders, err := FunctionFolders(root)
	require.NoError(t, err)
	require.NotEmpty(t, folders)

	want := []string{HostJSON, exe}
	for _, f := range folders {
		want = append(want, f+"/function.json")
	}
	sort.Strings(want)

	zr, err := zip.OpenReader(zipPath)
	require.NoError(t, err)
	t.Cleanup(func() { _ = zr.Close() })
	var got []string
	for _, f := range zr.File {
		got = append(got, f.Name)
		if f.Name == exe {
			require.Equal(t, fs.FileMode(0o755), f.Mode().Perm(), "exec bit of %s", exe)
		}
	}
	require.Equal(t, want, got)
}

var (
	tinyOnce sync.Once
	tinyBins map[string][]byte
	tinyErr  error
)

// tinyExecutables builds an empty Go program for linux/amd64 and linux/arm64 once, as stand-ins for the handler.
func tinyExecutables(t *testing.T) map[string][]byte {
	t.Helper()
	tinyOnce.Do(func() {
		dir, err := os.MkdirTemp("", "pkgtest-tiny-")
		if err != nil {
			tinyErr = err
			return
		}
		defer os.RemoveAll(dir)
		if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module tiny\n\ngo 1.26\n"), 0o644); err != nil {
			tinyErr = err
			return
		}
		if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\n\nfunc main() {}\n"), 0o644); err != nil {
			tinyErr = err
			return
		}
		tinyBins = map[string][]byte{}
		for _, arch := range []string{"amd64", "arm64"} {
			bin := filepath.Join(dir, "tiny-"+arch)
			cmd := exec.Command(goTool(), "build", "-o", bin, ".")
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch, "GOFLAGS=", "GOWORK=off")
			if out, err := cmd.CombinedOutput(); err != nil {
				tinyErr = fmt.Errorf("build tiny %s: %w\n%s", arch, err, out)
				return
			}
			data, err := os.ReadFile(bin)
			if err != nil {
				tinyErr = err
				return
			}
			tinyBins[arch] = data
		}
	})
	require.NoError(t, tinyErr)
	return tinyBins
}

const fixtureHost = `{"version":"2.0","customHandler":{"description":{"defaultExecutablePath":"bin/handler"}}}`

// fixtureRoot is an app root with host.json and two function folders, plus files that must stay out.
func fixtureRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	write := func(name, data string) {
		p := filepath.Join(root, filepath.FromSlash(name))
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(data), 0o644))
	}
	write(HostJSON, fixtureHost)
	write("StartMigration/function.json", `{"bindings":[{"type":"httpTrigger"}]}`)
	write("RunImport/function.json", `{"bindings":[{"type":"serviceBusTrigger"}]}`)
	write("handler/main.go", "package main\n")
	write("local.settings.json", `{"Values":{}}`)
	return root
}

func TestStageAndWriteZipPassCheck(t *testing.T) {
	t.Parallel()
	bins := tinyExecutables(t)
	root := fixtureRoot(t)
	stage := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(stage, "bin"), 0o755))
	// Written without the exec bit: the zip must carry 0755 whatever the staged mode.
	require.NoError(t, os.WriteFile(filepath.Join(stage, "bin", "handler"), bins["amd64"], 0o644))

	require.NoError(t, Stage(root, stage))
	first := filepath.Join(t.TempDir(), "a.zip")
	second := filepath.Join(t.TempDir(), "b.zip")
	require.NoError(t, WriteZip(stage, first))
	require.NoError(t, WriteZip(stage, second))
	require.NoError(t, Check(first, root))

	a, err := os.ReadFile(first)
	require.NoError(t, err)
	b, err := os.ReadFile(second)
	require.NoError(t, err)
	require.Equal(t, a, b, "the same inputs must give the same zip")
}

func TestStageRefusesAMissingExecutable(t *testing.T) {
	t.Parallel()
	err := Stage(fixtureRoot(t), t.TempDir())
	require.ErrorContains(t, err, "executable named by host.json is missing")
}

type entry struct {
	name string
	mode fs.FileMode
	data []byte
	// msdos writes the entry without Unix attributes, as zippers on Windows do.
	msdos bool
}

func writeZip(t *testing.T, entries []entry) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "app.zip")
	f, err := os.Create(p)
	require.NoError(t, err)
	zw := zip.NewWriter(f)
	for _, e := range entries {
		h := &zip.FileHeader{Name: e.name, Method: zip.Deflate}
		if !e.msdos {
			h.SetMode(e.mode)
		}
		w, err := zw.CreateHeader(h)
		require.NoError(t, err)
		_, err = w.Write(e.data)
		require.NoError(t, err)
	}
	require.NoError(t, zw.Close())
	require.NoError(t, f.Close())
	return p
}

func TestCheckRejects(t *testing.T) {
	t.Parallel()
	bins := tinyExecutables(t)
	root := fixtureRoot(t)
	fn := func(name string) []byte {
		data, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(name)))
		require.NoError(t, err)
		return data
	}
	good := func() []entry {
		return []entry{
			{name: HostJSON, mode: 0o644, data: []byte(fixtureHost)},
			{name: "bin/handler", mode: 0o755, data: bins["amd64"]},
			{name: "RunImport/function.json", mode: 0o644, data: fn("RunImport/function.json")},
			{name: "StartMigration/function.json", mode: 0o644, data: fn("StartMigration/function.json")},
		}
	}
	with := func(change func([]entry) []entry) []entry { return change(good()) }

	dynamic := dynamicELF("/bin/sh") // dynamically linked on Debian
	require.NotEmpty(t, dynamic, "a dynamically linked /bin/sh to stand for a handler built with cgo")

	tests := []struct {
		name    string
		entries []entry
		want    string
	}{
		{name: "the good package passes", entries: good()},
		{name: "directory entries of allowed files pass", entries: with(func(e []entry) []entry {
			return append(e, entry{name: "bin/", mode: fs.ModeDir | 0o755})
		})},
		{name: "exec bit missing", want: "want a regular file with the exec bit", entries: with(func(e []entry) []entry {
			e[1].mode = 0o644
			return e
		})},
		{name: "no Unix attributes", want: "carries no Unix mode", entries: with(func(e []entry) []entry {
			e[1].msdos = true
			return e
		})},
		{name: "host.json missing", want: "host.json is missing", entries: with(func(e []entry) []entry { return e[1:] })},
		{name: "executable missing", want: "names bin/handler, which is not in the package", entries: with(func(e []entry) []entry {
			return append(e[:1], e[2:]...)
		})},
		{name: "function folder missing", want: "function StartMigration: StartMigration/function.json is missing", entries: with(func(e []entry) []entry {
			return e[:3]
		})},
		{name: "function.json differs from the source", want: "differs from the source", entries: with(func(e []entry) []entry {
			e[2].data = []byte(`{"bindings":[]}`)
			return e
		})},
		{name: "local settings included", want: "unexpected entry local.settings.json", entries: with(func(e []entry) []entry {
			return append(e, entry{name: "local.settings.json", mode: 0o644, data: []byte(`{}`)})
		})},
		{name: "Go sources included", want: "unexpected entry handler/main.go", entries: with(func(e []entry) []entry {
			return append(e, entry{name: "handler/main.go", mode: 0o644, data: []byte("package main\n")})
		})},
		{name: "not an ELF", want: "not an ELF executable", entries: with(func(e []entry) []entry {
			e[1].data = []byte("#!/bin/sh\nexit 0\n")
			return e
		})},
		{name: "built for arm64", want: "want ELFCLASS64 EM_X86_64", entries: with(func(e []entry) []entry {
			e[1].data = bins["arm64"]
			return e
		})},
		{name: "dynamically linked", want: "has a program interpreter", entries: with(func(e []entry) []entry {
			e[1].data = dynamic
			return e
		})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Check(writeZip(t, tt.entries), root)
			if tt.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.want)
		})
	}
}

func TestExecutablePath(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, host, want, err string
	}{
		{name: "plain", host: `{"customHandler":{"description":{"defaultExecutablePath":"bin/handler"}}}`, want: "bin/handler"},
		{name: "dot slash", host: `{"customHandler":{"description":{"defaultExecutablePath":"./bin/handler"}}}`, want: "bin/handler"},
		{name: "missing", host: `{"version":"2.0"}`, err: "defaultExecutablePath is empty"},
		{name: "outside the app", host: `{"customHandler":{"description":{"defaultExecutablePath":"../handler"}}}`, err: "must be a path inside the app"},
		{name: "absolute", host: `{"customHandler":{"description":{"defaultExecutablePath":"/usr/bin/handler"}}}`, err: "must be a path inside the app"},
		{name: "not JSON", host: `{`, err: "parse host.json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ExecutablePath([]byte(tt.host))
			if tt.err != "" {
				require.ErrorContains(t, err, tt.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

// dynamicELF returns the file at p when it is an ELF with a program interpreter, else nil.
func dynamicELF(p string) []byte {
	data, err := os.ReadFile(p)
	if err != nil {
		return nil
	}
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return nil
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return data
		}
	}
	return nil
}
