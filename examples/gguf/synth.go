package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/llamago/llamago/internal/llamacpp"
	"github.com/llamago/llamago/internal/synth"
	"github.com/llamago/llamago/llama/gguf"
)

func synthCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("synth", flag.ContinueOnError)
	fs.SetOutput(stderr)
	shape := fs.String("shape", "", "model shape (see -list)")
	vocab := fs.String("vocab", "", "vocab GGUF to copy the tokenizer from (default: the shape's vocab in -models)")
	models := fs.String("models", "", "llama.cpp models directory (default: $LLAMA_CPP_DIR/models or third_party/llama.cpp/models of this repository)")
	typ := fs.String("type", "f16", "type of 2-D weights: f32, f16, bf16 or q8_0")
	seed := fs.Uint64("seed", 1, "random seed (same seed, same bytes)")
	out := fs.String("o", "", "output file (- for standard output)")
	list := fs.Bool("list", false, "list the shapes and exit")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: gguf synth -shape NAME -o FILE [-vocab PATH] [-type f16] [-seed 1]\n       gguf synth -list")
		fs.PrintDefaults()
	}
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		fs.Usage()
		return fmt.Errorf("synth takes no arguments, got %q", pos)
	}
	if *list {
		listShapes(stdout)
		return nil
	}
	if *shape == "" || *out == "" {
		fs.Usage()
		return errors.New("synth needs -shape and -o")
	}
	s, err := synth.ShapeByName(*shape)
	if err != nil {
		return err
	}
	t, err := gguf.ParseTensorType(*typ)
	if err != nil {
		return err
	}
	if *vocab == "" {
		dir := *models
		if dir == "" {
			if dir, err = defaultModelsDir(); err != nil {
				return runtimeErr(err)
			}
		}
		*vocab = filepath.Join(dir, s.VocabFile())
	}
	start := time.Now()
	opts := synth.Options{Shape: s.Name, VocabPath: *vocab, Type: t, Seed: *seed}
	var size int64
	report := stdout
	if *out == "-" {
		cw := &countingWriter{w: os.Stdout}
		if err := synth.Write(cw, opts); err != nil {
			return runtimeErr(err)
		}
		size, report = cw.n, stderr // keep the model stream clean
	} else {
		if err := synth.WriteFile(*out, opts); err != nil {
			return runtimeErr(err)
		}
		st, err := os.Stat(*out)
		if err != nil {
			return runtimeErr(err)
		}
		size = st.Size()
	}
	el := time.Since(start)
	fmt.Fprintf(report, "wrote %s: %s %s, %s in %.2fs (%.0f MB/s)\n", *out, s.Name, t, human(size),
		el.Seconds(), float64(size)/1e6/el.Seconds())
	return nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func listShapes(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "name\tarch\tn_embd\tlayers\theads\tkv heads\tn_ff\tctx\trope base\ttied\tqkv bias\tvocab")
	for _, s := range synth.Shapes() {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%g\t%v\t%v\t%s\n", s.Name, s.Arch, s.Embd, s.Layers,
			s.Heads, s.HeadsKV, s.FF, s.Ctx, s.RopeBase, s.TiedEmbeddings, s.QKVBias, s.VocabFile())
	}
	tw.Flush()
}

// defaultModelsDir is llama.cpp's models directory (see package llamacpp).
func defaultModelsDir() (string, error) {
	dir, err := llamacpp.Dir()
	if err != nil {
		return "", fmt.Errorf("%w: pass -vocab or -models", err)
	}
	return filepath.Join(dir, "models"), nil
}
