package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/llamago/llamago/examples/internal/modelfile"
	"github.com/llamago/llamago/internal/synth"
	"github.com/llamago/llamago/llama"
	"github.com/llamago/llamago/llama/gguf"
)

// The model benchmarked when -m is not given.
const (
	defaultShape = "qwen2-0.5b"
	defaultType  = "q8_0"
)

// synthModel returns the path of a cached synthetic model (random weights, a real
// vocabulary), writing it first when missing. F16 and Q8_0 are written directly;
// other llama.cpp types (e.g. q4_k_m) are quantized from the F16 model.
func synthModel(ctx context.Context, shape, typ string, stderr io.Writer) (string, error) {
	switch strings.ToLower(typ) {
	case "f16":
		return modelfile.Resolve("", shape, gguf.TypeF16)
	case "q8_0":
		return modelfile.Resolve("", shape, gguf.TypeQ8_0)
	}
	var qtype string
	for _, q := range llama.QuantizeTypes() {
		if strings.EqualFold(q, typ) {
			qtype = q
		}
	}
	if qtype == "" {
		return "", fmt.Errorf("unknown model type %q (f16, q8_0 or one of %s)", typ, strings.Join(llama.QuantizeTypes(), ", "))
	}
	dir, err := modelfile.CacheDir()
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, fmt.Sprintf("synthetic-%s-%s.gguf", shape, strings.ToLower(qtype)))
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	src, err := modelfile.Resolve("", shape, gguf.TypeF16)
	if err != nil {
		return "", err
	}
	fmt.Fprintf(stderr, "quantizing %s to %s\n", src, out)
	tmp := out + ".tmp"
	if err := llama.Quantize(ctx, src, tmp, &llama.QuantizeParams{Type: qtype}); err != nil {
		os.Remove(tmp)
		return "", err
	}
	return out, os.Rename(tmp, out)
}

// runSynth is "bench synth": print the path of a synthetic model, for scripts that
// give the same file to llama-bench.
func runSynth(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench synth", flag.ContinueOnError)
	fs.SetOutput(stderr)
	names := make([]string, 0)
	for _, s := range synth.Shapes() {
		names = append(names, s.Name)
	}
	shape := fs.String("shape", defaultShape, "model shape: "+strings.Join(names, ", "))
	typ := fs.String("type", defaultType, "weight type: f16, q8_0, or a llama.cpp quantization such as q4_k_m")
	if err := fs.Parse(args); err != nil {
		return err
	}
	path, err := synthModel(ctx, *shape, *typ, stderr)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, path)
	return nil
}
