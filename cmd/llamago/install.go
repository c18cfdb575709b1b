package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"

	"github.com/llamago/llamago/internal/llamacpp"
)

// backendMarker is written by scripts/build-llama.sh once a backend's archives are complete;
// llama/cgo_<backend>.go looks for it, and for the build layout it names (llama/native.h).
const backendMarker = "llamago-backend.h"

// buildLayout is the LLAMAGO_BUILD_LAYOUT of complete builds for this llamago (2: with libmtmd).
const buildLayout = 2

// complete reports whether dir holds a backend build of this llamago's layout.
func complete(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, backendMarker))
	return err == nil && strings.Contains(string(b), fmt.Sprintf("#define LLAMAGO_BUILD_LAYOUT %d ", buildLayout))
}

type installOptions struct {
	Backend  string // cpu, cuda, metal, vulkan
	CPU      string // native or portable
	CUDAArch string // CMake CUDA architectures; "" = the GPUs of this machine
	Force    bool
}

var cudaArch = regexp.MustCompile(`^[0-9a-z;-]+$`)

func (o installOptions) validate() error {
	switch o.Backend {
	case "cpu", "cuda", "vulkan":
	case "metal":
		if runtime.GOOS != "darwin" {
			return errors.New("-backend metal builds only on macOS")
		}
	default:
		return fmt.Errorf("-backend %q: want cpu, cuda, metal or vulkan", o.Backend)
	}
	if o.CPU != "native" && o.CPU != "portable" {
		return fmt.Errorf("-cpu %q: want native or portable", o.CPU)
	}
	if o.CUDAArch != "" && (o.Backend != "cuda" || !cudaArch.MatchString(o.CUDAArch)) {
		return fmt.Errorf("-cuda-arch %q: CMake CUDA architectures (e.g. 90 or \"80;90\") with -backend cuda", o.CUDAArch)
	}
	if runtime.GOOS == "windows" {
		return errors.New("building llama.cpp for llamago needs bash and is not supported on Windows")
	}
	return nil
}

// variant names one build of a pin in the user cache: the backend and every option that
// changes the archives.
func (o installOptions) variant() string {
	v := o.Backend + "-" + o.CPU
	if o.CUDAArch != "" {
		v += "-sm" + strings.ReplaceAll(o.CUDAArch, ";", "_")
	}
	return v
}

// install builds the pinned llama.cpp for o into the user cache (unless that build is there)
// and links it where package llama's cgo flags look in a module cache.
func install(ctx context.Context, o installOptions, stdout, stderr io.Writer) error {
	if err := o.validate(); err != nil {
		return err
	}
	mod, pin, link, err := locate()
	if err != nil {
		return err
	}
	cache, err := userCache()
	if err != nil {
		return err
	}
	build := filepath.Join(cache, "lib", pin.Key(), o.variant())
	// buildLlama runs scripts/build-llama.sh with args on the pinned source, fetched first.
	buildLlama := func(args ...string) error {
		src := filepath.Join(cache, "src", pin.Key())
		// The build is named after the pin, so it comes from the pinned source only: a user's
		// LLAMA_CPP_DIR checkout is not used (LLAMA_CPP_ARCHIVE, verified against the pin, is).
		env := append(slices.DeleteFunc(os.Environ(), func(kv string) bool {
			return strings.HasPrefix(kv, "LLAMA_CPP_DIR=")
		}), "LLAMAGO_CACHE="+cache)
		if err := script(ctx, stderr, mod, "fetch-llama.sh", nil, append(env, "LLAMA_CPP_DEST="+src)); err != nil {
			return err
		}
		env = append(env, "LLAMA_CPP_DIR="+src, "LLAMAGO_BUILD_DIR="+build, "LLAMAGO_CPU="+o.CPU,
			"LLAMA_TOOLS=", "CMAKE_EXTRA_ARGS=")
		if o.CUDAArch != "" {
			env = append(env, "CUDA_ARCHITECTURES="+o.CUDAArch)
		}
		return script(ctx, stderr, mod, "build-llama.sh", args, env)
	}
	if !complete(filepath.Join(build, o.Backend)) || o.Force {
		if err := buildLlama(o.Backend); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(stderr, "llamago: %s is already built in %s (-force builds it again)\n", o.variant(), build)
		// The file naming llama.cpp's internal headers (llama/device_rows.cpp checks it) is
		// written again, in seconds: builds from before it, or from an older llamago, lack it.
		if err := buildLlama("internal-tree"); err != nil {
			return err
		}
	}

	previous, _ := os.Readlink(filepath.Join(link, o.Backend))
	for _, name := range []string{"include", o.Backend} {
		if err := symlink(filepath.Join(build, name), filepath.Join(link, name)); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "llamago: llama.cpp %s (%s) installed for the %s backend, %s CPU code\n", pin.Release, pin.Tree[:8], o.Backend, o.CPU)
	fmt.Fprintf(stdout, "  build: %s\n  linked: %s\n", build, filepath.Join(link, o.Backend))
	tags := ""
	if o.Backend != "cpu" {
		tags = " -tags " + o.Backend
	}
	fmt.Fprintf(stdout, "now: go build%s ./...\n", tags)
	if previous != "" && previous != filepath.Join(build, o.Backend) {
		// Go's build cache does not track C libraries: binaries built against the other
		// build would otherwise be reused as they are.
		fmt.Fprintf(stdout, "this replaces %s: run 'go clean -cache' once so that Go relinks against the new build\n", previous)
	}
	return nil
}

// status prints which builds are linked for this llamago version.
func status(stdout io.Writer) error {
	_, pin, link, err := locate()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "llamago pins llama.cpp %s (tree %s); builds linked in %s:\n", pin.Release, pin.Tree[:8], link)
	n := 0
	for _, backend := range []string{"cpu", "cuda", "metal", "vulkan"} {
		target, err := os.Readlink(filepath.Join(link, backend))
		if err != nil {
			continue
		}
		state := "complete"
		if !complete(target) {
			state = "missing, incomplete or from an older llamago: install it again"
		}
		fmt.Fprintf(stdout, "  %-7s %s (%s)\n", backend, target, state)
		n++
	}
	if n == 0 {
		fmt.Fprintln(stdout, "  none: run go run github.com/llamago/llamago/cmd/llamago install")
	}
	return nil
}

// locate finds this llamago module's files, the pin they name and where its builds are linked.
func locate() (mod string, pin llamacpp.Pin, link string, err error) {
	if mod, err = moduleDir(); err != nil {
		return
	}
	if pin, err = llamacpp.ReadPin(mod); err != nil {
		return
	}
	link, err = linkDir(pin)
	return
}

// script runs one of the module's build scripts, its output on w.
func script(ctx context.Context, w io.Writer, mod, name string, args, env []string) error {
	cmd := exec.CommandContext(ctx, "bash", append([]string{filepath.Join(mod, "scripts", name)}, args...)...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("scripts/%s: %w", name, err)
	}
	return nil
}

// moduleDir is the root of the llamago module this command was built from: its source files
// sit there (the module cache, or a checkout), unless -trimpath hid the path, when the go
// command says where the module is.
func moduleDir() (string, error) {
	has := func(dir string) bool {
		_, err := os.Stat(filepath.Join(dir, filepath.FromSlash(llamacpp.LockFile)))
		return err == nil
	}
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		if dir := filepath.Join(filepath.Dir(file), "..", ".."); has(dir) {
			return filepath.Clean(dir), nil
		}
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok || bi.Main.Version == "" || bi.Main.Version == "(devel)" {
		return "", errors.New("cannot find the llamago module's files: run this command with 'go run github.com/llamago/llamago/cmd/llamago'")
	}
	out, err := goCommand("mod", "download", "-json", bi.Main.Path+"@"+bi.Main.Version)
	if err != nil {
		return "", err
	}
	var m struct{ Dir string }
	if err := json.Unmarshal(out, &m); err != nil || !has(m.Dir) {
		return "", fmt.Errorf("go mod download %s@%s: no llamago module files (%v)", bi.Main.Path, bi.Main.Version, err)
	}
	return m.Dir, nil
}

// userCache is where builds (and the fetched source) live: $LLAMAGO_CACHE, else llamago
// under $XDG_CACHE_HOME or ~/.cache, as scripts/fetch-llama.sh has it.
func userCache() (string, error) {
	if d := os.Getenv("LLAMAGO_CACHE"); d != "" {
		return filepath.Abs(d)
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "llamago"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(home, ".cache", "llamago"), nil
}

// linkDir is $GOMODCACHE/cache/llamago/<pin>: package llama, in the module cache at
// $GOMODCACHE/github.com/llamago/llamago@<version>/llama, reaches it as
// ${SRCDIR}/../../../../cache/llamago/<pin> (llama/native.h).
func linkDir(pin llamacpp.Pin) (string, error) {
	out, err := goCommand("env", "GOMODCACHE")
	if err != nil {
		return "", err
	}
	modcache := strings.TrimSpace(string(out))
	if modcache == "" {
		return "", errors.New("go env GOMODCACHE is empty")
	}
	return filepath.Join(modcache, "cache", "llamago", pin.Key()), nil
}

func goCommand(args ...string) ([]byte, error) {
	var stderr bytes.Buffer
	cmd := exec.Command("go", args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// symlink points link at target, replacing what link was in one rename.
func symlink(target, link string) error {
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		return err
	}
	tmp := link + ".tmp"
	os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return err
	}
	if fi, err := os.Lstat(link); err == nil && fi.Mode()&os.ModeSymlink == 0 && fi.IsDir() {
		if err := os.RemoveAll(link); err != nil {
			return err
		}
	}
	return os.Rename(tmp, link)
}
