//go:build cuda

package llama

// GPU tests: run on a CUDA machine with `go test -tags cuda ./llama/` (see README).

import (
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/llamago/llamago/internal/llamacpp"
	"github.com/llamago/llamago/internal/synth"
	"github.com/llamago/llamago/internal/testmodel"
	"github.com/llamago/llamago/llama/gguf"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func gpus(t *testing.T) []Device {
	var out []Device
	for _, d := range Devices() {
		if d.Type == DeviceGPU {
			out = append(out, d)
		}
	}
	require.NotEmpty(t, out, "a CUDA build needs a GPU to test on")
	return out
}

func TestGPUDevices(t *testing.T) {
	for _, d := range gpus(t) {
		t.Logf("%s (%s): %.1f of %.1f GiB free", d.Name, d.Description, float64(d.FreeMemory)/(1<<30), float64(d.TotalMemory)/(1<<30))
		assert.Positive(t, d.TotalMemory)
		assert.LessOrEqual(t, d.FreeMemory, d.TotalMemory)
		assert.Equal(t, "CUDA", d.Backend)
	}
	assert.True(t, SupportsGPUOffload())
}

// greedyTokens generates n greedy tokens of a fixed prompt.
func greedyTokens(t *testing.T, m *Model, n int) []Token {
	c, err := m.NewContext(&ContextParams{NCtx: 512})
	require.NoError(t, err)
	defer c.Close()
	s, err := NewSampler(m, Greedy())
	require.NoError(t, err)
	defer s.Close()
	prompt, err := m.Tokenize("The GPU and the CPU agree on", AddSpecial)
	require.NoError(t, err)
	return collect(t, c.Generate(t.Context(), prompt, s, &GenerateParams{MaxTokens: n, IgnoreEOG: true}))
}

func TestGPUOffloadMatchesCPU(t *testing.T) {
	path := synthModel(t, "qwen2-tiny", gguf.TypeF32)
	cpu, err := LoadModel(t.Context(), path, &ModelParams{GPULayers: 0})
	require.NoError(t, err)
	defer cpu.Close()
	gpu, err := LoadModel(t.Context(), path, &ModelParams{GPULayers: -1})
	require.NoError(t, err)
	defer gpu.Close()

	// The same logits within GPU rounding, and the same greedy tokens.
	prompt, err := cpu.Tokenize("Compare the logits", AddSpecial)
	require.NoError(t, err)
	logits := func(m *Model) []float32 {
		c, err := m.NewContext(&ContextParams{NCtx: 256})
		require.NoError(t, err)
		defer c.Close()
		require.NoError(t, c.DecodeTokens(t.Context(), prompt, 0, 0))
		l, err := c.Logits(-1)
		require.NoError(t, err)
		return l
	}
	assert.InDeltaSlice(t, logits(cpu), logits(gpu), 1e-2)
	assert.Equal(t, greedyTokens(t, cpu, 16), greedyTokens(t, gpu, 16))
}

func TestGPUBackendSampling(t *testing.T) {
	m, err := LoadModel(t.Context(), synthModel(t, "qwen2-tiny", gguf.TypeF16), &ModelParams{GPULayers: -1})
	require.NoError(t, err)
	defer m.Close()
	c, err := m.NewContext(&ContextParams{NCtx: 512})
	require.NoError(t, err)
	defer c.Close()
	s, err := NewSamplerFromParams(m, nil)
	require.NoError(t, err)
	defer s.Close()
	ok, err := c.SetBackendSampler(0, s)
	require.NoError(t, err)
	assert.True(t, ok, "the default chain runs on the GPU")
	toks := collect(t, c.Generate(t.Context(), []Token{1, 2, 3}, s, &GenerateParams{MaxTokens: 32, IgnoreEOG: true}))
	assert.Len(t, toks, 32)
	for _, tok := range toks {
		assert.True(t, m.ValidToken(tok))
	}
}

// TestGPUDeviceSamplingRows: the shared argmax and narrowings on the GPU pick what the
// CPU picks from the same GPU logits, sequence by sequence.
func TestGPUDeviceSamplingRows(t *testing.T) {
	m, err := LoadModel(t.Context(), synthModel(t, "llama-tiny", gguf.TypeF16), &ModelParams{GPULayers: -1})
	require.NoError(t, err)
	defer m.Close()
	checkDeviceSamplingRows(t, m)
}

// TestGPUDeviceTopK: top-k narrowing on the GPU draws what the CPU draws from all the
// GPU's logits, same seed.
func TestGPUDeviceTopK(t *testing.T) {
	m, err := LoadModel(t.Context(), synthModel(t, "llama-tiny", gguf.TypeF16), &ModelParams{GPULayers: -1})
	require.NoError(t, err)
	defer m.Close()
	checkDeviceTopK(t, m)
}

func TestGPUOutOfMemory(t *testing.T) {
	// A context far beyond the card: an error, not a crash.
	m, err := LoadModel(t.Context(), synthModel(t, "qwen2-tiny", gguf.TypeF16), &ModelParams{GPULayers: -1})
	require.NoError(t, err)
	defer m.Close()
	_, err = m.NewContext(&ContextParams{NCtx: 1 << 24, NSeqMax: 64, KVUnified: true, TypeK: CacheF32, TypeV: CacheF32})
	require.Error(t, err)
	t.Logf("huge context: %v", err)

	// A model 1.5 times the card (a sparse file) wholly on it: a load error.
	huge, _ := writeTooLargeModel(t, gpus(t)[0])
	_, err = LoadModel(t.Context(), huge, &ModelParams{GPULayers: -1, SplitMode: SplitNone})
	var le *LoadError
	require.ErrorAs(t, err, &le)
	t.Logf("model too large: %v", err)

	// The process lives and the GPU still works.
	assert.NotEmpty(t, greedyTokens(t, m, 4))
}

// writeTooLargeModel writes a sparse F16 model of a 70B shape with the layers (1.71 GB
// each) for 1.5 times dev's memory, whatever the card.
func writeTooLargeModel(t *testing.T, dev Device) (path string, layers int) {
	layers = min(int(dev.TotalMemory*3/2/1_710_000_000)+1, 400)
	path = writeSparseModel(t, synth.Shape{Name: "llama-70b", Arch: "llama", Vocab: "llama-bpe", Embd: 8192, Layers: layers,
		Heads: 64, HeadsKV: 8, FF: 28672, Ctx: 8192, RopeBase: 500000, RMSEps: 1e-5})
	t.Logf("%s: %.1f GiB; model: %d layers of a 70B shape, F16", dev.Description, float64(dev.TotalMemory)/(1<<30), layers)
	return path, layers
}

// writeSparseModel writes the header of a synthetic model of shape s and extends the
// file to its full size without writing the weights (they read as zeros).
func writeSparseModel(t *testing.T, s synth.Shape) string {
	tiny, err := gguf.Open(synthModel(t, "llama-tiny", gguf.TypeF16))
	require.NoError(t, err)
	defer tiny.Close()
	tokens, err := tiny.Strings("tokenizer.ggml.tokens")
	require.NoError(t, err)
	tensors, err := s.Tensors(len(tokens), gguf.TypeF16)
	require.NoError(t, err)
	hparams := map[string]gguf.Value{
		"llama.embedding_length":        gguf.Uint32(uint32(s.Embd)),
		"llama.block_count":             gguf.Uint32(uint32(s.Layers)),
		"llama.attention.head_count":    gguf.Uint32(uint32(s.Heads)),
		"llama.attention.head_count_kv": gguf.Uint32(uint32(s.HeadsKV)),
		"llama.feed_forward_length":     gguf.Uint32(uint32(s.FF)),
		"llama.rope.dimension_count":    gguf.Uint32(uint32(s.HeadDim())),
	}
	meta := make([]gguf.KV, 0, len(tiny.Metadata))
	for _, kv := range tiny.Metadata {
		if v, ok := hparams[kv.Key]; ok {
			kv.Value = v
		}
		meta = append(meta, kv)
	}
	path := filepath.Join(t.TempDir(), s.Name+".gguf")
	f, err := os.Create(path)
	require.NoError(t, err)
	defer f.Close()
	w, err := gguf.NewWriter(f, meta, tensors)
	require.NoError(t, err)
	require.NoError(t, f.Truncate(w.Size()))
	return path
}

func TestGPUMultiSplit(t *testing.T) {
	devs := gpus(t)
	if len(devs) < 2 {
		t.Skipf("needs two GPUs, this machine has %d", len(devs))
	}
	// LLAMAGO_GPU_MODEL runs it on a real-size model (scripts/gpu-validate.sh uses an 8B).
	path := os.Getenv("LLAMAGO_GPU_MODEL")
	if path == "" {
		path = synthModel(t, "mistral-256", gguf.TypeF16) // head size 64: flash attention, hence tensor split, works
	}
	one, err := LoadModel(t.Context(), path, &ModelParams{GPULayers: -1, SplitMode: SplitNone, MainGPU: 0})
	require.NoError(t, err)
	want := greedyTokens(t, one, 16)
	wantLogits := promptLogits(t, one)
	one.Close()
	t.Logf("one GPU: greedy tokens %v", want)

	// Split by layer: the same computation per layer, the same tokens.
	m, err := LoadModel(t.Context(), path, &ModelParams{GPULayers: -1, SplitMode: SplitLayer, TensorSplit: []float32{1, 1}})
	require.NoError(t, err)
	assert.Equal(t, want, greedyTokens(t, m, 16), "split by layer")
	m.Close()

	// Split by row: llama.cpp v0.4.0 cannot load it on CUDA; the error says why.
	_, err = LoadModel(t.Context(), path, &ModelParams{GPULayers: -1, SplitMode: SplitRow, TensorSplit: []float32{1, 1}})
	if err != nil {
		t.Logf("split row: %v", err)
		assert.Contains(t, err.Error(), "split buffers")
	}

	// Tensor parallelism sums partial products across GPUs in another order: logits agree
	// within rounding, and greedy decoding on random weights (near-flat logits) may drift.
	m, err = LoadModel(t.Context(), path, &ModelParams{GPULayers: -1, SplitMode: SplitTensor, TensorSplit: []float32{1, 1}})
	require.NoError(t, err)
	got := promptLogits(t, m)
	cos := cosine(wantLogits, got)
	t.Logf("split tensor: cosine similarity of the prompt's logits with one GPU: %.6f", cos)
	assert.Greater(t, cos, 0.995, "split by tensor")
	assert.Equal(t, argmax(wantLogits), argmax(got))
	t.Logf("split tensor: greedy tokens %v", greedyTokens(t, m, 16))
	m.Close()

	// Picking devices explicitly: only the second GPU.
	m, err = LoadModel(t.Context(), path, &ModelParams{GPULayers: -1, Devices: devs[1:2]})
	require.NoError(t, err)
	assert.Equal(t, want, greedyTokens(t, m, 16))
	m.Close()

	// Tensor split of a model whose head size has no flash-attention kernel: refused in Go
	// (llama.cpp would abort in the first decode).
	_, err = LoadModel(t.Context(), synthModel(t, "qwen2-tiny", gguf.TypeF16), &ModelParams{GPULayers: -1, SplitMode: SplitTensor})
	assert.ErrorIs(t, err, ErrInvalidParams)
}

func promptLogits(t *testing.T, m *Model) []float32 {
	c, err := m.NewContext(&ContextParams{NCtx: 512})
	require.NoError(t, err)
	defer c.Close()
	prompt, err := m.Tokenize("The GPU and the CPU agree on", AddSpecial)
	require.NoError(t, err)
	require.NoError(t, c.DecodeTokens(t.Context(), prompt, 0, 0))
	l, err := c.Logits(-1)
	require.NoError(t, err)
	return l
}

func cosine(a, b []float32) float64 {
	var ab, aa, bb float64
	for i := range a {
		ab += float64(a[i]) * float64(b[i])
		aa += float64(a[i]) * float64(a[i])
		bb += float64(b[i]) * float64(b[i])
	}
	return ab / math.Sqrt(aa*bb)
}

// -ngl auto on a model too large for the card: llama.cpp's fitting, through FitToMemory,
// keeps part of a 70B-shape F16 model (140 GB, a sparse file) in host memory; it decides
// as llama-fit-params of the same build does, and what it decides loads and generates.
func TestGPUFitToMemory(t *testing.T) { fitHuge(t) }

// The fitted parameters of TestGPUFitToMemory load and generate (the weights on the host
// are read from the sparse file: a long load).
func TestGPUFitToMemoryLoads(t *testing.T) {
	huge, res := fitHuge(t)
	start := time.Now()
	m, err := LoadModel(t.Context(), huge, &res.Model)
	require.NoError(t, err)
	defer m.Close()
	load := time.Since(start)
	c, err := m.NewContext(&res.Context)
	require.NoError(t, err)
	defer c.Close()
	s, err := NewSampler(m, Greedy())
	require.NoError(t, err)
	defer s.Close()
	prompt, err := m.Tokenize("The GPU and the CPU share the work", AddSpecial)
	require.NoError(t, err)
	toks := collect(t, c.Generate(t.Context(), prompt, s, &GenerateParams{MaxTokens: 8, IgnoreEOG: true}))
	assert.Len(t, toks, 8)
	g := c.LastGeneration()
	t.Logf("fitted load %.1f s; prompt %d tokens %.1f t/s; generation %d tokens %.2f t/s",
		load.Seconds(), g.PromptTokens, g.PromptTokensPerSecond(), g.GeneratedTokens, g.GenerationTokensPerSecond())
}

// fitHuge writes a model too large for the first GPU, fits it with FitToMemory and checks
// the decision against llama-fit-params of the same build.
func fitHuge(t *testing.T) (string, *FitResult) {
	huge, layers := writeTooLargeModel(t, gpus(t)[0])
	start := time.Now()
	res, err := FitToMemory(t.Context(), huge, nil, nil, nil)
	require.NoError(t, err)
	t.Logf("FitToMemory (%.1f s): %s", time.Since(start).Seconds(), res)
	require.True(t, res.Fitted)
	assert.Greater(t, res.Model.GPULayers, 0)
	assert.Less(t, res.Model.GPULayers, layers+1, "the model does not fit whole")

	tool, err := llamacpp.Tool(Backend, "llama-fit-params")
	require.NoError(t, err)
	// The tool runs beside this process, whose CUDA context it sees as used memory (on
	// the H100: one layer fewer, 47 against 48). Its margin shrinks by what this process
	// holds, so both fit against the same memory.
	var held uint64
	for _, d := range Devices() {
		if d.Index == gpus(t)[0].Index {
			held = d.TotalMemory - d.FreeMemory
		}
	}
	margin := max(1024-int(held>>20), 0)
	t.Logf("this process holds %d MiB of the GPU: llama-fit-params with -fitt %d", held>>20, margin)
	out, err := exec.CommandContext(t.Context(), tool, "-m", huge, "-fitt", strconv.Itoa(margin)).Output()
	require.NoError(t, err)
	args := strings.Fields(strings.TrimSpace(string(out)))
	t.Logf("llama-fit-params: %s", strings.Join(args, " "))
	want := map[string]string{}
	for i := 0; i+1 < len(args); i += 2 {
		want[args[i]] = args[i+1]
	}
	assert.Equal(t, want["-ngl"], strconv.Itoa(res.Model.GPULayers), "layers on the GPU")
	assert.Equal(t, want["-c"], strconv.Itoa(res.Context.NCtx), "context")
	return huge, res
}

// The image prompt on the GPU, against llama-mtmd-cli of the same build: a Qwen2-VL-style
// synthetic projector (391 image tokens for test-1.jpeg) and a Qwen2-0.5B-shape model; the
// time to read the prompt (encode the image, decode it and the text) and to generate.
func TestGPUMultimodalSpeed(t *testing.T) {
	gpus(t)
	opts, err := synth.DefaultProjector(synth.ProjectorQwen2VL)
	require.NoError(t, err)
	opts.TextShape, opts.Embd, opts.Layers, opts.Heads, opts.FF = "qwen2-0.5b", 1280, 32, 16, 5120
	dir := t.TempDir()
	model, projector := filepath.Join(dir, "llm.gguf"), filepath.Join(dir, "mmproj.gguf")
	require.NoError(t, synth.WriteTextFile(model, opts, synth.Options{VocabPath: vocabPath(t, "qwen2"), Type: gguf.TypeQ8_0, Seed: 4}))
	require.NoError(t, synth.WriteProjectorFile(projector, opts))
	image := testmodel.MediaFile(t, "test-1.jpeg")
	cli, err := llamacpp.Tool(Backend, "llama-mtmd-cli")
	require.NoError(t, err)
	// The image twice: the CLI's first encode pays the process's CUDA set-up,
	// its second is warm, like ours after round 0.
	slice := regexp.MustCompile(`image slice encoded in (\d+) ms|image decoded \(batch \d+/\d+\) in (\d+) ms`)
	for round := range 3 {
		start := time.Now()
		out, err := exec.CommandContext(t.Context(), cli, "-m", model, "--mmproj", projector, "--image", image, "--image", image,
			"-p", "Describe the image.", "-n", "32", "--temp", "0", "--jinja", "-c", "4096", "-ngl", "99", "-lv", "4").CombinedOutput()
		require.NoError(t, err, "%s", out)
		var lines []string
		for _, l := range strings.Split(string(out), "\n") {
			if slice.MatchString(l) || strings.Contains(l, "prompt eval time") || strings.Contains(l, " eval time") {
				lines = append(lines, strings.TrimSpace(l))
			}
		}
		t.Logf("round %d llama-mtmd-cli (%.2f s wall): %s", round, time.Since(start).Seconds(), strings.Join(lines, " | "))

		m, err := LoadModel(t.Context(), model, &ModelParams{GPULayers: -1})
		require.NoError(t, err)
		c, err := m.NewContext(&ContextParams{NCtx: 4096})
		require.NoError(t, err)
		p, err := m.LoadProjector(projector, nil)
		require.NoError(t, err)
		data, err := os.ReadFile(image)
		require.NoError(t, err)
		img, err := p.DecodeMedia(data)
		require.NoError(t, err)
		tmpl, err := NewChatTemplate(m, nil)
		require.NoError(t, err)
		prompt, err := tmpl.Apply(&ChatRequest{Messages: []Message{{Role: RoleUser, Content: MediaMarker + "Describe the image."}}})
		require.NoError(t, err)
		s, err := NewSampler(m, Greedy())
		require.NoError(t, err)
		for _, err := range c.GenerateMedia(t.Context(), p, prompt.Prompt, []*Media{img}, s, &GenerateParams{MaxTokens: 32, IgnoreEOG: true}) {
			require.NoError(t, err)
		}
		g := c.LastGeneration()
		t.Logf("round %d llamago: prompt %d tokens (%d image) in %.1f ms; %d generated at %.1f t/s", round, g.PromptTokens,
			g.MediaTokens, float64(g.Prompt.Microseconds())/1000, g.GeneratedTokens, g.GenerationTokensPerSecond())
		// The image alone (encode and its decode), as the CLI's per-image lines count it.
		mp, err := p.Prompt(MediaMarker, []*Media{img}, false)
		require.NoError(t, err)
		require.NoError(t, c.MemoryClear(true))
		start = time.Now()
		_, err = c.EvalMedia(t.Context(), mp, 0, 0)
		require.NoError(t, err)
		t.Logf("round %d llamago: image alone (%d tokens, encode + decode) %.1f ms", round, mp.MediaTokens(), float64(time.Since(start).Microseconds())/1000)
		mp.Close()
		for _, cl := range []interface{ Close() error }{s, tmpl, img, p, c, m} {
			cl.Close()
		}
	}
}
