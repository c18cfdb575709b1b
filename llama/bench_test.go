package llama

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/llamago/llamago/llama/gguf"
	"github.com/stretchr/testify/require"
)

// The per-token cost of our generation loop against a bare decode loop, on the tiny
// synthetic model (so that overhead is not hidden by compute). Each reports ns per token.
//
//	go test -run '^$' -bench 'Loop' -benchtime 2000x ./llama/

const benchChunk = 512 // tokens per fresh sequence, so the cache never fills

func benchContext(b *testing.B) (*Model, *Context) {
	m := loadTiny(b)
	c, err := m.NewContext(&ContextParams{NCtx: 2 * benchChunk})
	require.NoError(b, err)
	b.Cleanup(func() { c.Close() })
	return m, c
}

// BenchmarkBareDecodeLoop decodes one token at a time and nothing else.
func BenchmarkBareDecodeLoop(b *testing.B) {
	_, c := benchContext(b)
	ctx := context.Background()
	tok := []Token{1}
	pos := Pos(0)
	b.ReportAllocs()
	for b.Loop() {
		if pos == benchChunk {
			require.NoError(b, c.MemoryClear(false))
			pos = 0
		}
		if err := c.DecodeTokens(ctx, tok, pos, 0); err != nil {
			b.Fatal(err)
		}
		pos++
	}
}

// BenchmarkSampleLoop is the hand-written loop: decode, then sample with a chain.
func BenchmarkSampleLoop(b *testing.B) {
	m, c := benchContext(b)
	s, err := NewSampler(m, TopK(40), Temp(0.8), Seed(1))
	require.NoError(b, err)
	defer s.Close()
	ctx := context.Background()
	tok := []Token{1}
	pos := Pos(0)
	b.ReportAllocs()
	for b.Loop() {
		if pos == benchChunk {
			require.NoError(b, c.MemoryClear(false))
			pos = 0
		}
		if err := c.DecodeTokens(ctx, tok, pos, 0); err != nil {
			b.Fatal(err)
		}
		t, err := s.Sample(c, -1)
		if err != nil {
			b.Fatal(err)
		}
		tok[0] = t
		pos++
	}
}

// BenchmarkGenerateLoop is Generate with the same chain: iterator, EOG check and all;
// "device stage" is the path a GPU context takes by itself (placeSampling), its
// narrowing run here by the CPU backend in the graph.
func BenchmarkGenerateLoop(b *testing.B) {
	for _, device := range []bool{false, true} {
		b.Run(map[bool]string{false: "cpu", true: "device stage"}[device], func(b *testing.B) {
			m, c := benchContext(b)
			c.autoDevice = device
			s, err := NewSampler(m, TopK(40), Temp(0.8), Seed(1))
			require.NoError(b, err)
			defer s.Close()
			ctx := context.Background()
			b.ReportAllocs()
			remaining := b.N
			b.ResetTimer()
			for remaining > 0 {
				n := min(remaining, benchChunk)
				require.NoError(b, c.MemoryClear(false))
				for _, err := range c.Generate(ctx, []Token{1}, s, &GenerateParams{MaxTokens: n, IgnoreEOG: true}) {
					if err != nil {
						b.Fatal(err)
					}
				}
				if c.LastGeneration().DeviceSampling != device {
					b.Fatalf("sampled on the device: %v, want %v", !device, device)
				}
				remaining -= n
			}
		})
	}
}

// BenchmarkSampleDefaultChain is the CPU cost of one pick with llama.cpp's default chain
// (top-k 40, top-p 0.95, min-p 0.05, temperature 0.8) from a 128k-token vocabulary.
func BenchmarkSampleDefaultChain(b *testing.B) {
	m, c := benchContext(b)
	s, err := NewSamplerFromParams(m, &SamplingParams{Seed: 1, Temperature: 0.8, TopK: 40, TopP: 0.95, MinP: 0.05, TypicalP: 1})
	require.NoError(b, err)
	defer s.Close()
	require.NoError(b, c.DecodeTokens(context.Background(), []Token{1}, 0, 0))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Sample(c, -1); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSampleNarrowedRow is the CPU's share of the same pick when the device narrowed
// the row to the groups that hold its top 40 (what GenerateText does per token on a GPU;
// here the CPU backend narrows in its graph, so no copy from a device is timed).
func BenchmarkSampleNarrowedRow(b *testing.B) {
	m, c := benchContext(b)
	s, err := NewSamplerFromParams(m, &SamplingParams{Seed: 1, Temperature: 0.8, TopK: 40, TopP: 0.95, MinP: 0.05, TypicalP: 1})
	require.NoError(b, err)
	defer s.Close()
	on, err := c.SetBackendSampler(0, s)
	require.NoError(b, err)
	require.True(b, on)
	require.NoError(b, c.DecodeTokens(context.Background(), []Token{1}, 0, 0))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Sample(c, -1); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSampleRows samples 8 rows of one decode with the default chain, in parallel
// (SampleRows) and one after the other (Sample); ns/op is per step of 8 picks.
func BenchmarkSampleRows(b *testing.B) {
	m := loadTiny(b)
	const rows = 8
	c, err := m.NewContext(&ContextParams{NCtx: 256, NSeqMax: rows})
	require.NoError(b, err)
	b.Cleanup(func() { c.Close() })
	decodeOneTokenPerSeq(b, c, rows)
	picks := make([]RowSample, rows)
	for i := range picks {
		s, err := NewSamplerFromParams(m, &SamplingParams{Seed: uint32(i), Temperature: 0.8, TopK: 40, TopP: 0.95, MinP: 0.05, TypicalP: 1})
		require.NoError(b, err)
		b.Cleanup(func() { s.Close() })
		picks[i] = RowSample{Sampler: s, Row: i}
	}
	b.Run("parallel", func(b *testing.B) {
		for b.Loop() {
			require.NoError(b, c.SampleRows(picks))
		}
	})
	b.Run("serial", func(b *testing.B) {
		for b.Loop() {
			for _, p := range picks {
				if _, err := p.Sampler.Sample(c, p.Row); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}

// BenchmarkSampleRowsDeviceGreedy reads 64 rows that the shared device argmax picked
// (on the CPU backend here: what is left is the binding's and llama.cpp's per-row cost,
// without a GPU stream synchronize); ns/op is per step of 64 picks.
func BenchmarkSampleRowsDeviceGreedy(b *testing.B) {
	m := loadTiny(b)
	const rows = 64
	c, err := m.NewContext(&ContextParams{NCtx: 64 * rows, NSeqMax: rows})
	require.NoError(b, err)
	b.Cleanup(func() { c.Close() })
	picks := make([]RowSample, rows)
	for i := range picks {
		s, err := NewSampler(m, Greedy())
		require.NoError(b, err)
		b.Cleanup(func() { s.Close() })
		on, err := c.SetBackendSampler(SeqID(i), s)
		require.NoError(b, err)
		require.True(b, on)
		picks[i] = RowSample{Sampler: s, Row: i}
	}
	decodeOneTokenPerSeq(b, c, rows)
	require.NoError(b, c.Synchronize())
	for b.Loop() {
		require.NoError(b, c.SampleRows(picks))
	}
}

// decodeOneTokenPerSeq decodes one token in each of sequences 0..n-1, each with an
// output row (row i: sequence i).
func decodeOneTokenPerSeq(b *testing.B, c *Context, n int) {
	batch, err := NewBatch(n, 1)
	require.NoError(b, err)
	defer batch.Close()
	for seq := range n {
		require.NoError(b, batch.Add(Token(100+seq), 0, true, SeqID(seq)))
	}
	require.NoError(b, c.Decode(context.Background(), batch))
}

// BenchmarkChatSessionResume is the time to the first token of a new turn in a resumed
// conversation of about 2,000 tokens: "restore" loads a session saved with its KV cache
// (Load included), "reread" loads the messages only and decodes the conversation again.
// The model is $LLAMAGO_BENCH_MODEL, or a synthetic Qwen2-0.5B-shape Q8_0.
//
//	go test -run '^$' -bench ChatSessionResume -benchtime 3x ./llama/
func BenchmarkChatSessionResume(b *testing.B) {
	path := os.Getenv("LLAMAGO_BENCH_MODEL")
	if path == "" {
		path = synthModel(b, "qwen2-0.5b", gguf.TypeQ8_0)
	}
	m, err := LoadModel(context.Background(), path, &ModelParams{GPULayers: -1})
	require.NoError(b, err)
	defer m.Close()
	params := &ChatSessionParams{
		System:   strings.Repeat("The LORD is my shepherd; I shall not want. He maketh me to lie down in green pastures. ", 90),
		Sampling: greedyParams(), MaxTokens: 1,
	}
	session := func() *ChatSession {
		c, err := m.NewContext(&ContextParams{NCtx: 4096})
		require.NoError(b, err)
		b.Cleanup(func() { c.Close() })
		s, err := NewChatSession(c, params)
		require.NoError(b, err)
		return s
	}
	s := session()
	_, err = drain(b, s.Say(b.Context(), "Who is my shepherd?"))
	require.NoError(b, err)
	b.Logf("conversation: %d tokens", s.LastTurn().PromptTokens)
	var withCache, messagesOnly bytes.Buffer
	require.NoError(b, s.Save(&withCache))
	require.NoError(b, json.NewEncoder(&messagesOnly).Encode(sessionFile{Version: 1, Messages: s.Messages()}))

	for name, saved := range map[string][]byte{"restore": withCache.Bytes(), "reread": messagesOnly.Bytes()} {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				r := session()
				b.StartTimer()
				require.NoError(b, r.Load(bytes.NewReader(saved)))
				_, err := drain(b, r.Say(b.Context(), "And then?"))
				require.NoError(b, err)
				b.StopTimer()
				r.Close()
				r.c.Close()
				b.StartTimer()
			}
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/first-token")
		})
	}
}
