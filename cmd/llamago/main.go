// Command llamago builds the llama.cpp that a llamago version pins, so that a Go module which
// requires github.com/llamago/llamago can build and link it. Run it inside that module, so the
// go command picks the llamago version of its go.mod:
//
//	go get github.com/llamago/llamago@latest
//	go run github.com/llamago/llamago/cmd/llamago install            # CPU, tuned for this machine
//	go run github.com/llamago/llamago/cmd/llamago install -backend cuda
//	go run github.com/llamago/llamago/cmd/llamago install -cpu portable   # binaries for other machines
//
// install fetches the pinned llama.cpp source (offline once cached) and builds its static
// archives with CMake into the user cache ($LLAMAGO_CACHE, else $XDG_CACHE_HOME/llamago or
// ~/.cache/llamago), one build per pin, backend and options; then it links the build into
// $GOMODCACHE/cache/llamago/<pin>/<backend>, where package llama looks for it. status shows
// what is linked there. Building needs git, CMake, a C/C++ compiler and, for the first fetch,
// npm; scripts/fetch-llama.sh and scripts/build-llama.sh of the llamago module do the work.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
)

const usage = `usage:
  llamago install [-backend cpu|cuda|metal|vulkan] [-cpu native|portable] [-cuda-arch ARCHS] [-force]
  llamago status

install builds the llama.cpp that this llamago version pins and links it where
'go build' of a module requiring llamago finds it. Run it in that module:
  go run github.com/llamago/llamago/cmd/llamago install
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "llamago:", err)
		}
		os.Exit(2)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return flag.ErrHelp
	}
	switch args[0] {
	case "install":
		fs := flag.NewFlagSet("install", flag.ContinueOnError)
		fs.SetOutput(stderr)
		var o installOptions
		fs.StringVar(&o.Backend, "backend", "cpu", "llama.cpp backend: cpu, cuda, metal (macOS) or vulkan")
		fs.StringVar(&o.CPU, "cpu", "native", "CPU code: native (tuned for this machine) or portable (x86-64-v3 / armv8.2-a: binaries that run on other machines)")
		fs.StringVar(&o.CUDAArch, "cuda-arch", "", "CMake CUDA architectures, e.g. 90 or \"80;90\" (default: this machine's GPUs)")
		fs.BoolVar(&o.Force, "force", false, "build again even when this build is in the cache")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if fs.NArg() > 0 {
			return fmt.Errorf("install: unexpected arguments %q", fs.Args())
		}
		return install(ctx, o, stdout, stderr)
	case "status":
		return status(stdout)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}
