package main

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/llamago/llamago/internal/llamacpp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/mod/module"
	modzip "golang.org/x/mod/zip"
)

const modulePath = "github.com/llamago/llamago"

// The README's "Use llamago in your own module" section, followed literally by a new user:
// this checkout is packed as a module zip and served from a file:// GOPROXY (so it lands
// read-only in a fresh module cache, as from proxy.golang.org), the section's program is
// saved as main.go next to the demo model saved as model.gguf, and every line of its shell
// block runs in order. The program must print the demo model's greedy continuation. Go
// modules come from this machine's module cache and llama.cpp's source from the llamago
// cache, so the test runs offline once `make` has run; the install's build stays in the
// user cache, so only the first run builds llama.cpp.
func TestDownstreamModuleFollowsREADME(t *testing.T) {
	root := checkoutRoot(t)
	program, commands := readmeSection(t, filepath.Join(root, "README.md"))
	tmp := t.TempDir()
	proxy, modcache, work := filepath.Join(tmp, "proxy"), filepath.Join(tmp, "modcache"), filepath.Join(tmp, "hello")

	zipped := packModule(t, root, proxy, "v0.1.0")
	t.Logf("module zip of this checkout: %d bytes", zipped)
	assert.Less(t, zipped, int64(8<<20), "the module zip must not carry the demo model")

	env := append(os.Environ(),
		"GOMODCACHE="+modcache,
		"GOPROXY=file://"+filepath.ToSlash(proxy)+",file://"+filepath.ToSlash(filepath.Join(goEnv(t, "GOMODCACHE"), "cache", "download")),
		"GOSUMDB=off", "GOFLAGS=", "GOWORK=off", "GOTOOLCHAIN=local")
	t.Cleanup(func() { // the module cache is read-only: only the go command removes it
		cmd := exec.Command("go", "clean", "-modcache")
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("go clean -modcache: %v: %s", err, out)
		}
	})
	require.NoError(t, os.MkdirAll(work, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(work, "main.go"), []byte(program), 0o644))
	require.NoError(t, os.Symlink(filepath.Join(root, "models", "kjv-demo.gguf"), filepath.Join(work, "model.gguf")))

	var last string
	for _, line := range commands {
		t.Logf("$ %s", line)
		start := time.Now()
		cmd := exec.CommandContext(t.Context(), "bash", "-c", line)
		cmd.Dir, cmd.Env = work, env
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s\n%s", line, out)
		t.Logf("(%v) %s", time.Since(start).Round(time.Second), tail(out, 1500))
		last = string(out)
		const install = "go run github.com/llamago/llamago/cmd/llamago install"
		switch {
		case strings.HasPrefix(line, "go get "):
			// Before the install, the build fails with the command to run, not a missing header.
			assertBuildFails(t, work, env, nil, install+" (")
			assertBuildFails(t, work, env, []string{"-tags", "cuda"}, install+" -backend cuda")
		case strings.HasPrefix(line, install):
			// The CPU build is not a CUDA one.
			assertBuildFails(t, work, env, []string{"-tags", "cuda"}, install+" -backend cuda")
		}
	}
	assert.Contains(t, last, "The LORD is my shepherd; I shall not want.", "the program's output")

	status := exec.CommandContext(t.Context(), "go", "run", modulePath+"/cmd/llamago", "status")
	status.Dir, status.Env = work, env
	out, err := status.CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Regexp(t, `(?m)^  cpu +\S+/cpu-native/cpu \(complete\)$`, string(out))

	// The module landed read-only and the build came from the install's link, not the checkout.
	dir := filepath.Join(modcache, modulePath+"@v0.1.0")
	fi, err := os.Stat(filepath.Join(dir, "llama", "cgo.go"))
	require.NoError(t, err)
	assert.Zero(t, fi.Mode().Perm()&0o222, "module files are read-only")
	_, err = os.Stat(filepath.Join(dir, "models"))
	assert.ErrorIs(t, err, fs.ErrNotExist, "the nested models module is not part of the module")
	_, err = os.Stat(filepath.Join(modcache, "cache", "llamago", pinKey(t, root), "cpu", "llamago-backend.h"))
	assert.NoError(t, err, "install links the cpu build into the module cache")
}

func assertBuildFails(t *testing.T, dir string, env, flags []string, hint string) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), "go", append(append([]string{"build"}, flags...), "-o", os.DevNull, ".")...)
	cmd.Dir, cmd.Env = dir, env
	out, err := cmd.CombinedOutput()
	require.Error(t, err, "go build %v before the install", flags)
	assert.Contains(t, string(out), hint, "go build %v before the install", flags)
	assert.NotContains(t, string(out), "No such file or directory", "go build %v before the install", flags)
}

// checkoutRoot is the repository this test file is in; the test packs its git files.
func checkoutRoot(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
	if _, err := os.Stat(filepath.Join(root, ".git")); err != nil {
		t.Skipf("%s is not a git checkout (a module copy): nothing to pack", root)
	}
	return root
}

// readmeSection returns the Go program and the shell lines of the README's section
// "Use llamago in your own module": its first go and sh code blocks.
func readmeSection(t *testing.T, path string) (program string, commands []string) {
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	_, section, ok := strings.Cut(string(data), "\n## Use llamago in your own module\n")
	require.True(t, ok, "README.md has no section 'Use llamago in your own module'")
	section, _, _ = strings.Cut(section, "\n## ")
	block := func(lang string) string {
		_, rest, ok := strings.Cut(section, "\n```"+lang+"\n")
		require.True(t, ok, "no %s block in the README section", lang)
		body, _, ok := strings.Cut(rest, "\n```")
		require.True(t, ok, "unterminated %s block", lang)
		return body + "\n"
	}
	for line := range strings.Lines(block("sh")) {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			commands = append(commands, line)
		}
	}
	require.NotEmpty(t, commands)
	return block("go"), commands
}

// packModule writes the files git knows of in root (tracked, or untracked and not ignored, as
// they are on disk) as version v of the module into a GOPROXY directory, and returns the
// zip's size. modzip.Create leaves out what a real module zip leaves out (nested modules).
func packModule(t *testing.T, root, proxy, v string) int64 {
	out, err := exec.Command("git", "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	require.NoError(t, err)
	var files []modzip.File
	for name := range strings.SplitSeq(strings.TrimRight(string(out), "\x00"), "\x00") {
		if _, err := os.Lstat(filepath.Join(root, name)); err == nil { // deleted but not staged: gone
			files = append(files, diskFile{root, name})
		}
	}
	dir := filepath.Join(proxy, modulePath, "@v")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	var buf bytes.Buffer
	require.NoError(t, modzip.Create(&buf, module.Version{Path: modulePath, Version: v}, files))
	mod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	require.NoError(t, err)
	info, err := json.Marshal(map[string]any{"Version": v, "Time": time.Now().UTC()})
	require.NoError(t, err)
	for name, data := range map[string][]byte{"list": []byte(v + "\n"), v + ".info": info, v + ".mod": mod, v + ".zip": buf.Bytes()} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), data, 0o644))
	}
	zr, err := zip.NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	require.NoError(t, err)
	for _, f := range zr.File {
		require.NotContains(t, f.Name, "/models/", "nested module files in the zip")
	}
	return int64(buf.Len())
}

type diskFile struct{ root, name string }

func (f diskFile) Path() string                 { return f.name }
func (f diskFile) Lstat() (os.FileInfo, error)  { return os.Lstat(filepath.Join(f.root, f.name)) }
func (f diskFile) Open() (io.ReadCloser, error) { return os.Open(filepath.Join(f.root, f.name)) }

func goEnv(t *testing.T, name string) string {
	out, err := goCommand("env", name)
	require.NoError(t, err)
	return strings.TrimSpace(string(out))
}

func pinKey(t *testing.T, root string) string {
	p, err := llamacpp.ReadPin(root)
	require.NoError(t, err)
	return p.Key()
}

// Package llama's cgo flags name the install path of the pin in third_party/llama.cpp.lock
// (a pin bump must change them too), for the headers and for every backend.
func TestCgoFlagsNameThePin(t *testing.T) {
	root := checkoutRoot(t)
	want := "${SRCDIR}/../../../../cache/llamago/" + pinKey(t, root) + "/"
	files, err := filepath.Glob(filepath.Join(root, "llama", "cgo*.go"))
	require.NoError(t, err)
	seen := map[string]bool{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		require.NoError(t, err)
		for line := range strings.Lines(string(data)) {
			if !strings.HasPrefix(line, "#cgo ") || !strings.Contains(line, "cache/llamago/") {
				continue
			}
			for field := range strings.FieldsSeq(line) {
				if _, path, ok := strings.Cut(field, "cache/llamago/"); ok {
					assert.True(t, strings.Contains(field, want), "%s: %s does not name %s", filepath.Base(f), field, want)
					seen[strings.SplitN(path, "/", 3)[1]] = true
				}
			}
		}
	}
	for _, dir := range []string{"include", "cpu", "cuda", "metal", "vulkan"} {
		assert.True(t, seen[dir], "no cgo flag names the install's %s directory", dir)
	}
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
