package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// config is the command line.
type config struct {
	host     string
	port     int
	memory   uint64 // bytes per device, 0 = all
	cacheDir string
	threads  int
	devices  []string // device names; nil = the GPUs, or the CPU
	list     bool
	verbose  bool
}

func parseFlags(args []string, output io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("rpc-server", flag.ContinueOnError)
	fs.SetOutput(output)
	fs.Usage = func() {
		fmt.Fprintf(output, "Usage: rpc-server [flags]\n\n"+
			"Serves this machine's devices to llamago (llama.AddRPCServer) and llama.cpp (--rpc) clients.\n"+
			"The RPC protocol has no authentication: bind to a network address only on a network you trust.\n\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&c.host, "host", "127.0.0.1", "address to listen on (another address than loopback exposes the devices to the network)")
	fs.IntVar(&c.port, "port", 50052, "port to listen on (0: any free port; the banner on stderr names it)")
	mem := fs.String("mem", "", "memory offered per device, e.g. 4GiB, 512MiB, or a number of MiB (default: all of it)")
	fs.StringVar(&c.cacheDir, "cache", "", "directory that caches large tensors clients upload, so loading a model again sends only hashes (default: no cache)")
	fs.IntVar(&c.threads, "threads", 0, "threads of the CPU device (0: physical cores)")
	dev := fs.String("device", "", "comma-separated devices to serve, e.g. CPU or CUDA0,CUDA1 (default: the GPUs, or the CPU)")
	fs.BoolVar(&c.list, "list-devices", false, "list the devices and exit")
	fs.BoolVar(&c.verbose, "v", false, "show llama.cpp's log and every client connection")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if c.port < 0 || c.port > 65535 {
		return c, fmt.Errorf("-port %d: want 0..65535", c.port)
	}
	if c.threads < 0 {
		return c, fmt.Errorf("-threads %d: want >= 0", c.threads)
	}
	if *mem != "" {
		n, err := parseSize(*mem)
		if err != nil {
			return c, fmt.Errorf("-mem: %w", err)
		}
		c.memory = n
	}
	for d := range strings.SplitSeq(*dev, ",") {
		if d = strings.TrimSpace(d); d != "" {
			c.devices = append(c.devices, d)
		}
	}
	return c, nil
}

// parseSize parses "4GiB", "512MiB", "1.5G", "2048" (MiB) into bytes.
func parseSize(s string) (uint64, error) {
	units := []struct {
		suffix string
		mul    float64
	}{
		{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10},
		{"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3},
		{"T", 1 << 40}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {"B", 1},
	}
	num, mul := strings.TrimSpace(s), float64(1<<20)
	for _, u := range units {
		if strings.HasSuffix(strings.ToUpper(num), strings.ToUpper(u.suffix)) {
			num, mul = strings.TrimSpace(num[:len(num)-len(u.suffix)]), u.mul
			break
		}
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v <= 0 || v*mul >= 1<<64 {
		return 0, errors.New("want a positive size such as 4GiB, 512MiB or 2048 (MiB), got " + strconv.Quote(s))
	}
	return uint64(v * mul), nil
}
