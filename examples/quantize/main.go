// Command quantize writes a quantized copy of a GGUF model, like llama-quantize:
//
//	quantize [flags] model-f16.gguf model-q4_k_m.gguf Q4_K_M
//	quantize -list
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/llamago/llamago/llama"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "quantize:", err)
		os.Exit(1)
	}
}

func run() error {
	var p llama.QuantizeParams
	flag.IntVar(&p.Threads, "t", 0, "threads (0: all cores)")
	flag.BoolVar(&p.AllowRequantize, "allow-requantize", false, "requantize tensors that are already quantized")
	flag.BoolVar(&p.LeaveOutputTensor, "leave-output-tensor", false, "keep output.weight unquantized")
	flag.BoolVar(&p.Pure, "pure", false, "every tensor in the chosen type, without llama.cpp's mix")
	flag.StringVar(&p.OutputTensorType, "output-tensor-type", "", "type of output.weight (e.g. q8_0)")
	flag.StringVar(&p.TokenEmbeddingType, "token-embedding-type", "", "type of token_embd.weight (e.g. q8_0)")
	flag.StringVar(&p.IMatrix, "imatrix", "", "importance matrix from llama-imatrix (GGUF or .dat)")
	list := flag.Bool("list", false, "list the quantization types and tensor types")
	verbose := flag.Bool("v", false, "show llama.cpp's per-tensor log")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: quantize [flags] INPUT.gguf OUTPUT.gguf TYPE\n       quantize -list")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *list {
		fmt.Println("types:       ", strings.Join(llama.QuantizeTypes(), " "))
		fmt.Println("tensor types:", strings.Join(llama.QuantizeTensorTypes(), " "))
		return nil
	}
	if flag.NArg() != 3 {
		flag.Usage()
		return fmt.Errorf("want INPUT OUTPUT TYPE, got %d arguments", flag.NArg())
	}
	in, out := flag.Arg(0), flag.Arg(1)
	p.Type = strings.ToUpper(flag.Arg(2))
	if *verbose {
		llama.SetLogger(slog.New(slog.NewTextHandler(os.Stderr, nil)))
	}
	start := time.Now()
	// llama.cpp's quantizer cannot be interrupted once it runs (no abort callback).
	if err := llama.Quantize(context.Background(), in, out, &p); err != nil {
		return err
	}
	before, after := size(in), size(out)
	fmt.Fprintf(os.Stderr, "quantized %s -> %s (%s): %s -> %s in %.1f s\n", in, out, p.Type,
		before, after, time.Since(start).Seconds())
	return nil
}

func size(path string) string {
	st, err := os.Stat(path)
	if err != nil {
		return "?"
	}
	return strconv.FormatFloat(float64(st.Size())/(1<<20), 'f', 2, 64) + " MiB"
}
