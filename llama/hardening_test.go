package llama

// Hardening: every row of the table of guarded conditions in doc.go has a test that
// checks the error comes back, the process lives and the next valid call works. Rows
// tested elsewhere are named here; the rest are tested in this file.
//
//	missing, unreadable, directory, empty, non-GGUF, truncated file    TestLoadErrors, TestHardeningFiles
//	malformed GGUF: counts, lengths, offsets, types                    TestHostileModelFiles (gguf/testdata/bad), TestHardeningFiles
//	  ... and in the other files of a split model                      TestHardeningSplitFiles
//	absurd metadata: block_count, duplicate tokens, special ids,
//	wrong types for known keys, experts, rope scaling, norm epsilon    TestHostileModelFiles, TestHardeningMetadata
//	tensor split without a flash-attention head size (CUDA)            TestGPUMultiSplit (-tags cuda)
//	token id out of range, everywhere a token is accepted              TestHardeningTokenIDs (and TestVocabBadInput, TestDecodeBadInput)
//	invalid UTF-8 text                                                 TestHardeningUTF8 (and TestVocabBadInput)
//	batches: empty, beyond the effective n_batch, sequences, positions TestHardeningBatch (and TestDecodeBadInput)
//	encoder batch > n_ubatch, learned positions past the context       TestEncoderBatchLimits
//	prompt longer than the context                                     TestHardeningContextFull
//	logits, embeddings, sampling without output                        TestHardeningNoLogits (and TestSamplerBadInput)
//	grammar errors, nesting beyond MaxGrammarNesting, {m,n} with n < m,
//	hidden left recursion, forbidden tokens                            TestHardeningGrammar (and TestSamplerBadInput)
//	parameters out of range (n_ctx, n_batch, threads, ...)             TestHardeningParams (and TestDecodeBadInput, TestSamplerBadInput, TestQuantizeParamErrors)
//	mean pooling with n_ubatch not a multiple of n_seq_max             TestEmbedMeanPoolingSplit
//	use after Close, Close twice                                       TestHardeningClose (and TestCloseSemantics)
//	a Context used by two goroutines at once                           TestHardeningContextBusy, TestContextConcurrency
//	a Sampler used by two goroutines at once                           TestSamplerBusy
//	Close while another goroutine decodes / generates                  TestContextConcurrency, TestHardeningCloseWhileGenerating
//	cancelled context.Context                                          TestLoadCancel, TestDecodeCancel, TestGenerateCancel
//	panics in callbacks C calls                                        TestLoadCancel, TestCallbackPanics, TestHardeningCallbackPanics
//	GPU out of memory                                                  TestGPUOutOfMemory (-tags cuda)
//	C++ exceptions in the shim                                         TestHardeningExceptions, TestChatBadInput
//
// Beyond single rows: fuzz_test.go (tokenizer, model files, grammars, chat templates),
// leak_test.go (200 load/generate/close cycles), concurrency_test.go (16 goroutines on
// one model).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/llamago/llamago/llama/gguf"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMicroModel: the micro model of the fuzz targets and the leak test loads, tokenizes
// and generates.
func TestMicroModel(t *testing.T) {
	m, err := LoadModel(t.Context(), microModelFile(t, 16, 32, nil), &ModelParams{GPULayers: 0})
	require.NoError(t, err)
	defer m.Close()
	toks, err := m.Tokenize("hello world, the model 日本", 0)
	require.NoError(t, err)
	text, err := m.Detokenize(toks, 0)
	require.NoError(t, err)
	assert.Equal(t, "hello world, the model 日本", text, "byte fallback for what the vocabulary lacks")
	assertGenerates(t, m)
}

// assertGenerates is "the next valid call works" for a model: a context, a decode and a
// few sampled tokens.
func assertGenerates(t *testing.T, m *Model) {
	t.Helper()
	c, err := m.NewContext(&ContextParams{NCtx: 64, Threads: 1})
	require.NoError(t, err)
	defer c.Close()
	s, err := NewSampler(m, Greedy())
	require.NoError(t, err)
	defer s.Close()
	n := 0
	for _, err := range c.Generate(t.Context(), []Token{m.Vocab().BOS, 300, 301}, s, &GenerateParams{MaxTokens: 4, IgnoreEOG: true}) {
		require.NoError(t, err)
		n++
	}
	assert.Equal(t, 4, n)
}

// TestHardeningFiles: files that are not models, or not readable, are a *LoadError.
func TestHardeningFiles(t *testing.T) {
	dir := t.TempDir()
	valid := microModelFile(t, 8, 16, nil)
	data, err := os.ReadFile(valid)
	require.NoError(t, err)
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, b, 0o644))
		return p
	}
	// GGUF v3 header claiming 2^62 tensors and 2^62 metadata entries.
	huge := []byte("GGUF\x03\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x40\x00\x00\x00\x00\x00\x00\x00\x40")
	cases := map[string]string{
		"below a file":    filepath.Join(valid, "model.gguf"), // ENOTDIR: open fails without ENOENT
		"huge counts":     write("huge.gguf", huge),
		"truncated":       write("truncated.gguf", data[:len(data)-100]),
		"header only":     write("header.gguf", data[:24]),
		"bad version":     write("version.gguf", append([]byte("GGUF\x09\x00\x00\x00"), data[8:]...)),
		"text file":       write("notes.txt", []byte("GGUF is a file format; this is not one\n")),
		"zero-size model": write("empty.gguf", nil),
	}
	if os.Geteuid() != 0 { // root reads any file
		p := write("unreadable.gguf", data)
		require.NoError(t, os.Chmod(p, 0))
		cases["unreadable"] = p
	}
	for name, path := range cases {
		_, err := LoadModel(t.Context(), path, nil)
		var le *LoadError
		if assert.ErrorAs(t, err, &le, name) {
			assert.Equal(t, path, le.Path)
			t.Logf("%s: %v", name, err)
		}
	}
	m, err := LoadModel(t.Context(), valid, &ModelParams{GPULayers: 0})
	require.NoError(t, err, "the process lives and a valid file loads")
	defer m.Close()
	assertGenerates(t, m)
}

// hostileEdit is a metadata change the pre-check refuses; abort says whether llama.cpp
// v0.4.0 itself aborts the process on it (verified with llama-bench on the same file),
// as opposed to failing the load with an error of its own.
type hostileEdit struct {
	name  string
	edit  func([]gguf.KV) []gguf.KV
	abort bool
}

// vocab reports whether the edit is of tokenizer metadata (checked for vocab-only loads too).
func (h hostileEdit) vocab() bool {
	var meta []gguf.KV
	for _, kv := range h.edit(microVocab()) {
		if strings.HasPrefix(kv.Key, "tokenizer.") {
			meta = append(meta, kv)
		}
	}
	return len(meta) != len(microVocab()) || !sameKV(meta, microVocab())
}

func sameKV(a, b []gguf.KV) bool {
	for i := range a {
		if a[i].Key != b[i].Key || a[i].Value.Type() != b[i].Value.Type() || fmt.Sprint(a[i].Value.Any()) != fmt.Sprint(b[i].Value.Any()) {
			return false
		}
	}
	return true
}

func hostileMicroEdits() []hostileEdit {
	a := "llama."
	set := setKV
	return []hostileEdit{
		// Absurd counts.
		{"block_count 0", set(a+"block_count", gguf.Uint32(0)), true},
		{"block_count 100000", set(a+"block_count", gguf.Uint32(100000)), true},
		{"nextn_predict_layers > block_count", set(a+"nextn_predict_layers", gguf.Uint32(5)), true},
		{"expert_count 2000", set(a+"expert_count", gguf.Uint32(2000)), true},
		{"expert_used_count > expert_count", editKV(set(a+"expert_count", gguf.Uint32(2)), set(a+"expert_used_count", gguf.Uint32(4))), true},
		{"expert_used_count without experts", set(a+"expert_used_count", gguf.Uint32(1)), true},
		{"experts, none used", set(a+"expert_count", gguf.Uint32(4)), true},
		{"expert_used_count per layer > expert_count", editKV(set(a+"expert_count", gguf.Uint32(2)), set(a+"expert_used_count", gguf.Array([]int32{-1}))), true},
		{"expert groups without experts", set(a+"expert_group_count", gguf.Uint32(2)), true},
		{"expert groups >= experts", editKV(set(a+"expert_count", gguf.Uint32(4)), set(a+"expert_used_count", gguf.Uint32(1)), set(a+"expert_group_count", gguf.Uint32(4))), true},
		{"expert groups, none used", editKV(set(a+"expert_count", gguf.Uint32(4)), set(a+"expert_used_count", gguf.Uint32(1)), set(a+"expert_group_count", gguf.Uint32(2))), true},
		// Values llama.cpp asserts on.
		{"rope scaling type unknown", set(a+"rope.scaling.type", gguf.String("sideways")), true},
		{"rms epsilon NaN", set(a+"attention.layer_norm_rms_epsilon", gguf.Float32(float32(math.NaN()))), true},
		{"rms epsilon negative", set(a+"attention.layer_norm_rms_epsilon", gguf.Float32(-1e-5)), true},
		{"duplicate token", dupToken(300, 301), true},
		{"empty token named like llama.cpp's placeholder", editTokens(func(toks []string) { toks[300], toks[301] = "", "[EMPTY_300]" }), true},
		{"bos out of range", set("tokenizer.ggml.bos_token_id", gguf.Uint32(1<<30)), false},
		// Wrong types for known keys (llama.cpp refuses these itself, later and less clearly).
		{"block_count as a string", set(a+"block_count", gguf.String("1")), false},
		{"block_count as int32", set(a+"block_count", gguf.Int32(1)), false},
		{"context_length negative", set(a+"context_length", gguf.Int32(-1)), false},
		{"context_length uint64", set(a+"context_length", gguf.Uint64(1<<40)), false},
		{"embedding_length as float", set(a+"embedding_length", gguf.Float32(8)), false},
		{"head_count as strings", set(a+"attention.head_count", gguf.Array([]string{"2"})), false},
		{"rms epsilon as a string", set(a+"attention.layer_norm_rms_epsilon", gguf.String("1e-5")), false},
		{"rope scaling type as a number", set(a+"rope.scaling.type", gguf.Uint32(1)), false},
		{"architecture as a number", set("general.architecture", gguf.Uint32(1)), false},
		{"tokens as an int array", set("tokenizer.ggml.tokens", gguf.Array(make([]int32, 352))), false},
		{"scores as strings", set("tokenizer.ggml.scores", gguf.Array([]string{"0"})), false},
		{"token_type as floats", set("tokenizer.ggml.token_type", gguf.Array([]float32{1})), false},
		{"tokenizer model as a number", set("tokenizer.ggml.model", gguf.Uint32(1)), false},
		{"bos id as a string", set("tokenizer.ggml.bos_token_id", gguf.String("1")), false},
		{"bos id as int32", set("tokenizer.ggml.bos_token_id", gguf.Int32(1)), false},
		{"add_bos as a number", set("tokenizer.ggml.add_bos_token", gguf.Uint8(1)), false},
	}
}

func editTokens(edit func([]string)) func([]gguf.KV) []gguf.KV {
	return func(meta []gguf.KV) []gguf.KV {
		for i, kv := range meta {
			if kv.Key == "tokenizer.ggml.tokens" {
				toks := append([]string(nil), kv.Value.Any().([]string)...)
				edit(toks)
				meta[i].Value = gguf.Array(toks)
			}
		}
		return meta
	}
}

func dupToken(dst, src int) func([]gguf.KV) []gguf.KV {
	return editTokens(func(toks []string) { toks[dst] = toks[src] })
}

// TestHardeningMetadata: absurd metadata and wrong types for known keys are refused by
// the pre-check with a *LoadError; unusual but valid values load and generate.
func TestHardeningMetadata(t *testing.T) {
	for _, h := range hostileMicroEdits() {
		_, err := LoadModel(t.Context(), microModelFile(t, 8, 16, h.edit), &ModelParams{GPULayers: 0})
		var le *LoadError
		if assert.ErrorAs(t, err, &le, h.name) {
			t.Logf("%s (llama.cpp aborts: %v): %v", h.name, h.abort, err)
		}
	}
	// Tokenizer metadata is checked for vocab-only loads too.
	for _, h := range hostileMicroEdits() {
		if h.vocab() {
			_, err := LoadModel(t.Context(), microModelFile(t, 8, 16, h.edit), &ModelParams{VocabOnly: true})
			var le *LoadError
			assert.ErrorAs(t, err, &le, "vocab only: %s", h.name)
		}
	}
	// general.alignment 1 with the tensor data at a file offset that is not a multiple of
	// 32: memory-mapping it fails an assertion in ggml (found by FuzzLoadModel).
	for pad := range 32 {
		edit := editKV(setKV("general.alignment", gguf.Uint32(1)), setKV("x.pad", gguf.String(strings.Repeat("x", pad))))
		data := microModel(t, 8, 16, edit)
		f, err := gguf.Read(bytes.NewReader(data), int64(len(data)))
		require.NoError(t, err)
		if f.DataOffset%32 == 0 {
			continue
		}
		_, err = LoadModel(t.Context(), microModelFile(t, 8, 16, edit), nil)
		var le *LoadError
		if assert.ErrorAs(t, err, &le, "misaligned tensor data") {
			t.Logf("misaligned tensor data (llama.cpp aborts: true): %v", err)
		}
		m, err := LoadModel(t.Context(), microModelFile(t, 8, 16, edit), &ModelParams{VocabOnly: true})
		require.NoError(t, err, "the vocabulary of such a file loads")
		require.NoError(t, m.Close())
		break
	}

	// Valid: a trained context of 0 or 2^32-1 (the default context is then llama.cpp's),
	// two empty tokens (llama.cpp names them apart), a known rope scaling type.
	for name, edit := range map[string]func([]gguf.KV) []gguf.KV{
		"context_length 0":       setKV("llama.context_length", gguf.Uint32(0)),
		"context_length 2^32-1":  setKV("llama.context_length", gguf.Uint32(math.MaxUint32)),
		"two empty tokens":       editTokens(func(toks []string) { toks[300], toks[301] = "", "" }),
		"rope scaling type none": setKV("llama.rope.scaling.type", gguf.String("none")),
	} {
		t.Run(name, func(t *testing.T) {
			m, err := LoadModel(t.Context(), microModelFile(t, 8, 16, edit), &ModelParams{GPULayers: 0})
			require.NoError(t, err)
			defer m.Close()
			assertGenerates(t, m)
		})
	}
}

// TestHardeningExceptions: a C++ exception llama.cpp throws through its C API (here: a
// SentencePiece vocabulary without byte tokens, whose byte fallback throws
// std::out_of_range, when tokenizing and when DRY tokenizes its breakers) is caught in the
// shim and returned as an error.
func TestHardeningExceptions(t *testing.T) {
	m, err := LoadModel(t.Context(), microModelFile(t, 8, 16, renameByteTokens), &ModelParams{GPULayers: 0})
	require.NoError(t, err)
	defer m.Close()
	_, err = m.Tokenize("日本", 0) // no token for these characters: byte fallback
	require.Error(t, err)
	assert.Contains(t, err.Error(), "llama: tokenize: llama.cpp failed")
	t.Log(err)
	// The next valid call works.
	toks, err := m.Tokenize("hello world", 0)
	require.NoError(t, err)
	text, err := m.Detokenize(toks, 0)
	require.NoError(t, err)
	assert.Equal(t, "hello world", text)
	// A sampler stage whose llama_sampler_init_* throws: DRY tokenizes its breakers.
	_, err = NewSampler(m, DRY(1, 1.75, 2, 64, []string{"o日本"}))
	require.ErrorIs(t, err, errSampler)
	assert.Contains(t, err.Error(), "unordered_map::at")
	t.Log(err)
	assertGenerates(t, m)
}

// TestHardeningTokenIDs: a token id < 0 or >= the vocabulary size is ErrInvalidToken
// wherever the API accepts one.
func TestHardeningTokenIDs(t *testing.T) {
	m := loadTiny(t)
	n := m.Vocab().NTokens
	c := newTestContext(t, m, 256)
	b, err := NewBatch(4, 1)
	require.NoError(t, err)
	defer b.Close()
	for _, bad := range []Token{-1, math.MinInt32, Token(n), math.MaxInt32} {
		_, err := m.TokenPiece(bad, true)
		assert.ErrorIs(t, err, ErrInvalidToken, "TokenPiece %d", bad)
		_, err = m.AppendTokenPiece(nil, bad, false)
		assert.ErrorIs(t, err, ErrInvalidToken, "AppendTokenPiece")
		_, err = m.Detokenize([]Token{1, bad}, 0)
		assert.ErrorIs(t, err, ErrInvalidToken, "Detokenize")
		_, err = m.TokenText(bad)
		assert.ErrorIs(t, err, ErrInvalidToken, "TokenText")
		_, err = m.TokenScore(bad)
		assert.ErrorIs(t, err, ErrInvalidToken, "TokenScore")
		_, err = m.TokenAttrs(bad)
		assert.ErrorIs(t, err, ErrInvalidToken, "TokenAttrs")
		assert.False(t, m.IsEOG(bad))
		assert.False(t, m.IsControl(bad))

		b.Clear()
		require.NoError(t, b.Add(bad, 0, true, 0))
		assert.ErrorIs(t, c.Decode(t.Context(), b), ErrInvalidToken, "Decode")
		assert.ErrorIs(t, c.DecodeTokens(t.Context(), []Token{1, bad}, 0, 0), ErrInvalidToken, "DecodeTokens")
		for _, err := range c.Generate(t.Context(), []Token{1, bad}, newTestSampler(t, m, Greedy()), &GenerateParams{MaxTokens: 2}) {
			assert.ErrorIs(t, err, ErrInvalidToken, "Generate prompt")
		}
		_, err = NewSampler(m, LogitBias(map[Token]float32{bad: 1}))
		assert.ErrorIs(t, err, ErrInvalidToken, "LogitBias")
		_, err = NewSampler(m, LazyGrammar(`root ::= "a"`, TriggerToken(bad)))
		assert.ErrorIs(t, err, ErrInvalidToken, "TriggerToken")
		s := newTestSampler(t, m, Greedy())
		assert.ErrorIs(t, s.Accept(bad), ErrInvalidToken, "Accept")
		_, _, err = s.Apply([]Candidate{{Token: 1}, {Token: bad}})
		assert.ErrorIs(t, err, ErrInvalidToken, "Apply")
	}
	stream := NewTextStream(m, nil, nil)
	_, _, err = stream.Push(Token(n))
	assert.ErrorIs(t, err, ErrInvalidToken, "TextStream.Push")
	_, _, err = stream.Push(1000)
	require.NoError(t, err, "the stream takes valid tokens after the refusal")

	bert := loadModel(t, "bert-tiny", gguf.TypeF16)
	ec := newCtx(t, bert, ContextParams{NCtx: 128, Embeddings: true, Threads: 1})
	for _, bad := range []Token{-1, Token(bert.Vocab().NTokens)} {
		_, err := ec.EmbedTokens(t.Context(), [][]Token{{101, bad, 102}}, nil)
		assert.ErrorIs(t, err, ErrInvalidToken, "EmbedTokens %d", bad)
	}
	_, err = ec.EmbedTokens(t.Context(), [][]Token{{101, 2000, 102}}, nil)
	require.NoError(t, err)

	// The next valid calls work.
	require.NoError(t, c.MemoryClear(true))
	b.Clear()
	require.NoError(t, b.Add(1, 0, true, 0))
	require.NoError(t, c.Decode(t.Context(), b))
	tok, err := newTestSampler(t, m, Greedy()).Sample(c, 0)
	require.NoError(t, err)
	_, err = m.TokenPiece(tok, false)
	require.NoError(t, err)
}

// TestHardeningUTF8: text that is not valid UTF-8 is ErrInvalidUTF8 (or ErrChat wrapping it).
func TestHardeningUTF8(t *testing.T) {
	m := loadTiny(t)
	c := newTestContext(t, m, 256)
	s := newTestSampler(t, m, Greedy())
	for _, bad := range []string{"\xff", "abc\xc3", "\xed\xa0\x80 surrogate", "ok \xf8\x88\x80\x80\x80"} {
		_, err := m.Tokenize(bad, 0)
		assert.ErrorIs(t, err, ErrInvalidUTF8)
		_, err = m.AppendTokens(nil, bad, AddSpecial)
		assert.ErrorIs(t, err, ErrInvalidUTF8)
		for _, err := range c.GenerateText(t.Context(), bad, s, &GenerateParams{MaxTokens: 2}) {
			assert.ErrorIs(t, err, ErrInvalidUTF8, "GenerateText prompt")
		}
		_, err = ApplyBuiltinChatTemplate("chatml", []Message{{Role: RoleUser, Content: bad}}, true)
		assert.ErrorIs(t, err, ErrInvalidUTF8)
		assert.ErrorIs(t, err, ErrChat)
		_, err = NewSampler(m, Grammar("root ::= \""+bad+"\""))
		assert.ErrorIs(t, err, ErrGrammar)
	}
	var text strings.Builder
	for piece, err := range c.GenerateText(t.Context(), "valid text", s, &GenerateParams{MaxTokens: 3, IgnoreEOG: true}) {
		require.NoError(t, err)
		text.WriteString(piece)
	}
	assert.NotEmpty(t, text.String())
}

// TestHardeningBatch: batches llama.cpp would abort on or reject are ErrInvalidBatch;
// n_batch is the effective one (llama.cpp clamps it to n_ctx).
func TestHardeningBatch(t *testing.T) {
	m := loadTiny(t)
	c, err := m.NewContext(&ContextParams{NCtx: 256, NBatch: 4096, NUBatch: 64, Threads: 1})
	require.NoError(t, err)
	defer c.Close()
	require.Equal(t, 256, c.NBatch(), "n_batch clamped to n_ctx")
	b, err := NewBatch(300, 2)
	require.NoError(t, err)
	defer b.Close()
	assert.ErrorIs(t, c.Decode(t.Context(), b), ErrInvalidBatch, "empty")
	for i := range 257 {
		require.NoError(t, b.Add(Token(1000+i), Pos(i), i == 256, 0))
	}
	assert.ErrorIs(t, c.Decode(t.Context(), b), ErrInvalidBatch, "257 tokens > effective n_batch 256")
	b.Clear()
	require.NoError(t, b.Add(1, 0, true, 0, 1))
	assert.ErrorIs(t, c.Decode(t.Context(), b), ErrInvalidBatch, "sequence 1 of a 1-sequence context")
	assert.ErrorIs(t, b.Add(1, -5, true, 0), ErrInvalidBatch, "negative position")
	// DecodeTokens splits what exceeds n_batch itself.
	require.NoError(t, c.DecodeTokens(t.Context(), longPrompt(200), 0, 0))
	b.Clear()
	require.NoError(t, b.Add(7, 200, true, 0))
	require.NoError(t, c.Decode(t.Context(), b), "the next valid batch decodes")
	_, err = c.Logits(0)
	require.NoError(t, err)
}

// TestHardeningContextFull: a prompt longer than the context is ErrContextFull, from
// DecodeTokens and from Generate; the context stays usable.
func TestHardeningContextFull(t *testing.T) {
	m := loadTiny(t)
	c := newTestContext(t, m, 256)
	s := newTestSampler(t, m, Greedy())
	long := longPrompt(c.NCtx() + 1)
	assert.ErrorIs(t, c.DecodeTokens(t.Context(), long, 0, 0), ErrContextFull)
	require.NoError(t, c.MemoryClear(true))
	for _, err := range c.Generate(t.Context(), long, s, &GenerateParams{MaxTokens: 4}) {
		assert.ErrorIs(t, err, ErrContextFull)
	}
	assert.Equal(t, FinishError, c.LastGeneration().FinishReason)
	require.NoError(t, c.MemoryClear(true))
	n := 0
	for _, err := range c.Generate(t.Context(), long[:20], s, &GenerateParams{MaxTokens: 4, IgnoreEOG: true}) {
		require.NoError(t, err)
		n++
	}
	assert.Equal(t, 4, n)
}

// TestHardeningNoLogits: logits, embeddings and sampling of an index that produced no
// output are ErrNoLogits.
func TestHardeningNoLogits(t *testing.T) {
	m := loadTiny(t)
	c := newTestContext(t, m, 256)
	s := newTestSampler(t, m, Greedy())
	_, err := s.Sample(c, -1)
	assert.ErrorIs(t, err, ErrNoLogits, "before any decode")
	b, err := NewBatch(3, 1)
	require.NoError(t, err)
	defer b.Close()
	for i := range 3 {
		require.NoError(t, b.Add(Token(10+i), Pos(i), i == 1, 0))
	}
	require.NoError(t, c.Decode(t.Context(), b))
	for _, idx := range []int{0, 2, 3, 99, -2} {
		_, err := c.Logits(idx)
		assert.ErrorIs(t, err, ErrNoLogits, "Logits(%d)", idx)
		_, err = c.LogitsView(idx)
		assert.ErrorIs(t, err, ErrNoLogits, "LogitsView(%d)", idx)
		_, err = s.Sample(c, idx)
		assert.ErrorIs(t, err, ErrNoLogits, "Sample(%d)", idx)
	}
	_, err = c.Embeddings(1)
	assert.Error(t, err, "a context without embeddings")
	tok, err := s.Sample(c, 1)
	require.NoError(t, err, "the index with output samples")
	assert.True(t, m.ValidToken(tok))
}

// TestHardeningGrammar: grammar errors, nesting beyond MaxGrammarNesting and tokens the
// grammar forbids are ErrGrammar; the sampler and the process stay usable.
func TestHardeningGrammar(t *testing.T) {
	m := loadTiny(t)
	nest := func(n int) string {
		return "root ::= " + strings.Repeat("(", n) + `"a"` + strings.Repeat(")", n)
	}
	for name, g := range map[string]string{
		"syntax":               `root ::= "a" )`,
		"unterminated":         `root ::= "a`,
		"undefined rule":       `root ::= other`,
		"no root":              `start ::= "a"`,
		"nesting limit + 1":    nest(MaxGrammarNesting + 1),
		"nesting 100000":       nest(100000),
		"too many repetitions": `root ::= "a"{100000}`,
		"left recursion":       `root ::= root "a" | "b"`,
		"reversed repetition":  `root ::= "a"{3,1}`,
		"reversed, spaced":     "root ::= (\"a\"{ 3 # three\n , 1 })",
		"left recursion through a rule matching nothing": "root ::= ws root \"b\" | \"c\"\nws ::= [ \\t]*",
		"left recursion through groups": "root ::= (expr \"=\" ws term \"\\n\")+\nexpr ::= term ([-+*/] term)*\n" +
			"term ::= ident | num | ws expr \")\" ws\nident ::= [a-z] [a-z0-9_]* ws\nnum ::= [0-9]+ ws\nws ::= [ \\t\\n]*",
		"repetition chain +++":            `root ::= [ ]+++`,
		"repetition chain through groups": `root ::= ((([ ])+)*)+`,
		"repetition chain through rules":  "root ::= a+\na ::= b*\nb ::= [ ]+",
		"bounded repetition chain":        `root ::= [ ]{0,10}{0,10}{0,10}`,
		"left recursion through []":       "root ::= ws root \"b\" | \"c\"\nws ::= [] [^]",
		"left recursion before a NUL":     "root ::= ws root \"b\" | \"c\"\nws ::= [ ]*\x00junk",
		"nesting in alternative":          `root ::= "b" | ` + strings.Repeat("(", MaxGrammarNesting+1) + `"a"` + strings.Repeat(")", MaxGrammarNesting+1),
	} {
		_, err := NewSampler(m, Grammar(g))
		assert.ErrorIs(t, err, ErrGrammar, name)
	}
	// What llama.cpp handles stays accepted: every grammar it ships, repetitions of what
	// can match nothing, right recursion.
	files, err := filepath.Glob(filepath.Join(llamaCppDir(t), "grammars", "*.gbnf"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		g, err := os.ReadFile(f)
		require.NoError(t, err)
		s, err := NewSampler(m, Grammar(string(g)))
		if assert.NoError(t, err, f) {
			s.Close()
		}
	}
	for _, g := range []string{"root ::= (ws)* \"a\"\nws ::= [ ]*", `root ::= ("a"?)*`, `root ::= "a" root | "b"`,
		"root ::= \"a\"\x00 ws root \"b\"", // llama.cpp reads up to the NUL
		`root ::= [ ]++`, `root ::= ([0-9]{1,3})+`, `root ::= (("a" [ ]+)+ "b")+`,
		"root ::= ws \"a\"\nws ::= [ ]*", `root ::= x{0} "a"` + "\nx ::= root"} {
		s, err := NewSampler(m, Grammar(g))
		if assert.NoError(t, err, g) {
			s.Close()
		}
	}

	s, err := NewSampler(m, Grammar(nest(MaxGrammarNesting)), Greedy())
	require.NoError(t, err, "nesting at the limit is fine")
	defer s.Close()
	a, err := m.Tokenize("a", 0)
	require.NoError(t, err)
	b, err := m.Tokenize("b", 0)
	require.NoError(t, err)
	assert.ErrorIs(t, s.Accept(b[0]), ErrGrammar, "forbidden token")
	assert.ErrorIs(t, s.Accept(m.Vocab().EOS), ErrGrammar, "end of generation before the grammar completes")
	require.NoError(t, s.Accept(a[0]), "the allowed token after the refusals")
	require.NoError(t, s.Accept(m.Vocab().EOS), "complete: end of generation allowed")

	// Generation under a grammar only produces what it allows.
	c := newTestContext(t, m, 256)
	g := newTestSampler(t, m, Grammar(`root ::= ("yes" | "no") "."`), Greedy())
	var text strings.Builder
	for piece, err := range c.GenerateText(t.Context(), "Answer:", g, &GenerateParams{MaxTokens: 8}) {
		require.NoError(t, err)
		text.WriteString(piece)
	}
	assert.Contains(t, []string{"yes.", "no."}, text.String())
}

// TestHardeningParams: parameters out of range are ErrInvalidParams before llama.cpp
// sees them; valid ones work afterwards.
func TestHardeningParams(t *testing.T) {
	m := loadTiny(t)
	for name, p := range map[string]*ContextParams{
		"n_ctx -1":          {NCtx: -1},
		"n_ctx 2^24+1":      {NCtx: 1<<24 + 1},
		"n_batch -1":        {NBatch: -1},
		"n_batch 2^24+1":    {NBatch: 1<<24 + 1},
		"n_ubatch -1":       {NUBatch: -1},
		"threads -1":        {Threads: -1},
		"threads 513":       {Threads: 513},
		"threads batch -1":  {ThreadsBatch: -1},
		"threads batch big": {ThreadsBatch: 1 << 20},
		"n_seq_max -1":      {NSeqMax: -1},
		"n_seq_max huge":    {NSeqMax: 1 << 20},
		"rope base":         {RopeFreqBase: -1},
	} {
		_, err := m.NewContext(p)
		assert.ErrorIs(t, err, ErrInvalidParams, name)
	}
	c := newTestContext(t, m, 256)
	for _, th := range [][2]int{{0, 1}, {1, 0}, {-1, 1}, {513, 1}, {1, 100000}} {
		assert.ErrorIs(t, c.SetThreads(th[0], th[1]), ErrInvalidParams, "SetThreads%v", th)
	}
	_, err := NewBatch(-1, 1)
	assert.ErrorIs(t, err, ErrInvalidParams)
	_, err = NewBatch(1<<24+1, 1)
	assert.ErrorIs(t, err, ErrInvalidParams)
	_, err = LoadModel(t.Context(), synthModel(t, "llama-tiny", gguf.TypeF16), &ModelParams{MainGPU: 1 << 20})
	assert.ErrorIs(t, err, ErrInvalidParams)

	require.NoError(t, c.SetThreads(1, 2))
	require.NoError(t, c.DecodeTokens(t.Context(), []Token{1, 2, 3}, 0, 0))
	c2, err := m.NewContext(&ContextParams{NCtx: 512, NBatch: 128, Threads: 1})
	require.NoError(t, err)
	require.NoError(t, c2.Close())
}

// TestHardeningClose: everything that owns C memory says ErrClosed after Close, and
// Close twice is nil.
func TestHardeningClose(t *testing.T) {
	m, err := LoadModel(t.Context(), synthModel(t, "llama-tiny", gguf.TypeF16), &ModelParams{GPULayers: 0})
	require.NoError(t, err)
	c, err := m.NewContext(&ContextParams{NCtx: 256, Threads: 1})
	require.NoError(t, err)
	s, err := NewSampler(m, Greedy())
	require.NoError(t, err)
	b, err := NewBatch(2, 1)
	require.NoError(t, err)
	tmpl, err := NewChatTemplate(nil, &ChatTemplateParams{Source: "chatml", NoJinja: true})
	require.NoError(t, err)

	for name, cl := range map[string]interface{ Close() error }{"sampler": s, "batch": b, "context": c, "model": m, "template": tmpl} {
		require.NoError(t, cl.Close(), name)
		require.NoError(t, cl.Close(), "%s: Close twice", name)
	}
	_, err = m.Tokenize("x", 0)
	assert.ErrorIs(t, err, ErrClosed)
	_, err = m.NewContext(nil)
	assert.ErrorIs(t, err, ErrClosed)
	_, err = NewSampler(m, Greedy())
	assert.ErrorIs(t, err, ErrClosed)
	assert.ErrorIs(t, c.DecodeTokens(t.Context(), []Token{1}, 0, 0), ErrClosed)
	_, err = c.Logits(-1)
	assert.ErrorIs(t, err, ErrClosed)
	assert.ErrorIs(t, c.SetThreads(1, 1), ErrClosed)
	_, err = c.MemorySeqRemove(0, -1, -1)
	assert.ErrorIs(t, err, ErrClosed)
	for _, err := range c.Generate(t.Context(), []Token{1}, s, nil) {
		assert.ErrorIs(t, err, ErrClosed)
	}
	_, err = s.Sample(c, -1)
	assert.ErrorIs(t, err, ErrClosed)
	assert.ErrorIs(t, s.Accept(1), ErrClosed)
	assert.ErrorIs(t, s.Reset(), ErrClosed)
	assert.ErrorIs(t, b.Add(1, 0, true, 0), ErrClosed)
	_, err = tmpl.Apply(&ChatRequest{Messages: []Message{{Role: RoleUser, Content: "hi"}}})
	assert.ErrorIs(t, err, ErrClosed)

	m2 := loadTiny(t)
	assertGenerates(t, m2)
}

// TestHardeningContextBusy: while one goroutine generates on a Context, every call of a
// second goroutine on it is ErrContextBusy, deterministically (the generation is held
// between tokens); afterwards the context serves the second goroutine.
func TestHardeningContextBusy(t *testing.T) {
	m := loadTiny(t)
	c := newTestContext(t, m, 256)
	s := newTestSampler(t, m, Greedy())
	inside := make(chan struct{})
	release := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		first := true
		for _, err := range c.Generate(context.Background(), []Token{1, 2, 3}, s, &GenerateParams{MaxTokens: 3, IgnoreEOG: true}) {
			if err != nil {
				done <- err
				return
			}
			if first {
				first = false
				close(inside)
				<-release
			}
		}
		done <- nil
	}()
	<-inside
	assert.ErrorIs(t, c.DecodeTokens(t.Context(), []Token{1}, 0, 0), ErrContextBusy)
	_, err := c.Logits(-1)
	assert.ErrorIs(t, err, ErrContextBusy)
	assert.ErrorIs(t, c.MemoryClear(true), ErrContextBusy)
	for _, err := range c.Generate(t.Context(), []Token{1}, newTestSampler(t, m, Greedy()), nil) {
		assert.ErrorIs(t, err, ErrContextBusy)
	}
	close(release)
	require.NoError(t, <-done)
	require.NoError(t, c.MemoryClear(true))
	require.NoError(t, c.DecodeTokens(t.Context(), []Token{1, 2}, 0, 0), "usable by the other goroutine afterwards")
}

// TestHardeningCloseWhileGenerating: Close on one goroutine while another generates
// stops the generation with an error (ErrAborted/ErrClosed), frees the context once the
// generation let go of it, and leaves the model usable.
func TestHardeningCloseWhileGenerating(t *testing.T) {
	m := loadTiny(t)
	c, err := m.NewContext(&ContextParams{NCtx: 2048, Threads: 1})
	require.NoError(t, err)
	s := newTestSampler(t, m, TopK(20), Seed(3))
	started := make(chan struct{})
	var genErr error
	var n int
	var wg sync.WaitGroup
	wg.Go(func() {
		for _, err := range c.Generate(context.Background(), longPrompt(8), s, &GenerateParams{MaxTokens: 1500, IgnoreEOG: true}) {
			if err != nil {
				genErr = err
				return
			}
			if n++; n == 2 {
				close(started)
			}
		}
	})
	<-started
	require.NoError(t, c.Close())
	wg.Wait()
	require.Error(t, genErr, "closed after %d tokens", n)
	assert.True(t, errors.Is(genErr, ErrAborted) || errors.Is(genErr, ErrClosed), "%v", genErr)
	t.Logf("generation stopped after %d tokens: %v", n, genErr)
	assert.ErrorIs(t, c.DecodeTokens(t.Context(), []Token{1}, 0, 0), ErrClosed)
	assertGenerates(t, m)
}

// TestHardeningCallbackPanics: a panicking progress callback fails the load with an
// error (the panic never unwinds through C), again and again; loads without it work.
func TestHardeningCallbackPanics(t *testing.T) {
	path := microModelFile(t, 8, 16, nil)
	for range 3 {
		_, err := LoadModel(t.Context(), path, &ModelParams{Progress: func(float32) { panic(errors.New("callback bug")) }})
		var le *LoadError
		require.ErrorAs(t, err, &le)
		assert.Contains(t, err.Error(), "callback bug")
	}
	start := time.Now()
	m, err := LoadModel(t.Context(), path, &ModelParams{GPULayers: 0, Progress: func(float32) {}})
	require.NoError(t, err)
	defer m.Close()
	assertGenerates(t, m)
	t.Logf("load after panics: %v", time.Since(start))
}

// writeSplit writes the micro model as a model split in two files (gguf-split's layout)
// in dir and returns the first file; second edits the second file's metadata.
func writeSplit(t *testing.T, dir string, second func([]gguf.KV) []gguf.KV) string {
	t.Helper()
	data := microModel(t, 8, 16, nil)
	in, err := gguf.Read(bytes.NewReader(data), int64(len(data)))
	require.NoError(t, err)
	half := len(in.Tensors) / 2
	parts := [][]gguf.TensorInfo{in.Tensors[:half], in.Tensors[half:]}
	var first string
	for i, tensors := range parts {
		meta := []gguf.KV{{Key: "split.no", Value: gguf.Uint16(uint16(i))}, {Key: "split.count", Value: gguf.Uint16(2)},
			{Key: "split.tensors.count", Value: gguf.Int32(int32(len(in.Tensors)))}}
		if i == 0 {
			meta = append(append([]gguf.KV(nil), in.Metadata...), meta...)
		} else if second != nil {
			meta = second(meta)
		}
		p := filepath.Join(dir, fmt.Sprintf("micro-%05d-of-%05d.gguf", i+1, 2))
		if i == 0 {
			first = p
		}
		var buf bytes.Buffer
		w, err := gguf.NewWriter(&buf, meta, tensors)
		require.NoError(t, err)
		for _, ti := range tensors {
			r, err := in.TensorData(ti.Name)
			require.NoError(t, err)
			b, err := io.ReadAll(r)
			require.NoError(t, err)
			require.NoError(t, w.WriteTensor(ti.Name, b))
		}
		require.NoError(t, w.Close())
		require.NoError(t, os.WriteFile(p, buf.Bytes(), 0o644))
	}
	return first
}

// TestHardeningSplitFiles: the other files of a split model, which llama.cpp opens by
// name, are pre-checked too (llama.cpp asserts on the type of their split.no).
func TestHardeningSplitFiles(t *testing.T) {
	for name, edit := range map[string]func([]gguf.KV) []gguf.KV{
		"split.no as a string": setKV("split.no", gguf.String("1")),
		"split.no as uint32":   setKV("split.no", gguf.Uint32(1)),
		"no split.no": func(meta []gguf.KV) []gguf.KV {
			return slices.DeleteFunc(meta, func(kv gguf.KV) bool { return kv.Key == "split.no" })
		},
	} {
		_, err := LoadModel(t.Context(), writeSplit(t, t.TempDir(), edit), nil)
		var le *LoadError
		if assert.ErrorAs(t, err, &le, name) {
			t.Logf("%s: %v", name, err)
		}
	}
	dir := t.TempDir()
	first := writeSplit(t, dir, nil)
	second := filepath.Join(dir, "micro-00002-of-00002.gguf")
	b, err := os.ReadFile(second)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(second, b[:len(b)-10], 0o644))
	_, err = LoadModel(t.Context(), first, nil)
	var le *LoadError
	assert.ErrorAs(t, err, &le, "truncated second file")
	_, err = LoadModel(t.Context(), filepath.Join(dir, "micro-00002-of-00002.gguf"), nil)
	assert.ErrorAs(t, err, &le, "not the first file")

	m, err := LoadModel(t.Context(), writeSplit(t, t.TempDir(), nil), &ModelParams{GPULayers: 0})
	require.NoError(t, err, "a sound split model loads")
	defer m.Close()
	assertGenerates(t, m)
}
