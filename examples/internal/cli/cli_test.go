package cli

import (
	"bytes"
	"errors"
	"flag"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/llamago/llamago/examples/internal/cli/hubtest"
	"github.com/llamago/llamago/llama"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func newFlags() *Flags {
	f := New("test", "A test program.")
	f.Register(Model, Context, Prompt, Sampling)
	return f
}

// A llama-cli command line sets every field it names, long and short forms alike.
func TestLlamaCliCommandLine(t *testing.T) {
	dir := t.TempDir()
	grammar := filepath.Join(dir, "g.gbnf")
	require.NoError(t, os.WriteFile(grammar, []byte(`root ::= "yes" | "no"`), 0o644))
	f := newFlags()
	require.NoError(t, f.Parse(strings.Fields("-m model.gguf -c 8192 -n 128 -p hello -sys be-brief -ngl 20 -t 3 -fa on -ctk q8_0 --cache-type-v q4_0 "+
		"-sm row -ts 3,1 -mg 1 --mlock --no-mmap -b 1024 -ub 256 -s 42 --temp 0.5 --top-k 20 --top-p 0.9 --min-p 0.1 --typical 0.95 "+
		"--top-nsigma 1.5 --xtc-probability 0.3 --xtc-threshold 0.2 --dynatemp-range 0.4 --dynatemp-exp 1.2 --mirostat 2 --mirostat-lr 0.2 "+
		"--mirostat-ent 4 --repeat-last-n 32 --repeat-penalty 1.1 --presence-penalty 0.5 --frequency-penalty 0.25 --dry-multiplier 0.8 "+
		"--dry-base 2 --dry-allowed-length 3 --dry-penalty-last-n 64 --dry-sequence-breaker . --dry-sequence-breaker ! "+
		"-l 15043+1 --logit-bias 7-inf --ignore-eos --grammar-file "+grammar+" -v")))

	mp, err := f.ModelFlags.Params()
	require.NoError(t, err)
	assert.Equal(t, &llama.ModelParams{GPULayers: 20, SplitMode: llama.SplitRow, TensorSplit: []float32{3, 1}, MainGPU: 1, Mlock: true, NoMmap: true}, mp)
	cp, err := f.ContextFlags.Params()
	require.NoError(t, err)
	assert.Equal(t, &llama.ContextParams{NCtx: 8192, NBatch: 1024, NUBatch: 256, Threads: 3, FlashAttention: llama.FlashAttentionOn,
		TypeK: llama.CacheQ8_0, TypeV: llama.CacheQ4_0}, cp)
	prompt, err := f.Text()
	require.NoError(t, err)
	assert.Equal(t, "hello", prompt)
	system, err := f.System()
	require.NoError(t, err)
	assert.Equal(t, "be-brief", system)
	assert.Equal(t, 128, f.MaxTokens())
	assert.True(t, f.IgnoreEOS)
	assert.True(t, f.Verbose)

	sp, err := f.SamplingFlags.Params()
	require.NoError(t, err)
	want := llama.DefaultSamplingParams()
	want.Seed, want.Temperature, want.TopK, want.TopP, want.MinP, want.TypicalP = 42, 0.5, 20, 0.9, 0.1, 0.95
	want.TopNSigma, want.XTCProbability, want.XTCThreshold, want.DynaTempRange, want.DynaTempExponent = 1.5, 0.3, 0.2, 0.4, 1.2
	want.Mirostat, want.MirostatEta, want.MirostatTau = 2, 0.2, 4
	want.RepeatLastN, want.RepeatPenalty, want.PresencePenalty, want.FrequencyPenalty = 32, 1.1, 0.5, 0.25
	want.DRYMultiplier, want.DRYBase, want.DRYAllowedLength, want.DRYLastN = 0.8, 2, 3, 64
	want.DRYBreakers = []string{".", "!"}
	want.LogitBias = map[llama.Token]float32{15043: 1, 7: float32(math.Inf(-1))}
	want.Grammar = `root ::= "yes" | "no"`
	assert.Equal(t, &want, sp)
}

// Long forms work with one dash too (Go's flag package), so older command lines keep working.
func TestOneDashLongForms(t *testing.T) {
	f := newFlags()
	require.NoError(t, f.Parse([]string{"-model", "a.gguf", "-ctx-size", "64", "-temp", "0", "-n-predict", "5"}))
	assert.Equal(t, "a.gguf", f.Model)
	assert.Equal(t, 64, f.CtxSize)
	assert.Equal(t, float32(0), f.Sampling.Temperature)
	assert.Equal(t, 5, f.NPredict)
}

// Bad values are errors that name the flag, before any model is loaded.
func TestBadValues(t *testing.T) {
	for _, args := range [][]string{
		{"-c", "x"}, {"--temp", "warm"}, {"-s", "-2"}, {"-l", "15043"}, {"-l", "x+1"}, {"--undefined-flag"},
	} {
		f := newFlags()
		f.SetOutput(&bytes.Buffer{})
		err := f.Parse(args)
		assert.ErrorIs(t, err, ErrUsage, "%q", args)
	}
	for args, want := range map[string]string{
		"-ngl lots":                "-ngl \"lots\"",
		"-sm diagonal":             "-sm \"diagonal\"",
		"-ts 1,x":                  "-ts",
		"-fa maybe":                "-fa \"maybe\"",
		"-ctk q9":                  "-ctk",
		"-p x -f missing.txt":      "-p and -f",
		"-j {bad":                  "not valid JSON",
		"--grammar x -j {}":        "a grammar and a JSON schema",
		"-f /nonexistent/prompt":   "no such file",
		"--grammar-file /nonexist": "no such file",
	} {
		f := newFlags()
		require.NoError(t, f.Parse(strings.Fields(args)), args)
		_, err1 := f.ModelFlags.Params()
		_, err2 := f.ContextFlags.Params()
		_, err3 := f.Text()
		_, err4 := f.SamplingFlags.Params()
		err := errors.Join(err1, err2, err3, err4)
		if assert.Error(t, err, args) {
			assert.Contains(t, err.Error(), want, args)
		}
	}
	f := newFlags()
	require.NoError(t, f.Parse([]string{"-m", "a.gguf", "-hf", "user/repo"}))
	_, err := f.ModelPath(t.Context(), 0)
	assert.ErrorContains(t, err, "give one")
	f = newFlags()
	require.NoError(t, f.Parse([]string{"-m", "a.gguf", "-m", "b.gguf"}))
	_, err = f.ModelPath(t.Context(), 0)
	assert.ErrorContains(t, err, "more than once")
}

// -h lists every flag under its group, with its forms and defaults.
func TestHelp(t *testing.T) {
	f := newFlags()
	f.Group("mine").Bool(new(bool), "--extra", "a flag of the program's own")
	var out bytes.Buffer
	f.SetOutput(&out)
	assert.ErrorIs(t, f.Parse([]string{"-h"}), flag.ErrHelp)
	help := out.String()
	for _, want := range []string{"A test program.", "\nmodel:\n", "\ncontext:\n", "\nprompt:\n", "\nsampling:\n", "\nlogging:\n", "\nmine:\n",
		"-m, --model FNAME", "-hf, -hfr, --hf-repo <user>/<model>[:quant]", "-ngl, --gpu-layers, --n-gpu-layers N", "(default: all)",
		"-c, --ctx-size N", "--temp, --temperature N", "(default: 0.8)", "--dry-sequence-breaker STRING", "--extra"} {
		assert.Contains(t, help, want)
	}
	assert.Less(t, strings.Index(help, "model:"), strings.Index(help, "sampling:"), "groups in registration order")
}

// With -hf, ProjectorPath downloads the repository's projector (as llama-server -hf),
// unless -mm, -mmu or --no-mmproj say otherwise; a repository without one is text only.
func TestProjectorPath(t *testing.T) {
	h := hubtest.New(t)
	for _, p := range []string{"mmproj-F16.gguf", "mmproj-Q8_0.gguf", "vlm-F16.gguf", "vlm-Q4_K_M.gguf"} {
		h.Add("test/vlm-GGUF", p, []byte("data of "+p))
	}
	h.Add("test/text-GGUF", "text-Q4_K_M.gguf", []byte("text model"))
	cache := t.TempDir()
	h.Setenv(t, cache)
	snapshot := func(repo, p string) string {
		return filepath.Join(cache, "models--test--"+repo, "snapshots", hubtest.Commit, p)
	}
	parse := func(args ...string) *Flags {
		f := New("test", "A test program.")
		f.Register(Model)
		f.RegisterProjector(f.Group("multimodal"), "multimodal projector")
		require.NoError(t, f.Parse(args))
		return f
	}
	projector := func(args ...string) (string, error) {
		f := parse(args...)
		if f.HFRepo != "" {
			if _, err := f.ModelPath(t.Context(), 0); err != nil {
				return "", err
			}
		}
		return f.ProjectorPath(t.Context())
	}

	// --no-mmproj: the model alone
	p, err := projector("-hf", "test/vlm-GGUF:Q4_K_M", "--no-mmproj")
	require.NoError(t, err)
	assert.Empty(t, p)
	assert.Equal(t, []string{"test/vlm-GGUF/vlm-Q4_K_M.gguf"}, h.Downloads())

	// -hf: its projector too, nearest the model's bits (llama.cpp's choice), from the cache next time
	p, err = projector("-hf", "test/vlm-GGUF:Q4_K_M")
	require.NoError(t, err)
	assert.Equal(t, snapshot("vlm-GGUF", "mmproj-Q8_0.gguf"), p)
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	assert.Equal(t, "data of mmproj-Q8_0.gguf", string(b))
	p, err = projector("-hf", "test/vlm-GGUF:Q4_K_M", "--offline")
	require.NoError(t, err)
	assert.Equal(t, snapshot("vlm-GGUF", "mmproj-Q8_0.gguf"), p)
	p, err = projector("-hf", "test/vlm-GGUF:F16")
	require.NoError(t, err)
	assert.Equal(t, snapshot("vlm-GGUF", "mmproj-F16.gguf"), p, "the quant's own")
	p, err = projector("-hf", "test/vlm-GGUF", "-hff", "vlm-F16.gguf")
	require.NoError(t, err)
	assert.Equal(t, snapshot("vlm-GGUF", "mmproj-F16.gguf"), p, "-hff's model's")
	assert.Equal(t, []string{"test/vlm-GGUF/vlm-Q4_K_M.gguf", "test/vlm-GGUF/mmproj-Q8_0.gguf",
		"test/vlm-GGUF/vlm-F16.gguf", "test/vlm-GGUF/mmproj-F16.gguf"}, h.Downloads())

	// -mm wins over -hf's, with or without --no-mmproj (as in llama.cpp); -mmu downloads
	for _, args := range [][]string{{"-hf", "test/vlm-GGUF:Q4_K_M", "-mm", "mine.gguf"}, {"-hf", "test/vlm-GGUF", "-mm", "mine.gguf", "--no-mmproj"}, {"--mmproj", "mine.gguf"}} {
		p, err = projector(args...)
		require.NoError(t, err, args)
		assert.Equal(t, "mine.gguf", p, args)
	}
	url := h.AddURL("vision-mmproj.gguf", []byte("by URL"))
	p, err = projector("-m", "model.gguf", "-mmu", url)
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(cache, "vision-mmproj.gguf"), p, "into llama.cpp's cache, as -mu")
	_, err = projector("-mm", "a.gguf", "--mmproj-url", url)
	assert.ErrorContains(t, err, "give one")
	assert.Len(t, h.Downloads(), 5, "only -mmu's")

	// no projector in the repository, or no -hf: none, and no error
	p, err = projector("-hf", "test/text-GGUF")
	require.NoError(t, err)
	assert.Empty(t, p)
	p, err = projector("-hf", "test/text-GGUF", "--offline")
	require.NoError(t, err)
	assert.Empty(t, p)
	p, err = projector("-m", "model.gguf")
	require.NoError(t, err)
	assert.Empty(t, p)
	assert.Equal(t, "test/text-GGUF/text-Q4_K_M.gguf", h.Downloads()[5])
	assert.Len(t, h.Downloads(), 6)

	// offline, the choice is among the cached projectors; with none cached, text only
	require.NoError(t, os.Remove(snapshot("vlm-GGUF", "mmproj-Q8_0.gguf")))
	p, err = projector("-hf", "test/vlm-GGUF:Q4_K_M", "--offline")
	require.NoError(t, err)
	assert.Equal(t, snapshot("vlm-GGUF", "mmproj-F16.gguf"), p)
	require.NoError(t, os.Remove(snapshot("vlm-GGUF", "mmproj-F16.gguf")))
	p, err = projector("-hf", "test/vlm-GGUF:Q4_K_M", "--offline")
	require.NoError(t, err)
	assert.Empty(t, p)
	assert.Len(t, h.Downloads(), 6)

	var help bytes.Buffer
	f := New("test", "A test program.")
	f.Register(Model)
	f.RegisterProjector(f.Group("multimodal"), "multimodal projector")
	f.PrintHelp(&help)
	for _, want := range []string{"-mm, --mmproj FNAME", "-mmu, --mmproj-url URL", "--no-mmproj, --no-mmproj-auto", "explicitly disable multimodal projector, useful when using -hf"} {
		assert.Contains(t, help.String(), want)
	}
}
