// Package adapterflags registers llama.cpp's adapter flags, which the examples share:
// --lora FNAME, --lora-scaled FNAME:SCALE,..., -control-vector FNAME,
// --control-vector-scaled FNAME:SCALE,... and --control-vector-layer-range START,END (llama.cpp
// takes START END as two arguments; Go's flag package takes one value per flag).
package adapterflags

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/llamago/llamago/examples/internal/cli"
	"github.com/llamago/llamago/llama"
)

type scaled struct {
	path  string
	scale float32
}

// Flags holds the parsed flags.
type Flags struct {
	lora, cvec  []scaled
	first, last int
}

// Register adds the flags to g.
func Register(g *cli.Group) *Flags {
	f := &Flags{}
	g.Func("--lora", "FNAME", "LoRA adapter file, applied at scale 1 (repeat or separate with commas for several)", "", plain(&f.lora))
	g.Func("--lora-scaled", "FNAME:SCALE,...", "LoRA adapters with scales", "", withScales(&f.lora))
	g.Func("--control-vector", "FNAME", "control vector file, at strength 1 (repeat or separate with commas; they add up)", "", plain(&f.cvec))
	g.Func("--control-vector-scaled", "FNAME:SCALE,...", "control vectors with strengths", "", withScales(&f.cvec))
	g.Func("--control-vector-layer-range", "START,END", "layers the control vector applies to (default: all)", "", func(v string) error {
		a, b, ok := strings.Cut(v, ",")
		var err1, err2 error
		f.first, err1 = strconv.Atoi(strings.TrimSpace(a))
		f.last, err2 = strconv.Atoi(strings.TrimSpace(b))
		if !ok || err1 != nil || err2 != nil {
			return errors.New("want START,END")
		}
		return nil
	})
	return f
}

func plain(dst *[]scaled) func(string) error {
	return func(v string) error {
		for p := range strings.SplitSeq(v, ",") {
			if p == "" {
				return errors.New("empty file name")
			}
			*dst = append(*dst, scaled{p, 1})
		}
		return nil
	}
}

func withScales(dst *[]scaled) func(string) error {
	return func(v string) error {
		for item := range strings.SplitSeq(v, ",") {
			i := strings.LastIndexByte(item, ':')
			if i <= 0 {
				return fmt.Errorf("%q: want FNAME:SCALE", item)
			}
			s, err := strconv.ParseFloat(item[i+1:], 32)
			if err != nil {
				return fmt.Errorf("%q: %w", item, err)
			}
			*dst = append(*dst, scaled{item[:i], float32(s)})
		}
		return nil
	}
}

// Adapters are the loaded adapters of the flags.
type Adapters struct {
	LoRA        []llama.LoRAScale
	Paths       []string // of LoRA, in order
	Control     *llama.ControlVector
	First, Last int
}

// Load loads the adapters the flags name for m. Close them when done.
func (f *Flags) Load(m *llama.Model) (*Adapters, error) {
	a := &Adapters{First: f.first, Last: f.last}
	for _, l := range f.lora {
		lora, err := m.LoadLoRA(l.path)
		if err != nil {
			a.Close()
			return nil, err
		}
		a.LoRA = append(a.LoRA, llama.LoRAScale{Adapter: lora, Scale: l.scale})
		a.Paths = append(a.Paths, l.path)
	}
	for _, c := range f.cvec {
		v, err := llama.LoadControlVector(c.path, c.scale)
		if err == nil && a.Control != nil {
			err = a.Control.Add(v)
		} else if err == nil {
			a.Control = v
		}
		if err != nil {
			a.Close()
			return nil, err
		}
	}
	return a, nil
}

// Apply applies the adapters to c.
func (a *Adapters) Apply(c *llama.Context) error {
	if len(a.LoRA) > 0 {
		if err := c.SetLoRA(a.LoRA...); err != nil {
			return err
		}
	}
	if a.Control != nil {
		return c.SetControlVector(a.Control, a.First, a.Last)
	}
	return nil
}

// Close releases the LoRA adapters (contexts that apply them keep them until they close).
func (a *Adapters) Close() {
	for _, l := range a.LoRA {
		l.Adapter.Close()
	}
}
