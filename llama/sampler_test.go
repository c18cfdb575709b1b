package llama

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/llamago/llamago/llama/gguf"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func newTestContext(t *testing.T, m *Model, nCtx int) *Context {
	t.Helper()
	c, err := m.NewContext(&ContextParams{NCtx: nCtx})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

func newTestSampler(t *testing.T, m *Model, stages ...Stage) *Sampler {
	t.Helper()
	s, err := NewSampler(m, stages...)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

func collect(t *testing.T, seq func(func(Generated, error) bool)) []Token {
	t.Helper()
	var out []Token
	for g, err := range seq {
		require.NoError(t, err)
		out = append(out, g.Token)
	}
	return out
}

func TestEverySamplerStage(t *testing.T) {
	m := loadTiny(t)
	c := newTestContext(t, m, 512)
	prompt, err := m.Tokenize("Sampling stages", AddSpecial)
	require.NoError(t, err)

	for name, stages := range map[string][]Stage{
		"greedy":       {Greedy()},
		"dist":         {Seed(1), Dist()},
		"temp":         {Temp(0.7)},
		"dynatemp":     {DynamicTemp(0.8, 0.5, 1)},
		"top-k":        {TopK(40)},
		"top-p":        {TopP(0.9), MinKeep(2)},
		"min-p":        {MinP(0.05)},
		"typical":      {Typical(0.9)},
		"top-n-sigma":  {TopNSigma(1)},
		"xtc":          {XTC(0.5, 0.1)},
		"mirostat":     {Mirostat(5, 0.1)},
		"mirostat v2":  {MirostatV2(5, 0.1)},
		"adaptive-p":   {MinP(0.05), AdaptiveP(0.5, 0.9)},
		"penalties":    {Penalties(64, 1.1, 0.1, 0.1)},
		"dry":          {DRY(0.8, 1.75, 2, -1, nil)},
		"logit bias":   {LogitBias(map[Token]float32{10: 5, 11: float32(math.Inf(-1))})},
		"grammar":      {Grammar(`root ::= "yes" | "no"`)},
		"lazy grammar": {LazyGrammar(`root ::= "{" [a-z]+ "}"`, TriggerWord("{"))},
		"infill":       {TopK(40), Infill()},
	} {
		t.Run(name, func(t *testing.T) {
			s := newTestSampler(t, m, append(stages, Seed(7))...)
			require.NoError(t, c.MemoryClear(true))
			toks := collect(t, c.Generate(t.Context(), prompt, s, &GenerateParams{MaxTokens: 8, IgnoreEOG: true}))
			assert.Len(t, toks, 8)
			for _, tok := range toks {
				assert.True(t, m.ValidToken(tok))
			}
		})
	}
}

func TestSamplerDeterministicSeed(t *testing.T) {
	m := loadTiny(t)
	c := newTestContext(t, m, 512)
	prompt, err := m.Tokenize("Seeded", AddSpecial)
	require.NoError(t, err)
	run := func(seed uint32) []Token {
		p := DefaultSamplingParams()
		p.Seed = seed
		p.Temperature = 5 // flat enough that the seed matters on random weights
		p.TopK, p.TopP, p.MinP = 0, 1, 0
		s, err := NewSamplerFromParams(m, &p)
		require.NoError(t, err)
		defer s.Close()
		assert.Equal(t, seed, s.Seed())
		require.NoError(t, c.MemoryClear(true))
		return collect(t, c.Generate(t.Context(), prompt, s, &GenerateParams{MaxTokens: 16, IgnoreEOG: true}))
	}
	a, b, other := run(42), run(42), run(43)
	assert.Equal(t, a, b)
	assert.NotEqual(t, a, other)

	// The logit bias bans token 11 (which this model likes), greedy respects it.
	s := newTestSampler(t, m, LogitBias(map[Token]float32{11: float32(math.Inf(-1))}), Greedy())
	require.NoError(t, c.MemoryClear(true))
	for _, tok := range collect(t, c.Generate(t.Context(), prompt, s, &GenerateParams{MaxTokens: 8, IgnoreEOG: true})) {
		assert.NotEqual(t, Token(11), tok)
	}
}

// A chain that starts with top-k gets its candidates from a one-pass selection instead
// of llama.cpp's sort of the whole vocabulary; it must pick exactly what the full path
// picks. Temp(1) first (a no-op on the logits) forces the full path.
func TestLeadingTopKMatchesFullChain(t *testing.T) {
	m := loadTiny(t)
	c := newTestContext(t, m, 512)
	prompt, err := m.Tokenize("Top-k selection", AddSpecial)
	require.NoError(t, err)
	n := m.vocabInfo.NTokens
	for _, k := range []int{1, 2, 40, 1000, n - 1} {
		for _, seed := range []uint32{1, 2} {
			rest := []Stage{TopP(0.95), MinP(0.05), Temp(1.5), Seed(seed)}
			fast := newTestSampler(t, m, append([]Stage{TopK(k)}, rest...)...)
			full := newTestSampler(t, m, append([]Stage{Temp(1), TopK(k)}, rest...)...)
			require.Equal(t, k, fast.topK)
			require.Zero(t, full.topK)
			var got [2][]Token
			for i, s := range []*Sampler{fast, full} {
				require.NoError(t, c.MemoryClear(true))
				got[i] = collect(t, c.Generate(t.Context(), prompt, s, &GenerateParams{MaxTokens: 24, IgnoreEOG: true}))
			}
			assert.Equal(t, got[1], got[0], "k=%d seed=%d", k, seed)
		}
	}
	// TopK(1) is greedy.
	require.NoError(t, c.MemoryClear(true))
	want := collect(t, c.Generate(t.Context(), prompt, newTestSampler(t, m, Greedy()), &GenerateParams{MaxTokens: 24, IgnoreEOG: true}))
	require.NoError(t, c.MemoryClear(true))
	assert.Equal(t, want, collect(t, c.Generate(t.Context(), prompt, newTestSampler(t, m, TopK(1), Seed(3)), &GenerateParams{MaxTokens: 24, IgnoreEOG: true})))
	// Greedy alone is a one-candidate selection; followed by a stage that sees every
	// candidate (Dist re-picks from all of them), it is not.
	assert.Equal(t, 1, newTestSampler(t, m, Greedy()).topK)
	greedyThenDist := []Stage{Greedy(), Temp(3), Dist(), Seed(5)}
	assert.Zero(t, newTestSampler(t, m, greedyThenDist...).topK)
	var picks [2][]Token
	for i, st := range [][]Stage{greedyThenDist, append([]Stage{Temp(1)}, greedyThenDist...)} {
		require.NoError(t, c.MemoryClear(true))
		picks[i] = collect(t, c.Generate(t.Context(), prompt, newTestSampler(t, m, st...), &GenerateParams{MaxTokens: 24, IgnoreEOG: true}))
	}
	assert.Equal(t, picks[1], picks[0])
	assert.NotEqual(t, want, picks[0], "Dist after Greedy samples from every candidate")
	// Not leading: after a stage that changes logits, or covering the whole vocabulary.
	assert.Zero(t, newTestSampler(t, m, Penalties(64, 1.1, 0, 0), TopK(40)).topK)
	assert.Zero(t, newTestSampler(t, m, TopK(n)).topK)
}

// SampleRows samples the rows of one decode in parallel; each row must get what
// Sampler.Sample gives it alone, with a fresh sampler of the same seed.
func TestSampleRows(t *testing.T) {
	m := loadTiny(t)
	const seqs = 6
	c, err := m.NewContext(&ContextParams{NCtx: 512, NSeqMax: seqs})
	require.NoError(t, err)
	defer c.Close()
	b, err := NewBatch(64, 1)
	require.NoError(t, err)
	defer b.Close()
	for seq := range seqs {
		for pos, tok := range []Token{1, Token(100 + seq), Token(200 + seq)} {
			require.NoError(t, b.Add(tok, Pos(pos), pos == 2, SeqID(seq)))
		}
	}
	require.NoError(t, c.Decode(t.Context(), b))
	stages := func(seq int) []Stage {
		switch seq % 3 {
		case 0:
			return []Stage{TopK(40), TopP(0.95), MinP(0.05), Temp(2), Seed(uint32(seq))}
		case 1:
			return []Stage{Temp(3), Seed(uint32(seq))} // the full-vocabulary path
		}
		return []Stage{Greedy()}
	}
	rows := make([]RowSample, seqs)
	for seq := range seqs {
		rows[seq] = RowSample{Sampler: newTestSampler(t, m, stages(seq)...), Row: 3*seq + 2}
	}
	for round := range 3 {
		require.NoError(t, c.SampleRows(rows))
		for seq, r := range rows {
			require.NoError(t, r.Err)
			alone := newTestSampler(t, m, stages(seq)...)
			var want Token
			for range round + 1 { // the same draw of the random stream
				want, err = alone.Sample(c, r.Row)
				require.NoError(t, err)
			}
			assert.Equal(t, want, r.Token, "round %d seq %d", round, seq)
		}
	}

	bad := []RowSample{
		{Sampler: rows[0].Sampler, Row: 2},
		{Sampler: rows[0].Sampler, Row: 5}, // listed twice
		{Sampler: nil, Row: 2},
		{Sampler: rows[1].Sampler, Row: 0}, // no logits there
		{Sampler: rows[2].Sampler, Row: 8},
	}
	require.NoError(t, c.SampleRows(bad))
	assert.NoError(t, bad[0].Err)
	assert.ErrorIs(t, bad[1].Err, ErrSamplerBusy)
	assert.ErrorIs(t, bad[2].Err, ErrInvalidParams)
	assert.ErrorIs(t, bad[3].Err, ErrNoLogits)
	assert.NoError(t, bad[4].Err)
	_, err = rows[0].Sampler.Sample(c, 2) // every sampler was released
	assert.NoError(t, err)

	require.NoError(t, c.Close())
	assert.ErrorIs(t, c.SampleRows(rows[:1]), ErrClosed)
}

func TestGrammarConstrainsOutput(t *testing.T) {
	m := loadTiny(t)
	c := newTestContext(t, m, 512)
	s := newTestSampler(t, m, Grammar(`root ::= "The answer is " ("yes" | "no") "."`), Seed(3))
	var text strings.Builder
	var res GenerateResult
	for piece, err := range c.GenerateText(t.Context(), "Question: is it?", s, &GenerateParams{MaxTokens: 40}) {
		require.NoError(t, err)
		text.WriteString(piece)
	}
	res = c.LastGeneration()
	assert.Contains(t, []string{"The answer is yes.", "The answer is no."}, text.String())
	assert.Equal(t, FinishEOG, res.FinishReason, "a complete grammar allows only end of generation")

	// JSON schema through upstream's converter.
	schema := json.RawMessage(`{"type":"object","properties":{"n":{"type":"integer"},"ok":{"type":"boolean"}},"required":["n","ok"]}`)
	p := DefaultSamplingParams()
	p.Seed = 5
	p.ResponseFormat = &ResponseFormat{JSONSchema: schema}
	js, err := NewSamplerFromParams(m, &p)
	require.NoError(t, err)
	defer js.Close()
	require.NoError(t, c.MemoryClear(true))
	text.Reset()
	for piece, err := range c.GenerateText(t.Context(), "JSON:", js, &GenerateParams{MaxTokens: 200}) {
		require.NoError(t, err)
		text.WriteString(piece)
	}
	res = c.LastGeneration()
	var v struct {
		N  *int  `json:"n"`
		OK *bool `json:"ok"`
	}
	if res.FinishReason == FinishEOG {
		require.NoError(t, json.Unmarshal([]byte(text.String()), &v), "output %q", text.String())
		assert.NotNil(t, v.N)
		assert.NotNil(t, v.OK)
	} else { // random weights may ramble inside the integer; the prefix must still fit the schema
		assert.True(t, strings.HasPrefix(text.String(), "{"), "output %q", text.String())
	}
	t.Logf("schema-constrained output: %s (%s)", text.String(), res.FinishReason)
}

func TestSamplerBadInput(t *testing.T) {
	m := loadTiny(t)
	n := m.Vocab().NTokens
	for name, st := range map[string]Stage{
		"top-k":       TopK(-1),
		"top-p":       TopP(1.5),
		"min-p nan":   MinP(float32(math.NaN())),
		"temp":        Temp(-1),
		"typical":     Typical(-0.1),
		"xtc":         XTC(2, 0.1),
		"mirostat":    Mirostat(float32(math.Inf(1)), 0.1),
		"penalties":   Penalties(-5, 1, 0, 0),
		"repeat":      Penalties(64, 0, 0, 0),
		"dry breaker": DRY(1, 1.75, 2, 64, []string{""}),
		"dry base":    DRY(1, -1, 2, 64, nil),
		"bias nan":    LogitBias(map[Token]float32{1: float32(math.NaN())}),
		"min keep":    MinKeep(-1),
		"adaptive":    AdaptiveP(2, 0.9),
	} {
		_, err := NewSampler(m, st)
		assert.ErrorIs(t, err, ErrInvalidParams, name)
	}
	for _, bad := range []Token{-1, Token(n)} {
		_, err := NewSampler(m, LogitBias(map[Token]float32{bad: 1}))
		assert.ErrorIs(t, err, ErrInvalidToken)
	}
	for name, g := range map[string]Stage{
		"syntax":        Grammar(`root ::= "unterminated`),
		"unknown rule":  Grammar(`root ::= missing`),
		"empty":         Grammar(""),
		"deep":          Grammar("root ::= " + strings.Repeat("(", 5000) + `"a"` + strings.Repeat(")", 5000)),
		"bad utf8":      Grammar("root ::= \"\xff\""),
		"no trigger":    LazyGrammar(`root ::= "a"`),
		"bad pattern":   LazyGrammar(`root ::= "a"`, TriggerPattern("(unclosed")),
		"trigger token": LazyGrammar(`root ::= "a"`, TriggerToken(Token(n))),
		"two grammars":  nil,
	} {
		stages := []Stage{g}
		if g == nil {
			stages = []Stage{Grammar(`root ::= "a"`), Grammar(`root ::= "b"`)}
		}
		_, err := NewSampler(m, stages...)
		assert.Error(t, err, name)
		assert.True(t, errors.Is(err, ErrGrammar) || errors.Is(err, ErrInvalidToken), "%s: %v", name, err)
	}
	_, err := JSONSchemaToGrammar(json.RawMessage(`{"type": `))
	assert.ErrorIs(t, err, ErrGrammar)
	_, err = JSONSchemaToGrammar(json.RawMessage(`{"type": "no-such-type"}`))
	assert.ErrorIs(t, err, ErrGrammar)

	// Accepting a token the grammar forbids is an error, not an abort; so is an EOG
	// token before the grammar is complete.
	s := newTestSampler(t, m, Grammar(`root ::= "yes"`))
	no, err := m.Tokenize("no", 0)
	require.NoError(t, err)
	assert.ErrorIs(t, s.Accept(no[0]), ErrGrammar)
	assert.ErrorIs(t, s.Accept(m.Vocab().EOS), ErrGrammar)
	assert.ErrorIs(t, s.Accept(Token(n)), ErrInvalidToken)
	yes, err := m.Tokenize("yes", 0)
	require.NoError(t, err)
	for _, tok := range yes {
		require.NoError(t, s.Accept(tok))
	}
	require.NoError(t, s.Accept(m.Vocab().EOS), "complete grammar accepts end of generation")

	// Sampling an index without logits.
	c := newTestContext(t, m, 256)
	g := newTestSampler(t, m, Greedy())
	_, err = g.Sample(c, -1)
	assert.ErrorIs(t, err, ErrNoLogits)
	b, err := NewBatch(4, 1)
	require.NoError(t, err)
	defer b.Close()
	require.NoError(t, b.Add(1, 0, false, 0))
	require.NoError(t, b.Add(2, 1, true, 0))
	require.NoError(t, c.Decode(t.Context(), b))
	_, err = g.Sample(c, 0)
	assert.ErrorIs(t, err, ErrNoLogits)
	tok, err := g.Sample(c, 1)
	require.NoError(t, err)
	assert.True(t, m.ValidToken(tok))

	// Closed samplers.
	require.NoError(t, g.Close())
	require.NoError(t, g.Close())
	_, err = g.Sample(c, 1)
	assert.ErrorIs(t, err, ErrClosed)
	assert.ErrorIs(t, g.Accept(1), ErrClosed)
	for _, err := range c.Generate(t.Context(), []Token{1}, g, nil) {
		assert.ErrorIs(t, err, ErrClosed)
	}
}

func TestGenerateStopStrings(t *testing.T) {
	m := loadTiny(t)
	c := newTestContext(t, m, 512)
	s := newTestSampler(t, m, Greedy())
	prompt, err := m.Tokenize("Stop here", AddSpecial)
	require.NoError(t, err)

	// What greedy generates without stop strings.
	var full strings.Builder
	require.NoError(t, c.MemoryClear(true))
	for piece, err := range c.GenerateText(t.Context(), "Stop here", s, &GenerateParams{MaxTokens: 12, IgnoreEOG: true}) {
		require.NoError(t, err)
		full.WriteString(piece)
	}
	text := full.String()
	require.GreaterOrEqual(t, len(text), 4)

	// A stop string in the middle of that text, possibly spanning pieces.
	mid := len(text) / 2
	stop := text[mid : mid+2]
	want := text[:strings.Index(text, stop)]
	var got strings.Builder
	var res GenerateResult
	require.NoError(t, c.MemoryClear(true))
	for piece, err := range c.GenerateText(t.Context(), "Stop here", s, &GenerateParams{MaxTokens: 12, IgnoreEOG: true, Stop: []string{"never appears", stop}}) {
		require.NoError(t, err)
		got.WriteString(piece)
	}
	res = c.LastGeneration()
	assert.Equal(t, want, got.String())
	assert.Equal(t, FinishStop, res.FinishReason)

	// Generate (tokens) with the same stop: tokens before the stop string only.
	require.NoError(t, c.MemoryClear(true))
	var toks []Token
	for g, err := range c.Generate(t.Context(), prompt, s, &GenerateParams{MaxTokens: 12, IgnoreEOG: true, Stop: []string{stop}}) {
		require.NoError(t, err)
		toks = append(toks, g.Token)
	}
	detok, err := m.Detokenize(toks, 0)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(want, detok), "%q is a prefix of %q", detok, want)

	// A stop string that never completes: everything comes out at the end.
	got.Reset()
	require.NoError(t, c.MemoryClear(true))
	for piece, err := range c.GenerateText(t.Context(), "Stop here", s, &GenerateParams{MaxTokens: 12, IgnoreEOG: true, Stop: []string{text[len(text)-1:] + "\x01"}}) {
		require.NoError(t, err)
		got.WriteString(piece)
	}
	res = c.LastGeneration()
	assert.Equal(t, text, got.String())
	assert.Equal(t, FinishLength, res.FinishReason)
	assert.Equal(t, 12, res.GeneratedTokens)
}

func TestStopMatcher(t *testing.T) {
	m := newStopMatcher([]string{"</s>", "User:"})
	for _, tc := range []struct {
		text string
		safe int
		hit  bool
	}{
		{"hello", 5, false},
		{"hello <", 6, false},
		{"hello </", 6, false},
		{"hello </s> more", 6, true},
		{"Us", 0, false},
		{"a User: b </s>", 2, true},
		{"<<", 1, false},
	} {
		safe, hit := m.check([]byte(tc.text), 0)
		assert.Equal(t, tc.safe, safe, tc.text)
		assert.Equal(t, tc.hit, hit, tc.text)
	}
}

func TestGenerateResultAndLogprobs(t *testing.T) {
	m := loadTiny(t)
	c := newTestContext(t, m, 512)
	s := newTestSampler(t, m, Greedy())
	var res GenerateResult
	var gens []Generated
	prompt, err := m.Tokenize("Logprobs", AddSpecial)
	require.NoError(t, err)
	for g, err := range c.Generate(t.Context(), prompt, s, &GenerateParams{MaxTokens: 5, IgnoreEOG: true, Logprobs: 3}) {
		require.NoError(t, err)
		gens = append(gens, g)
	}
	res = c.LastGeneration()
	require.Len(t, gens, 5)
	assert.Equal(t, gens, res.Logprobs)
	for _, g := range gens {
		require.Len(t, g.Top, 3)
		assert.Equal(t, g.Token, g.Top[0].Token, "greedy picks the most likely token")
		assert.InDelta(t, g.Top[0].Logprob, g.Logprob, 1e-6)
		assert.LessOrEqual(t, g.Logprob, float32(0))
		assert.GreaterOrEqual(t, g.Top[0].Logprob, g.Top[1].Logprob)
	}
	assert.Equal(t, len(prompt), res.PromptTokens)
	assert.Equal(t, 5, res.GeneratedTokens)
	assert.Equal(t, FinishLength, res.FinishReason)
	assert.Positive(t, res.Prompt)
	assert.Positive(t, res.Generation)
	assert.Positive(t, res.GenerationTokensPerSecond())
	assert.Positive(t, res.Load)

	// The cache holds the prompt and all generated tokens but the last: a second call continues.
	_, hi, err := c.MemorySeqPosRange(0)
	require.NoError(t, err)
	assert.Equal(t, Pos(len(prompt)+5-1-1), hi)

	// The caller can stop early.
	require.NoError(t, c.MemoryClear(true))
	n := 0
	for range c.Generate(t.Context(), prompt, s, &GenerateParams{IgnoreEOG: true}) {
		n++
		if n == 3 {
			break
		}
	}
	res = c.LastGeneration()
	assert.Equal(t, 3, n)
	assert.Equal(t, FinishStop, res.FinishReason)

	// A prompt that does not fit the context.
	long := longPrompt(c.NCtx() + 1)
	for _, err := range c.Generate(t.Context(), long, s, nil) {
		assert.ErrorIs(t, err, ErrContextFull)
	}
	res = c.LastGeneration()
	// Generation fills the context and stops with length.
	require.NoError(t, c.MemoryClear(true))
	count := 0
	for _, err := range c.Generate(t.Context(), longPrompt(c.NCtx()-4), s, &GenerateParams{IgnoreEOG: true}) {
		require.NoError(t, err)
		count++
	}
	res = c.LastGeneration()
	assert.Equal(t, FinishLength, res.FinishReason)
	assert.Equal(t, 5, count, "4 decoded into the last free positions, the 5th sampled from the last logits")
}

func TestGenerateCancel(t *testing.T) {
	m := loadTiny(t)
	c := newTestContext(t, m, 4096)
	s := newTestSampler(t, m, Greedy())

	// Cancelled during generation: stops within one token.
	ctx, cancel := context.WithCancelCause(t.Context())
	defer cancel(nil)
	stopErr := errors.New("user pressed stop")
	var res GenerateResult
	n := 0
	var last error
	for _, err := range c.Generate(ctx, []Token{1, 2, 3}, s, &GenerateParams{IgnoreEOG: true}) {
		if err != nil {
			last = err
			break
		}
		n++
		if n == 5 {
			cancel(stopErr)
		}
	}
	res = c.LastGeneration()
	assert.ErrorIs(t, last, ErrAborted)
	assert.ErrorIs(t, last, stopErr)
	assert.Equal(t, 5, n, "no token after the cancel")
	assert.Equal(t, FinishCancelled, res.FinishReason)

	// Cancelled during a long prompt: the abort callback stops the decode.
	require.NoError(t, c.MemoryClear(true))
	ctx2, cancel2 := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel2()
	start := time.Now()
	for _, err := range c.Generate(ctx2, longPrompt(4000), s, nil) {
		assert.ErrorIs(t, err, ErrAborted)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
	}
	res = c.LastGeneration()
	assert.Equal(t, FinishCancelled, res.FinishReason)
	t.Logf("prompt decode aborted after %v", time.Since(start))
}

func TestCompleteUTF8(t *testing.T) {
	llama := "🦙"
	for i := range len(llama) {
		assert.Equal(t, 1, completeUTF8([]byte("a"+llama[:i])), "prefix %d", i)
	}
	assert.Equal(t, 5, completeUTF8([]byte("a"+llama)))
	assert.Equal(t, 2, completeUTF8([]byte("ab")))
}

func TestGenerateTextContinues(t *testing.T) {
	m := loadTiny(t)
	c := newTestContext(t, m, 512)
	s := newTestSampler(t, m, Greedy())
	var res GenerateResult
	for _, err := range c.GenerateText(t.Context(), "First part.", s, &GenerateParams{MaxTokens: 3, IgnoreEOG: true}) {
		require.NoError(t, err)
	}
	res = c.LastGeneration()
	first, err := m.Tokenize("First part.", AddSpecial)
	require.NoError(t, err)
	assert.Equal(t, len(first), res.PromptTokens, "BOS at the start")
	for _, err := range c.GenerateText(t.Context(), " Second part.", s, &GenerateParams{MaxTokens: 3, IgnoreEOG: true}) {
		require.NoError(t, err)
	}
	res = c.LastGeneration()
	second, err := m.Tokenize(" Second part.", 0)
	require.NoError(t, err)
	assert.Equal(t, len(second), res.PromptTokens, "no BOS when continuing")
	_, hi, err := c.MemorySeqPosRange(0)
	require.NoError(t, err)
	assert.Equal(t, Pos(len(first)+2+len(second)+2-1), hi, "both prompts and all but the last token of each reply")
	_, err = c.MemorySeqRemove(0, -1, -1)
	require.NoError(t, err)
}

// TestGenerateTextInvalidBytes: byte tokens that never form a character come out as
// U+FFFD, so every piece is valid UTF-8.
func TestGenerateTextInvalidBytes(t *testing.T) {
	m, err := LoadModel(t.Context(), synthModel(t, "mistral-tiny", gguf.TypeF16), &ModelParams{GPULayers: 0})
	require.NoError(t, err)
	defer m.Close()
	// The byte-fallback token <0x80>: a lone continuation byte.
	lone := NoToken
	for tok := range Token(m.Vocab().NTokens) {
		if text, err := m.TokenText(tok); err == nil && text == "<0x80>" {
			lone = tok
			break
		}
	}
	require.NotEqual(t, NoToken, lone)
	c := newTestContext(t, m, 256)
	s := newTestSampler(t, m, LogitBias(map[Token]float32{lone: 100}), Greedy())
	var got strings.Builder
	for piece, err := range c.GenerateText(t.Context(), "x", s, &GenerateParams{MaxTokens: 3, IgnoreEOG: true}) {
		require.NoError(t, err)
		assert.True(t, utf8.ValidString(piece), "piece %q", piece)
		got.WriteString(piece)
	}
	assert.Contains(t, got.String(), "\uFFFD")
}

// TestGenerateLongWithStop: a long generation with a stop string that never comes keeps
// every byte (the matcher drops emitted text internally) and stays correct.
func TestGenerateLongWithStop(t *testing.T) {
	m := loadTiny(t)
	c := newTestContext(t, m, 2048)
	s := newTestSampler(t, m, Seed(4), Temp(1.5))
	var plain, stopped strings.Builder
	for piece, err := range c.GenerateText(t.Context(), "Long", s, &GenerateParams{MaxTokens: 1500, IgnoreEOG: true}) {
		require.NoError(t, err)
		plain.WriteString(piece)
	}
	require.NoError(t, c.MemoryClear(true))
	s2 := newTestSampler(t, m, Seed(4), Temp(1.5))
	for piece, err := range c.GenerateText(t.Context(), "Long", s2, &GenerateParams{MaxTokens: 1500, IgnoreEOG: true, Stop: []string{"\x00never\x00"}}) {
		require.NoError(t, err)
		stopped.WriteString(piece)
	}
	require.Greater(t, plain.Len(), 4096, "long enough to cross the compaction threshold")
	assert.Equal(t, plain.String(), stopped.String())
}

// TestSamplerBusy: a sampler used by two goroutines at once returns ErrSamplerBusy to one
// of them instead of corrupting its C state; Close waits for the generation using it.
func TestSamplerBusy(t *testing.T) {
	m := loadTiny(t)
	c1 := newTestContext(t, m, 2048)
	c2 := newTestContext(t, m, 256)
	s, err := NewSampler(m, TopK(40), Seed(1))
	require.NoError(t, err)
	started := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		n := 0
		for _, err := range c1.Generate(context.Background(), []Token{1, 2}, s, &GenerateParams{MaxTokens: 1500, IgnoreEOG: true}) {
			if err != nil {
				done <- err
				return
			}
			if n++; n == 1 {
				close(started)
			}
		}
		done <- nil
	}()
	<-started
	assert.ErrorIs(t, s.Accept(1), ErrSamplerBusy)
	_, _, err = s.Apply([]Candidate{{Token: 1}})
	assert.ErrorIs(t, err, ErrSamplerBusy)
	for _, err := range c2.Generate(t.Context(), []Token{1}, s, &GenerateParams{MaxTokens: 2}) {
		assert.ErrorIs(t, err, ErrSamplerBusy)
	}
	require.NoError(t, s.Close(), "waits for the generation")
	require.NoError(t, <-done)
	assert.ErrorIs(t, s.Accept(1), ErrClosed)
}

// TestDeviceSamplingRows: sequences attached for device sampling share one node per
// stage over the batch's rows (the greedy argmax; the top-k narrowing per k); each picks
// what the same sampler picks on the CPU from the same logits, beside a sequence sampled
// on the CPU, in split and unified caches, with a prompt batch split into several
// micro-batches. The device-sampled rows' logits never left the device: Logits says so
// instead of returning stale values.
func TestDeviceSamplingRows(t *testing.T) { checkDeviceSamplingRows(t, loadTiny(t)) }

func checkDeviceSamplingRows(t *testing.T, m *Model) {
	// Greedy (the shared argmax); two chains narrowed to 40 (one node) and one to 20
	// (another); greedy on the CPU.
	samplers := []func() *Sampler{
		func() *Sampler { return newTestSampler(t, m, Greedy()) },
		func() *Sampler { return newTestSampler(t, m, TopK(40), Temp(1.5), Seed(3)) },
		func() *Sampler { return newTestSampler(t, m, TopK(40), TopP(0.95), Temp(1.5), Seed(4)) },
		func() *Sampler { return newTestSampler(t, m, TopK(20), Temp(1.5), Seed(5)) },
		func() *Sampler { return newTestSampler(t, m, Greedy()) },
	}
	seqs := len(samplers)
	for _, unified := range []bool{false, true} {
		t.Run(fmt.Sprintf("unified=%v", unified), func(t *testing.T) {
			decode := func(device bool) [][]Token {
				c, err := m.NewContext(&ContextParams{NCtx: 1024, NSeqMax: seqs, NUBatch: 8, KVUnified: unified})
				require.NoError(t, err)
				defer c.Close()
				rows := make([]RowSample, seqs)
				for seq := range seqs {
					rows[seq].Sampler = samplers[seq]()
					if device && seq < seqs-1 { // the last one stays on the CPU
						ok, err := c.SetBackendSampler(SeqID(seq), rows[seq].Sampler)
						require.NoError(t, err)
						require.True(t, ok)
					}
				}
				if device {
					assert.Equal(t, []int{0, 40, 40, 20}, []int{c.attached.chains[0].narrow, c.attached.chains[1].narrow, c.attached.chains[2].narrow, c.attached.chains[3].narrow})
				}
				b, err := NewBatch(64, 1)
				require.NoError(t, err)
				defer b.Close()
				next := make([]Token, seqs)
				pos := make([]Pos, seqs)
				for seq := range seqs { // prompts of different lengths: 5, 6, 7, 8 tokens
					for i := range 5 + seq {
						require.NoError(t, b.Add(Token(100+7*i+seq), pos[seq], i == 4+seq, SeqID(seq)))
						pos[seq]++
						rows[seq].Row = b.Len() - 1
					}
				}
				got := make([][]Token, seqs)
				for range 12 {
					require.NoError(t, c.Decode(t.Context(), b))
					require.NoError(t, c.SampleRows(rows))
					for seq := range seqs {
						require.NoError(t, rows[seq].Err)
						next[seq] = rows[seq].Token
						got[seq] = append(got[seq], next[seq])
						_, err := c.Logits(rows[seq].Row)
						if device && seq < seqs-1 {
							assert.ErrorIs(t, err, ErrNoLogits, "seq %d was sampled on the device", seq)
						} else {
							assert.NoError(t, err)
						}
					}
					b.Clear()
					for seq := range seqs {
						require.NoError(t, b.Add(next[seq], pos[seq], true, SeqID(seq)))
						pos[seq]++
						rows[seq].Row = seq
					}
				}
				if device {
					// Attaching greedy again is free: the same chain stays.
					chain := c.attached.chains[0]
					ok, err := c.SetBackendSampler(0, newTestSampler(t, m, Greedy()))
					require.NoError(t, err)
					assert.True(t, ok)
					assert.Equal(t, chain, c.attached.chains[0])
					// A greedy sampler is not bound to the context; other samplers may not
					// take a greedy device pick.
					assert.Nil(t, rows[0].Sampler.device)
					_, err = newTestSampler(t, m, Temp(0.7), Seed(1)).Sample(c, rows[0].Row)
					assert.ErrorIs(t, err, ErrInvalidParams)
					_, err = newTestSampler(t, m, Temp(0.7), Seed(1)).Sample(c, rows[seqs-1].Row)
					assert.NoError(t, err, "the CPU sequence")
					// Detached, sequence 0 gets its logits back.
					_, err = c.SetBackendSampler(0, nil)
					require.NoError(t, err)
					require.NoError(t, c.Decode(t.Context(), b))
					_, err = c.Logits(0)
					assert.NoError(t, err)
					assert.Len(t, c.attached.chains, seqs-2)
				}
				return got
			}
			cpu, dev := decode(false), decode(true)
			assert.Equal(t, cpu, dev)
			for seq := range seqs {
				assert.Len(t, dev[seq], 12)
			}
			for seq := 1; seq <= 3; seq++ {
				assert.Greater(t, len(slices.Compact(slices.Sorted(slices.Values(cpu[seq])))), 4, "seq %d's draws vary: a wrong candidate would show", seq)
			}
		})
	}
}

// Log-probabilities need logits that device-greedy rows keep on the device: an error,
// not made-up numbers.
func TestDeviceGreedyLogprobs(t *testing.T) {
	m := loadTiny(t)
	c := newTestContext(t, m, 256)
	s := newTestSampler(t, m, Greedy())
	ok, err := c.SetBackendSampler(0, s)
	require.NoError(t, err)
	require.True(t, ok)
	var last error
	for _, err := range c.Generate(t.Context(), []Token{1, 2}, s, &GenerateParams{MaxTokens: 2, Logprobs: 3}) {
		last = err
	}
	assert.ErrorIs(t, last, ErrNoLogits)
}
