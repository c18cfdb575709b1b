package cli

import (
	"fmt"

	"github.com/llamago/llamago/llama"
)

// ContextFlags are llama.cpp's context flags.
type ContextFlags struct {
	CtxSize    int    // -c; 0: the model's training context (capped by llama.DefaultNCtx)
	BatchSize  int    // -b
	UBatchSize int    // -ub
	Threads    int    // -t; 0: physical cores
	FlashAttn  string // -fa: on, off, auto
	CacheTypeK string // -ctk
	CacheTypeV string // -ctv
}

func (c *ContextFlags) defaults() {
	c.BatchSize, c.UBatchSize, c.FlashAttn, c.CacheTypeK, c.CacheTypeV = 2048, 512, "auto", "f16", "f16"
}

// Context registers -c, -b, -ub, -t, -fa, -ctk, -ctv.
func Context(f *Flags) {
	c := &f.ContextFlags
	g := f.Group("context")
	g.Int(&c.CtxSize, "-c, --ctx-size", "size of the prompt context in tokens (0: loaded from the model)")
	g.Int(&c.BatchSize, "-b, --batch-size", "logical maximum batch size")
	g.Int(&c.UBatchSize, "-ub, --ubatch-size", "physical maximum batch size")
	g.Int(&c.Threads, "-t, --threads", "threads for generation (0: the physical cores)")
	g.String(&c.FlashAttn, "-fa, --flash-attn", "[on|off|auto]", "flash attention")
	g.String(&c.CacheTypeK, "-ctk, --cache-type-k", "TYPE", "KV cache type for K: f32, f16, bf16, q8_0, q4_0, q4_1, iq4_nl, q5_0, q5_1")
	g.String(&c.CacheTypeV, "-ctv, --cache-type-v", "TYPE", "KV cache type for V (as -ctk)")
}

// Params returns the context parameters the flags describe.
func (c *ContextFlags) Params() (*llama.ContextParams, error) {
	p := &llama.ContextParams{NCtx: c.CtxSize, NBatch: c.BatchSize, NUBatch: c.UBatchSize, Threads: c.Threads}
	switch c.FlashAttn {
	case "auto":
	case "on", "1", "true", "enabled":
		p.FlashAttention = llama.FlashAttentionOn
	case "off", "0", "false", "disabled":
		p.FlashAttention = llama.FlashAttentionOff
	default:
		return nil, fmt.Errorf("-fa %q: want on, off or auto", c.FlashAttn)
	}
	var err error
	if p.TypeK, err = llama.ParseCacheType(c.CacheTypeK); err != nil {
		return nil, fmt.Errorf("-ctk: %w", err)
	}
	if p.TypeV, err = llama.ParseCacheType(c.CacheTypeV); err != nil {
		return nil, fmt.Errorf("-ctv: %w", err)
	}
	return p, nil
}
