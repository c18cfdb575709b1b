package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
)

// compareKeys identify the same test in our output and llama-bench's (the settings
// that change what is measured; build, machine and timing fields are left out).
var compareKeys = []string{
	"model_type", "model_size", "n_batch", "n_ubatch", "n_threads", "type_k", "type_v",
	"n_gpu_layers", "n_cpu_moe", "split_mode", "main_gpu", "no_kv_offload", "flash_attn", "devices",
	"tensor_split", "embeddings", "no_op_offload", "n_prompt", "n_gen", "n_depth",
}

// record is one row of llama-bench JSON or JSONL output.
type record map[string]any

func (r record) str(k string) string {
	switch v := r[k].(type) {
	case nil:
		return ""
	case string:
		return v
	case json.Number:
		return v.String()
	default:
		return fmt.Sprint(v)
	}
}

func (r record) num(k string) float64 {
	if n, ok := r[k].(json.Number); ok {
		f, _ := n.Float64()
		return f
	}
	return math.NaN()
}

func (r record) key() string {
	parts := make([]string, len(compareKeys))
	for i, k := range compareKeys {
		parts[i] = r.str(k)
	}
	return strings.Join(parts, "\x00")
}

func (r record) samplesTS() []float64 {
	arr, _ := r["samples_ts"].([]any)
	var out []float64
	for _, v := range arr {
		if n, ok := v.(json.Number); ok {
			if f, err := n.Float64(); err == nil {
				out = append(out, f)
			}
		}
	}
	if len(out) == 0 {
		out = append(out, r.num("avg_ts"))
	}
	return out
}

func (r record) app() string {
	s := r.str(samplingField)
	if s == "none" {
		return ""
	}
	return s
}

func (r record) testName() string {
	t := instance{nPrompt: int(r.num("n_prompt")), nGen: int(r.num("n_gen")), nDepth: int(r.num("n_depth")), app: r.app()}
	return t.name()
}

// readRecords reads a llama-bench JSON array or JSONL file.
func readRecords(path string) ([]record, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b = bytes.TrimSpace(b)
	var out []record
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if len(b) > 0 && b[0] == '[' {
		if err := dec.Decode(&out); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return out, nil
	}
	for {
		var r record
		if err := dec.Decode(&r); errors.Is(err, io.EOF) {
			return out, nil
		} else if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, r)
	}
}

// series are the results of one test over the rounds (files) of one side.
type series struct {
	first   record
	rounds  []float64 // avg_ts per round
	samples []float64 // every samples_ts value
}

func collect(files []string) (map[string]*series, []string, error) {
	m := map[string]*series{}
	var order []string
	for _, f := range files {
		recs, err := readRecords(f)
		if err != nil {
			return nil, nil, err
		}
		for _, r := range recs {
			k := r.key() + "\x00" + r.app()
			s := m[k]
			if s == nil {
				s = &series{first: r}
				m[k] = s
				order = append(order, k)
			}
			s.rounds = append(s.rounds, r.num("avg_ts"))
			s.samples = append(s.samples, r.samplesTS()...)
		}
	}
	return m, order, nil
}

func splitFiles(v []string) []string {
	var out []string
	for _, s := range v {
		for f := range strings.SplitSeq(s, ",") {
			if f != "" {
				out = append(out, f)
			}
		}
	}
	return out
}

type stringsFlag []string

func (s *stringsFlag) String() string     { return strings.Join(*s, ",") }
func (s *stringsFlag) Set(v string) error { *s = append(*s, v); return nil }

// runCompare is "bench compare": a table of our results beside llama-bench's for the
// same tests, averaged over rounds (files), with the ratio ours/llama-bench. Our
// application-path rows (tgN (app)) are set against llama-bench's tgN.
func runCompare(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench compare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var ours, theirs stringsFlag
	fs.Var(&ours, "ours", "our JSON/JSONL output files (comma-separated or repeated), one per round")
	fs.Var(&theirs, "theirs", "llama-bench's JSON/JSONL output files, one per round")
	if err := fs.Parse(args); err != nil {
		return err
	}
	oursFiles, theirsFiles := splitFiles(ours), splitFiles(theirs)
	if len(oursFiles) == 0 || len(theirsFiles) == 0 {
		return errors.New("compare needs -ours and -theirs files")
	}
	o, order, err := collect(oursFiles)
	if err != nil {
		return err
	}
	t, _, err := collect(theirsFiles)
	if err != nil {
		return err
	}
	if len(order) == 0 {
		return errors.New("no results in our files")
	}
	first := o[order[0]].first
	fmt.Fprintf(stdout, "model: %s (%s), backends: %s, cpu: %s", first.str("model_type"), first.str("model_filename"),
		first.str("backends"), first.str("cpu_info"))
	if g := first.str("gpu_info"); g != "" {
		fmt.Fprintf(stdout, ", gpu: %s", g)
	}
	fmt.Fprintf(stdout, "\nllama.cpp build: ours %s, llama-bench %s; rounds: %d ours, %d llama-bench\n\n",
		first.str("build_commit"), t[firstKey(t)].first.str("build_commit"), len(oursFiles), len(theirsFiles))

	// Settings that differ between tests become columns, as in llama-bench's table.
	var varying []string
	for _, k := range compareKeys {
		if k == "n_prompt" || k == "n_gen" || k == "n_depth" {
			continue
		}
		for _, key := range order[1:] {
			if o[key].first.str(k) != first.str(k) {
				varying = append(varying, k)
				break
			}
		}
	}
	header := append(slices.Clone(varying), "test", "ours t/s", "llama-bench t/s", "ours/llama-bench", "per round")
	rows := [][]string{}
	for _, key := range order {
		s := o[key]
		base := s.first.key() + "\x00"
		ref := t[base]
		var row []string
		for _, k := range varying {
			row = append(row, s.first.str(k))
		}
		name := s.first.testName()
		if s.first.app() != "" {
			name += " vs " + instanceName(s.first)
		}
		row = append(row, name, meanSD(s.samples))
		if ref == nil {
			row = append(row, "-", "-", "-")
		} else {
			ratio := avgF(s.samples) / avgF(ref.samples)
			var per []string
			for i := range min(len(s.rounds), len(ref.rounds)) {
				per = append(per, fmt.Sprintf("%.3f", s.rounds[i]/ref.rounds[i]))
			}
			row = append(row, meanSD(ref.samples), fmt.Sprintf("%.3f", ratio), strings.Join(per, " "))
		}
		rows = append(rows, row)
	}
	writeTable(stdout, header, rows)
	return nil
}

func firstKey(m map[string]*series) string {
	for k := range m {
		return k
	}
	return ""
}

func instanceName(r record) string {
	t := instance{nPrompt: int(r.num("n_prompt")), nGen: int(r.num("n_gen")), nDepth: int(r.num("n_depth"))}
	return t.name()
}

func meanSD(v []float64) string {
	return fmt.Sprintf("%.2f ± %.2f", avgF(v), stdevF(v))
}

// writeTable writes a markdown table, numbers right-aligned.
func writeTable(w io.Writer, header []string, rows [][]string) {
	width := make([]int, len(header))
	for i, h := range header {
		width[i] = len([]rune(h))
	}
	for _, r := range rows {
		for i, c := range r {
			width[i] = max(width[i], len([]rune(c)))
		}
	}
	line := func(cells []string, right func(i int) bool) {
		var b strings.Builder
		b.WriteString("|")
		for i, c := range cells {
			padN := width[i] - len([]rune(c))
			if right(i) {
				b.WriteString(" " + strings.Repeat(" ", padN) + c + " |")
			} else {
				b.WriteString(" " + c + strings.Repeat(" ", padN) + " |")
			}
		}
		fmt.Fprintln(w, b.String())
	}
	numeric := func(i int) bool { return i > len(header)-5 }
	line(header, numeric)
	sep := make([]string, len(header))
	for i := range sep {
		if numeric(i) {
			sep[i] = strings.Repeat("-", width[i]-1) + ":"
		} else {
			sep[i] = strings.Repeat("-", width[i])
		}
	}
	line(sep, func(int) bool { return false })
	for _, r := range rows {
		line(r, numeric)
	}
}
