// Package pkgtest builds and checks the Azure Functions deployment package: the zip the host unpacks on Linux must
// hold the executable named by host.json (static linux/amd64, exec bit set), host.json and every function folder,
// and nothing else.
package pkgtest

import (
	"archive/zip"
	"bytes"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// HostJSON is the name of the host's configuration file at the app root.
const HostJSON = "host.json"

// functionJSON marks a function folder.
const functionJSON = "function.json"

// executableMode is the handler's mode in the zip; the host runs it from a read-only mount, so it cannot chmod it.
const executableMode fs.FileMode = 0o755

// packageTime keeps the zip reproducible: the same inputs give the same bytes.
var packageTime = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)

// ExecutablePath reads customHandler.description.defaultExecutablePath from a host.json document, cleaned to a
// slash-separated path relative to the app root.
func ExecutablePath(hostJSON []byte) (string, error) {
	var host struct {
		CustomHandler struct {
			Description struct {
				DefaultExecutablePath string `json:"defaultExecutablePath"`
			} `json:"description"`
		} `json:"customHandler"`
	}
	if err := json.Unmarshal(hostJSON, &host); err != nil {
		return "", fmt.Errorf("parse %s: %w", HostJSON, err)
	}
	p := strings.TrimSpace(host.CustomHandler.Description.DefaultExecutablePath)
	if p == "" {
		return "", fmt.Errorf("%s: customHandler.description.defaultExecutablePath is empty", HostJSON)
	}
	p = path.Clean(strings.ReplaceAll(p, `\`, "/"))
	if path.IsAbs(p) || p == "." || strings.HasPrefix(p, "../") {
		return "", fmt.Errorf("%s: defaultExecutablePath %q must be a path inside the app", HostJSON, p)
	}
	return p, nil
}

// FunctionFolders lists the folders directly under root that hold a function.json, sorted.
func FunctionFolders(root string) ([]string, error) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("list function folders in %s: %w", root, err)
	}
	var folders []string
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		if _, err := os.Stat(filepath.Join(root, e.Name(), functionJSON)); err == nil {
			folders = append(folders, e.Name())
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("stat %s: %w", filepath.Join(e.Name(), functionJSON), err)
		}
	}
	return folders, nil
}

// Stage copies host.json and every function folder's function.json from root into stage, where the executable
// must already have been built.
func Stage(root, stage string) error {
	host, err := os.ReadFile(filepath.Join(root, HostJSON))
	if err != nil {
		return fmt.Errorf("read %s: %w", HostJSON, err)
	}
	exe, err := ExecutablePath(host)
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(stage, filepath.FromSlash(exe))); err != nil {
		return fmt.Errorf("stage %s: the executable named by %s is missing: %w", stage, HostJSON, err)
	}
	if err := os.WriteFile(filepath.Join(stage, HostJSON), host, 0o644); err != nil {
		return fmt.Errorf("stage %s: %w", HostJSON, err)
	}
	folders, err := FunctionFolders(root)
	if err != nil {
		return err
	}
	if len(folders) == 0 {
		return fmt.Errorf("stage: no function folder (*/%s) in %s", functionJSON, root)
	}
	for _, f := range folders {
		data, err := os.ReadFile(filepath.Join(root, f, functionJSON))
		if err != nil {
			return fmt.Errorf("stage function %s: %w", f, err)
		}
		if err := os.MkdirAll(filepath.Join(stage, f), 0o755); err != nil {
			return fmt.Errorf("stage function %s: %w", f, err)
		}
		if err := os.WriteFile(filepath.Join(stage, f, functionJSON), data, 0o644); err != nil {
			return fmt.Errorf("stage function %s: %w", f, err)
		}
	}
	return nil
}

// WriteZip writes every regular file under stage into zipPath, sorted, with Unix modes: 0755 for the executable
// named by the staged host.json, 0644 for the rest.
func WriteZip(stage, zipPath string) (err error) {
	host, err := os.ReadFile(filepath.Join(stage, HostJSON))
	if err != nil {
		return fmt.Errorf("zip %s: %w", stage, err)
	}
	exe, err := ExecutablePath(host)
	if err != nil {
		return err
	}
	var names []string
	err = filepath.WalkDir(stage, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			rel, err := filepath.Rel(stage, p)
			if err != nil {
				return err
			}
			names = append(names, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("zip %s: %w", stage, err)
	}
	sort.Strings(names)

	if err := os.MkdirAll(filepath.Dir(zipPath), 0o755); err != nil {
		return fmt.Errorf("zip %s: %w", zipPath, err)
	}
	out, err := os.Create(zipPath)
	if err != nil {
		return fmt.Errorf("zip %s: %w", zipPath, err)
	}
	defer func() {
		if cerr := out.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("zip %s: %w", zipPath, cerr)
		}
	}()
	zw := zip.NewWriter(out)
	for _, name := range names {
		mode := fs.FileMode(0o644)
		if name == exe {
			mode = executableMode
		}
		if err := addFile(zw, filepath.Join(stage, filepath.FromSlash(name)), name, mode); err != nil {
			return fmt.Errorf("zip %s: %w", zipPath, err)
		}
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("zip %s: %w", zipPath, err)
	}
	return nil
}

func addFile(zw *zip.Writer, src, name string, mode fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	h := &zip.FileHeader{Name: name, Method: zip.Deflate, Modified: packageTime}
	h.SetMode(mode) // also marks the entry as made on Unix, which is what makes unzip honour the mode
	w, err := zw.CreateHeader(h)
	if err != nil {
		return fmt.Errorf("add %s: %w", name, err)
	}
	if _, err := io.Copy(w, in); err != nil {
		return fmt.Errorf("add %s: %w", name, err)
	}
	return nil
}

// creatorUnix is the "version made by" host of a zip entry whose external attributes carry Unix modes.
const creatorUnix = 3

// Check opens the package at zipPath and returns every way it differs from what the host expects for the app
// whose sources are in root: the executable named by host.json (static linux/amd64 ELF with its exec bit),
// host.json, each function folder's function.json as in root, and nothing else.
func Check(zipPath, root string) error {
	zr, err := zip.OpenReader(zipPath)
	if err != nil {
		return fmt.Errorf("open package %s: %w", zipPath, err)
	}
	defer zr.Close()

	var problems []error
	bad := func(format string, args ...any) { problems = append(problems, fmt.Errorf(format, args...)) }

	entries := map[string]*zip.File{}
	for _, f := range zr.File {
		if _, dup := entries[f.Name]; dup {
			bad("%s appears twice", f.Name)
		}
		entries[f.Name] = f
	}

	allowed := map[string]bool{HostJSON: true}
	hostFile, ok := entries[HostJSON]
	if !ok {
		bad("%s is missing at the root of the package", HostJSON)
		return errors.Join(problems...)
	}
	host, err := readEntry(hostFile)
	if err != nil {
		return fmt.Errorf("read %s from package: %w", HostJSON, err)
	}
	exe, err := ExecutablePath(host)
	if err != nil {
		return err
	}
	allowed[exe] = true
	if f, ok := entries[exe]; !ok {
		bad("%s names %s, which is not in the package", HostJSON, exe)
	} else {
		problems = append(problems, checkExecutable(f)...)
	}

	folders, err := FunctionFolders(root)
	if err != nil {
		return err
	}
	for _, folder := range folders {
		name := folder + "/" + functionJSON
		allowed[name] = true
		f, ok := entries[name]
		if !ok {
			bad("function %s: %s is missing", folder, name)
			continue
		}
		got, err := readEntry(f)
		if err != nil {
			bad("function %s: %v", folder, err)
			continue
		}
		want, err := os.ReadFile(filepath.Join(root, folder, functionJSON))
		if err != nil {
			return fmt.Errorf("read %s: %w", name, err)
		}
		if !bytes.Equal(got, want) {
			bad("function %s: %s differs from the source", folder, name)
		}
	}

	for _, f := range zr.File {
		if allowed[f.Name] {
			continue
		}
		if strings.HasSuffix(f.Name, "/") && parentOfAllowed(f.Name, allowed) {
			continue
		}
		bad("unexpected entry %s (the package holds only %s, the executable and function folders)", f.Name, HostJSON)
	}
	return errors.Join(problems...)
}

func parentOfAllowed(dir string, allowed map[string]bool) bool {
	for name := range allowed {
		if strings.HasPrefix(name, dir) {
			return true
		}
	}
	return false
}

func checkExecutable(f *zip.File) []error {
	var problems []error
	bad := func(format string, args ...any) { problems = append(problems, fmt.Errorf(format, args...)) }
	if f.CreatorVersion>>8 != creatorUnix {
		bad("%s: entry carries no Unix mode (made on host %d), so the exec bit is lost on unpacking", f.Name, f.CreatorVersion>>8)
	}
	if mode := f.Mode(); !mode.IsRegular() || mode.Perm()&0o111 != 0o111 {
		bad("%s: mode %v, want a regular file with the exec bit (0755)", f.Name, mode)
	}
	data, err := readEntry(f)
	if err != nil {
		return append(problems, err)
	}
	bin, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return append(problems, fmt.Errorf("%s: not an ELF executable: %w", f.Name, err))
	}
	defer bin.Close()
	if bin.Class != elf.ELFCLASS64 || bin.Machine != elf.EM_X86_64 {
		bad("%s: built for %v %v, want ELFCLASS64 EM_X86_64 (GOARCH=amd64)", f.Name, bin.Class, bin.Machine)
	}
	if bin.OSABI != elf.ELFOSABI_NONE && bin.OSABI != elf.ELFOSABI_LINUX {
		bad("%s: OS ABI %v, want Linux (GOOS=linux)", f.Name, bin.OSABI)
	}
	if bin.Type != elf.ET_EXEC && bin.Type != elf.ET_DYN {
		bad("%s: ELF type %v is not an executable", f.Name, bin.Type)
	}
	for _, p := range bin.Progs {
		switch p.Type {
		case elf.PT_INTERP:
			bad("%s: has a program interpreter (dynamically linked); build with CGO_ENABLED=0", f.Name)
		case elf.PT_DYNAMIC:
			bad("%s: has a dynamic section; build with CGO_ENABLED=0", f.Name)
		}
	}
	return problems
}

func readEntry(f *zip.File) ([]byte, error) {
	rc, err := f.Open()
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", f.Name, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", f.Name, err)
	}
	return data, nil
}
