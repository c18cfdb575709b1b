// Package samplingflags registers the sampling command-line flags the examples share.
package samplingflags

import (
	"flag"
	"strconv"

	"github.com/llamago/llamago/llama"
)

// Register adds -seed, -temp, -top-k, -top-p, -min-p and -repeat-penalty to fs and returns
// the parameters they fill, starting from llama.cpp's defaults.
func Register(fs *flag.FlagSet) *llama.SamplingParams {
	p := llama.DefaultSamplingParams()
	fs.Func("seed", "sampling seed (default: random)", func(v string) error {
		seed, err := strconv.ParseUint(v, 10, 32)
		p.Seed = uint32(seed)
		return err
	})
	float32Var(fs, &p.Temperature, "temp", "temperature (0: greedy)")
	fs.IntVar(&p.TopK, "top-k", p.TopK, "top-k (0: off)")
	float32Var(fs, &p.TopP, "top-p", "top-p (1: off)")
	float32Var(fs, &p.MinP, "min-p", "min-p (0: off)")
	float32Var(fs, &p.RepeatPenalty, "repeat-penalty", "repetition penalty (1: off)")
	return &p
}

func float32Var(fs *flag.FlagSet, p *float32, name, usage string) {
	fs.Func(name, usage+" (default "+strconv.FormatFloat(float64(*p), 'g', -1, 32)+")", func(v string) error {
		f, err := strconv.ParseFloat(v, 32)
		*p = float32(f)
		return err
	})
}
