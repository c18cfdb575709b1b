// Command bench is llama.cpp's llama-bench measured through llamago: the same tests
// (prompt processing -p, generation -n, both -pg, at a depth -d), the same options
// with the same list and range syntax, the same statistics and the same output
// formats (md, csv, json, jsonl, sql), so its output sits beside llama-bench's and
// llama.cpp's scripts/compare-llama-bench.py reads it. With -app it also measures
// generation as applications run it (GenerateText with the default sampler chain).
//
//	bench -p 512 -n 128 -r 5                       a synthetic Qwen2-0.5B Q8_0 model
//	bench -m model.gguf -ngl 99 -fa 1 -o json -app
//	bench compare -ours a.json -theirs b.json      ours vs llama-bench, side by side
//	bench synth -type q4_k_m                       print (and write once) a synthetic model
//	bench batched -npl 8,32,64 -upstream llama-batched-bench   many sequences through package engine
//
// See README.md and scripts/bench-compare.sh.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/llamago/llamago/llama"
)

func main() {
	err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr)
	var ue *usageError
	switch {
	case err == nil:
	case errors.As(err, &ue):
		fmt.Fprintf(os.Stderr, "error: %v\n\n", err)
		usage(os.Stderr)
		os.Exit(1)
	default:
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "synth":
			return runSynth(ctx, args[1:], stdout, stderr)
		case "compare":
			return runCompare(args[1:], stdout, stderr)
		case "batched":
			return runBatched(ctx, args[1:], stdout, stderr)
		}
	}
	p, err := parseArgs(args)
	switch {
	case errors.Is(err, errHelp):
		usage(stdout)
		return nil
	case errors.Is(err, errListDevices):
		listDevices(stdout)
		return nil
	case err != nil:
		return err
	}
	if p.verbose {
		llama.SetLogger(slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelDebug})))
		defer llama.SetLogger(nil)
	}
	for i, m := range p.models {
		if m == "" {
			if p.models[i], err = synthModel(ctx, defaultShape, defaultType, stderr); err != nil {
				return fmt.Errorf("default model: %w", err)
			}
		}
	}
	return bench(ctx, p, stdout, stderr)
}

// bench runs the test matrix, printing each result as it completes.
func bench(ctx context.Context, p *params, stdout, stderr io.Writer) error {
	e := machineInfo()
	var printers []printer
	if pr := newPrinter(p.output, stdout, e); pr != nil {
		printers = append(printers, pr)
	}
	if pr := newPrinter(p.outputErr, stderr, e); pr != nil {
		printers = append(printers, pr)
	}
	for _, pr := range printers {
		pr.header(p)
	}

	tests := instances(p)
	var (
		model      *llama.Model
		prev       *instance
		prompt     string // the application-path prompt of the loaded model
		promptToks int
	)
	defer func() {
		if model != nil {
			model.Close()
		}
	}()
	for i := range tests {
		t := &tests[i]
		progress := func(format string, a ...any) {
			if p.progress {
				fmt.Fprintf(stderr, "bench: benchmark %d/%d: %s\n", i+1, len(tests), fmt.Sprintf(format, a...))
			}
		}
		progress("starting")
		if model == nil || !t.sameModel(prev) {
			if model != nil {
				model.Close()
				model = nil
			}
			mp, err := t.modelParams()
			if err != nil {
				return err
			}
			if model, err = llama.LoadModel(ctx, t.model, mp); err != nil {
				return fmt.Errorf("failed to load model '%s': %w", t.model, err)
			}
			prev = t
			prompt, promptToks = "", 0
		}
		if t.app != "" && promptToks == 0 {
			var err error
			if prompt, promptToks, err = appPrompt(model); err != nil {
				return err
			}
		}
		r, err := runTest(ctx, p, model, t, e, prompt, promptToks, progress, stderr)
		if err != nil {
			return fmt.Errorf("%s: %w", t.name(), err)
		}
		for _, pr := range printers {
			pr.test(r)
		}
	}
	for _, pr := range printers {
		pr.footer()
	}
	return nil
}

// runTest creates the test's context and measures it.
func runTest(ctx context.Context, p *params, m *llama.Model, t *instance, e *env, prompt string, promptToks int,
	progress func(string, ...any), stderr io.Writer) (*result, error) {
	cp, err := t.contextParams()
	if err != nil {
		return nil, err
	}
	if t.app != "" {
		// Room for the depth, the prompt and the generation; timings on, as
		// applications leave them.
		cp.NCtx = t.nDepth + promptToks + t.nGen
		cp.NoPerf = false
	}
	c, err := m.NewContext(cp)
	if err != nil {
		return nil, fmt.Errorf("failed to create context: %w", err)
	}
	defer c.Close()
	r, err := newRunner(m, c, min(t.nBatch, c.NBatch()))
	if err != nil {
		return nil, err
	}
	defer r.Close()

	info := m.Info()
	res := &result{instance: t, env: e, modelType: info.Description, modelSize: info.Size, modelParams: info.Params,
		testTime: time.Now()}
	if p.delay > 0 {
		time.Sleep(time.Duration(p.delay) * time.Second)
	}
	if t.app == "" {
		res.samplesNs, err = r.measure(t, p.reps, !p.noWarmup, progress)
		if len(p.app) > 0 {
			res.sampling = "none"
		}
	} else {
		var breakdown io.Writer
		if p.appBreakdown {
			breakdown = stderr
		}
		res.samplesNs, err = measureApp(ctx, m, c, r, t, prompt, p.reps, !p.noWarmup, progress, breakdown)
		res.sampling = t.app
	}
	if err != nil {
		return nil, err
	}
	return res, nil
}

func listDevices(w io.Writer) {
	fmt.Fprintln(w, "Available devices:")
	for _, d := range llama.Devices() {
		if d.Type == llama.DeviceCPU {
			continue
		}
		fmt.Fprintf(w, "  %s: %s (%d MiB, %d MiB free)\n", d.Name, d.Description, d.TotalMemory>>20, d.FreeMemory>>20)
	}
}
