package llama

/*
#include "shim.h"
*/
import "C"

import "time"

// Perf holds llama.cpp's timings of a Context since creation or PerfReset.
type Perf struct {
	Load         time.Duration // model load (as llama.cpp measured it)
	PromptEval   time.Duration // batches of more than one token
	Eval         time.Duration // single-token decodes (generation)
	PromptTokens int
	EvalTokens   int
	GraphReuses  int // decodes that reused the previous compute graph
}

// PromptTokensPerSecond is the prompt-processing speed.
func (p Perf) PromptTokensPerSecond() float64 { return perSecond(p.PromptTokens, p.PromptEval) }

// EvalTokensPerSecond is the generation speed.
func (p Perf) EvalTokensPerSecond() float64 { return perSecond(p.EvalTokens, p.Eval) }

func perSecond(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

func ms(v C.double) time.Duration { return time.Duration(float64(v) * float64(time.Millisecond)) }

// Perf returns the context's timings (zero when created with NoPerf).
func (c *Context) Perf() (Perf, error) {
	if err := c.enter(); err != nil {
		return Perf{}, err
	}
	defer c.mu.Unlock()
	d := C.llama_perf_context(c.ptr)
	p := Perf{
		Load:        ms(d.t_load_ms),
		PromptEval:  ms(d.t_p_eval_ms),
		Eval:        ms(d.t_eval_ms),
		GraphReuses: int(d.n_reused),
	}
	// llama.cpp reports at least 1 token (to spare its callers a division by zero).
	if p.PromptEval > 0 {
		p.PromptTokens = int(d.n_p_eval)
	}
	if p.Eval > 0 {
		p.EvalTokens = int(d.n_eval)
	}
	return p, nil
}

// PerfReset zeroes the context's timings.
func (c *Context) PerfReset() error {
	if err := c.enter(); err != nil {
		return err
	}
	defer c.mu.Unlock()
	C.llama_perf_context_reset(c.ptr)
	return nil
}
