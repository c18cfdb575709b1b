// Package modelcheck reads a GGUF model file the way llama.cpp's loader will and refuses
// what would make the loader abort the process instead of returning an error: absurd layer
// or expert counts, keys of the wrong type, duplicate token strings, misaligned tensor
// data, broken split sets. What it learns on the way (Facts) serves later checks.
package modelcheck

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"

	"github.com/llamago/llamago/llama/gguf"
)

// MaxLayers is llama.cpp's LLAMA_MAX_LAYERS: a block_count above it (or 0) aborts the loader.
const MaxLayers = 512

// maxExperts is llama.cpp's LLAMA_MAX_EXPERTS: an expert_count above it aborts the loader.
const maxExperts = 1024

// tensorAlignment is ggml's TENSOR_ALIGNMENT: tensor data memory-mapped from a file offset
// that is not a multiple of it fails an assertion in ggml's backend buffers (a file with
// general.alignment below 32 can place tensors so).
const tensorAlignment = 32

// Facts are what the check learns that later checks need.
type Facts struct {
	HeadDim          int  // attention head size, 0 when unknown
	LearnedPositions bool // absolute position embeddings (BERT): positions must stay below the trained context
	Pooling          int  // {arch}.pooling_type as llama.cpp numbers it (0 none, 1 mean, 2 cls, 3 last, 4 rank); 0 when absent
	Splits           int  // split.count of a model split over several files (gguf-split), else 0
}

// keyKind is the stored form llama.cpp's loader requires for a known key.
type keyKind uint8

const (
	kindUint32      keyKind = iota // scalar uint32
	kindUint32OrArr                // scalar uint32, or one integer (or bool) per layer (get_key_or_arr)
	kindFloat32                    // scalar float32
	kindString                     // scalar string
	kindBool                       // scalar bool
	kindStrings                    // array of strings
	kindInt32s                     // array of int32
	kindNumbers                    // array of float32 or int32 (tokenizer scores)
	kindUint16                     // scalar uint16 (split keys)
)

func (k keyKind) String() string {
	return [...]string{"uint32", "uint32 or an integer array", "float32", "string", "bool",
		"array of strings", "array of int32", "array of float32 or int32", "uint16"}[k]
}

// tokenizerKeys are the tokenizer keys llama.cpp reads with a fixed type (llama-vocab.cpp).
var tokenizerKeys = map[string]keyKind{
	"tokenizer.ggml.model":              kindString,
	"tokenizer.ggml.pre":                kindString,
	"tokenizer.ggml.tokens":             kindStrings,
	"tokenizer.ggml.scores":             kindNumbers,
	"tokenizer.ggml.token_type":         kindInt32s,
	"tokenizer.ggml.merges":             kindStrings,
	"tokenizer.ggml.add_bos_token":      kindBool,
	"tokenizer.ggml.add_eos_token":      kindBool,
	"tokenizer.ggml.add_sep_token":      kindBool,
	"tokenizer.ggml.bos_token_id":       kindUint32,
	"tokenizer.ggml.eos_token_id":       kindUint32,
	"tokenizer.ggml.eot_token_id":       kindUint32,
	"tokenizer.ggml.eom_token_id":       kindUint32,
	"tokenizer.ggml.unknown_token_id":   kindUint32,
	"tokenizer.ggml.seperator_token_id": kindUint32,
	"tokenizer.ggml.padding_token_id":   kindUint32,
	"tokenizer.ggml.mask_token_id":      kindUint32,
}

// archKeys are the per-architecture keys ("{arch}." prefix) every model's hyperparameters
// are read from (llama_model_base::load_hparams), with the type the loader requires.
var archKeys = map[string]keyKind{
	"context_length":                   kindUint32,
	"embedding_length":                 kindUint32,
	"block_count":                      kindUint32,
	"nextn_predict_layers":             kindUint32,
	"vocab_size":                       kindUint32,
	"expert_count":                     kindUint32,
	"expert_used_count":                kindUint32OrArr,
	"expert_group_count":               kindUint32,
	"expert_group_used_count":          kindUint32,
	"feed_forward_length":              kindUint32OrArr,
	"attention.head_count":             kindUint32OrArr,
	"attention.head_count_kv":          kindUint32OrArr,
	"attention.key_length":             kindUint32,
	"attention.value_length":           kindUint32,
	"attention.layer_norm_epsilon":     kindFloat32,
	"attention.layer_norm_rms_epsilon": kindFloat32,
	"attention.group_norm_epsilon":     kindFloat32,
	"rope.dimension_count":             kindUint32,
	"rope.freq_base":                   kindFloat32,
	"rope.scaling.type":                kindString,
	"rope.scaling.factor":              kindFloat32,
	"posnet.block_count":               kindUint32,
	"convnext.block_count":             kindUint32,
}

// ropeScalingTypes are the values of {arch}.rope.scaling.type llama.cpp knows; any other
// string fails an assertion in the loader.
var ropeScalingTypes = map[string]bool{"none": true, "linear": true, "yarn": true, "longrope": true}

// checkKind reports whether v has the stored form k.
func checkKind(key string, v gguf.Value, k keyKind) error {
	elem, isArr := v.Elem()
	ok := false
	switch k {
	case kindUint32:
		ok = v.Type() == gguf.ValueUint32
	case kindUint32OrArr:
		ok = v.Type() == gguf.ValueUint32 ||
			isArr && (elem == gguf.ValueUint32 || elem == gguf.ValueInt32 || elem == gguf.ValueBool)
	case kindFloat32:
		ok = v.Type() == gguf.ValueFloat32
	case kindString:
		ok = v.Type() == gguf.ValueString
	case kindBool:
		ok = v.Type() == gguf.ValueBool
	case kindStrings:
		ok = isArr && elem == gguf.ValueString
	case kindInt32s:
		ok = isArr && elem == gguf.ValueInt32
	case kindNumbers:
		ok = isArr && (elem == gguf.ValueFloat32 || elem == gguf.ValueInt32)
	case kindUint16:
		ok = v.Type() == gguf.ValueUint16
	}
	if ok {
		return nil
	}
	got := v.Type().String()
	if isArr {
		got = "array of " + elem.String()
	}
	return fmt.Errorf("%s has type %s, llama.cpp requires %s", key, got, k)
}

// uint32Max returns the largest value of a kindUint32OrArr key as llama.cpp reads it
// (array elements converted to uint32), 0 when absent.
func uint32Max(f *gguf.File, key string) uint64 {
	v, ok := f.Lookup(key)
	if !ok {
		return 0
	}
	var m uint64
	switch x := v.Any().(type) {
	case uint32:
		m = uint64(x)
	case []uint32:
		for _, e := range x {
			m = max(m, uint64(e))
		}
	case []int32:
		for _, e := range x {
			m = max(m, uint64(uint32(e)))
		}
	case []bool:
		for _, e := range x {
			if e {
				m = max(m, 1)
			}
		}
	}
	return m
}

// uint32Of returns a checked kindUint32 key, 0 when absent.
func uint32Of(f *gguf.File, key string) uint64 {
	if v, ok := f.Lookup(key); ok {
		if x, ok := v.Any().(uint32); ok {
			return uint64(x)
		}
	}
	return 0
}

// Read validates a model file in Go before llama.cpp opens it: the GGUF structure
// (counts and offsets bounded by the file size, see package gguf) and the metadata that
// llama.cpp asserts on instead of returning an error. Known keys must have the types
// llama.cpp reads them with (it would refuse them too, but later and less clearly).
func Read(r io.ReaderAt, size int64, vocabOnly bool) (Facts, error) {
	var facts Facts
	f, err := gguf.Read(r, size)
	if err != nil {
		return facts, err
	}
	for key, kind := range tokenizerKeys {
		if v, ok := f.Lookup(key); ok {
			if err := checkKind(key, v, kind); err != nil {
				return facts, err
			}
		}
	}
	if facts.Splits, err = checkSplitKeys(f); err != nil {
		return facts, err
	}
	_, facts.LearnedPositions = f.Tensor("position_embd.weight")
	if tokens, err := f.Strings("tokenizer.ggml.tokens"); err == nil {
		seen := make(map[string]int, len(tokens))
		for i, tok := range tokens {
			// llama.cpp reads each token as a C string: it ends at the first NUL byte.
			if end := strings.IndexByte(tok, 0); end >= 0 {
				tok = tok[:end]
			}
			if tok == "" { // llama.cpp renames empty tokens
				tok = fmt.Sprintf("[EMPTY_%d]", i)
			}
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
	if err := checkTensorAlignment(f); err != nil {
		return facts, err
	}
	arch, err := f.String("general.architecture")
	if err != nil {
		return facts, err
	}
	a := arch + "."
	for key, kind := range archKeys {
		if v, ok := f.Lookup(a + key); ok {
			if err := checkKind(a+key, v, kind); err != nil {
				return facts, err
			}
		}
	}
	if _, ok := f.Lookup(a + "block_count"); !ok {
		return facts, nil // architectures without layers (and llama.cpp reports missing keys itself)
	}
	layers := uint32Of(f, a+"block_count")
	if layers < 1 || layers > MaxLayers {
		return facts, fmt.Errorf("%sblock_count = %d: llama.cpp supports 1 to %d layers", a, layers, MaxLayers)
	}
	if nextn := uint32Of(f, a+"nextn_predict_layers"); nextn > layers {
		return facts, fmt.Errorf("%snextn_predict_layers = %d exceeds block_count %d", a, nextn, layers)
	}
	for _, key := range []string{"posnet.block_count", "convnext.block_count"} {
		if n := uint32Of(f, a+key); arch == "wavtokenizer-dec" && n > layers {
			return facts, fmt.Errorf("%s%s = %d exceeds block_count %d", a, key, n, layers)
		}
	}
	if err := checkExperts(f, arch); err != nil {
		return facts, err
	}
	if v, ok := f.Lookup(a + "rope.scaling.type"); ok && !ropeScalingTypes[v.Any().(string)] {
		return facts, fmt.Errorf("%srope.scaling.type = %q: llama.cpp knows none, linear, yarn and longrope", a, v.Any())
	}
	for _, key := range []string{"attention.layer_norm_epsilon", "attention.layer_norm_rms_epsilon", "attention.group_norm_epsilon"} {
		if v, ok := f.Lookup(a + key); ok {
			if eps := float64(v.Any().(float32)); math.IsNaN(eps) || math.IsInf(eps, 0) || eps < 0 {
				return facts, fmt.Errorf("%s%s = %v: a norm epsilon must be finite and >= 0", a, key, eps)
			}
		}
	}
	if pt, err := f.Int(a + "pooling_type"); err == nil && pt >= 0 && pt <= 4 {
		facts.Pooling = int(pt)
	}
	if k := uint32Of(f, a+"attention.key_length"); k > 0 {
		facts.HeadDim = int(k)
	} else if embd, heads := uint32Of(f, a+"embedding_length"), uint32Max(f, a+"attention.head_count"); heads > 0 {
		facts.HeadDim = int(embd / heads)
	}
	return facts, nil
}

// checkExperts mirrors the mixture-of-experts assertions of llama_model_base::load_hparams.
func checkExperts(f *gguf.File, arch string) error {
	a := arch + "."
	n := uint32Of(f, a+"expert_count")
	if (arch == "hunyuan-dense" || arch == "hunyuan_vl") && n <= 1 {
		return nil // llama.cpp turns these into dense models
	}
	used := uint32Max(f, a+"expert_used_count")
	groups := uint32Of(f, a+"expert_group_count")
	groupUsed := uint32Of(f, a+"expert_group_used_count")
	switch {
	case n > maxExperts:
		return fmt.Errorf("%sexpert_count = %d: llama.cpp supports at most %d experts", a, n, maxExperts)
	case used > n:
		return fmt.Errorf("%sexpert_used_count = %d exceeds expert_count %d", a, used, n)
	case n > 0 && used == 0:
		return fmt.Errorf("%sexpert_count = %d with no expert_used_count", a, n)
	case n == 0 && groups != 0:
		return fmt.Errorf("%sexpert_group_count = %d without experts", a, groups)
	case n > 0 && groups >= n:
		return fmt.Errorf("%sexpert_group_count = %d must be below expert_count %d", a, groups, n)
	case groups > 1 && (n%groups != 0 || groupUsed == 0 || groupUsed >= groups):
		return fmt.Errorf("%sexpert_group_count = %d, expert_group_used_count = %d, expert_count = %d: llama.cpp needs groups dividing the experts and 0 < used < groups",
			a, groups, groupUsed, n)
	}
	return nil
}

// checkSplitKeys returns split.count of the first file of a split model (0 for a model in
// one file), checking the keys llama.cpp reads with a fixed type.
func checkSplitKeys(f *gguf.File) (int, error) {
	v, ok := f.Lookup("split.count")
	if !ok {
		return 0, nil
	}
	if err := checkKind("split.count", v, kindUint16); err != nil {
		return 0, err
	}
	n := int(v.Any().(uint16))
	if n <= 1 {
		return 0, nil
	}
	no, ok := f.Lookup("split.no")
	if !ok {
		return 0, errors.New("split.count without split.no")
	}
	if err := checkKind("split.no", no, kindUint16); err != nil {
		return 0, err
	}
	if idx := no.Any().(uint16); idx != 0 {
		return 0, fmt.Errorf("file %d of a model split in %d: load the first one", int(idx)+1, n)
	}
	return n, nil
}

// checkSplits checks the other files of a model split in n files, which llama.cpp
// opens by name (path ends in -00001-of-0000n.gguf): each must be a sound GGUF file whose
// split.no is a uint16 (llama.cpp asserts on its type).
func checkSplits(path string, n int) error {
	suffix := fmt.Sprintf("-%05d-of-%05d.gguf", 1, n)
	prefix, ok := strings.CutSuffix(path, suffix)
	if !ok {
		return fmt.Errorf("the first file of a model split in %d must be named *%s", n, suffix)
	}
	for i := 1; i < n; i++ {
		p := prefix + fmt.Sprintf("-%05d-of-%05d.gguf", i+1, n)
		if err := checkSplit(p); err != nil {
			return fmt.Errorf("split file %s: %w", p, err)
		}
	}
	return nil
}

func checkSplit(path string) error {
	f, err := gguf.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	no, ok := f.Lookup("split.no")
	if !ok {
		return errors.New("no split.no")
	}
	if err := checkKind("split.no", no, kindUint16); err != nil {
		return err
	}
	return checkTensorAlignment(f)
}

// checkTensorAlignment refuses tensor data at file offsets llama.cpp cannot map.
func checkTensorAlignment(f *gguf.File) error {
	for _, ti := range f.Tensors {
		if off := f.DataOffset + ti.Offset; off%tensorAlignment != 0 {
			return fmt.Errorf("tensor %q: data at file offset %d is not a multiple of %d (general.alignment %d)",
				ti.Name, off, tensorAlignment, f.Alignment)
		}
	}
	return nil
}

// File checks the model file at path, and the other files of a split model.
func File(path string, vocabOnly bool) (Facts, error) {
	if path == "" {
		return Facts{}, errors.New("empty path")
	}
	f, err := os.Open(path)
	if err != nil {
		return Facts{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return Facts{}, err
	}
	if st.IsDir() {
		return Facts{}, errors.New("is a directory")
	}
	facts, err := Read(f, st.Size(), vocabOnly)
	if err == nil && facts.Splits > 1 {
		err = checkSplits(path, facts.Splits)
	}
	return facts, err
}

// Adapter checks a LoRA adapter file: a sound GGUF file (package gguf) with tensor data ggml
// can map.
func Adapter(path string) error {
	if fi, err := os.Stat(path); err != nil {
		return err
	} else if fi.IsDir() {
		return errors.New("is a directory")
	}
	f, err := gguf.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return checkTensorAlignment(f)
}

// Projector checks a multimodal projector file (mmproj): a sound GGUF file of
// architecture "clip" with tensor data ggml can map.
func Projector(path string) error {
	f, err := gguf.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if arch, err := f.String("general.architecture"); err != nil || arch != "clip" {
		return fmt.Errorf("not a projector (general.architecture %q, want \"clip\")", arch)
	}
	return checkTensorAlignment(f)
}
