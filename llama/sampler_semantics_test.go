package llama

import (
	"context"
	"encoding/json"
	"math"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
	"unsafe"

	"github.com/llamago/llamago/llama/gguf"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCandidateLayout(t *testing.T) {
	assert.Equal(t, candidateCSize, unsafe.Sizeof(Candidate{}))
}

// fromProbs makes candidates 0..n-1 whose logits are the logs of probs.
func fromProbs(probs ...float64) []Candidate {
	c := make([]Candidate, len(probs))
	for i, p := range probs {
		c[i] = Candidate{Token: Token(i), Logit: float32(math.Log(p))}
	}
	return c
}

// probsOf maps each remaining token to its probability.
func probsOf(cands []Candidate) map[Token]float64 {
	out := map[Token]float64{}
	for _, c := range cands {
		out[c.Token] = float64(c.P)
	}
	return out
}

func TestSamplerSemantics(t *testing.T) {
	m := loadTiny(t)
	for _, tc := range []struct {
		name   string
		stages []Stage
		in     []Candidate
		want   map[Token]float64 // token -> probability after the chain's final softmax
	}{
		{"top-k 1", []Stage{TopK(1)}, fromProbs(0.1, 0.2, 0.3, 0.4), map[Token]float64{3: 1}},
		{"top-k 3", []Stage{TopK(3)}, fromProbs(0.1, 0.2, 0.3, 0.4), map[Token]float64{3: 4.0 / 9, 2: 3.0 / 9, 1: 2.0 / 9}},
		{"top-k 0 keeps all", []Stage{TopK(0)}, fromProbs(0.1, 0.2, 0.3, 0.4), map[Token]float64{0: 0.1, 1: 0.2, 2: 0.3, 3: 0.4}},
		{"top-p 0.5", []Stage{TopP(0.5)}, fromProbs(0.1, 0.2, 0.3, 0.4), map[Token]float64{3: 4.0 / 7, 2: 3.0 / 7}},
		{"top-p 1 keeps all", []Stage{TopP(1)}, fromProbs(0.1, 0.2, 0.3, 0.4), map[Token]float64{0: 0.1, 1: 0.2, 2: 0.3, 3: 0.4}},
		{"min-p 0.6", []Stage{MinP(0.6)}, fromProbs(0.1, 0.2, 0.3, 0.4), map[Token]float64{3: 4.0 / 7, 2: 3.0 / 7}},
		{"min-p 0 keeps all", []Stage{MinP(0)}, fromProbs(0.1, 0.2, 0.3, 0.4), map[Token]float64{0: 0.1, 1: 0.2, 2: 0.3, 3: 0.4}},
		// Entropy of (0.4, 0.2, 0.2, 0.2) is 1.332 nats; the 0.2 tokens (surprise 1.609) are
		// closer to it than the 0.4 token (0.916), and three of them pass mass 0.5.
		{"typical 0.5", []Stage{Typical(0.5)}, fromProbs(0.4, 0.2, 0.2, 0.2), map[Token]float64{1: 1.0 / 3, 2: 1.0 / 3, 3: 1.0 / 3}},
		{"typical 0.5 peaked", []Stage{Typical(0.5)}, fromProbs(0.97, 0.01, 0.01, 0.01), map[Token]float64{0: 1}},
		{"temperature 0.5 squares", []Stage{Temp(0.5)}, fromProbs(0.25, 0.75), map[Token]float64{0: 0.1, 1: 0.9}},
		{"logit bias", []Stage{LogitBias(map[Token]float32{0: float32(math.Log(3))})}, fromProbs(0.25, 0.75), map[Token]float64{0: 0.5, 1: 0.5}},
		{"ban", []Stage{LogitBias(map[Token]float32{1: float32(math.Inf(-1))})}, fromProbs(0.25, 0.75), map[Token]float64{0: 1, 1: 0}},
		{"top-k then top-p", []Stage{TopK(3), TopP(0.6)}, fromProbs(0.1, 0.2, 0.3, 0.4), map[Token]float64{3: 4.0 / 7, 2: 3.0 / 7}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestSampler(t, m, append(tc.stages, Seed(1))...)
			out, sel, err := s.Apply(tc.in)
			require.NoError(t, err)
			got := probsOf(out)
			for tok, p := range tc.want {
				assert.InDelta(t, p, got[tok], 1e-5, "token %d", tok)
			}
			for tok, p := range got {
				if _, ok := tc.want[tok]; !ok {
					assert.Zero(t, p, "token %d should be gone", tok)
				}
			}
			require.GreaterOrEqual(t, sel, 0)
			assert.Positive(t, tc.want[out[sel].Token], "selected a kept token")
		})
	}

	t.Run("penalties", func(t *testing.T) {
		// Repeat 2 divides positive logits of seen tokens; frequency 0.5 per occurrence and
		// presence 1 once are subtracted.
		s := newTestSampler(t, m, Penalties(64, 2, 0.5, 1), Greedy())
		require.NoError(t, s.Accept(3))
		require.NoError(t, s.Accept(3))
		require.NoError(t, s.Accept(1))
		in := []Candidate{{0, 1, 0}, {1, 3, 0}, {2, 2.5, 0}, {3, 4, 0}}
		out, sel, err := s.Apply(in)
		require.NoError(t, err)
		logits := map[Token]float32{}
		for _, c := range out {
			logits[c.Token] = c.Logit
		}
		assert.InDelta(t, 1, logits[0], 1e-6)
		assert.InDelta(t, 3.0/2-0.5-1, logits[1], 1e-6)
		assert.InDelta(t, 2.5, logits[2], 1e-6)
		assert.InDelta(t, 4.0/2-2*0.5-1, logits[3], 1e-6)
		assert.Equal(t, Token(2), out[sel].Token, "greedy picks the unpenalised token")
		require.NoError(t, s.Reset())
		out, sel, err = s.Apply(in)
		require.NoError(t, err)
		assert.Equal(t, Token(3), out[sel].Token, "after Reset nothing is penalised")
	})

	t.Run("greedy is argmax", func(t *testing.T) {
		c := newTestContext(t, m, 256)
		g := newTestSampler(t, m, Greedy())
		prompt, err := m.Tokenize("Greedy equals argmax", AddSpecial)
		require.NoError(t, err)
		require.NoError(t, c.DecodeTokens(t.Context(), prompt, 0, 0))
		logits, err := c.Logits(-1)
		require.NoError(t, err)
		tok, err := g.Sample(c, -1)
		require.NoError(t, err)
		assert.Equal(t, argmax(logits), tok)
	})

	_, _, err := newTestSampler(t, m, Greedy()).Apply([]Candidate{{Token: Token(m.Vocab().NTokens)}})
	assert.ErrorIs(t, err, ErrInvalidToken)
	_, _, err = newTestSampler(t, m, Greedy()).Apply(nil)
	assert.ErrorIs(t, err, ErrInvalidParams)
}

// TestSchemaConstrainedOverSeeds: every output of a schema-constrained generation parses
// and satisfies the schema, whatever the seed (random weights pick arbitrary paths).
func TestSchemaConstrainedOverSeeds(t *testing.T) {
	m := loadTiny(t)
	c := newTestContext(t, m, 1024)
	schema := json.RawMessage(`{
		"type": "object",
		"properties": {
			"answer": {"enum": ["yes", "no", "maybe"]},
			"n": {"type": "integer", "minimum": 0, "maximum": 99},
			"ok": {"type": "boolean"},
			"tag": {"type": "string", "maxLength": 4}
		},
		"required": ["answer", "n", "ok", "tag"],
		"additionalProperties": false
	}`)
	for seed := range uint32(20) {
		p := DefaultSamplingParams()
		p.Seed = seed
		p.Temperature = 1.5
		p.ResponseFormat = &ResponseFormat{JSONSchema: schema}
		s, err := NewSamplerFromParams(m, &p)
		require.NoError(t, err)
		require.NoError(t, c.MemoryClear(true))
		var out strings.Builder
		var res GenerateResult
		for piece, err := range c.GenerateText(t.Context(), "Reply in JSON:", s, &GenerateParams{MaxTokens: 400}) {
			require.NoError(t, err)
			out.WriteString(piece)
		}
		res = c.LastGeneration()
		s.Close()
		require.Equal(t, FinishEOG, res.FinishReason, "seed %d: %q", seed, out.String())
		var v struct {
			Answer string `json:"answer"`
			N      *int   `json:"n"`
			OK     *bool  `json:"ok"`
			Tag    *string
		}
		dec := json.NewDecoder(strings.NewReader(out.String()))
		dec.DisallowUnknownFields()
		require.NoError(t, dec.Decode(&v), "seed %d: %q", seed, out.String())
		assert.Contains(t, []string{"yes", "no", "maybe"}, v.Answer)
		require.NotNil(t, v.N)
		assert.True(t, *v.N >= 0 && *v.N <= 99, "n = %d", *v.N)
		require.NotNil(t, v.OK)
		require.NotNil(t, v.Tag)
		assert.LessOrEqual(t, utf8.RuneCountInString(*v.Tag), 4)
	}
}

// TestMultiByteStreaming: on an SPM vocabulary an emoji is several byte-fallback tokens;
// GenerateText must hold the pieces until the character is complete.
func TestMultiByteStreaming(t *testing.T) {
	m, err := LoadModel(t.Context(), synthModel(t, "mistral-tiny", gguf.TypeF16), &ModelParams{GPULayers: 0})
	require.NoError(t, err)
	defer m.Close()
	want := "🦙 über 日本"
	toks, err := m.Tokenize(want, 0)
	require.NoError(t, err)
	partial := 0
	for _, tok := range toks {
		piece, err := m.TokenPiece(tok, false)
		require.NoError(t, err)
		if !utf8.Valid(piece) {
			partial++
		}
	}
	require.Positive(t, partial, "the vocabulary splits some character across tokens")

	c := newTestContext(t, m, 256)
	s := newTestSampler(t, m, Grammar(`root ::= "`+want+`"`), Greedy())
	var got strings.Builder
	for piece, err := range c.GenerateText(t.Context(), "Say it:", s, &GenerateParams{MaxTokens: 64}) {
		require.NoError(t, err)
		assert.True(t, utf8.ValidString(piece), "piece %q", piece)
		got.WriteString(piece)
	}
	assert.Equal(t, want, strings.TrimPrefix(got.String(), " "))
}

func TestBackendSampler(t *testing.T) {
	m := loadTiny(t)
	prompt, err := m.Tokenize("On the device", AddSpecial)
	require.NoError(t, err)
	run := func(onDevice bool) []Token {
		c := newTestContext(t, m, 256)
		s := newTestSampler(t, m, Temp(0.5), Greedy())
		if onDevice {
			ok, err := c.SetBackendSampler(0, s)
			require.NoError(t, err)
			assert.False(t, ok, "Greedy after another stage stays on the CPU (upstream returns candidate indexes)")
			s = newTestSampler(t, m, Greedy())
			ok, err = c.SetBackendSampler(0, s)
			require.NoError(t, err)
			assert.True(t, ok, "the CPU backend runs greedy sampling in the graph")
		}
		return collect(t, c.Generate(t.Context(), prompt, s, &GenerateParams{MaxTokens: 12, IgnoreEOG: true}))
	}
	cpu, dev := run(false), run(true)
	assert.Len(t, cpu, 12)
	assert.Equal(t, cpu, dev, "greedy picks the same tokens on the device")

	// A grammar keeps sampling on the CPU; a closed sampler stays alive while attached.
	c := newTestContext(t, m, 256)
	g := newTestSampler(t, m, Grammar(`root ::= "a"`))
	ok, err := c.SetBackendSampler(0, g)
	require.NoError(t, err)
	assert.False(t, ok)
	// A chain other than Greedy alone or one led by TopK is attached itself, and bound.
	s, err := NewSampler(m, MinP(0.05), Temp(0.8), Seed(1))
	require.NoError(t, err)
	if ok, _ := c.SetBackendSampler(0, s); assert.True(t, ok) {
		// Bound to c: not usable elsewhere, not attachable twice.
		other := newTestContext(t, m, 256)
		require.NoError(t, other.DecodeTokens(t.Context(), []Token{1, 2}, 0, 0))
		_, err := s.Sample(other, -1)
		assert.ErrorIs(t, err, ErrInvalidParams)
		_, err = other.SetBackendSampler(0, s)
		assert.ErrorIs(t, err, ErrInvalidParams)
		_, _, err = s.Apply([]Candidate{{Token: 1}})
		assert.ErrorIs(t, err, ErrInvalidParams)
		require.NoError(t, s.Close())
		assert.NotNil(t, s.chain, "still attached")
		_, err = c.SetBackendSampler(0, nil)
		require.NoError(t, err)
		assert.Nil(t, s.chain, "freed once detached")
	}
	detached := newTestSampler(t, m, MinP(0.05), Temp(0.8), Seed(1))
	if ok, _ := c.SetBackendSampler(0, detached); assert.True(t, ok) {
		_, err := c.SetBackendSampler(0, nil)
		require.NoError(t, err)
		for _, err := range c.Generate(t.Context(), []Token{1}, detached, &GenerateParams{MaxTokens: 1}) {
			assert.ErrorIs(t, err, ErrInvalidParams, "a detached sampler is spent")
		}
	}
	_, err = c.SetBackendSampler(5, s)
	assert.ErrorIs(t, err, ErrInvalidParams)
}

// checkDeviceTopK generates with a chain led by TopK(40) narrowed on m's output device
// and on the CPU alone, same seed: the same tokens. It returns the prompt.
func checkDeviceTopK(t *testing.T, m *Model) []Token {
	prompt, err := m.Tokenize("Narrowed on the device", AddSpecial)
	require.NoError(t, err)
	params := SamplingParams{Seed: 7, Temperature: 1.5, TopK: 40, TopP: 0.99, MinP: 0.001, TypicalP: 1}
	run := func(narrow bool) []Token {
		c := newTestContext(t, m, 256)
		s, err := NewSamplerFromParams(m, &params)
		require.NoError(t, err)
		t.Cleanup(func() { s.Close() })
		if narrow {
			ok, err := c.SetBackendSampler(0, s)
			require.NoError(t, err)
			require.True(t, ok)
			assert.Nil(t, s.device, "not bound: the chain runs on the CPU")
			assert.Equal(t, 40, c.attached.chains[0].narrow)
		}
		return collect(t, c.Generate(t.Context(), prompt, s, &GenerateParams{MaxTokens: 32, IgnoreEOG: true}))
	}
	cpu, dev := run(false), run(true)
	require.Len(t, cpu, 32)
	assert.Equal(t, cpu, dev)
	assert.Greater(t, len(slices.Compact(slices.Sorted(slices.Values(cpu)))), 8, "the draws vary: a wrong candidate would show")
	return prompt
}

// TestDeviceTopKRows: a chain led by TopK attached for on-device sampling narrows the
// rows to the groups holding the top k tokens (here on the CPU backend).
func TestDeviceTopKRows(t *testing.T) {
	m := loadTiny(t)
	prompt := checkDeviceTopK(t, m)

	// Who may sample a narrowed row: chains led by TopK(k <= 40); Greedy picks the
	// row's largest logit.
	plain := newTestContext(t, m, 256)
	require.NoError(t, plain.DecodeTokens(t.Context(), prompt, 0, 0))
	logits, err := plain.Logits(-1)
	require.NoError(t, err)
	best := Token(0)
	for i, l := range logits {
		if l > logits[best] {
			best = Token(i)
		}
	}
	c := newTestContext(t, m, 256)
	ok, err := c.SetBackendSampler(0, newTestSampler(t, m, TopK(40), Temp(0.8), Seed(1)))
	require.NoError(t, err)
	require.True(t, ok)
	require.NoError(t, c.DecodeTokens(t.Context(), prompt, 0, 0))
	_, err = c.Logits(-1)
	assert.ErrorIs(t, err, ErrNoLogits, "the logits stayed on the device")
	rows := []RowSample{
		{Sampler: newTestSampler(t, m, Greedy()), Row: len(prompt) - 1},
		{Sampler: newTestSampler(t, m, TopK(10), Temp(0.8), Seed(1)), Row: len(prompt) - 1},
		{Sampler: newTestSampler(t, m, TopK(41), Temp(0.8), Seed(1)), Row: len(prompt) - 1},
		{Sampler: newTestSampler(t, m, Temp(0.8), Seed(1)), Row: len(prompt) - 1},
	}
	require.NoError(t, c.SampleRows(rows))
	require.NoError(t, rows[0].Err)
	assert.Equal(t, best, rows[0].Token)
	assert.NoError(t, rows[1].Err)
	assert.ErrorIs(t, rows[2].Err, ErrInvalidParams)
	assert.ErrorIs(t, rows[3].Err, ErrInvalidParams)

	// A sequence sampling on the device takes one output row per decode: a clear error
	// before llama.cpp's bare refusal.
	b, err := NewBatch(4, 1)
	require.NoError(t, err)
	defer b.Close()
	for i := range 2 {
		require.NoError(t, b.Add(Token(100+i), Pos(len(prompt)+i), true, 0))
	}
	err = c.Decode(t.Context(), b)
	assert.ErrorIs(t, err, ErrInvalidBatch)
	assert.ErrorContains(t, err, "one output row per decode")

	// Attaching the same narrowing again keeps the chain; detached, the logits return.
	chain := c.attached.chains[0]
	ok, err = c.SetBackendSampler(0, newTestSampler(t, m, TopK(40), MinP(0.1), Seed(2)))
	require.NoError(t, err)
	assert.True(t, ok)
	assert.Equal(t, chain, c.attached.chains[0])
	_, err = c.SetBackendSampler(0, nil)
	require.NoError(t, err)
	require.NoError(t, c.DecodeTokens(t.Context(), []Token{best}, Pos(len(prompt)), 0))
	_, err = c.Logits(-1)
	assert.NoError(t, err)

	// A k too large for narrowing to pay: the CPU, and the sampler stays unbound.
	big := newTestSampler(t, m, TopK(5000), Temp(0.8), Seed(1))
	assert.Equal(t, 5000, big.leadingTopK())
	ok, err = c.SetBackendSampler(0, big)
	require.NoError(t, err)
	assert.False(t, ok)
	assert.Nil(t, big.device)
	assert.Empty(t, c.attached.chains)
	assert.Zero(t, newTestSampler(t, m, Grammar(`root ::= "a"`), TopK(40)).leadingTopK())
	assert.Zero(t, newTestSampler(t, m, Temp(0.8), TopK(40)).leadingTopK())
	assert.Equal(t, 1, newTestSampler(t, m, Greedy()).leadingTopK())

	// TopK(1) leading a chain is narrowing to one token, not the greedy argmax (whose
	// picks only greedy samplers take): it samples what the CPU samples.
	top1 := func(narrow bool) []Token {
		c := newTestContext(t, m, 256)
		s := newTestSampler(t, m, TopK(1), Temp(0.8), Seed(1))
		if narrow {
			ok, err := c.SetBackendSampler(0, s)
			require.NoError(t, err)
			require.True(t, ok)
			assert.Equal(t, 1, c.attached.chains[0].narrow)
		}
		return collect(t, c.Generate(t.Context(), prompt, s, &GenerateParams{MaxTokens: 6, IgnoreEOG: true}))
	}
	cpu := top1(false)
	assert.Len(t, cpu, 6)
	assert.Equal(t, cpu, top1(true))
}

func TestGenerateNoAllocsPerToken(t *testing.T) {
	if asanBuild {
		t.Skip("go test -asan: cgo calls allocate in AddressSanitizer mode; a normal build counts the allocations")
	}
	m := loadTiny(t)
	c := newTestContext(t, m, 512)
	s := newTestSampler(t, m, TopK(40), Temp(0.8), Seed(1))
	prompt := []Token{1, 2, 3}
	ctx, cancel := context.WithCancel(context.Background()) // a cancellable context, as servers use
	defer cancel()
	generate := func(n int) func() {
		return func() {
			_ = c.MemoryClear(false)
			for _, err := range c.Generate(ctx, prompt, s, &GenerateParams{MaxTokens: n, IgnoreEOG: true}) {
				if err != nil {
					panic(err)
				}
			}
		}
	}
	short := testing.AllocsPerRun(5, generate(4))
	long := testing.AllocsPerRun(5, generate(68))
	t.Logf("allocations per generation: %v for 4 tokens, %v for 68 tokens", short, long)
	assert.Equal(t, short, long, "64 more tokens allocate nothing more")
}

// TestAutoDeviceSampling: on a context whose output layer runs on a GPU, generations
// with Greedy alone or a chain led by TopK pick on the device by themselves, with the
// same tokens; log-probabilities, drafts and the caller's own decodes bring the logits
// back. (autoDevice is forced on the CPU backend, which runs the same stages in its graph.)
func TestAutoDeviceSampling(t *testing.T) {
	m := loadTiny(t)
	prompt, err := m.Tokenize("Sampled where it is cheapest", AddSpecial)
	require.NoError(t, err)
	params := SamplingParams{Seed: 7, Temperature: 1.5, TopK: 40, TopP: 0.99, MinP: 0.001, TypicalP: 1}
	sampler := func() *Sampler {
		s, err := NewSamplerFromParams(m, &params)
		require.NoError(t, err)
		t.Cleanup(func() { s.Close() })
		return s
	}
	gen := func(c *Context, s *Sampler, o GenerateParams) []Token {
		require.NoError(t, c.MemoryClear(false))
		o.MaxTokens, o.IgnoreEOG = 24, true
		return collect(t, c.Generate(t.Context(), prompt, s, &o))
	}
	plain := newTestContext(t, m, 512)
	plain.autoDevice = false // the reference: every logit read on the CPU
	c := newTestContext(t, m, 512)
	c.autoDevice = true

	want := gen(plain, sampler(), GenerateParams{})
	assert.Empty(t, plain.attached.chains)
	assert.Equal(t, want, gen(c, sampler(), GenerateParams{}))
	narrowed := c.attached.chains[0]
	assert.Equal(t, 40, narrowed.narrow)
	assert.True(t, narrowed.auto)
	_, err = c.Logits(-1)
	assert.ErrorIs(t, err, ErrNoLogits, "the last decode's logits stayed on the device")
	assert.Equal(t, want, gen(c, sampler(), GenerateParams{}))
	assert.Equal(t, narrowed, c.attached.chains[0], "kept: no new plan for the next generation")

	greedy := func() *Sampler { return newTestSampler(t, m, Greedy()) }
	wantGreedy := gen(plain, greedy(), GenerateParams{})
	assert.Equal(t, wantGreedy, gen(c, greedy(), GenerateParams{}))
	assert.Zero(t, c.attached.chains[0].narrow, "the shared argmax")

	// Log-probabilities and drafts need the logits: the CPU.
	var lp []Generated
	for g, err := range c.Generate(t.Context(), []Token{wantGreedy[0]}, greedy(), &GenerateParams{MaxTokens: 4, Logprobs: 2}) {
		require.NoError(t, err)
		lp = append(lp, g)
	}
	assert.Empty(t, c.attached.chains)
	require.Len(t, lp, 4)
	assert.Len(t, lp[0].Top, 2)
	assert.Equal(t, want, gen(c, sampler(), GenerateParams{Draft: &NgramDrafter{}}))
	assert.Empty(t, c.attached.chains)

	// The caller's own decode brings the logits back.
	gen(c, sampler(), GenerateParams{})
	require.NotEmpty(t, c.attached.chains)
	_, last, err := c.MemorySeqPosRange(0)
	require.NoError(t, err)
	require.NoError(t, c.DecodeTokens(t.Context(), []Token{want[0]}, last+1, 0))
	assert.Empty(t, c.attached.chains)
	_, err = c.Logits(-1)
	assert.NoError(t, err)

	// What the caller attached stays: a generation does not replace it.
	ok, err := c.SetBackendSampler(0, greedy())
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, wantGreedy, gen(c, greedy(), GenerateParams{}))
	assert.False(t, c.attached.chains[0].auto)
	for _, err := range c.Generate(t.Context(), prompt, sampler(), &GenerateParams{MaxTokens: 1}) {
		assert.ErrorIs(t, err, ErrInvalidParams, "the caller's greedy stage picks for this sequence")
	}
}
