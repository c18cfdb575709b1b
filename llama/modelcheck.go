package llama

import (
	"errors"
	"fmt"
	"io"

	"github.com/llamago/llamago/llama/gguf"
)

// maxLayers is llama.cpp's LLAMA_MAX_LAYERS: a block_count above it (or 0) aborts the loader.
const maxLayers = 512

// modelFacts are what the pre-check learns that later checks need.
type modelFacts struct {
	headDim          int         // attention head size, 0 when unknown
	learnedPositions bool        // absolute position embeddings (BERT): positions must stay below the trained context
	pooling          PoolingType // the model's pooling type ({arch}.pooling_type), PoolingNone when absent
}

// flashAttnHeadDims are the head sizes of llama.cpp v0.4.0's CUDA flash-attention kernels.
// SplitTensor needs flash attention; without a kernel, llama.cpp aborts in the first decode.
var flashAttnHeadDims = map[int]bool{40: true, 64: true, 72: true, 80: true, 96: true, 112: true, 128: true,
	192: true, 256: true, 320: true, 512: true, 576: true}

// precheckGGUF validates a model file in Go before llama.cpp opens it: the GGUF structure
// (counts and offsets bounded by the file size, see package gguf) and the metadata that
// llama.cpp asserts on instead of returning an error.
func precheckGGUF(r io.ReaderAt, size int64, vocabOnly bool) (modelFacts, error) {
	var facts modelFacts
	f, err := gguf.Read(r, size)
	if err != nil {
		return facts, err
	}
	_, facts.learnedPositions = f.Tensor("position_embd.weight")
	if tokens, err := f.Strings("tokenizer.ggml.tokens"); err == nil {
		seen := make(map[string]int, len(tokens))
		for i, tok := range tokens {
			if j, dup := seen[tok]; dup {
				return facts, fmt.Errorf("tokenizer.ggml.tokens has %q twice (ids %d and %d)", tok, j, i)
			}
			seen[tok] = i
		}
		for _, key := range []string{"bos", "eos", "eot", "eom", "unknown", "seperator", "padding", "mask"} {
			if id, err := f.Int("tokenizer.ggml." + key + "_token_id"); err == nil && (id < -1 || id >= int64(len(tokens))) {
				return facts, fmt.Errorf("tokenizer.ggml.%s_token_id = %d is outside the vocabulary of %d tokens", key, id, len(tokens))
			}
		}
	} else if !errors.Is(err, gguf.ErrKeyNotFound) {
		return facts, err
	}
	if vocabOnly {
		return facts, nil
	}
	arch, err := f.String("general.architecture")
	if err != nil {
		return facts, err
	}
	layers, err := f.Int(arch + ".block_count")
	switch {
	case errors.Is(err, gguf.ErrKeyNotFound):
		return facts, nil // architectures without layers (and llama.cpp reports missing keys itself)
	case err != nil:
		return facts, err
	case layers < 1 || layers > maxLayers:
		return facts, fmt.Errorf("%s.block_count = %d: llama.cpp supports 1 to %d layers", arch, layers, maxLayers)
	}
	if nextn, err := f.Int(arch + ".nextn_predict_layers"); err == nil && (nextn < 0 || nextn > layers) {
		return facts, fmt.Errorf("%s.nextn_predict_layers = %d exceeds block_count %d", arch, nextn, layers)
	}
	facts.pooling = PoolingNone
	if pt, err := f.Int(arch + ".pooling_type"); err == nil && pt >= 0 && pt <= 4 {
		facts.pooling = PoolingType(pt + 1)
	}
	if k, err := f.Int(arch + ".attention.key_length"); err == nil {
		facts.headDim = int(k)
	} else if embd, err := f.Int(arch + ".embedding_length"); err == nil {
		if heads, err := f.Int(arch + ".attention.head_count"); err == nil && heads > 0 {
			facts.headDim = int(embd / heads)
		}
	}
	return facts, nil
}
