package main

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/llamago/llamago/examples/internal/modelfile"
	"github.com/llamago/llamago/internal/llamacpp"
	"github.com/llamago/llamago/internal/synth"
	"github.com/llamago/llamago/llama"
	"github.com/llamago/llamago/llama/gguf"
)

var tinyModel string // a qwen2-tiny F16 model written once for all tests

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "bench-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		vocab, err := modelfile.VocabPath("qwen2")
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench tests need llama.cpp's models/ directory (make deps):", err)
			return 1
		}
		tinyModel = filepath.Join(dir, "qwen2-tiny-f16.gguf")
		if err := synth.WriteFile(tinyModel, synth.Options{Shape: "qwen2-tiny", VocabPath: vocab, Type: gguf.TypeF16, Seed: 1}); err != nil {
			fmt.Fprintln(os.Stderr, "writing the test model:", err)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

// quick are the test arguments: small enough for seconds on two busy cores.
var quick = []string{"-p", "16", "-n", "4", "-r", "1", "-t", "1"}

func runOurs(t *testing.T, args ...string) []byte {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(t.Context(), append([]string{"-m", tinyModel}, args...), &out, &errOut)
	require.NoError(t, err, "stderr: %s", errOut.String())
	return out.Bytes()
}

// upstreamBench is llama.cpp's llama-bench of this build (make builds it).
func upstreamBench(t *testing.T) string {
	t.Helper()
	p, err := llamacpp.Tool(llama.Backend, "llama-bench")
	require.NoError(t, err)
	return p
}

func runUpstream(t *testing.T, bin string, args ...string) []byte {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), bin, append([]string{"-m", tinyModel}, args...)...)
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	out, err := cmd.Output()
	require.NoError(t, err, "llama-bench: %s", errOut.String())
	return out
}

// upstreamSchema reads the field list and types from llama-bench's source
// (test::get_fields and test::get_field_type), which is always present.
func upstreamSchema(t *testing.T) (names []string, types map[string]string) {
	t.Helper()
	dir, err := modelfile.LlamaCppDir()
	require.NoError(t, err)
	src, err := os.ReadFile(filepath.Join(dir, "tools", "llama-bench", "llama-bench.cpp"))
	require.NoError(t, err)
	s := string(src)

	i := strings.Index(s, "get_fields()")
	require.GreaterOrEqual(t, i, 0, "get_fields() not found in llama-bench.cpp")
	body := s[i:]
	body = body[:strings.Index(body, "};")]
	for _, m := range regexp.MustCompile(`"(\w+)"`).FindAllStringSubmatch(body, -1) {
		names = append(names, m[1])
	}
	require.NotEmpty(t, names)

	i = strings.Index(s, "get_field_type(const std::string & field)")
	require.GreaterOrEqual(t, i, 0, "get_field_type not found in llama-bench.cpp")
	body = s[i:]
	body = body[:strings.Index(body, "\n    }\n")]
	types = map[string]string{}
	for _, m := range regexp.MustCompile(`(?s)if \((.*?)\)\s*\{\s*return (\w+);`).FindAllStringSubmatch(body, -1) {
		for _, f := range regexp.MustCompile(`field == "(\w+)"`).FindAllStringSubmatch(m[1], -1) {
			if _, ok := types[f[1]]; !ok {
				types[f[1]] = m[2]
			}
		}
	}
	for _, n := range names {
		if _, ok := types[n]; !ok {
			types[n] = "STRING"
		}
	}
	return names, types
}

// jsonRecord is one output record with its keys in order and their JSON kinds.
type jsonRecord struct {
	keys   []string
	kinds  map[string]string
	values map[string]any
}

func jsonKind(v any) string {
	switch v := v.(type) {
	case string:
		return "STRING"
	case bool:
		return "BOOL"
	case json.Number:
		if strings.ContainsAny(v.String(), ".eE") {
			return "FLOAT"
		}
		return "INT"
	case []any:
		return "ARRAY"
	}
	return fmt.Sprintf("%T", v)
}

// parseRecords reads JSON (an array) or JSONL output keeping each object's key order.
func parseRecords(t *testing.T, data []byte) []jsonRecord {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var recs []jsonRecord
	array := bytes.HasPrefix(bytes.TrimSpace(data), []byte("["))
	if array {
		tok, err := dec.Token()
		require.NoError(t, err)
		require.Equal(t, json.Delim('['), tok)
	}
	for dec.More() {
		tok, err := dec.Token()
		require.NoError(t, err)
		require.Equal(t, json.Delim('{'), tok)
		r := jsonRecord{kinds: map[string]string{}, values: map[string]any{}}
		for dec.More() {
			k, err := dec.Token()
			require.NoError(t, err)
			var v any
			require.NoError(t, dec.Decode(&v))
			key := k.(string)
			r.keys = append(r.keys, key)
			r.kinds[key] = jsonKind(v)
			r.values[key] = v
		}
		_, err = dec.Token() // '}'
		require.NoError(t, err)
		recs = append(recs, r)
	}
	if array {
		_, err := dec.Token()
		require.NoError(t, err)
	}
	return recs
}

// The values that must agree with llama-bench's for the same model and arguments:
// everything but the timings.
var sameValueFields = []string{
	"build_commit", "build_number", "cpu_info", "gpu_info", "backends", "model_filename", "model_type",
	"model_size", "model_n_params", "n_batch", "n_ubatch", "n_threads", "cpu_mask", "cpu_strict", "poll",
	"type_k", "type_v", "n_gpu_layers", "n_cpu_moe", "split_mode", "main_gpu", "no_kv_offload", "flash_attn",
	"devices", "tensor_split", "tensor_buft_overrides", "load_mode", "lazy_mode", "embeddings", "no_op_offload",
	"no_host", "fit_target", "fit_min_ctx", "n_prompt", "n_gen", "n_depth",
}

func checkSchema(t *testing.T, recs []jsonRecord, names []string, types map[string]string) {
	t.Helper()
	want := append(append([]string{}, names...), "samples_ns", "samples_ts")
	for i, r := range recs {
		assert.Equal(t, want, r.keys, "record %d: field names and order", i)
		for _, n := range names {
			kind := r.kinds[n]
			if types[n] == "FLOAT" && kind == "INT" {
				kind = "FLOAT" // a float that happens to print without a point
			}
			assert.Equal(t, types[n], kind, "record %d: type of %s", i, n)
		}
		assert.Equal(t, "ARRAY", r.kinds["samples_ns"])
		assert.Equal(t, "ARRAY", r.kinds["samples_ts"])
	}
}

func TestJSONMatchesLlamaBench(t *testing.T) {
	names, types := upstreamSchema(t)
	for _, format := range []string{"json", "jsonl"} {
		t.Run(format, func(t *testing.T) {
			ours := parseRecords(t, runOurs(t, append(quick, "-o", format)...))
			require.Len(t, ours, 2, "pp16 and tg4")
			checkSchema(t, ours, names, types)
			assert.Equal(t, json.Number("16"), ours[0].values["n_prompt"])
			assert.Equal(t, json.Number("4"), ours[1].values["n_gen"])

			bin := upstreamBench(t)
			theirs := parseRecords(t, runUpstream(t, bin, append(quick, "-o", format)...))
			require.Len(t, theirs, len(ours))
			for i := range ours {
				assert.Equal(t, theirs[i].keys, ours[i].keys, "record %d: keys", i)
				assert.Equal(t, theirs[i].kinds, ours[i].kinds, "record %d: kinds", i)
				for _, f := range sameValueFields {
					assert.Equal(t, theirs[i].values[f], ours[i].values[f], "record %d: %s", i, f)
				}
			}
		})
	}
}

func TestCSVMatchesLlamaBench(t *testing.T) {
	names, _ := upstreamSchema(t)
	ours, err := csv.NewReader(bytes.NewReader(runOurs(t, append(quick, "-o", "csv")...))).ReadAll()
	require.NoError(t, err)
	require.Len(t, ours, 3)
	assert.Equal(t, names, ours[0])
	bin := upstreamBench(t)
	theirs, err := csv.NewReader(bytes.NewReader(runUpstream(t, bin, append(quick, "-o", "csv")...))).ReadAll()
	require.NoError(t, err)
	require.Len(t, theirs, len(ours))
	assert.Equal(t, theirs[0], ours[0])
	for i := 1; i < len(ours); i++ {
		for j, f := range ours[0] {
			if !strings.Contains(f, "_ns") && !strings.Contains(f, "_ts") && f != "test_time" {
				assert.Equal(t, theirs[i][j], ours[i][j], "row %d: %s", i, f)
			}
		}
	}
}

// The markdown table has the same columns and rows, t/s aside.
func TestMarkdownMatchesLlamaBench(t *testing.T) {
	args := append(quick, "-fa", "0", "-ub", "256")
	ours := strings.Split(string(runOurs(t, args...)), "\n")
	require.GreaterOrEqual(t, len(ours), 6)
	assert.Contains(t, ours[0], "|  fa |") // a parameter given is shown
	assert.Contains(t, ours[2], "pp16")
	assert.Contains(t, ours[3], "tg4")
	bin := upstreamBench(t)
	theirs := strings.Split(string(runUpstream(t, bin, args...)), "\n")
	require.Len(t, ours, len(theirs))
	stripTS := func(line string) string {
		if i := strings.LastIndex(strings.TrimSuffix(line, " |"), "|"); i >= 0 && strings.Contains(line, "±") {
			return line[:i]
		}
		return line
	}
	for i := range ours {
		assert.Equal(t, stripTS(theirs[i]), stripTS(ours[i]), "line %d", i)
	}
}

func TestAppRows(t *testing.T) {
	names, _ := upstreamSchema(t)
	recs := parseRecords(t, runOurs(t, append(quick, "-o", "json", "-app")...))
	require.Len(t, recs, 3, "pp16, tg4, tg4 (app)")
	want := append(append([]string{}, names...), samplingField, "samples_ns", "samples_ts")
	for _, r := range recs {
		assert.Equal(t, want, r.keys)
	}
	assert.Equal(t, "none", recs[1].values[samplingField])
	assert.Equal(t, "auto", recs[2].values[samplingField])
	assert.Equal(t, json.Number("4"), recs[2].values["n_gen"])
	assert.Equal(t, json.Number("0"), recs[2].values["n_prompt"])

	md := string(runOurs(t, append(quick, "-app", "-app-device")...))
	assert.Contains(t, md, "tg4 (app) |")
	assert.Contains(t, md, "tg4 (app, device) |")

	// The breakdown goes to stderr, one line per app test, its parts adding up.
	var out, errOut bytes.Buffer
	require.NoError(t, run(t.Context(), append([]string{"-m", tinyModel}, append(quick, "-app", "-app-device", "-app-breakdown")...), &out, &errOut))
	lines := regexp.MustCompile(`app loop tg4 \(sampling (cpu|device)\): [\d.]+ t/s; per token ([\d.]+) µs: decode call ([\d.]+), wait ([\d.]+), pick ([\d.]+), text ([\d.]+), loop (-?[\d.]+)`).FindAllStringSubmatch(errOut.String(), -1)
	require.Len(t, lines, 2, errOut.String())
	for i, l := range lines {
		assert.Equal(t, []string{"cpu", "device"}[i], l[1])
		var total, parts float64
		for j, f := range l[2:] {
			v, err := strconv.ParseFloat(f, 64)
			require.NoError(t, err)
			if j == 0 {
				total = v
			} else {
				parts += v
			}
		}
		assert.Positive(t, total)
		assert.InDelta(t, total, parts, 0.35, "the parts add up to the time per token (6 roundings to 0.1)")
	}
	assert.NotContains(t, out.String(), "app loop", "the table stays clean")
}

func TestCompare(t *testing.T) {
	dir := t.TempDir()
	ours := filepath.Join(dir, "ours.json")
	theirs := filepath.Join(dir, "theirs.json")
	require.NoError(t, os.WriteFile(ours, runOurs(t, append(quick, "-o", "json", "-app")...), 0o644))
	ref := runUpstream(t, upstreamBench(t), append(quick, "-o", "jsonl")...)
	require.NoError(t, os.WriteFile(theirs, ref, 0o644))
	var out bytes.Buffer
	require.NoError(t, run(t.Context(), []string{"compare", "-ours", ours, "-theirs", theirs}, &out, io.Discard))
	table := out.String()
	for _, row := range []string{"| pp16 ", "| tg4 ", "| tg4 (app) vs tg4 "} {
		assert.Contains(t, table, row)
	}
	assert.Regexp(t, `\| tg4 \(app\) vs tg4 +\| +[0-9.]+ ± [0-9.]+ \| +[0-9.]+ ± [0-9.]+ \| +[0-9]+\.[0-9]{3} \|`, table)
}

// The measured loops make no Go heap allocations (DESIGN.md §7).
func TestLoopsDoNotAllocate(t *testing.T) {
	m, err := llama.LoadModel(t.Context(), tinyModel, nil)
	require.NoError(t, err)
	defer m.Close()
	inst := instance{nPrompt: 8, nGen: 8, nBatch: 4, nUBatch: 4, typeK: "f16", typeV: "f16", nThreads: 1}
	cp, err := inst.contextParams()
	require.NoError(t, err)
	cp.NCtx = 512
	c, err := m.NewContext(cp)
	require.NoError(t, err)
	defer c.Close()
	r, err := newRunner(m, c, inst.nBatch)
	require.NoError(t, err)
	defer r.Close()
	allocs := testing.AllocsPerRun(5, func() {
		if r.pos > 400 {
			_ = r.clear()
		}
		if err := r.gen(2); err != nil {
			panic(err)
		}
		if err := r.prompt(8); err != nil {
			panic(err)
		}
	})
	assert.Zero(t, allocs)
}
