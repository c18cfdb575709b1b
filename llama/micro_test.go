package llama

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/llamago/llamago/internal/synth"
	"github.com/llamago/llamago/llama/gguf"
	"github.com/stretchr/testify/require"
)

// A micro model: a llama-architecture GGUF of a few kilobytes with its own small
// SentencePiece vocabulary (<unk>, <s>, </s>, the 256 byte tokens, letters and a few
// words). It loads in about a millisecond, which the fuzz targets and the leak test need;
// its size is set by microShape.

// microWords are the normal tokens after the byte tokens, most likely first.
var microWords = func() []string {
	w := []string{"▁", "▁the", "▁and", "▁of", "▁to", "▁is", "▁hello", "▁world", "▁model", "▁go", "▁llama",
		"th", "he", "in", "er", "an", "re", "on", "at", "en", "nd", "ll", "or", "ou"}
	for c := 'a'; c <= 'z'; c++ {
		w = append(w, string(c), "▁"+string(c)) // "▁a" is here
	}
	for c := '0'; c <= '9'; c++ {
		w = append(w, string(c))
	}
	return append(w, ".", ",", "!", "?", "'", "-", ":")
}()

// microVocab returns the tokenizer metadata of the micro vocabulary.
func microVocab() []gguf.KV {
	toks := []string{"<unk>", "<s>", "</s>"}
	types := []int32{2, 3, 3} // unknown, control, control
	for b := range 256 {
		toks = append(toks, fmt.Sprintf("<0x%02X>", b))
		types = append(types, 6) // byte
	}
	for _, w := range microWords {
		toks = append(toks, w)
		types = append(types, 1) // normal
	}
	scores := make([]float32, len(toks))
	for i := 259; i < len(toks); i++ {
		scores[i] = -float32(i - 259)
	}
	return []gguf.KV{
		{Key: "tokenizer.ggml.model", Value: gguf.String("llama")},
		{Key: "tokenizer.ggml.pre", Value: gguf.String("default")},
		{Key: "tokenizer.ggml.tokens", Value: gguf.Array(toks)},
		{Key: "tokenizer.ggml.scores", Value: gguf.Array(scores)},
		{Key: "tokenizer.ggml.token_type", Value: gguf.Array(types)},
		{Key: "tokenizer.ggml.bos_token_id", Value: gguf.Uint32(1)},
		{Key: "tokenizer.ggml.eos_token_id", Value: gguf.Uint32(2)},
		{Key: "tokenizer.ggml.unknown_token_id", Value: gguf.Uint32(0)},
		{Key: "tokenizer.ggml.add_bos_token", Value: gguf.Bool(true)},
	}
}

// microShape is the micro model's shape with embedding size embd and feed-forward size ff.
func microShape(embd, ff int) synth.Shape {
	return synth.Shape{Name: "micro", Arch: "llama", Embd: embd, Layers: 1, Heads: 2, HeadsKV: 1, FF: ff,
		Ctx: 256, RopeBase: 10000, RMSEps: 1e-5, TiedEmbeddings: true}
}

// microModel writes a micro model with random F32 weights (seeded) and returns its bytes.
// edit, when not nil, may change the metadata before it is written.
func microModel(t testing.TB, embd, ff int, edit func([]gguf.KV) []gguf.KV) []byte {
	t.Helper()
	b, err := microModelBytes(embd, ff, edit)
	require.NoError(t, err)
	return b
}

// microModelBytes is microModel returning the writer's error (edits may make metadata
// the writer refuses).
func microModelBytes(embd, ff int, edit func([]gguf.KV) []gguf.KV) ([]byte, error) {
	vocab := microVocab()
	nVocab := len(vocab[2].Value.Any().([]string))
	s := microShape(embd, ff)
	tensors, err := s.Tensors(nVocab, gguf.TypeF32)
	if err != nil {
		return nil, err
	}
	a := "llama."
	meta := []gguf.KV{
		{Key: "general.architecture", Value: gguf.String("llama")},
		{Key: "general.name", Value: gguf.String("llamago micro")},
		{Key: a + "block_count", Value: gguf.Uint32(uint32(s.Layers))},
		{Key: a + "context_length", Value: gguf.Uint32(uint32(s.Ctx))},
		{Key: a + "embedding_length", Value: gguf.Uint32(uint32(s.Embd))},
		{Key: a + "feed_forward_length", Value: gguf.Uint32(uint32(s.FF))},
		{Key: a + "attention.head_count", Value: gguf.Uint32(uint32(s.Heads))},
		{Key: a + "attention.head_count_kv", Value: gguf.Uint32(uint32(s.HeadsKV))},
		{Key: a + "rope.freq_base", Value: gguf.Float32(s.RopeBase)},
		{Key: a + "attention.layer_norm_rms_epsilon", Value: gguf.Float32(s.RMSEps)},
		{Key: a + "vocab_size", Value: gguf.Uint32(uint32(nVocab))},
		{Key: a + "rope.dimension_count", Value: gguf.Uint32(uint32(s.HeadDim()))},
		{Key: "general.file_type", Value: gguf.Uint32(0)}, // all F32
	}
	meta = append(meta, vocab...)
	if edit != nil {
		meta = edit(meta)
	}
	var buf bytes.Buffer
	w, err := gguf.NewWriter(&buf, meta, tensors)
	if err != nil {
		return nil, err
	}
	state := uint64(0x9e3779b97f4a7c15)
	for _, ti := range tensors {
		data := make([]byte, 4*ti.Elements())
		norm := strings.HasSuffix(ti.Name, "norm.weight")
		for i := range ti.Elements() {
			v := float32(1)
			if !norm {
				state = state*6364136223846793005 + 1442695040888963407
				v = (float32(state>>40)/float32(1<<24) - 0.5) * 0.5
			}
			binary.LittleEndian.PutUint32(data[4*i:], math.Float32bits(v))
		}
		if err := w.WriteTensor(ti.Name, data); err != nil {
			return nil, err
		}
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// microModelFile writes microModel to a file in t's temporary directory.
func microModelFile(t testing.TB, embd, ff int, edit func([]gguf.KV) []gguf.KV) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "micro.gguf")
	require.NoError(t, os.WriteFile(p, microModel(t, embd, ff, edit), 0o644))
	return p
}

// setKV returns an edit that sets key to v, adding it when absent.
func setKV(key string, v gguf.Value) func([]gguf.KV) []gguf.KV {
	return func(meta []gguf.KV) []gguf.KV {
		for i := range meta {
			if meta[i].Key == key {
				meta[i].Value = v
				return meta
			}
		}
		return append(meta, gguf.KV{Key: key, Value: v})
	}
}

// editKV applies edits in order.
func editKV(edits ...func([]gguf.KV) []gguf.KV) func([]gguf.KV) []gguf.KV {
	return func(meta []gguf.KV) []gguf.KV {
		for _, e := range edits {
			meta = e(meta)
		}
		return meta
	}
}
