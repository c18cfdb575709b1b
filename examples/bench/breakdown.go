package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/llamago/llamago/llama"
)

// appBreakdown runs the application loop of measureApp written out step by step and
// prints where the time of a token goes: the decode call, the wait for the device, the
// pick with s (the device's pick when s is attached there), the token's text. Together
// they are what GenerateText does per token; the rest of the wall time is the loop.
func appBreakdown(ctx context.Context, m *llama.Model, c *llama.Context, r *runner, t *instance, s *llama.Sampler,
	prompt string, reps int, sampling string, w io.Writer) error {
	toks, err := m.Tokenize(prompt, llama.AddSpecial|llama.ParseSpecial)
	if err != nil {
		return err
	}
	if sampling == "device" && t.app == "auto" {
		// GenerateText placed the chain on the device itself; DecodeTokens would take it
		// back, so the loop written out attaches it as a caller would.
		if _, err := c.SetBackendSampler(0, s); err != nil {
			return err
		}
		defer c.SetBackendSampler(0, nil)
	}
	var tDecode, tWait, tSample, tText, tAll time.Duration
	for range reps {
		if err := r.clear(); err != nil {
			return err
		}
		if err := s.Reset(); err != nil {
			return err
		}
		if t.nDepth > 0 {
			if err := r.prompt(t.nDepth); err != nil {
				return err
			}
		}
		in, pos := toks, llama.Pos(t.nDepth)
		start := time.Now()
		for range t.nGen {
			t0 := time.Now()
			if err := c.DecodeTokens(ctx, in, pos, 0); err != nil {
				return err
			}
			t1 := time.Now()
			if err := c.Synchronize(); err != nil {
				return err
			}
			t2 := time.Now()
			tok, err := s.Sample(c, -1)
			if err != nil {
				return err
			}
			t3 := time.Now()
			if _, err := m.TokenPiece(tok, false); err != nil {
				return err
			}
			t4 := time.Now()
			tDecode += t1.Sub(t0)
			tWait += t2.Sub(t1)
			tSample += t3.Sub(t2)
			tText += t4.Sub(t3)
			pos += llama.Pos(len(in))
			in = []llama.Token{tok}
		}
		tAll += time.Since(start)
	}
	n := float64(reps * t.nGen)
	us := func(d time.Duration) float64 { return d.Seconds() * 1e6 / n }
	fmt.Fprintf(w, "app loop tg%d (sampling %s): %.1f t/s; per token %.1f µs: decode call %.1f, wait %.1f, pick %.1f, text %.1f, loop %.1f\n",
		t.nGen, sampling, n/tAll.Seconds(), us(tAll), us(tDecode), us(tWait), us(tSample), us(tText),
		us(tAll-tDecode-tWait-tSample-tText))
	return nil
}
