package llama

import (
	"context"
	"math"
	"strings"
	"testing"

	"github.com/llamago/llamago/llama/gguf"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var embedTexts = []string{
	"The quick brown fox jumps over the lazy dog.",
	"Embeddings map text to vectors.",
	"Go is a statically typed, compiled programming language designed at Google.",
	"hello",
	"llama.cpp runs large language models on ordinary computers, with or without a GPU, in plain C and C++.",
	"Paris is the capital of France.",
	"A short one.",
}

func loadModel(t testing.TB, shape string, typ gguf.TensorType) *Model {
	t.Helper()
	m, err := LoadModel(context.Background(), synthModel(t, shape, typ), &ModelParams{GPULayers: 0})
	require.NoError(t, err)
	t.Cleanup(func() { m.Close() })
	return m
}

func newCtx(t testing.TB, m *Model, p ContextParams) *Context {
	t.Helper()
	c, err := m.NewContext(&p)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

func l2(v []float32) float64 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	return math.Sqrt(s)
}

func assertVectorsClose(t *testing.T, want, got [][]float32, tol float64, msg string) {
	t.Helper()
	require.Len(t, got, len(want), msg)
	for i := range want {
		require.Len(t, got[i], len(want[i]), "%s: vector %d", msg, i)
		var worst float64
		for j := range want[i] {
			worst = max(worst, math.Abs(float64(want[i][j]-got[i][j])))
		}
		assert.LessOrEqual(t, worst, tol, "%s: vector %d differs by %g", msg, i, worst)
	}
}

// embedOneByOne embeds each text in its own call.
func embedOneByOne(t *testing.T, c *Context, texts []string, o *EmbedParams) [][]float32 {
	t.Helper()
	out := make([][]float32, len(texts))
	for i, s := range texts {
		v, err := c.Embed(t.Context(), []string{s}, o)
		require.NoError(t, err)
		out[i] = v[0]
	}
	return out
}

func checkEmbeddings(t *testing.T, c *Context, dim int) {
	t.Helper()
	norm := &EmbedParams{Normalize: true}
	batched, err := c.Embed(t.Context(), embedTexts, norm)
	require.NoError(t, err)
	require.Len(t, batched, len(embedTexts))
	for i, v := range batched {
		assert.Len(t, v, dim, "text %d", i)
		assert.InDelta(t, 1, l2(v), 1e-5, "text %d is normalised", i)
	}
	assert.NotEqual(t, batched[0], batched[1], "different texts, different vectors")
	assertVectorsClose(t, embedOneByOne(t, c, embedTexts, norm), batched, logitTolerance(), "batched vs one at a time")

	raw, err := c.Embed(t.Context(), embedTexts[:2], nil)
	require.NoError(t, err)
	n := l2(raw[0])
	assert.Greater(t, math.Abs(n-1), 1e-3, "without Normalize the vector keeps its norm (%g)", n)
	for j := range raw[0] {
		assert.InDelta(t, raw[0][j]/float32(n), batched[0][j], logitTolerance()/10) // 1e-5 on CPU
	}
}

func TestEmbedBert(t *testing.T) {
	m := loadModel(t, "bert-tiny", gguf.TypeF16)
	assert.Equal(t, "bert", m.Info().Architecture)
	// NSeqMax 2 packs the 7 texts into four decodes.
	c := newCtx(t, m, ContextParams{Embeddings: true, NSeqMax: 2})
	assert.Equal(t, PoolingMean, c.Pooling(), "the model declares mean pooling")
	assert.Equal(t, 512, c.EmbedMaxTokens())
	checkEmbeddings(t, c, 64)

	// Overriding the pooling: CLS differs from mean.
	cls := newCtx(t, m, ContextParams{Embeddings: true, NSeqMax: 4, Pooling: PoolingCLS})
	assert.Equal(t, PoolingCLS, cls.Pooling())
	checkEmbeddings(t, cls, 64)
	a, err := c.Embed(t.Context(), embedTexts[:1], nil)
	require.NoError(t, err)
	b, err := cls.Embed(t.Context(), embedTexts[:1], nil)
	require.NoError(t, err)
	assert.NotEqual(t, a, b)

	// Per-token embeddings: their mean is the mean-pooled embedding, and CLS pooling
	// picks the first token.
	none := newCtx(t, m, ContextParams{Embeddings: true, NSeqMax: 4, Pooling: PoolingNone})
	tokVecs, err := none.TokenEmbeddings(t.Context(), embedTexts, nil)
	require.NoError(t, err)
	checkTokenEmbeddings(t, m, tokVecs, nil)
	mean, err := c.Embed(t.Context(), embedTexts, nil)
	require.NoError(t, err)
	assertVectorsClose(t, mean, meanOf(tokVecs), logitTolerance(), "mean of token embeddings vs mean pooling")
	first, err := cls.Embed(t.Context(), embedTexts, nil)
	require.NoError(t, err)
	firsts := make([][]float32, len(tokVecs))
	for i := range tokVecs {
		firsts[i] = tokVecs[i][0]
	}
	assertVectorsClose(t, first, firsts, logitTolerance(), "first token vs CLS pooling")
}

func TestEmbedBgeSmall(t *testing.T) {
	m := loadModel(t, "bge-small", gguf.TypeF16)
	c := newCtx(t, m, ContextParams{Embeddings: true, NSeqMax: 4})
	assert.Equal(t, PoolingCLS, c.Pooling())
	v, err := c.Embed(t.Context(), embedTexts[:4], &EmbedParams{Normalize: true})
	require.NoError(t, err)
	for _, e := range v {
		assert.Len(t, e, 384)
		assert.InDelta(t, 1, l2(e), 1e-5)
	}
}

func TestEmbedLlama(t *testing.T) {
	m := loadTiny(t)
	// (CLS pooling is not tested: every text of a llama model starts with the same BOS.)
	for _, p := range []ContextParams{
		{Embeddings: true, NCtx: 1024, NSeqMax: 4, KVUnified: true, Pooling: PoolingMean},
		{Embeddings: true, NCtx: 1024, NSeqMax: 4, Pooling: PoolingMean}, // split cache: one text per decode
		{Embeddings: true, NCtx: 512, NSeqMax: 1, Pooling: PoolingLast},
		{Embeddings: true, NCtx: 1024, NSeqMax: 3, KVUnified: true, Pooling: PoolingLast},
	} {
		t.Run(p.Pooling.String(), func(t *testing.T) {
			c := newCtx(t, m, p)
			assert.Equal(t, p.Pooling, c.Pooling())
			checkEmbeddings(t, c, 64)
		})
	}

	// The same vectors whether the cache is unified or split.
	u := newCtx(t, m, ContextParams{Embeddings: true, NCtx: 1024, NSeqMax: 4, KVUnified: true, Pooling: PoolingMean})
	s := newCtx(t, m, ContextParams{Embeddings: true, NCtx: 1024, NSeqMax: 4, Pooling: PoolingMean})
	a, err := u.Embed(t.Context(), embedTexts, nil)
	require.NoError(t, err)
	b, err := s.Embed(t.Context(), embedTexts, nil)
	require.NoError(t, err)
	assertVectorsClose(t, a, b, logitTolerance(), "unified vs split cache")

	// Llama models pool nothing by default: per-token embeddings, whose mean and last
	// match the pooled ones.
	none := newCtx(t, m, ContextParams{Embeddings: true, NCtx: 1024, NSeqMax: 4, KVUnified: true})
	assert.Equal(t, PoolingNone, none.Pooling())
	tokVecs, err := none.TokenEmbeddings(t.Context(), embedTexts, &EmbedParams{Normalize: true})
	require.NoError(t, err)
	checkTokenEmbeddings(t, m, tokVecs, &EmbedParams{Normalize: true})
	raw, err := none.TokenEmbeddings(t.Context(), embedTexts, nil)
	require.NoError(t, err)
	assertVectorsClose(t, a, meanOf(raw), logitTolerance(), "mean of token embeddings vs mean pooling")
	last := newCtx(t, m, ContextParams{Embeddings: true, NCtx: 1024, NSeqMax: 4, KVUnified: true, Pooling: PoolingLast})
	lv, err := last.Embed(t.Context(), embedTexts, nil)
	require.NoError(t, err)
	lasts := make([][]float32, len(raw))
	for i := range raw {
		lasts[i] = raw[i][len(raw[i])-1]
	}
	assertVectorsClose(t, lv, lasts, logitTolerance(), "last token vs last pooling")
}

func meanOf(tokVecs [][][]float32) [][]float32 {
	out := make([][]float32, len(tokVecs))
	for i, vs := range tokVecs {
		sum := make([]float64, len(vs[0]))
		for _, v := range vs {
			for j, x := range v {
				sum[j] += float64(x)
			}
		}
		out[i] = make([]float32, len(sum))
		for j, s := range sum {
			out[i][j] = float32(s / float64(len(vs)))
		}
	}
	return out
}

// checkTokenEmbeddings checks counts, dimensions and norms, and that embedding the
// texts one at a time gives the same vectors.
func checkTokenEmbeddings(t *testing.T, m *Model, got [][][]float32, o *EmbedParams) {
	t.Helper()
	require.Len(t, got, len(embedTexts))
	for i, s := range embedTexts {
		toks, err := m.Tokenize(s, AddSpecial)
		require.NoError(t, err)
		require.Len(t, got[i], len(toks), "one vector per token of text %d", i)
		for _, v := range got[i] {
			assert.Len(t, v, m.Info().NEmbd)
			if o != nil && o.Normalize {
				assert.InDelta(t, 1, l2(v), 1e-5)
			}
		}
	}
	c := newCtx(t, m, ContextParams{Embeddings: true, NCtx: 512, Pooling: PoolingNone})
	for i, s := range embedTexts {
		one, err := c.TokenEmbeddings(t.Context(), []string{s}, o)
		require.NoError(t, err)
		assertVectorsClose(t, got[i], one[0], logitTolerance(), "token embeddings batched vs alone")
	}
}

func TestRerank(t *testing.T) {
	m := loadModel(t, "bert-rerank-tiny", gguf.TypeF16)
	c := newCtx(t, m, ContextParams{Embeddings: true, NSeqMax: 2})
	assert.Equal(t, PoolingRank, c.Pooling(), "the model declares rank pooling")

	// The pair layout of llama-server for BERT vocabularies: [CLS] query [SEP] doc [SEP].
	v := m.Vocab()
	q, err := m.Tokenize("what is a llama?", 0)
	require.NoError(t, err)
	d, err := m.Tokenize("an animal", 0)
	require.NoError(t, err)
	pair, err := m.RerankTokens("what is a llama?", "an animal")
	require.NoError(t, err)
	var want []Token
	if v.AddBOS {
		want = append(want, v.BOS)
	}
	want = append(want, q...)
	eos := v.EOS
	if eos == NoToken {
		eos = v.SEP
	}
	if v.AddEOS {
		want = append(want, eos)
	}
	if v.AddSEP {
		want = append(want, v.SEP)
	}
	want = append(want, d...)
	if v.AddEOS {
		want = append(want, eos)
	}
	assert.Equal(t, want, pair)
	assert.Equal(t, Token(101), pair[0], "[CLS] first")
	assert.Contains(t, pair, Token(102), "[SEP] between")

	query := "What do llamas eat?"
	docs := embedTexts
	scores, err := c.Rerank(t.Context(), query, docs)
	require.NoError(t, err)
	require.Len(t, scores, len(docs))
	for i, doc := range docs {
		one, err := c.Rerank(t.Context(), query, []string{doc})
		require.NoError(t, err)
		require.Len(t, one, 1)
		assert.InDelta(t, scores[i], one[0], logitTolerance(), "document %d batched vs alone", i)
		assert.False(t, math.IsNaN(float64(scores[i])))
	}
	assert.NotEqual(t, scores[0], scores[1])

	// The scores are the rank-pooled outputs of the pairs.
	raw, err := c.EmbedTokens(t.Context(), [][]Token{pair}, nil)
	assert.ErrorIs(t, err, ErrInvalidParams, "EmbedTokens refuses rank pooling")
	assert.Nil(t, raw)
}

func TestEmbedErrors(t *testing.T) {
	bert := loadModel(t, "bert-tiny", gguf.TypeF16)
	ctx := t.Context()

	plain := newCtx(t, bert, ContextParams{})
	_, err := plain.Embed(ctx, []string{"hi"}, nil)
	assert.ErrorIs(t, err, errNoEmbeddings)
	_, err = plain.TokenEmbeddings(ctx, []string{"hi"}, nil)
	assert.ErrorIs(t, err, errNoEmbeddings)
	_, err = plain.Rerank(ctx, "q", []string{"d"})
	assert.ErrorIs(t, err, errNoEmbeddings)

	c := newCtx(t, bert, ContextParams{Embeddings: true, NSeqMax: 2, NUBatch: 32, NBatch: 32})
	assert.Equal(t, 32, c.EmbedMaxTokens())
	for name, texts := range map[string][]string{"nil": nil, "empty slice": {}, "empty text": {"a", ""}} {
		_, err = c.Embed(ctx, texts, nil)
		assert.ErrorIs(t, err, ErrInvalidParams, name)
	}
	_, err = c.Embed(ctx, []string{"ok", "bad \xff utf-8"}, nil)
	assert.ErrorIs(t, err, ErrInvalidUTF8)
	long := strings.Repeat("word ", 40)
	_, err = c.Embed(ctx, []string{"fine", long}, nil)
	assert.ErrorIs(t, err, ErrInputTooLong)
	assert.ErrorContains(t, err, "input 1 has 42 tokens")
	_, err = c.Rerank(ctx, "query", []string{long})
	assert.ErrorIs(t, err, ErrInvalidParams, "a mean-pooling context cannot rerank")
	_, err = c.TokenEmbeddings(ctx, []string{"x"}, nil)
	assert.ErrorIs(t, err, ErrInvalidParams, "pooled context: no per-token vectors")
	_, err = c.EmbedTokens(ctx, [][]Token{{101, Token(bert.Vocab().NTokens)}}, nil)
	assert.ErrorIs(t, err, ErrInvalidToken)
	_, err = c.EmbedTokens(ctx, [][]Token{{101}, {}}, nil)
	assert.ErrorIs(t, err, ErrInvalidParams)
	_, err = c.EmbedTokens(ctx, [][]Token{{-1}}, nil)
	assert.ErrorIs(t, err, ErrInvalidToken)

	// BERT's learned positions end at its training context: a bigger micro-batch does
	// not let a longer text through (llama.cpp would abort in get_rows).
	big := newCtx(t, bert, ContextParams{Embeddings: true, NCtx: 1024, NBatch: 1024, NUBatch: 1024})
	assert.Equal(t, 512, big.EmbedMaxTokens())
	_, err = big.Embed(ctx, []string{strings.Repeat("word ", 600)}, nil)
	assert.ErrorIs(t, err, ErrInputTooLong)

	none := newCtx(t, bert, ContextParams{Embeddings: true, Pooling: PoolingNone})
	_, err = none.Embed(ctx, []string{"x"}, nil)
	assert.ErrorIs(t, err, ErrInvalidParams)
	_, err = none.Rerank(ctx, "q", []string{"d"})
	assert.ErrorIs(t, err, ErrInvalidParams)

	rank := newCtx(t, loadModel(t, "bert-rerank-tiny", gguf.TypeF16), ContextParams{Embeddings: true})
	_, err = rank.Embed(ctx, []string{"x"}, nil)
	assert.ErrorIs(t, err, ErrInvalidParams, "a reranker has no embeddings")
	for name, docs := range map[string][]string{"no documents": nil, "empty document": {"a", ""}} {
		_, err = rank.Rerank(ctx, "q", docs)
		assert.ErrorIs(t, err, ErrInvalidParams, name)
	}
	_, err = rank.Rerank(ctx, "", []string{"d"})
	assert.ErrorIs(t, err, ErrInvalidParams, "empty query")

	// Decoders: the text must fit the micro-batch when pooled and the sequence's context.
	llama := loadTiny(t)
	dec := newCtx(t, llama, ContextParams{Embeddings: true, NCtx: 256, NUBatch: 64, Pooling: PoolingMean})
	assert.Equal(t, 64, dec.EmbedMaxTokens())
	_, err = dec.Embed(ctx, []string{strings.Repeat("word ", 100)}, nil)
	assert.ErrorIs(t, err, ErrInputTooLong)
	tok := newCtx(t, llama, ContextParams{Embeddings: true, NCtx: 512, NSeqMax: 2, NUBatch: 64})
	assert.Equal(t, 256, tok.EmbedMaxTokens(), "per-token embeddings: bounded by the sequence's share of the cache")
	out, err := tok.TokenEmbeddings(ctx, []string{strings.Repeat("word ", 100)}, nil)
	require.NoError(t, err, "per-token embeddings may span micro-batches")
	toks, err := llama.Tokenize(strings.Repeat("word ", 100), AddSpecial)
	require.NoError(t, err)
	assert.Greater(t, len(toks), 64)
	assert.Len(t, out[0], len(toks))

	// Cancellation and Close.
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	_, err = c.Embed(cancelled, []string{"x"}, nil)
	assert.ErrorIs(t, err, ErrAborted)
	assert.ErrorIs(t, err, context.Canceled)
	v, err := c.Embed(ctx, []string{"still works"}, nil)
	require.NoError(t, err)
	assert.Len(t, v[0], 64)
	require.NoError(t, c.Close())
	_, err = c.Embed(ctx, []string{"x"}, nil)
	assert.ErrorIs(t, err, ErrClosed)
	_, err = c.Rerank(ctx, "q", []string{"x"})
	assert.ErrorIs(t, err, ErrClosed)
	assert.Equal(t, 0, c.EmbedMaxTokens())

	for _, s := range []string{"none", "mean", "cls", "last", "rank", "default", ""} {
		p, err := ParsePoolingType(s)
		require.NoError(t, err, s)
		if s != "" {
			assert.Equal(t, s, p.String())
		}
	}
	_, err = ParsePoolingType("max")
	assert.ErrorIs(t, err, ErrInvalidParams)
}

// TestEmbedMeanPoolingSplit: a mean-pooling context whose micro-batch does not divide
// evenly across its sequences is refused (llama.cpp aborts building its graph).
func TestEmbedMeanPoolingSplit(t *testing.T) {
	m, err := LoadModel(t.Context(), synthModel(t, "llama-tiny", gguf.TypeF16), &ModelParams{GPULayers: 0})
	require.NoError(t, err)
	defer m.Close()
	_, err = m.NewContext(&ContextParams{Embeddings: true, NSeqMax: 3, Pooling: PoolingMean})
	assert.ErrorIs(t, err, ErrInvalidParams)
	c, err := m.NewContext(&ContextParams{Embeddings: true, NSeqMax: 3, NUBatch: 510, Pooling: PoolingMean})
	require.NoError(t, err)
	c.Close()
}

// TestEncoderBatchLimits: raw Encode/Decode on a model without KV cache refuses what
// llama.cpp aborts on: more tokens than NUBatch, positions past the learned ones.
func TestEncoderBatchLimits(t *testing.T) {
	m, err := LoadModel(t.Context(), synthModel(t, "bert-tiny", gguf.TypeF16), &ModelParams{GPULayers: 0})
	require.NoError(t, err)
	defer m.Close()
	c, err := m.NewContext(&ContextParams{Embeddings: true, NBatch: 64, NUBatch: 32})
	require.NoError(t, err)
	defer c.Close()
	b, err := NewBatch(64, 1)
	require.NoError(t, err)
	defer b.Close()
	for i := range 40 {
		require.NoError(t, b.Add(100, Pos(i), true, 0))
	}
	assert.ErrorIs(t, c.Encode(t.Context(), b), ErrInvalidBatch, "40 tokens > NUBatch 32")
	b.Clear()
	require.NoError(t, b.Add(100, Pos(m.Info().NCtxTrain), true, 0))
	assert.ErrorIs(t, c.Encode(t.Context(), b), ErrInvalidBatch, "position past the learned positions")
	b.Clear()
	for i := range 8 {
		require.NoError(t, b.Add(100, Pos(i), true, 0))
	}
	require.NoError(t, c.Encode(t.Context(), b), "a valid batch still works")
}
