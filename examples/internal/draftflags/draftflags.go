// Package draftflags registers llama.cpp's speculative decoding flags, which the
// examples share: -md/-model-draft FNAME (a draft model of the same vocabulary),
// -spec-type ngram-simple (prompt lookup, no model), -spec-draft-n-max N (-draft-max) and
// -spec-draft-p-min P (-draft-p-min).
package draftflags

import (
	"context"
	"fmt"
	"strconv"

	"github.com/llamago/llamago/examples/internal/cli"
	"github.com/llamago/llamago/llama"
)

// Flags holds the parsed flags.
type Flags struct {
	model    string
	specType string
	max      int
	pMin     float64
}

// Register adds the flags to g.
func Register(g *cli.Group) *Flags {
	f := &Flags{max: 16, pMin: 0.75}
	g.String(&f.model, "-md, --model-draft, --spec-draft-model", "FNAME", "draft model for speculative decoding (same vocabulary as -m)")
	g.String(&f.specType, "--spec-type", "TYPE", "speculative decoding without a draft model: ngram-simple (prompt lookup)")
	g.Int(&f.max, "--spec-draft-n-max, --draft-max, --draft, --draft-n", "most tokens drafted per step")
	g.Func("--spec-draft-p-min, --draft-p-min", "P", "a draft ends at the first token the draft model is less sure of", "0.75", func(v string) error {
		p, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return err
		}
		f.pMin = p
		return nil
	})
	return f
}

// Drafts makes the drafters the flags ask for.
type Drafts struct {
	Max    int // most tokens per draft
	target *llama.Model
	model  *llama.Model // the draft model; nil: prompt lookup
	nCtx   int
	pMin   float32
	first  *llama.ModelDrafter // made by Load to check the vocabularies, handed out first
}

// New makes a drafter: a context of the draft model of its own, or prompt lookup.
func (d *Drafts) New() (llama.Drafter, error) {
	if d.model == nil {
		return &llama.NgramDrafter{}, nil
	}
	if f := d.first; f != nil {
		d.first = nil
		return f, nil
	}
	return llama.NewModelDrafter(d.target, d.model, &llama.ModelDrafterParams{Context: &llama.ContextParams{NCtx: d.nCtx}, MinProb: d.pMin})
}

// Close frees the draft model, after the drafters made by New are closed.
func (d *Drafts) Close() error {
	if d == nil || d.model == nil {
		return nil
	}
	if d.first != nil {
		d.first.Close()
	}
	return d.model.Close()
}

// Load reads the flags for generations of target, with the draft model on the GPU when
// gpuLayers says so and contexts of nCtx tokens. It returns nil without -md or -spec-type.
func (f *Flags) Load(ctx context.Context, target *llama.Model, gpuLayers int, nCtx int) (*Drafts, error) {
	switch {
	case f.model != "" && f.specType != "":
		return nil, fmt.Errorf("-md and -spec-type %s: choose one", f.specType)
	case f.specType != "" && f.specType != "ngram-simple" && f.specType != "ngram":
		return nil, fmt.Errorf("-spec-type %q: want ngram-simple", f.specType)
	case f.max < 1:
		return nil, fmt.Errorf("-spec-draft-n-max %d: want at least 1", f.max)
	case f.specType != "":
		return &Drafts{Max: f.max}, nil
	case f.model == "":
		return nil, nil
	}
	m, err := llama.LoadModel(ctx, f.model, &llama.ModelParams{GPULayers: gpuLayers})
	if err != nil {
		return nil, fmt.Errorf("draft model: %w", err)
	}
	d := &Drafts{Max: f.max, target: target, model: m, nCtx: nCtx, pMin: float32(f.pMin)}
	if d.pMin == 0 {
		d.pMin = -1 // the flag's 0 means no threshold
	}
	// A draft model of another vocabulary is refused now, not at the first request.
	first, err := d.New()
	if err != nil {
		m.Close()
		return nil, err
	}
	d.first = first.(*llama.ModelDrafter)
	return d, nil
}
