package main

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
)

// fields are the columns of llama-bench's csv, json, jsonl and sql output, in its
// order. The application-path rows add "sampling" (see result.values).
var fields = []string{
	"build_commit", "build_number", "cpu_info", "gpu_info", "backends",
	"model_filename", "model_type", "model_size", "model_n_params", "n_batch",
	"n_ubatch", "n_threads", "cpu_mask", "cpu_strict", "poll",
	"type_k", "type_v", "n_gpu_layers", "n_cpu_moe", "split_mode",
	"main_gpu", "no_kv_offload", "flash_attn", "devices", "tensor_split",
	"tensor_buft_overrides", "load_mode", "lazy_mode", "embeddings", "no_op_offload",
	"no_host", "fit_target", "fit_min_ctx", "n_prompt", "n_gen",
	"n_depth", "test_time", "avg_ns", "stddev_ns", "avg_ts", "stddev_ts",
}

// samplingField is the one field llamago adds, only when -app or -app-device asked for
// application-path rows: "none" for llama-bench's tests (no sampling at all), "auto"
// for -app (GenerateText placed the chain itself), "device" for -app-device (attached
// by hand).
const samplingField = "sampling"

type fieldType int

const (
	typeString fieldType = iota
	typeBool
	typeInt
	typeFloat
)

func typeOf(field string) fieldType {
	switch field {
	case "build_number", "n_batch", "n_ubatch", "n_threads", "poll", "model_size", "model_n_params",
		"n_gpu_layers", "main_gpu", "n_prompt", "n_gen", "n_depth", "avg_ns", "stddev_ns",
		"no_op_offload", "n_cpu_moe", "fit_target", "fit_min_ctx", "flash_attn":
		return typeInt
	case "no_kv_offload", "cpu_strict", "embeddings", "no_host":
		return typeBool
	case "avg_ts", "stddev_ts":
		return typeFloat
	}
	return typeString
}

// env is what every row shares: the build and the machine.
type env struct {
	buildCommit string
	buildNumber int
	cpuInfo     string
	gpuInfo     string
	backends    string
}

// result is one finished test.
type result struct {
	*instance
	env         *env
	modelType   string
	modelSize   uint64
	modelParams uint64
	testTime    time.Time
	samplesNs   []uint64
	sampling    string // "" (no -app), "none", "cpu" or "device"
}

func (r *result) ts() []float64 { return tokensPerSecond(r.samplesNs, r.nPrompt+r.nGen) }

func b2s(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

func (r *result) tensorSplitString() string {
	last := 0
	for i, v := range r.tensorSplit {
		if v > 0 {
			last = i
		}
	}
	parts := make([]string, last+1)
	for i := range parts {
		v := float32(0)
		if i < len(r.tensorSplit) {
			v = r.tensorSplit[i]
		}
		parts[i] = strconv.FormatFloat(float64(v), 'f', 2, 32)
	}
	return strings.Join(parts, "/")
}

func (r *result) devicesString() string {
	if len(r.devices) == 0 {
		return "auto"
	}
	return strings.Join(r.devices, "/")
}

// values are the row's values in the order of fieldNames(), formatted as llama-bench
// formats them (booleans as 0/1, rates with six decimals).
func (r *result) values() []string {
	ts := r.ts()
	v := []string{
		r.env.buildCommit, strconv.Itoa(r.env.buildNumber), r.env.cpuInfo, r.env.gpuInfo, r.env.backends,
		r.model, r.modelType, strconv.FormatUint(r.modelSize, 10), strconv.FormatUint(r.modelParams, 10), strconv.Itoa(r.nBatch),
		strconv.Itoa(r.nUBatch), strconv.Itoa(r.nThreads), r.cpuMask, b2s(r.cpuStrict), strconv.Itoa(r.poll),
		r.typeK, r.typeV, strconv.Itoa(r.nGPULayers), strconv.Itoa(r.nCPUMoE), r.splitMode,
		strconv.Itoa(r.mainGPU), b2s(r.noKVOffload), strconv.Itoa(r.flashAttn), r.devicesString(), r.tensorSplitString(),
		r.overrides, r.loadMode, r.lazyMode, b2s(r.embeddings), b2s(r.noOpOffload),
		b2s(r.noHost), strconv.Itoa(r.fitTarget), strconv.Itoa(r.fitMinCtx), strconv.Itoa(r.nPrompt), strconv.Itoa(r.nGen),
		strconv.Itoa(r.nDepth), r.testTime.UTC().Format("2006-01-02T15:04:05Z"),
		strconv.FormatUint(avgNs(r.samplesNs), 10), strconv.FormatUint(stdevNs(r.samplesNs), 10),
		strconv.FormatFloat(avgF(ts), 'f', 6, 64), strconv.FormatFloat(stdevF(ts), 'f', 6, 64),
	}
	if r.sampling != "" {
		v = append(v, r.sampling)
	}
	return v
}

// fieldNames are the fields of the run's rows: llama-bench's, plus "sampling" when
// application-path rows were asked for (every row has it then, so csv and sql stay
// rectangular).
func fieldNames(p *params) []string {
	if len(p.app) > 0 {
		return append(slices.Clip(fields), samplingField)
	}
	return fields
}

type printer interface {
	header(p *params)
	test(r *result)
	footer()
}

func newPrinter(format string, w io.Writer, e *env) printer {
	switch format {
	case "csv":
		return &csvPrinter{w: w}
	case "json":
		return &jsonPrinter{w: w, first: true}
	case "jsonl":
		return &jsonlPrinter{w: w}
	case "md":
		return &mdPrinter{w: w, env: e}
	case "sql":
		return &sqlPrinter{w: w}
	}
	return nil
}

type csvPrinter struct {
	w      io.Writer
	fields []string
}

func (c *csvPrinter) header(p *params) {
	c.fields = fieldNames(p)
	fmt.Fprintln(c.w, strings.Join(c.fields, ","))
}

func (c *csvPrinter) test(r *result) {
	vs := r.values()
	for i, v := range vs {
		vs[i] = `"` + strings.ReplaceAll(v, `"`, `""`) + `"`
	}
	fmt.Fprintln(c.w, strings.Join(vs, ","))
}

func (c *csvPrinter) footer() {}

// jsonValue formats a value for JSON by its field's type. Strings are escaped as
// JSON requires (llama-bench escapes bytes above 0x7f too, producing invalid
// escapes; UTF-8 passes through here).
func jsonValue(field, v string) string {
	switch typeOf(field) {
	case typeString:
		var b strings.Builder
		b.WriteByte('"')
		for i := 0; i < len(v); i++ {
			switch c := v[i]; {
			case c == '"':
				b.WriteString(`\"`)
			case c == '\\':
				b.WriteString(`\\`)
			case c < 0x20:
				fmt.Fprintf(&b, `\u%04x`, c)
			default:
				b.WriteByte(c)
			}
		}
		b.WriteByte('"')
		return b.String()
	case typeBool:
		if v == "0" {
			return "false"
		}
		return "true"
	}
	return v
}

func joinSamples(r *result) (ns, ts string) {
	a := make([]string, len(r.samplesNs))
	for i, v := range r.samplesNs {
		a[i] = strconv.FormatUint(v, 10)
	}
	t := r.ts()
	b := make([]string, len(t))
	for i, v := range t {
		b[i] = formatG6(v)
	}
	return strings.Join(a, ", "), strings.Join(b, ", ")
}

// formatG6 is C++'s default stream formatting of a double (%g, 6 significant digits).
func formatG6(v float64) string {
	s := strconv.FormatFloat(v, 'g', 6, 64)
	if i := strings.IndexByte(s, 'e'); i >= 0 && len(s)-i == 3 {
		s = s[:i+2] + "0" + s[i+2:] // e+6 -> e+06, as printf writes exponents
	}
	return s
}

type jsonPrinter struct {
	w      io.Writer
	first  bool
	fields []string
}

func (j *jsonPrinter) header(p *params) {
	j.fields = fieldNames(p)
	fmt.Fprint(j.w, "[\n")
}

func (j *jsonPrinter) test(r *result) {
	if !j.first {
		fmt.Fprint(j.w, ",\n")
	}
	j.first = false
	var b strings.Builder
	b.WriteString("  {\n")
	for i, v := range r.values() {
		fmt.Fprintf(&b, "    %q: %s,\n", j.fields[i], jsonValue(j.fields[i], v))
	}
	ns, ts := joinSamples(r)
	fmt.Fprintf(&b, "    \"samples_ns\": [ %s ],\n", ns)
	fmt.Fprintf(&b, "    \"samples_ts\": [ %s ]\n", ts)
	b.WriteString("  }")
	io.WriteString(j.w, b.String())
}

func (j *jsonPrinter) footer() { fmt.Fprint(j.w, "\n]\n") }

type jsonlPrinter struct {
	w      io.Writer
	fields []string
}

func (j *jsonlPrinter) header(p *params) { j.fields = fieldNames(p) }

func (j *jsonlPrinter) test(r *result) {
	var b strings.Builder
	b.WriteString("{")
	for i, v := range r.values() {
		fmt.Fprintf(&b, "%q: %s, ", j.fields[i], jsonValue(j.fields[i], v))
	}
	ns, ts := joinSamples(r)
	fmt.Fprintf(&b, "\"samples_ns\": [ %s ],\"samples_ts\": [ %s ]}\n", ns, ts)
	io.WriteString(j.w, b.String())
}

func (j *jsonlPrinter) footer() {}

type sqlPrinter struct {
	w      io.Writer
	fields []string
}

func (s *sqlPrinter) header(p *params) {
	s.fields = fieldNames(p)
	fmt.Fprintln(s.w, "CREATE TABLE IF NOT EXISTS llama_bench (")
	for i, f := range s.fields {
		t := map[fieldType]string{typeString: "TEXT", typeBool: "INTEGER", typeInt: "INTEGER", typeFloat: "REAL"}[typeOf(f)]
		sep := ","
		if i == len(s.fields)-1 {
			sep = ""
		}
		fmt.Fprintf(s.w, "  %s %s%s\n", f, t, sep)
	}
	fmt.Fprintln(s.w, ");")
	fmt.Fprintln(s.w)
}

func (s *sqlPrinter) test(r *result) {
	vs := r.values()
	for i, v := range vs {
		vs[i] = "'" + strings.ReplaceAll(v, "'", "''") + "'"
	}
	fmt.Fprintf(s.w, "INSERT INTO llama_bench (%s) VALUES (%s);\n", strings.Join(s.fields, ", "), strings.Join(vs, ", "))
}

func (s *sqlPrinter) footer() {}

// mdPrinter writes llama-bench's markdown table: the model columns, the parameters
// that differ from the defaults (or have several values), the test and t/s.
type mdPrinter struct {
	w      io.Writer
	env    *env
	fields []string
}

func mdWidth(field string) int {
	switch field {
	case "model":
		return -30
	case "t/s":
		return 20
	case "size", "params":
		return 10
	case "n_gpu_layers", "flash_attn":
		return 3
	case "n_threads", "n_batch":
		return 7
	case "n_ubatch":
		return 8
	case "type_k", "type_v", "split_mode":
		return 6
	case "load_mode":
		return 10
	case "devices":
		return -12
	case "test":
		return 15
	case "no_op_offload", "no_host":
		return 4
	}
	w := max(len(field), 10)
	if typeOf(field) == typeString {
		return -w
	}
	return w
}

var mdNames = map[string]string{
	"n_gpu_layers": "ngl", "split_mode": "sm", "n_threads": "threads", "no_kv_offload": "nkvo",
	"flash_attn": "fa", "load_mode": "lm", "embeddings": "embd", "no_op_offload": "nopo", "no_host": "noh",
	"devices": "dev", "tensor_split": "ts", "tensor_buft_overrides": "ot", "fit_target": "fitt", "fit_min_ctx": "fitc",
}

// pad pads s to |width| bytes, on the left for positive widths, as printf("%*s").
func pad(s string, width int) string {
	n := width
	if n < 0 {
		n = -n
	}
	if len(s) >= n {
		return s
	}
	if width < 0 {
		return s + strings.Repeat(" ", n-len(s))
	}
	return strings.Repeat(" ", n-len(s)) + s
}

func differs[T any](v []T, def []T, eq func(a, b T) bool) bool {
	return !slices.EqualFunc(v, def, eq)
}

func eq[T comparable](a, b T) bool { return a == b }

func (m *mdPrinter) header(p *params) {
	d := defaults()
	cpuBackend := strings.Contains(m.env.backends, "CPU") || strings.Contains(m.env.backends, "BLAS") ||
		strings.Contains(m.env.backends, "ZenDNN")
	f := []string{"model", "size", "params", "backend"}
	if !cpuBackend {
		f = append(f, "n_gpu_layers")
	}
	add := func(name string, show bool) {
		if show {
			f = append(f, name)
		}
	}
	add("n_cpu_moe", differs(p.nCPUMoE, d.nCPUMoE, eq))
	add("n_threads", differs(p.nThreads, d.nThreads, eq) || cpuBackend)
	add("cpu_mask", differs(p.cpuMask, d.cpuMask, eq))
	add("cpu_strict", differs(p.cpuStrict, d.cpuStrict, eq))
	add("poll", differs(p.poll, d.poll, eq))
	add("n_batch", differs(p.nBatch, d.nBatch, eq))
	add("n_ubatch", differs(p.nUBatch, d.nUBatch, eq))
	add("type_k", differs(p.typeK, d.typeK, eq))
	add("type_v", differs(p.typeV, d.typeV, eq))
	add("main_gpu", differs(p.mainGPU, d.mainGPU, eq))
	add("split_mode", differs(p.splitMode, d.splitMode, eq))
	add("no_kv_offload", differs(p.noKVOffload, d.noKVOffload, eq))
	add("flash_attn", differs(p.flashAttn, d.flashAttn, eq))
	add("devices", differs(p.devices, d.devices, slices.Equal))
	add("tensor_split", differs(p.tensorSplit, d.tensorSplit, slices.Equal))
	add("tensor_buft_overrides", differs(p.overrides, d.overrides, eq))
	add("load_mode", differs(p.loadMode, d.loadMode, eq))
	add("lazy_mode", differs(p.lazyMode, d.lazyMode, eq))
	add("embeddings", differs(p.embeddings, d.embeddings, eq))
	add("no_op_offload", differs(p.noOpOffload, d.noOpOffload, eq))
	add("no_host", differs(p.noHost, d.noHost, eq))
	add("fit_target", differs(p.fitTarget, d.fitTarget, eq))
	add("fit_min_ctx", differs(p.fitMinCtx, d.fitMinCtx, eq))
	f = append(f, "test", "t/s")
	m.fields = f

	var b strings.Builder
	b.WriteString("|")
	for _, name := range f {
		disp := name
		if n, ok := mdNames[name]; ok {
			disp = n
		}
		b.WriteString(" " + pad(disp, mdWidth(name)) + " |")
	}
	b.WriteString("\n|")
	for _, name := range f {
		w := mdWidth(name)
		end := "-"
		if w > 0 {
			end = ":"
		}
		n := max(w, -w)
		b.WriteString(" " + strings.Repeat("-", n-1) + end + " |")
	}
	b.WriteString("\n")
	io.WriteString(m.w, b.String())
}

func (m *mdPrinter) test(r *result) {
	names := fields
	vals := r.values()
	var b strings.Builder
	b.WriteString("|")
	for _, f := range m.fields {
		var v string
		switch f {
		case "model":
			v = r.modelType
		case "size":
			if r.modelSize < 1<<30 {
				v = fmt.Sprintf("%.2f MiB", float64(r.modelSize)/1024/1024)
			} else {
				v = fmt.Sprintf("%.2f GiB", float64(r.modelSize)/1024/1024/1024)
			}
		case "params":
			if r.modelParams < 1e9 {
				v = fmt.Sprintf("%.2f M", float64(r.modelParams)/1e6)
			} else {
				v = fmt.Sprintf("%.2f B", float64(r.modelParams)/1e9)
			}
		case "backend":
			v = r.env.backends
		case "test":
			v = r.name()
		case "t/s":
			ts := r.ts()
			v = fmt.Sprintf("%.2f ± %.2f", avgF(ts), stdevF(ts))
		default:
			v = vals[slices.Index(names, f)]
		}
		w := mdWidth(f)
		if f == "t/s" {
			w++ // '±' is two bytes, as llama-bench counts
		}
		b.WriteString(" " + pad(v, w) + " |")
	}
	b.WriteString("\n")
	io.WriteString(m.w, b.String())
}

func (m *mdPrinter) footer() {
	fmt.Fprintf(m.w, "\nbuild: %s (%d)\n", m.env.buildCommit, m.env.buildNumber)
}
