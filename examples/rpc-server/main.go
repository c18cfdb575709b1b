// Command rpc-server is an RPC worker: it serves this machine's devices (the GPUs, or the
// CPU) to llamago programs (llama.AddRPCServer) and llama.cpp tools (--rpc), which can then
// place model layers on them.
//
// Usage: rpc-server [-host 127.0.0.1] [-port 50052] [-mem 8GiB] [-cache DIR] [-threads N] [-device CUDA0]
//
// It listens on 127.0.0.1 unless told otherwise. The RPC protocol has no authentication or
// encryption: whoever can connect can use the devices and read or write their memory, so
// it warns when bound to another address. It stops on SIGINT or SIGTERM. Build it with
// the rpc tag (and the backend's tag): go build -tags rpc ./examples/rpc-server
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/llamago/llamago/llama"
)

func main() {
	if err := run(os.Args[1:], os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "rpc-server:", err)
		os.Exit(1)
	}
}

func run(args []string, stderr io.Writer) error {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	var log *slog.Logger
	if cfg.verbose {
		log = slog.New(slog.NewTextHandler(stderr, nil))
		llama.SetLogger(log)
	}
	if cfg.list {
		for _, d := range llama.Devices() {
			fmt.Fprintf(stderr, "%-8s %-12s %s, %d MiB free of %d MiB\n", d.Name, d.Type, d.Description, d.FreeMemory>>20, d.TotalMemory>>20)
		}
		return nil
	}
	devs, err := pickDevices(cfg.devices)
	if err != nil {
		return err
	}
	w, err := llama.ListenRPC(&llama.RPCWorkerParams{
		Host: cfg.host, Port: cfg.port, Devices: devs, Threads: cfg.threads,
		CacheDir: cfg.cacheDir, Memory: cfg.memory, Logger: log,
	})
	if err != nil {
		return err
	}
	defer w.Close()
	if !w.Loopback() {
		fmt.Fprintf(stderr, "\n"+
			"!!! WARNING: listening on %s, not a loopback address.\n"+
			"!!! The RPC protocol has no authentication or encryption: anyone who can reach this\n"+
			"!!! port can use these devices and read or write their memory. Expose it only to a\n"+
			"!!! network you trust (or bind 127.0.0.1 and tunnel, e.g. ssh -L).\n\n", w.Addr())
	}
	for _, d := range w.Devices() {
		offered := d.TotalMemory
		if m := w.Memory(); m > 0 {
			offered = min(offered, m)
		}
		fmt.Fprintf(stderr, "rpc-server: serving %s (%s, %s), offering %d MiB\n", d.Name, d.Type, d.Description, offered>>20)
	}
	if cfg.cacheDir != "" {
		fmt.Fprintf(stderr, "rpc-server: tensor cache in %s\n", cfg.cacheDir)
	}
	fmt.Fprintf(stderr, "rpc-server: listening on %s (llama.cpp %s, backend %s)\n", w.Addr(), llama.PinnedRelease, llama.Backend)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := w.Serve(ctx); err != nil && ctx.Err() == nil {
		return err
	}
	fmt.Fprintln(stderr, "rpc-server: stopped")
	return nil
}

// pickDevices resolves -device names (case-insensitive); none means the worker's default.
func pickDevices(names []string) ([]llama.Device, error) {
	if len(names) == 0 {
		return nil, nil
	}
	all := llama.Devices()
	var devs []llama.Device
	for _, n := range names {
		found := false
		for _, d := range all {
			if strings.EqualFold(d.Name, n) {
				devs, found = append(devs, d), true
				break
			}
		}
		if !found {
			var have []string
			for _, d := range all {
				have = append(have, d.Name)
			}
			return nil, fmt.Errorf("-device %s: no such device (have: %s)", n, strings.Join(have, ", "))
		}
	}
	return devs, nil
}
