package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/llamago/llamago/llama"
	"github.com/llamago/llamago/llama/engine"
)

// batchedParams are the options of `bench batched`, named as llama-batched-bench's.
type batchedParams struct {
	model          string
	nCtx, nBatch   int
	nUBatch, ngl   int
	threads        int
	flashAttn      string
	npp, ntg, npl  []int
	kvUnified      bool
	sampling       string // greedy or default
	deviceSampling bool
	output         string // md or jsonl
	upstream       string // llama-batched-bench to run alternately, for ratios
	rounds         int
	verbose        bool
	cpuProfile     string
	raw            bool      // also time llama-batched-bench's own loop through the binding
	diag           io.Writer // per-round engine figures
}

// batchedResult is one row, with llama-batched-bench's JSONL keys.
type batchedResult struct {
	PP      int     `json:"pp"`
	TG      int     `json:"tg"`
	PL      int     `json:"pl"`
	NKV     int     `json:"n_kv"`
	TPP     float64 `json:"t_pp"`
	SpeedPP float64 `json:"speed_pp"`
	TTG     float64 `json:"t_tg"`
	SpeedTG float64 `json:"speed_tg"`
	T       float64 `json:"t"`
	Speed   float64 `json:"speed"`
}

func parseBatched(args []string) (*batchedParams, error) {
	p := &batchedParams{}
	fs := flag.NewFlagSet("bench batched", flag.ContinueOnError)
	ints := func(dst *[]int, name, def, usage string) {
		*dst, _ = parseIntRange(def, false)
		fs.Func(name, usage+" (default "+def+")", func(s string) (err error) {
			*dst, err = parseIntRange(s, false)
			return err
		})
	}
	fs.StringVar(&p.model, "m", "", "model file (default: a synthetic Qwen2-0.5B Q8_0 model)")
	fs.IntVar(&p.nCtx, "c", 0, "KV cache size (0: the largest pl*(pp+tg))")
	fs.IntVar(&p.nBatch, "b", 2048, "n_batch")
	fs.IntVar(&p.nUBatch, "ub", 512, "n_ubatch")
	fs.IntVar(&p.ngl, "ngl", 99, "layers on the GPU")
	fs.IntVar(&p.threads, "t", 0, "threads (0: physical cores)")
	fs.StringVar(&p.flashAttn, "fa", "auto", "flash attention: on, off, auto")
	ints(&p.npp, "npp", "128", "prompt tokens per sequence")
	ints(&p.ntg, "ntg", "128", "generated tokens per sequence")
	ints(&p.npl, "npl", "8,32,64", "parallel sequences")
	fs.BoolVar(&p.kvUnified, "kvu", false, "one KV cache shared by all sequences (ours: the engine's default; without: engine.Params.SplitCache)")
	fs.StringVar(&p.sampling, "sampling", "greedy", "the requests' sampler: greedy, or default (llama.cpp's default chain)")
	fs.BoolVar(&p.deviceSampling, "device-sampling", false, "greedy and top-k-led requests start sampling on the device (engine.Params.DeviceSampling)")
	fs.StringVar(&p.output, "o", "md", "output: md or jsonl")
	fs.StringVar(&p.upstream, "upstream", "", "path of llama-batched-bench: run it alternately with ours and print both with ratios")
	fs.IntVar(&p.rounds, "r", 1, "rounds (alternating with -upstream)")
	fs.BoolVar(&p.verbose, "v", false, "llama.cpp's log")
	fs.BoolVar(&p.raw, "raw", false, "also run llama-batched-bench's loop through the binding (no engine, no sampling) and print its S_TG")
	fs.StringVar(&p.cpuProfile, "cpuprofile", "", "write a Go CPU profile of our rounds to this file")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	switch {
	case p.sampling != "greedy" && p.sampling != "default":
		return nil, fmt.Errorf("-sampling %q: want greedy or default", p.sampling)
	case p.output != "md" && p.output != "jsonl":
		return nil, fmt.Errorf("-o %q: want md or jsonl", p.output)
	case p.rounds < 1:
		return nil, errors.New("-r must be at least 1")
	}
	if _, err := parseFlashAttn(p.flashAttn); err != nil {
		return nil, err
	}
	if p.nCtx == 0 {
		for _, pp := range p.npp {
			for _, tg := range p.ntg {
				p.nCtx = max(p.nCtx, slices.Max(p.npl)*(pp+tg))
			}
		}
	}
	return p, nil
}

// runBatched measures aggregate generation through package engine the way
// llama-batched-bench measures llama_decode: pl sequences of pp prompt tokens each,
// then tg tokens each, for every combination of -npp, -ntg and -npl. Each sequence is
// an engine request with its own sampler; S_TG counts the tokens generated after the
// last sequence got its first token, over the time until the last token.
func runBatched(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	p, err := parseBatched(args)
	if err != nil {
		return err
	}
	if p.model == "" {
		if p.model, err = synthModel(ctx, defaultShape, defaultType, stderr); err != nil {
			return err
		}
	}
	if !p.verbose {
		llama.SetLogger(nil)
	}
	p.diag = stderr
	if p.cpuProfile != "" {
		f, err := os.Create(p.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	m, err := llama.LoadModel(ctx, p.model, &llama.ModelParams{GPULayers: p.ngl})
	if err != nil {
		return err
	}
	defer m.Close()

	var ours, theirs [][]batchedResult
	for range p.rounds {
		r, err := p.measure(ctx, m)
		if err != nil {
			return err
		}
		ours = append(ours, r)
		if p.upstream == "" {
			continue
		}
		u, err := p.runUpstream(ctx, stderr)
		if err != nil {
			return err
		}
		theirs = append(theirs, u)
	}
	return p.print(stdout, ours, theirs)
}

func (p *batchedParams) measure(ctx context.Context, m *llama.Model) ([]batchedResult, error) {
	fa := llama.FlashAttentionAuto
	switch v, _ := parseFlashAttn(p.flashAttn); v {
	case 1:
		fa = llama.FlashAttentionOn
	case 0:
		fa = llama.FlashAttentionOff
	}
	cp := &llama.ContextParams{NCtx: p.nCtx, NBatch: p.nBatch, NUBatch: p.nUBatch, Threads: p.threads, FlashAttention: fa}
	var out []batchedResult
	rng := rand.New(rand.NewPCG(1, 2))
	for _, pp := range p.npp {
		for _, tg := range p.ntg {
			for _, pl := range p.npl {
				if pl*(pp+tg) > p.nCtx {
					continue
				}
				e, err := engine.New(m, &engine.Params{Slots: slices.Max(p.npl), Context: cp, SplitCache: !p.kvUnified, DeviceSampling: p.deviceSampling})
				if err != nil {
					return nil, err
				}
				r, err := p.round(ctx, e, m, rng, pp, tg, pl)
				e.Close()
				if err != nil {
					return nil, err
				}
				if p.raw {
					if err := p.rawLoop(ctx, m, cp, pp, tg, pl); err != nil {
						return nil, err
					}
				}
				out = append(out, r)
			}
		}
	}
	return out, nil
}

// rawLoop is llama-batched-bench's loop written with the binding: pl prompts of pp
// tokens, then tg steps of one token per sequence, synchronizing after each decode. The
// gap between its S_TG and the engine's is the engine's own cost. It runs three times:
// without sampling (as llama-batched-bench), sampling every row on the CPU
// (Context.SampleRows) and on the device (greedy backend samplers), each feeding the
// picks back, and prints where the time of a step went.
func (p *batchedParams) rawLoop(ctx context.Context, m *llama.Model, cp *llama.ContextParams, pp, tg, pl int) error {
	for _, mode := range []string{"none", "cpu", "device"} {
		if err := p.rawLoopMode(ctx, m, cp, pp, tg, pl, mode); err != nil {
			return fmt.Errorf("raw loop, sampling %s: %w", mode, err)
		}
	}
	return nil
}

func (p *batchedParams) rawLoopMode(ctx context.Context, m *llama.Model, cp *llama.ContextParams, pp, tg, pl int, mode string) error {
	runtime.LockOSThread() // as the engine's loop
	defer runtime.UnlockOSThread()
	c := *cp
	c.NSeqMax, c.KVUnified = slices.Max(p.npl), p.kvUnified
	lc, err := m.NewContext(&c)
	if err != nil {
		return err
	}
	defer lc.Close()
	b, err := llama.NewBatch(lc.NBatch(), 1)
	if err != nil {
		return err
	}
	defer b.Close()
	rows := make([]llama.RowSample, pl)
	if mode != "none" {
		for j := range rows {
			s, err := llama.NewSampler(m, llama.Greedy())
			if err != nil {
				return err
			}
			defer s.Close()
			rows[j].Sampler = s
			if mode == "device" {
				on, err := lc.SetBackendSampler(llama.SeqID(j), s)
				if err != nil {
					return err
				}
				if !on {
					fmt.Fprintf(p.diag, "raw loop pp=%d tg=%d pl=%d sampling=device: greedy cannot run on this device\n", pp, tg, pl)
					return nil
				}
			}
		}
	}
	var tDecode, tSync, tSample time.Duration
	decodes := 0
	flush := func() error {
		if b.Len() == 0 {
			return nil
		}
		t0 := time.Now()
		if err := lc.Decode(ctx, b); err != nil {
			return err
		}
		t1 := time.Now()
		err := lc.Synchronize()
		t2 := time.Now()
		tDecode += t1.Sub(t0)
		tSync += t2.Sub(t1)
		decodes++
		return err
	}
	for j := range pl {
		for i := range pp {
			if b.Len() == b.Cap() {
				if err := flush(); err != nil {
					return err
				}
				b.Clear()
			}
			if err := b.Add(llama.Token(1000+i), llama.Pos(i), i == pp-1, llama.SeqID(j)); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	next := make([]llama.Token, pl)
	for j := range next {
		next[j] = llama.Token(2000 + j)
		rows[j].Row = j
	}
	tDecode, tSync = 0, 0
	start := time.Now()
	for i := range tg {
		b.Clear()
		for j := range pl {
			if err := b.Add(next[j], llama.Pos(pp+i), true, llama.SeqID(j)); err != nil {
				return err
			}
		}
		if err := flush(); err != nil {
			return err
		}
		if mode == "none" {
			continue
		}
		t0 := time.Now()
		if err := lc.SampleRows(rows); err != nil {
			return err
		}
		tSample += time.Since(t0)
		for j := range rows {
			if rows[j].Err != nil {
				return rows[j].Err
			}
			next[j] = rows[j].Token
		}
	}
	el := time.Since(start)
	perf, err := lc.Perf()
	if err != nil {
		return err
	}
	ms := func(d time.Duration) float64 { return d.Seconds() * 1000 / float64(tg) }
	fmt.Fprintf(p.diag, "raw loop pp=%d tg=%d pl=%d sampling=%s: S_TG %.2f t/s; per step %.3f ms: decode call %.3f, sync %.3f, sampling %.3f; %d graph reuses in %d decodes\n",
		pp, tg, pl, mode, float64(pl*tg)/el.Seconds(), ms(el), ms(tDecode), ms(tSync), ms(tSample), perf.GraphReuses, decodes)
	return nil
}

// round runs pl requests of pp random prompt tokens and tg generated tokens at once.
func (p *batchedParams) round(ctx context.Context, e *engine.Engine, m *llama.Model, rng *rand.Rand, pp, tg, pl int) (batchedResult, error) {
	sp := llama.DefaultSamplingParams()
	if p.sampling == "greedy" {
		sp.Temperature = 0
	}
	prompt := func(n int) []llama.Token {
		toks := make([]llama.Token, n)
		for i := range toks {
			for {
				toks[i] = llama.Token(rng.IntN(m.Vocab().NTokens))
				if !m.IsControl(toks[i]) && !m.IsEOG(toks[i]) {
					break
				}
			}
		}
		return toks
	}
	// Warm-up, as llama-batched-bench decodes 16 tokens first.
	for _, err := range e.Generate(ctx, &engine.Request{Prompt: prompt(16), Sampling: &sp, MaxTokens: 2, IgnoreEOG: true}) {
		if err != nil {
			return batchedResult{}, err
		}
	}

	before := e.Metrics()
	prompts := make([][]llama.Token, pl)
	for i := range prompts {
		prompts[i] = prompt(pp)
	}
	times := make([][]time.Time, pl) // receipt time of every generated token
	errs := make([]error, pl)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range pl {
		wg.Go(func() {
			ts := make([]time.Time, 0, tg)
			for d, err := range e.Generate(ctx, &engine.Request{Prompt: prompts[i], Sampling: &sp, MaxTokens: tg, IgnoreEOG: true}) {
				if err != nil {
					errs[i] = err
					return
				}
				now := time.Now()
				for range d.Tokens {
					ts = append(ts, now)
				}
			}
			times[i] = ts
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return batchedResult{}, err
	}
	var firstAll, last time.Time
	for _, ts := range times {
		if len(ts) != tg {
			return batchedResult{}, fmt.Errorf("a request generated %d tokens, want %d", len(ts), tg)
		}
		if ts[0].After(firstAll) {
			firstAll = ts[0]
		}
		if ts[tg-1].After(last) {
			last = ts[tg-1]
		}
	}
	tgTokens := 0
	for _, ts := range times {
		for _, t := range ts {
			if t.After(firstAll) {
				tgTokens++
			}
		}
	}
	if tgTokens == 0 {
		// The engine merges the deltas a reader has not taken yet: every token arrived
		// with the last sequence's first one, leaving no generation window to time.
		return batchedResult{}, fmt.Errorf("pp=%d tg=%d pl=%d: all tokens arrived at once, nothing to time: raise -ntg", pp, tg, pl)
	}
	after := e.Metrics()
	fmt.Fprintf(p.diag, "engine pp=%d tg=%d pl=%d: %d steps in %.3f s: %.3f s in Decode calls (a prompt step waits for all but its last micro-batch), %.3f s sampling (with the wait for the device); %d graph reuses\n",
		pp, tg, pl, after.Steps-before.Steps, last.Sub(start).Seconds(), (after.DecodeTime - before.DecodeTime).Seconds(),
		(after.SampleTime - before.SampleTime).Seconds(), after.GraphReuses-before.GraphReuses)
	r := batchedResult{PP: pp, TG: tg, PL: pl, NKV: pl * (pp + tg)}
	r.TPP = firstAll.Sub(start).Seconds()
	r.TTG = last.Sub(firstAll).Seconds()
	r.T = last.Sub(start).Seconds()
	r.SpeedPP = float64(pl*pp) / r.TPP
	r.SpeedTG = float64(tgTokens) / r.TTG
	r.Speed = float64(pl*(pp+tg)) / r.T
	return r, nil
}

// runUpstream runs llama-batched-bench with the same settings and reads its JSONL.
func (p *batchedParams) runUpstream(ctx context.Context, stderr io.Writer) ([]batchedResult, error) {
	join := func(v []int) string {
		s := make([]string, len(v))
		for i, x := range v {
			s[i] = strconv.Itoa(x)
		}
		return strings.Join(s, ",")
	}
	args := []string{"-m", p.model, "-c", strconv.Itoa(p.nCtx), "-b", strconv.Itoa(p.nBatch), "-ub", strconv.Itoa(p.nUBatch),
		"-ngl", strconv.Itoa(p.ngl), "-fa", p.flashAttn, "-npp", join(p.npp), "-ntg", join(p.ntg), "-npl", join(p.npl),
		"--output-format", "jsonl"}
	if p.threads > 0 {
		args = append(args, "-t", strconv.Itoa(p.threads))
	} else {
		args = append(args, "-t", strconv.Itoa(llama.PhysicalCores()))
	}
	if p.kvUnified {
		args = append(args, "-kvu")
	}
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, p.upstream, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		fmt.Fprintf(stderr, "%s\n", out.Bytes())
		return nil, fmt.Errorf("%s: %w", p.upstream, err)
	}
	var rows []batchedResult
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.HasPrefix(line, []byte(`{"n_kv_max"`)) {
			continue
		}
		var r batchedResult
		if err := json.Unmarshal(line, &r); err != nil {
			return nil, err
		}
		rows = append(rows, r)
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("%s printed no results:\n%s", p.upstream, out.Bytes())
	}
	return rows, nil
}

// print writes the mean of the rounds (ours, and upstream's with ratios).
func (p *batchedParams) print(w io.Writer, ours, theirs [][]batchedResult) error {
	mean := func(rounds [][]batchedResult, i int, f func(batchedResult) float64) float64 {
		s := 0.0
		for _, r := range rounds {
			s += f(r[i])
		}
		return s / float64(len(rounds))
	}
	if p.output == "jsonl" {
		enc := json.NewEncoder(w)
		for _, round := range ours {
			for _, r := range round {
				if err := enc.Encode(r); err != nil {
					return err
				}
			}
		}
		return nil
	}
	sampling := p.sampling
	if p.deviceSampling {
		sampling += " on the device"
	}
	fmt.Fprintf(w, "engine: %s sampling, kv_unified=%v, n_ctx=%d, n_batch=%d, n_ubatch=%d, fa=%s, %d round(s)\n\n",
		sampling, p.kvUnified, p.nCtx, p.nBatch, p.nUBatch, p.flashAttn, p.rounds)
	if len(theirs) == 0 {
		fmt.Fprintln(w, "|    PP |     TG |    B |   N_KV |   T_PP s | S_PP t/s |   T_TG s | S_TG t/s |      T s |    S t/s |")
		fmt.Fprintln(w, "|-------|--------|------|--------|----------|----------|----------|----------|----------|----------|")
		for i, r := range ours[0] {
			fmt.Fprintf(w, "| %5d | %6d | %4d | %6d | %8.3f | %8.2f | %8.3f | %8.2f | %8.3f | %8.2f |\n", r.PP, r.TG, r.PL, r.NKV,
				mean(ours, i, func(r batchedResult) float64 { return r.TPP }), mean(ours, i, func(r batchedResult) float64 { return r.SpeedPP }),
				mean(ours, i, func(r batchedResult) float64 { return r.TTG }), mean(ours, i, func(r batchedResult) float64 { return r.SpeedTG }),
				mean(ours, i, func(r batchedResult) float64 { return r.T }), mean(ours, i, func(r batchedResult) float64 { return r.Speed }))
		}
		return nil
	}
	fmt.Fprintln(w, "|    PP |     TG |    B | S_PP ours | S_PP llama-batched-bench | ratio | S_TG ours | S_TG llama-batched-bench | ratio |")
	fmt.Fprintln(w, "|-------|--------|------|-----------|--------------------------|-------|-----------|--------------------------|-------|")
	for i, r := range ours[0] {
		j := slices.IndexFunc(theirs[0], func(u batchedResult) bool { return u.PP == r.PP && u.TG == r.TG && u.PL == r.PL })
		if j < 0 {
			continue
		}
		opp, tpp := mean(ours, i, func(r batchedResult) float64 { return r.SpeedPP }), mean(theirs, j, func(r batchedResult) float64 { return r.SpeedPP })
		otg, ttg := mean(ours, i, func(r batchedResult) float64 { return r.SpeedTG }), mean(theirs, j, func(r batchedResult) float64 { return r.SpeedTG })
		fmt.Fprintf(w, "| %5d | %6d | %4d | %9.2f | %24.2f | %5.3f | %9.2f | %24.2f | %5.3f |\n", r.PP, r.TG, r.PL, opp, tpp, opp/tpp, otg, ttg, otg/ttg)
	}
	return nil
}
