package engine

import (
	"context"
	"slices"

	"github.com/llamago/llamago/llama"
)

// SetLoRA makes the engine's context apply these adapters with these scales (none: no
// adapter) from its next step on: requests in flight go on with them. The prefixes idle
// slots keep were computed without them and are dropped.
func (e *Engine) SetLoRA(ctx context.Context, adapters ...llama.LoRAScale) error {
	return e.do(ctx, func() error {
		if err := e.ctx.SetLoRA(adapters...); err != nil {
			return err
		}
		e.forgetIdle()
		e.mu.Lock()
		e.lora = slices.Clone(adapters)
		e.mu.Unlock()
		return nil
	})
}

// LoRA returns the adapters the engine applies, with their scales.
func (e *Engine) LoRA() []llama.LoRAScale {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.lora)
}

// SetControlVector applies a control vector to layers first to last (see
// llama.Context.SetControlVector; nil clears it) from the next step on, and drops the
// prefixes idle slots keep.
func (e *Engine) SetControlVector(ctx context.Context, v *llama.ControlVector, first, last int) error {
	return e.do(ctx, func() error {
		if err := e.ctx.SetControlVector(v, first, last); err != nil {
			return err
		}
		e.forgetIdle()
		return nil
	})
}

func (e *Engine) forgetIdle() {
	for _, s := range e.slots {
		if s.job == nil && len(s.cached) > 0 {
			e.forget(s)
		}
	}
}
