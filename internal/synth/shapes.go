package synth

import (
	"errors"
	"fmt"
	"github.com/llamago/llamago/llama/gguf"
)

// Shape describes the hyperparameters of a dense model, enough to lay out
// every tensor the way llama.cpp's loader expects: a decoder-only model of
// the llama or qwen2 architecture, or a BERT-family encoder (arch "bert",
// learned positions, non-causal attention, pooled embeddings).
type Shape struct {
	Name     string
	Arch     string // general.architecture: "llama", "qwen2" or "bert"
	Vocab    string // default vocab: models/ggml-vocab-<Vocab>.gguf in llama.cpp
	Embd     int    // n_embd
	Layers   int    // n_layer (block_count)
	Heads    int    // n_head
	HeadsKV  int    // n_head_kv (grouped-query attention; bert: = Heads)
	FF       int    // n_ff
	Ctx      int    // n_ctx_train (bert: the rows of the position embedding)
	RopeBase float32
	// RMSEps is the epsilon of the norms: RMS norm for llama and qwen2,
	// layer norm (bert.attention.layer_norm_epsilon) for bert.
	RMSEps float32
	// Pooling is the pooling type a bert model declares (bert.pooling_type):
	// "mean", "cls", "last" or "rank". "rank" adds a classification head
	// (cls and cls.output tensors) with one output, as rerankers have.
	Pooling string
	// TiedEmbeddings omits output.weight; llama.cpp then reuses
	// token_embd.weight for the output projection.
	TiedEmbeddings bool
	// QKVBias adds attn_q/attn_k/attn_v biases (qwen2).
	QKVBias bool
}

var shapes = []Shape{
	{Name: "llama3-8b", Arch: "llama", Vocab: "llama-bpe", Embd: 4096, Layers: 32, Heads: 32, HeadsKV: 8, FF: 14336,
		Ctx: 8192, RopeBase: 500000, RMSEps: 1e-5},
	{Name: "llama3.2-1b", Arch: "llama", Vocab: "llama-bpe", Embd: 2048, Layers: 16, Heads: 32, HeadsKV: 8, FF: 8192,
		Ctx: 131072, RopeBase: 500000, RMSEps: 1e-5, TiedEmbeddings: true},
	{Name: "mistral-7b", Arch: "llama", Vocab: "llama-spm", Embd: 4096, Layers: 32, Heads: 32, HeadsKV: 8, FF: 14336,
		Ctx: 32768, RopeBase: 1e6, RMSEps: 1e-5},
	{Name: "qwen2-0.5b", Arch: "qwen2", Vocab: "qwen2", Embd: 896, Layers: 24, Heads: 14, HeadsKV: 2, FF: 4864,
		Ctx: 32768, RopeBase: 1e6, RMSEps: 1e-6, TiedEmbeddings: true, QKVBias: true},
	{Name: "qwen2-7b", Arch: "qwen2", Vocab: "qwen2", Embd: 3584, Layers: 28, Heads: 28, HeadsKV: 4, FF: 18944,
		Ctx: 32768, RopeBase: 1e6, RMSEps: 1e-6, QKVBias: true},

	// Tiny shapes for tests: the embedding dominates their size. llama-tiny
	// ties embeddings (like Llama 3.2), mistral-tiny does not.
	{Name: "llama-tiny", Arch: "llama", Vocab: "llama-bpe", Embd: 64, Layers: 2, Heads: 4, HeadsKV: 2, FF: 256,
		Ctx: 512, RopeBase: 500000, RMSEps: 1e-5, TiedEmbeddings: true},
	{Name: "mistral-tiny", Arch: "llama", Vocab: "llama-spm", Embd: 64, Layers: 2, Heads: 4, HeadsKV: 2, FF: 256,
		Ctx: 512, RopeBase: 1e6, RMSEps: 1e-5},
	{Name: "qwen2-tiny", Arch: "qwen2", Vocab: "qwen2", Embd: 64, Layers: 2, Heads: 4, HeadsKV: 2, FF: 256,
		Ctx: 512, RopeBase: 1e6, RMSEps: 1e-6, TiedEmbeddings: true, QKVBias: true},
	// mistral-256 has every dimension a multiple of 256, the block size of
	// the k-quants, so quantizing it to Q4_K_M needs no fallback types.
	{Name: "mistral-256", Arch: "llama", Vocab: "llama-spm", Embd: 256, Layers: 2, Heads: 4, HeadsKV: 2, FF: 512,
		Ctx: 512, RopeBase: 1e6, RMSEps: 1e-5},

	// BERT-family encoders (embedding models and rerankers) with the
	// WordPiece vocab of bge.
	{Name: "bge-small", Arch: "bert", Vocab: "bert-bge", Embd: 384, Layers: 12, Heads: 12, HeadsKV: 12, FF: 1536,
		Ctx: 512, RMSEps: 1e-12, Pooling: "cls"},
	{Name: "bert-tiny", Arch: "bert", Vocab: "bert-bge", Embd: 64, Layers: 2, Heads: 4, HeadsKV: 4, FF: 256,
		Ctx: 512, RMSEps: 1e-12, Pooling: "mean"},
	{Name: "bert-rerank-tiny", Arch: "bert", Vocab: "bert-bge", Embd: 64, Layers: 2, Heads: 4, HeadsKV: 4, FF: 256,
		Ctx: 512, RMSEps: 1e-12, Pooling: "rank"},
}

// poolingTypes are llama.cpp's enum llama_pooling_type values.
var poolingTypes = map[string]uint32{"none": 0, "mean": 1, "cls": 2, "last": 3, "rank": 4}

// Shapes returns the built-in shapes.
func Shapes() []Shape { return append([]Shape(nil), shapes...) }

// ShapeByName returns the built-in shape with the given name.
func ShapeByName(name string) (Shape, error) {
	for _, s := range shapes {
		if s.Name == name {
			return s, nil
		}
	}
	names := make([]string, len(shapes))
	for i, s := range shapes {
		names[i] = s.Name
	}
	return Shape{}, fmt.Errorf("synth: unknown shape %q (known: %q)", name, names)
}

// VocabFile returns the file name of the shape's default vocab inside
// llama.cpp's models directory.
func (s Shape) VocabFile() string { return "ggml-vocab-" + s.Vocab + ".gguf" }

// HeadDim returns n_embd / n_head, which is also the rope dimension.
func (s Shape) HeadDim() int { return s.Embd / s.Heads }

// Validate checks the constraints llama.cpp relies on.
func (s Shape) Validate() error {
	if s.Arch == "bert" {
		return s.validateBert()
	}
	switch {
	case s.Arch != "llama" && s.Arch != "qwen2":
		return fmt.Errorf("synth: shape %q: unsupported architecture %q", s.Name, s.Arch)
	case s.Pooling != "":
		return fmt.Errorf("synth: shape %q: only bert shapes declare a pooling type", s.Name)
	case s.Embd <= 0 || s.Layers <= 0 || s.Heads <= 0 || s.HeadsKV <= 0 || s.FF <= 0 || s.Ctx <= 0:
		return fmt.Errorf("synth: shape %q: sizes must be positive", s.Name)
	case s.Embd%s.Heads != 0:
		return fmt.Errorf("synth: shape %q: n_embd %d is not a multiple of n_head %d", s.Name, s.Embd, s.Heads)
	case s.Heads%s.HeadsKV != 0:
		return fmt.Errorf("synth: shape %q: n_head %d is not a multiple of n_head_kv %d", s.Name, s.Heads, s.HeadsKV)
	case s.HeadDim()%2 != 0:
		return fmt.Errorf("synth: shape %q: head dimension %d must be even for rope", s.Name, s.HeadDim())
	case s.Layers > 512: // LLAMA_MAX_LAYERS
		return fmt.Errorf("synth: shape %q: %d layers, llama.cpp allows at most 512", s.Name, s.Layers)
	case s.RopeBase <= 0 || s.RMSEps <= 0:
		return errors.New("synth: shape " + s.Name + ": rope base and rms epsilon must be positive")
	}
	return nil
}

// tensorRole says how synthetic data for a tensor is generated.
type tensorRole uint8

const (
	roleWeight tensorRole = iota // random normal, in the requested type
	roleBias                     // random normal, f32
	roleNorm                     // all ones, f32
)

type synthTensor struct {
	gguf.TensorInfo
	role tensorRole
}

// Tensors returns the tensor infos of the shape for a vocabulary of nVocab
// tokens, with 2-D weights of type weight. Names and shapes follow
// llama.cpp's load_tensors for LLM_ARCH_LLAMA and LLM_ARCH_QWEN2; shapes
// are in ggml order ([n_in, n_out]).
func (s Shape) Tensors(nVocab int, weight gguf.TensorType) ([]gguf.TensorInfo, error) {
	st, err := s.tensors(nVocab, weight)
	if err != nil {
		return nil, err
	}
	out := make([]gguf.TensorInfo, len(st))
	for i, t := range st {
		out[i] = t.TensorInfo
	}
	return out, nil
}

// Params returns the number of parameters for a vocabulary of nVocab.
func (s Shape) Params(nVocab int) (int64, error) {
	ts, err := s.tensors(nVocab, gguf.TypeF32)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, t := range ts {
		n += t.Elements()
	}
	return n, nil
}

func (s Shape) tensors(nVocab int, weight gguf.TensorType) ([]synthTensor, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	if nVocab <= 0 {
		return nil, fmt.Errorf("synth: shape %q: vocabulary size %d must be positive", s.Name, nVocab)
	}
	if _, ok := fileTypeFor(weight); !ok {
		return nil, fmt.Errorf("synth: synthetic weights of type %s are not supported (use f32, f16, bf16 or q8_0)", weight)
	}
	var ts []synthTensor
	if s.Arch == "bert" {
		ts = s.bertTensors(nVocab, weight)
	} else {
		ts = s.decoderTensors(nVocab, weight)
	}
	for _, t := range ts {
		if _, err := gguf.TensorSize(t.Type, t.Shape); err != nil {
			return nil, fmt.Errorf("synth: shape %q: tensor %s as %s: %w", s.Name, t.Name, t.Type, err)
		}
	}
	return ts, nil
}

// tensorList collects a layout: weight matrices in the requested type, norms and
// biases in F32.
type tensorList struct {
	weight gguf.TensorType
	ts     []synthTensor
}

func (l *tensorList) add(name string, role tensorRole, shape ...int64) {
	t := gguf.TypeF32
	if role == roleWeight {
		t = l.weight
	}
	l.ts = append(l.ts, synthTensor{gguf.TensorInfo{Name: name, Type: t, Shape: shape}, role})
}

func (s Shape) decoderTensors(nVocab int, weight gguf.TensorType) []synthTensor {
	var (
		embd   = int64(s.Embd)
		ff     = int64(s.FF)
		vocab  = int64(nVocab)
		kvEmbd = int64(s.HeadDim() * s.HeadsKV) // n_embd_k_gqa == n_embd_v_gqa
		ts     = tensorList{weight: weight}
		add    = ts.add
	)
	add("token_embd.weight", roleWeight, embd, vocab)
	for i := range s.Layers {
		blk := fmt.Sprintf("blk.%d.", i)
		add(blk+"attn_norm.weight", roleNorm, embd)
		add(blk+"attn_q.weight", roleWeight, embd, embd)
		if s.QKVBias {
			add(blk+"attn_q.bias", roleBias, embd)
		}
		add(blk+"attn_k.weight", roleWeight, embd, kvEmbd)
		if s.QKVBias {
			add(blk+"attn_k.bias", roleBias, kvEmbd)
		}
		add(blk+"attn_v.weight", roleWeight, embd, kvEmbd)
		if s.QKVBias {
			add(blk+"attn_v.bias", roleBias, kvEmbd)
		}
		add(blk+"attn_output.weight", roleWeight, embd, embd)
		add(blk+"ffn_norm.weight", roleNorm, embd)
		add(blk+"ffn_gate.weight", roleWeight, embd, ff)
		add(blk+"ffn_up.weight", roleWeight, embd, ff)
		add(blk+"ffn_down.weight", roleWeight, ff, embd)
	}
	add("output_norm.weight", roleNorm, embd)
	if !s.TiedEmbeddings {
		add("output.weight", roleWeight, embd, vocab)
	}
	return ts.ts
}

// metadata returns the architecture keys llama.cpp reads for the shape, in
// the order convert_hf_to_gguf.py writes them.
func (s Shape) metadata(nVocab int, ft gguf.FileType) []gguf.KV {
	if s.Arch == "bert" {
		return s.bertMetadata(ft)
	}
	a := s.Arch + "."
	kv := []gguf.KV{
		{Key: "general.architecture", Value: gguf.String(s.Arch)},
		{Key: "general.name", Value: gguf.String("llamago synthetic " + s.Name)},
		{Key: a + "block_count", Value: gguf.Uint32(uint32(s.Layers))},
		{Key: a + "context_length", Value: gguf.Uint32(uint32(s.Ctx))},
		{Key: a + "embedding_length", Value: gguf.Uint32(uint32(s.Embd))},
		{Key: a + "feed_forward_length", Value: gguf.Uint32(uint32(s.FF))},
		{Key: a + "attention.head_count", Value: gguf.Uint32(uint32(s.Heads))},
		{Key: a + "attention.head_count_kv", Value: gguf.Uint32(uint32(s.HeadsKV))},
		{Key: a + "rope.freq_base", Value: gguf.Float32(s.RopeBase)},
		{Key: a + "attention.layer_norm_rms_epsilon", Value: gguf.Float32(s.RMSEps)},
		{Key: "general.file_type", Value: gguf.Uint32(uint32(ft))},
	}
	if s.Arch == "llama" {
		kv = append(kv,
			gguf.KV{Key: a + "vocab_size", Value: gguf.Uint32(uint32(nVocab))},
			gguf.KV{Key: a + "rope.dimension_count", Value: gguf.Uint32(uint32(s.HeadDim()))},
		)
	}
	if ft == gguf.FileTypeMostlyQ8_0 {
		kv = append(kv, gguf.KV{Key: "general.quantization_version", Value: gguf.Uint32(2)})
	}
	return kv
}

func (s Shape) validateBert() error {
	switch {
	case s.Embd <= 0 || s.Layers <= 0 || s.Heads <= 0 || s.FF <= 0 || s.Ctx <= 0:
		return fmt.Errorf("synth: shape %q: sizes must be positive", s.Name)
	case s.HeadsKV != s.Heads:
		return fmt.Errorf("synth: shape %q: bert has no grouped-query attention (n_head_kv %d != n_head %d)", s.Name, s.HeadsKV, s.Heads)
	case s.Embd%s.Heads != 0:
		return fmt.Errorf("synth: shape %q: n_embd %d is not a multiple of n_head %d", s.Name, s.Embd, s.Heads)
	case s.Layers > 512:
		return fmt.Errorf("synth: shape %q: %d layers, llama.cpp allows at most 512", s.Name, s.Layers)
	case s.RMSEps <= 0:
		return errors.New("synth: shape " + s.Name + ": layer norm epsilon must be positive")
	case s.TiedEmbeddings || s.QKVBias:
		return fmt.Errorf("synth: shape %q: TiedEmbeddings and QKVBias are for decoder shapes (bert always has biases)", s.Name)
	}
	if _, ok := poolingTypes[s.Pooling]; !ok {
		return fmt.Errorf("synth: shape %q: unknown pooling type %q", s.Name, s.Pooling)
	}
	return nil
}

// bertTensors lays out LLM_ARCH_BERT as llama.cpp's llama_model_bert loads it:
// token, token-type and position embeddings, an embedding layer norm, and
// post-norm layers whose every matrix and norm has a bias.
func (s Shape) bertTensors(nVocab int, weight gguf.TensorType) []synthTensor {
	var (
		embd  = int64(s.Embd)
		ff    = int64(s.FF)
		vocab = int64(nVocab)
		ts    = tensorList{weight: weight}
		add   = ts.add
	)
	add("token_embd.weight", roleWeight, embd, vocab)
	// 2 = tokenizer.ggml.token_type_count of bert vocabs. The graph adds a row of it
	// to f32 activations, which ggml-cpu supports only from f32, so it stays f32 (as
	// llama.cpp's converter writes it).
	add("token_types.weight", roleBias, embd, 2)
	add("position_embd.weight", roleWeight, embd, int64(s.Ctx))
	add("token_embd_norm.weight", roleNorm, embd)
	add("token_embd_norm.bias", roleBias, embd)
	for i := range s.Layers {
		blk := fmt.Sprintf("blk.%d.", i)
		for _, m := range []string{"attn_q", "attn_k", "attn_v", "attn_output"} {
			add(blk+m+".weight", roleWeight, embd, embd)
			add(blk+m+".bias", roleBias, embd)
		}
		add(blk+"attn_output_norm.weight", roleNorm, embd)
		add(blk+"attn_output_norm.bias", roleBias, embd)
		add(blk+"ffn_up.weight", roleWeight, embd, ff)
		add(blk+"ffn_up.bias", roleBias, ff)
		add(blk+"ffn_down.weight", roleWeight, ff, embd)
		add(blk+"ffn_down.bias", roleBias, embd)
		add(blk+"layer_output_norm.weight", roleNorm, embd)
		add(blk+"layer_output_norm.bias", roleBias, embd)
	}
	if s.Pooling == "rank" {
		// The classification head of rerankers: a dense layer (tanh) and a
		// projection to one score (llama.cpp's default n_cls_out of 1).
		add("cls.weight", roleWeight, embd, embd)
		add("cls.bias", roleBias, embd)
		add("cls.output.weight", roleWeight, embd, 1)
		add("cls.output.bias", roleBias, 1)
	}
	return ts.ts
}

// bertMetadata returns the keys llama.cpp reads for LLM_ARCH_BERT.
func (s Shape) bertMetadata(ft gguf.FileType) []gguf.KV {
	kv := []gguf.KV{
		{Key: "general.architecture", Value: gguf.String("bert")},
		{Key: "general.name", Value: gguf.String("llamago synthetic " + s.Name)},
		{Key: "bert.block_count", Value: gguf.Uint32(uint32(s.Layers))},
		{Key: "bert.context_length", Value: gguf.Uint32(uint32(s.Ctx))},
		{Key: "bert.embedding_length", Value: gguf.Uint32(uint32(s.Embd))},
		{Key: "bert.feed_forward_length", Value: gguf.Uint32(uint32(s.FF))},
		{Key: "bert.attention.head_count", Value: gguf.Uint32(uint32(s.Heads))},
		{Key: "bert.attention.layer_norm_epsilon", Value: gguf.Float32(s.RMSEps)},
		{Key: "general.file_type", Value: gguf.Uint32(uint32(ft))},
		{Key: "bert.attention.causal", Value: gguf.Bool(false)},
		{Key: "bert.pooling_type", Value: gguf.Uint32(poolingTypes[s.Pooling])},
	}
	if ft == gguf.FileTypeMostlyQ8_0 {
		kv = append(kv, gguf.KV{Key: "general.quantization_version", Value: gguf.Uint32(2)})
	}
	return kv
}
