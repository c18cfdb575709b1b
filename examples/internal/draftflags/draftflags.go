// Package draftflags registers llama.cpp's speculative decoding flags, which the
// examples share: -md/-model-draft FNAME (a draft model of the same vocabulary),
// -spec-type ngram-simple (prompt lookup, no model), -draft-max N and -draft-p-min P.
package draftflags

import (
	"context"
	"flag"
	"fmt"

	"github.com/llamago/llamago/llama"
)

// Flags holds the parsed flags.
type Flags struct {
	model    string
	specType string
	max      int
	pMin     float64
}

// Register adds the flags to fs.
func Register(fs *flag.FlagSet) *Flags {
	f := &Flags{}
	for _, name := range []string{"md", "model-draft", "spec-draft-model"} {
		fs.StringVar(&f.model, name, "", "draft model for speculative decoding (same vocabulary as -model)")
	}
	fs.StringVar(&f.specType, "spec-type", "", "speculative decoding without a draft model: ngram-simple (prompt lookup)")
	for _, name := range []string{"draft-max", "draft", "spec-draft-n-max"} {
		fs.IntVar(&f.max, name, 16, "most tokens drafted per step")
	}
	for _, name := range []string{"draft-p-min", "spec-draft-p-min"} {
		fs.Float64Var(&f.pMin, name, 0.75, "a draft ends at the first token the draft model is less sure of")
	}
	return f
}

// Drafter is the drafter the flags ask for (nil: none) and what closes it.
type Drafter struct {
	llama.Drafter
	Max   int
	close func() error
}

// Close frees the draft model and its context.
func (d *Drafter) Close() error {
	if d == nil || d.close == nil {
		return nil
	}
	return d.close()
}

// Load makes the drafter for generations of target, with the draft model on the GPU
// when gpuLayers says so. It returns nil without -md or -spec-type.
func (f *Flags) Load(ctx context.Context, target *llama.Model, gpuLayers int, nCtx int) (*Drafter, error) {
	switch {
	case f.model != "" && f.specType != "":
		return nil, fmt.Errorf("-md and -spec-type %s: choose one", f.specType)
	case f.specType != "" && f.specType != "ngram-simple" && f.specType != "ngram":
		return nil, fmt.Errorf("-spec-type %q: want ngram-simple", f.specType)
	case f.max < 1:
		return nil, fmt.Errorf("-draft-max %d: want at least 1", f.max)
	case f.specType != "":
		return &Drafter{Drafter: &llama.NgramDrafter{}, Max: f.max}, nil
	case f.model == "":
		return nil, nil
	}
	m, err := llama.LoadModel(ctx, f.model, &llama.ModelParams{GPULayers: gpuLayers})
	if err != nil {
		return nil, fmt.Errorf("draft model: %w", err)
	}
	pMin := float32(f.pMin)
	if pMin == 0 {
		pMin = -1 // the flag's 0 means no threshold
	}
	d, err := llama.NewModelDrafter(target, m, &llama.ModelDrafterParams{Context: &llama.ContextParams{NCtx: nCtx}, MinProb: pMin})
	if err != nil {
		m.Close()
		return nil, err
	}
	return &Drafter{Drafter: d, Max: f.max, close: func() error {
		d.Close()
		return m.Close()
	}}, nil
}
