package llama

import (
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/llamago/llamago/internal/llamacpp"
)

// perplexityText is a fixed English text of the pinned llama.cpp tree (its README),
// enough for a few chunks of 128 tokens.
func perplexityText(t testing.TB) string {
	b, err := os.ReadFile(filepath.Join(llamaCppDir(t), "README.md"))
	require.NoError(t, err)
	s := string(b[:min(len(b), 6000)])
	s = s[:strings.LastIndexByte(s, '\n')+1]
	require.True(t, utf8.ValidString(s))
	return s
}

// referencePerplexity computes perplexity independently of Model.Perplexity: each chunk
// decoded alone from an empty cache with all logits, copied, then a float64
// log-softmax over every vocabulary entry.
func referencePerplexity(t *testing.T, m *Model, text string, nCtx int) (ppl float64, scored int) {
	t.Helper()
	toks, err := m.Tokenize(strings.TrimSuffix(text, "\n"), AddSpecial)
	require.NoError(t, err)
	c := newCtx(t, m, ContextParams{NCtx: nCtx, NBatch: nCtx})
	b, err := NewBatch(nCtx, 1)
	require.NoError(t, err)
	defer b.Close()
	var nll float64
	for chunk := 0; chunk < len(toks)/nCtx; chunk++ {
		in := toks[chunk*nCtx : (chunk+1)*nCtx]
		require.NoError(t, c.MemoryClear(true))
		b.Clear()
		for k, tok := range in {
			if k == 0 {
				tok = m.Vocab().BOS
			}
			require.NoError(t, b.Add(tok, Pos(k), true, 0))
		}
		require.NoError(t, c.Decode(t.Context(), b))
		for pos := nCtx / 2; pos < nCtx-1; pos++ {
			logits, err := c.Logits(pos)
			require.NoError(t, err)
			mx := math.Inf(-1)
			for _, x := range logits {
				mx = math.Max(mx, float64(x))
			}
			var sum float64
			for _, x := range logits {
				sum += math.Exp(float64(x) - mx)
			}
			nll -= float64(logits[in[pos+1]]) - mx - math.Log(sum)
			scored++
		}
	}
	return math.Exp(nll / float64(scored)), scored
}

func TestPerplexity(t *testing.T) {
	m := loadTiny(t)
	text := perplexityText(t)
	const nCtx = 128

	var progress []PerplexityProgress
	res, err := m.Perplexity(t.Context(), text, &PerplexityParams{
		Context:  ContextParams{NCtx: nCtx},
		Progress: func(p PerplexityProgress) { progress = append(progress, p) },
	})
	require.NoError(t, err)
	toks, err := m.Tokenize(strings.TrimSuffix(text, "\n"), AddSpecial)
	require.NoError(t, err)
	chunks := len(toks) / nCtx
	require.GreaterOrEqual(t, chunks, 4)
	assert.Equal(t, chunks, res.Chunks)
	assert.Equal(t, chunks*(nCtx/2-1), res.Tokens)
	assert.Greater(t, res.StdErr, 0.0)
	require.NotEmpty(t, progress)
	assert.Equal(t, chunks, progress[len(progress)-1].Chunk)
	assert.InEpsilon(t, res.PPL, progress[len(progress)-1].PPL, 1e-12)
	assert.Regexp(t, `^Final estimate: PPL = \d+\.\d{4} \+/- \d+\.\d{5}$`, res.String())
	// Random weights over a 128k vocabulary: near-uniform predictions.
	assert.InEpsilon(t, float64(m.Vocab().NTokens), res.PPL, 0.5)

	// An independent computation from copied logits agrees.
	ref, scored := referencePerplexity(t, m, text, nCtx)
	assert.Equal(t, res.Tokens, scored)
	assert.InEpsilon(t, ref, res.PPL, 1e-4, "ours %.6f, reference %.6f", res.PPL, ref)
	t.Logf("perplexity %s; independent Go computation %.4f", res, ref)

	// Batches smaller than a chunk (two decodes per chunk) give the same result, and
	// Chunks limits the work.
	small, err := m.Perplexity(t.Context(), text, &PerplexityParams{Context: ContextParams{NCtx: nCtx, NBatch: 64}, Chunks: 2})
	require.NoError(t, err)
	assert.Equal(t, 2, small.Chunks)
	two, err := m.Perplexity(t.Context(), text, &PerplexityParams{Context: ContextParams{NCtx: nCtx}, Chunks: 2})
	require.NoError(t, err)
	assert.InEpsilon(t, two.PPL, small.PPL, 1e-4)

	// Upstream's llama-perplexity from the same build (make builds it).
	bin, err := llamacpp.Tool(Backend, "llama-perplexity")
	require.NoError(t, err)
	file := filepath.Join(t.TempDir(), "text.txt")
	require.NoError(t, os.WriteFile(file, []byte(text), 0o644))
	threads, _ := newCtx(t, m, ContextParams{NCtx: 256}).Threads()
	out, err := exec.CommandContext(t.Context(), bin, "-m", m.Path(), "-f", file, "-c", strconv.Itoa(nCtx),
		"-t", strconv.Itoa(threads), "-ngl", "0").CombinedOutput()
	require.NoError(t, err, "%s", out)
	up, upErr := parseUpstreamPerplexity(t, string(out))
	assert.InEpsilon(t, up, res.PPL, 1e-3, "ours %.4f, llama-perplexity %.4f", res.PPL, up)
	assert.InEpsilon(t, upErr, res.StdErr, 1e-2)
	t.Logf("llama-perplexity: PPL = %.4f +/- %.5f; ours: %s (ratio %.6f)", up, upErr, res, res.PPL/up)
}

var upstreamFinal = regexp.MustCompile(`Final estimate: PPL = ([0-9.]+) \+/- ([0-9.]+)`)

func parseUpstreamPerplexity(t *testing.T, out string) (ppl, stdErr float64) {
	t.Helper()
	m := upstreamFinal.FindStringSubmatch(out)
	require.NotNil(t, m, "no final estimate in llama-perplexity's output:\n%s", out)
	ppl, err := strconv.ParseFloat(m[1], 64)
	require.NoError(t, err)
	stdErr, err = strconv.ParseFloat(m[2], 64)
	require.NoError(t, err)
	return ppl, stdErr
}

func TestPerplexityErrors(t *testing.T) {
	m := loadTiny(t)
	ctx := t.Context()
	text := perplexityText(t)
	for name, tc := range map[string]struct {
		text string
		p    PerplexityParams
	}{
		"too short":  {"just a few words", PerplexityParams{}},
		"embeddings": {text, PerplexityParams{Context: ContextParams{Embeddings: true}}},
		"negative":   {text, PerplexityParams{Chunks: -1}},
		"tiny chunk": {text, PerplexityParams{Context: ContextParams{NCtx: 2}}},
	} {
		_, err := m.Perplexity(ctx, tc.text, &tc.p)
		assert.ErrorIs(t, err, ErrInvalidParams, name)
	}
	_, err := m.Perplexity(ctx, "bad \xff", nil)
	assert.ErrorIs(t, err, ErrInvalidUTF8)
	// The default 512-token chunks need 1024 tokens.
	short := text[:strings.LastIndexByte(text[:1500], '\n')+1]
	_, err = m.Perplexity(ctx, short, nil)
	assert.ErrorIs(t, err, ErrInvalidParams)
	assert.ErrorContains(t, err, fmt.Sprintf("needs at least %d", 1024))

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	_, err = m.Perplexity(cancelled, text, &PerplexityParams{Context: ContextParams{NCtx: 128}})
	assert.ErrorIs(t, err, ErrAborted)
}
