package llama

import (
	"errors"
	"fmt"
	"io"

	"github.com/llamago/llamago/llama/gguf"
)

// maxLayers is llama.cpp's LLAMA_MAX_LAYERS: a block_count above it (or 0) aborts the loader.
const maxLayers = 512

// precheckGGUF validates a model file in Go before llama.cpp opens it: the GGUF structure
// (counts and offsets bounded by the file size, see package gguf) and the metadata that
// llama.cpp asserts on instead of returning an error.
func precheckGGUF(r io.ReaderAt, size int64, vocabOnly bool) error {
	f, err := gguf.Read(r, size)
	if err != nil {
		return err
	}
	if tokens, err := f.Strings("tokenizer.ggml.tokens"); err == nil {
		seen := make(map[string]int, len(tokens))
		for i, tok := range tokens {
			if j, dup := seen[tok]; dup {
				return fmt.Errorf("tokenizer.ggml.tokens has %q twice (ids %d and %d)", tok, j, i)
			}
			seen[tok] = i
		}
		for _, key := range []string{"bos", "eos", "eot", "eom", "unknown", "seperator", "padding", "mask"} {
			if id, err := f.Int("tokenizer.ggml." + key + "_token_id"); err == nil && (id < -1 || id >= int64(len(tokens))) {
				return fmt.Errorf("tokenizer.ggml.%s_token_id = %d is outside the vocabulary of %d tokens", key, id, len(tokens))
			}
		}
	} else if !errors.Is(err, gguf.ErrKeyNotFound) {
		return err
	}
	if vocabOnly {
		return nil
	}
	arch, err := f.String("general.architecture")
	if err != nil {
		return err
	}
	layers, err := f.Int(arch + ".block_count")
	switch {
	case errors.Is(err, gguf.ErrKeyNotFound):
		return nil // architectures without layers (and llama.cpp reports missing keys itself)
	case err != nil:
		return err
	case layers < 1 || layers > maxLayers:
		return fmt.Errorf("%s.block_count = %d: llama.cpp supports 1 to %d layers", arch, layers, maxLayers)
	}
	if nextn, err := f.Int(arch + ".nextn_predict_layers"); err == nil && (nextn < 0 || nextn > layers) {
		return fmt.Errorf("%s.nextn_predict_layers = %d exceeds block_count %d", arch, nextn, layers)
	}
	return nil
}
