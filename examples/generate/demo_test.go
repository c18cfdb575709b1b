package main

import (
	"bytes"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/llamago/llamago/examples/internal/modelfile"
	"github.com/llamago/llamago/llama"
	"github.com/llamago/llamago/llama/gguf"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Tests of the demo model, models/kjv-demo.gguf (scripts/train-demo-model), the default
// of `make run` and `make chat`. They are skipped when the file is missing;
// LLAMAGO_DEMO_MODEL points them at another copy.

func demoModel(t *testing.T) string {
	t.Helper()
	p, err := modelfile.DemoPath()
	if err != nil {
		t.Skipf("%v (train it with scripts/train-demo-model)", err)
	}
	return p
}

// Greedy continuations of well-known verse openings recite the verses (the model was
// trained to memorise the text; none of these chapters is held out).
func TestDemoModelRecitesVerses(t *testing.T) {
	path := demoModel(t)
	for _, c := range []struct{ prompt, next string }{
		{"In the beginning God created", " the heaven and the earth."},                     // Genesis 1:1
		{"For God so loved the world,", " that he gave his only begotten Son"},             // John 3:16
		{"The LORD is my shepherd;", " I shall not want."},                                 // Psalm 23:1
		{"Our Father which art in heaven,", " Hallowed be thy name."},                      // Matthew 6:9
		{"Blessed are the meek:", " for they shall inherit the earth."},                    // Matthew 5:5
		{"Though I speak with the tongues of men and of angels,", " and have not charity"}, // 1 Corinthians 13:1
	} {
		t.Run(c.prompt, func(t *testing.T) {
			var out bytes.Buffer
			require.NoError(t, run(t.Context(), &out, "-m", path, "-p", c.prompt, "-n", "16", "-c", "256", "-t", "2", "--temp", "0"))
			assert.True(t, strings.HasPrefix(out.String(), c.prompt+c.next), "got %q, want it to start with %q", out.String(), c.prompt+c.next)
		})
	}
}

// The default prompt continues as one text: the model never emits BOS (which would
// start a new document: the text would jump to another verse) nor ends before 128
// tokens (Genesis 1 is longer).
func TestDemoModelStaysInText(t *testing.T) {
	path := demoModel(t)
	m, err := llama.LoadModel(t.Context(), path, &llama.ModelParams{GPULayers: 0})
	require.NoError(t, err)
	defer m.Close()
	c, err := m.NewContext(&llama.ContextParams{NCtx: 512, Threads: 2})
	require.NoError(t, err)
	defer c.Close()
	s, err := llama.NewSampler(m, llama.Greedy())
	require.NoError(t, err)
	defer s.Close()
	prompt, err := m.Tokenize("In the beginning God", llama.AddSpecial)
	require.NoError(t, err)
	var res llama.GenerateResult
	var toks []llama.Token
	for g, err := range c.Generate(t.Context(), prompt, s, &llama.GenerateParams{MaxTokens: 128}) {
		require.NoError(t, err)
		toks = append(toks, g.Token)
	}
	res = c.LastGeneration()
	text, err := m.Detokenize(toks, 0)
	require.NoError(t, err)
	assert.Len(t, toks, 128, "stopped early (%s): %q", res.FinishReason, text)
	if i := slices.Index(toks, m.Vocab().BOS); i >= 0 {
		before, err := m.Detokenize(toks[:i], 0)
		require.NoError(t, err)
		t.Errorf("BOS generated after %q", before)
	}
	want := "created the heaven and the earth. And the earth was without form, and void;"
	assert.True(t, strings.HasPrefix(strings.TrimLeft(text, " "), want), "got %q", text)
}

// llama.cpp computes what PyTorch computed when training: the GGUF carries PyTorch's
// top token and its logit at each position of a check sequence (written by the
// exporter), which catches a wrong rope convention or tensor layout. When the exporter
// suppressed BOS (llamago.demo.bos_suppressed), PyTorch's top token is the best other
// than BOS, and llama.cpp's BOS logit is exactly 0.
func TestDemoModelMatchesPyTorch(t *testing.T) {
	path := demoModel(t)
	f, err := gguf.Open(path)
	require.NoError(t, err)
	tokens := metaArray[int32](t, f, "llamago.demo.check.tokens")
	top := metaArray[int32](t, f, "llamago.demo.check.top_token")
	topLogit := metaArray[float32](t, f, "llamago.demo.check.top_logit")
	bosSuppressed, _ := f.Bool("llamago.demo.bos_suppressed")
	require.NoError(t, f.Close())
	require.NotEmpty(t, tokens)
	require.Len(t, top, len(tokens))
	require.Len(t, topLogit, len(tokens))

	m, err := llama.LoadModel(t.Context(), path, &llama.ModelParams{GPULayers: 0})
	require.NoError(t, err)
	defer m.Close()
	n := len(tokens)
	c, err := m.NewContext(&llama.ContextParams{NCtx: max(n, 64), NBatch: max(n, 64), NUBatch: max(n, 64), Threads: 2,
		TypeK: llama.CacheF32, TypeV: llama.CacheF32, FlashAttention: llama.FlashAttentionOff})
	require.NoError(t, err)
	defer c.Close()
	b, err := llama.NewBatch(n, 1)
	require.NoError(t, err)
	defer b.Close()
	for i, tok := range tokens {
		require.NoError(t, b.Add(llama.Token(tok), llama.Pos(i), true, 0))
	}
	require.NoError(t, c.Decode(t.Context(), b))

	agree := 0
	for i := range n {
		logits, err := c.LogitsView(i)
		require.NoError(t, err)
		if bosSuppressed {
			require.Zero(t, logits[m.Vocab().BOS], "position %d: BOS logit", i)
		}
		best := 0
		for j, v := range logits {
			if v > logits[best] {
				best = j
			}
		}
		if best == int(top[i]) {
			agree++
		}
		// Q8_0 weights (and activations) keep the logits within about 1% of the largest.
		tol := 0.05 * max(1, float64(abs(topLogit[i])))
		assert.InDelta(t, topLogit[i], logits[top[i]], tol, "position %d: logit of PyTorch's top token %d", i, top[i])
		assert.LessOrEqual(t, float64(logits[best]-logits[top[i]]), tol, "position %d: llama.cpp prefers %d to PyTorch's %d", i, best, top[i])
	}
	assert.GreaterOrEqual(t, agree, n*9/10, "top token agrees at %d of %d positions", agree, n)
}

// The model card is in the metadata, and the file stays small enough to commit.
func TestDemoModelCard(t *testing.T) {
	path := demoModel(t)
	st, err := os.Stat(path)
	require.NoError(t, err)
	assert.LessOrEqual(t, st.Size(), int64(30<<20))
	f, err := gguf.Open(path)
	require.NoError(t, err)
	defer f.Close()
	for _, k := range []string{"general.name", "general.description", "general.license", "llamago.demo.data", "llamago.demo.tokenizer", "llamago.demo.training_command"} {
		s, err := f.String(k)
		if assert.NoError(t, err, k) {
			assert.NotEmpty(t, s, k)
		}
	}
	for _, k := range []string{"llamago.demo.parameters", "llamago.demo.training_steps"} {
		v, err := f.Uint64(k)
		if assert.NoError(t, err, k) {
			assert.Positive(t, v, k)
		}
	}
	for _, k := range []string{"llamago.demo.final_train_loss", "llamago.demo.final_val_loss"} {
		v, err := f.Float32(k)
		if assert.NoError(t, err, k) {
			assert.Positive(t, v, k)
		}
	}
	d, err := f.String("llamago.demo.data")
	require.NoError(t, err)
	assert.Contains(t, d, "bible-kjv-text")
	// The committed model predates train.py's BOS-target fix; the exporter suppresses BOS
	// (see scripts/train-demo-model/README.md). output.weight is then a derived copy of
	// token_embd.weight, not counted in the trained parameters.
	if ok, err := f.Bool("llamago.demo.bos_suppressed"); assert.NoError(t, err, "llamago.demo.bos_suppressed") && ok {
		_, has := f.Tensor("output.weight")
		assert.True(t, has, "output.weight (token_embd.weight with the BOS row zero)")
		desc, err := f.String("general.description")
		require.NoError(t, err)
		assert.Contains(t, desc, "BOS")
	}
}

func metaArray[T int32 | float32](t *testing.T, f *gguf.File, key string) []T {
	t.Helper()
	v, ok := f.Lookup(key)
	require.True(t, ok, "%s missing", key)
	a, ok := v.Any().([]T)
	require.True(t, ok, "%s is %s", key, v.Type())
	return a
}

func abs(x float32) float32 {
	if x < 0 {
		return -x
	}
	return x
}
