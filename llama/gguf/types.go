package gguf

import (
	"fmt"
	"math"
	"math/bits"
	"strings"
)

// TensorType is a ggml tensor data type (enum ggml_type), stored as uint32
// in tensor infos.
type TensorType uint32

// Tensor types of llama.cpp v0.4.0. The missing numbers (4, 5, 31-33, 36-38)
// were removed from ggml and are rejected by the reader.
const (
	TypeF32     TensorType = 0
	TypeF16     TensorType = 1
	TypeQ4_0    TensorType = 2
	TypeQ4_1    TensorType = 3
	TypeQ5_0    TensorType = 6
	TypeQ5_1    TensorType = 7
	TypeQ8_0    TensorType = 8
	TypeQ8_1    TensorType = 9
	TypeQ2_K    TensorType = 10
	TypeQ3_K    TensorType = 11
	TypeQ4_K    TensorType = 12
	TypeQ5_K    TensorType = 13
	TypeQ6_K    TensorType = 14
	TypeQ8_K    TensorType = 15
	TypeIQ2_XXS TensorType = 16
	TypeIQ2_XS  TensorType = 17
	TypeIQ3_XXS TensorType = 18
	TypeIQ1_S   TensorType = 19
	TypeIQ4_NL  TensorType = 20
	TypeIQ3_S   TensorType = 21
	TypeIQ2_S   TensorType = 22
	TypeIQ4_XS  TensorType = 23
	TypeI8      TensorType = 24
	TypeI16     TensorType = 25
	TypeI32     TensorType = 26
	TypeI64     TensorType = 27
	TypeF64     TensorType = 28
	TypeIQ1_M   TensorType = 29
	TypeBF16    TensorType = 30
	TypeTQ1_0   TensorType = 34
	TypeTQ2_0   TensorType = 35
	TypeMXFP4   TensorType = 39
	TypeNVFP4   TensorType = 40
	TypeQ1_0    TensorType = 41
	TypeQ2_0    TensorType = 42
)

// typeTraits mirrors ggml's type_traits: elements per block and bytes per
// block. Sizes come from the block structs in ggml-common.h (e.g. block_q8_0
// is an fp16 scale plus 32 int8 = 34 bytes).
type typeTraits struct {
	name       string
	blockSize  int64
	blockBytes int64
}

var tensorTypes = map[TensorType]typeTraits{
	TypeF32:     {"f32", 1, 4},
	TypeF16:     {"f16", 1, 2},
	TypeQ4_0:    {"q4_0", 32, 18},
	TypeQ4_1:    {"q4_1", 32, 20},
	TypeQ5_0:    {"q5_0", 32, 22},
	TypeQ5_1:    {"q5_1", 32, 24},
	TypeQ8_0:    {"q8_0", 32, 34},
	TypeQ8_1:    {"q8_1", 32, 36},
	TypeQ2_K:    {"q2_K", 256, 84},
	TypeQ3_K:    {"q3_K", 256, 110},
	TypeQ4_K:    {"q4_K", 256, 144},
	TypeQ5_K:    {"q5_K", 256, 176},
	TypeQ6_K:    {"q6_K", 256, 210},
	TypeQ8_K:    {"q8_K", 256, 292},
	TypeIQ2_XXS: {"iq2_xxs", 256, 66},
	TypeIQ2_XS:  {"iq2_xs", 256, 74},
	TypeIQ3_XXS: {"iq3_xxs", 256, 98},
	TypeIQ1_S:   {"iq1_s", 256, 50},
	TypeIQ4_NL:  {"iq4_nl", 32, 18},
	TypeIQ3_S:   {"iq3_s", 256, 110},
	TypeIQ2_S:   {"iq2_s", 256, 82},
	TypeIQ4_XS:  {"iq4_xs", 256, 136},
	TypeI8:      {"i8", 1, 1},
	TypeI16:     {"i16", 1, 2},
	TypeI32:     {"i32", 1, 4},
	TypeI64:     {"i64", 1, 8},
	TypeF64:     {"f64", 1, 8},
	TypeIQ1_M:   {"iq1_m", 256, 56},
	TypeBF16:    {"bf16", 1, 2},
	TypeTQ1_0:   {"tq1_0", 256, 54},
	TypeTQ2_0:   {"tq2_0", 256, 66},
	TypeMXFP4:   {"mxfp4", 32, 17},
	TypeNVFP4:   {"nvfp4", 64, 36},
	TypeQ1_0:    {"q1_0", 128, 18},
	TypeQ2_0:    {"q2_0", 64, 18},
}

// TensorTypes returns every known tensor type in enum order.
func TensorTypes() []TensorType {
	var ts []TensorType
	for t := range TensorType(64) {
		if t.Valid() {
			ts = append(ts, t)
		}
	}
	return ts
}

// Valid reports whether t is a tensor type that llama.cpp v0.4.0 can load.
func (t TensorType) Valid() bool {
	_, ok := tensorTypes[t]
	return ok
}

// String returns ggml's name for the type ("f16", "q8_0", "q4_K").
func (t TensorType) String() string {
	if tt, ok := tensorTypes[t]; ok {
		return tt.name
	}
	return fmt.Sprintf("type(%d)", uint32(t))
}

// BlockSize returns the number of elements per block (1 for plain types,
// 0 for unknown types).
func (t TensorType) BlockSize() int64 { return tensorTypes[t].blockSize }

// BlockBytes returns the number of bytes per block (0 for unknown types).
func (t TensorType) BlockBytes() int64 { return tensorTypes[t].blockBytes }

// ParseTensorType parses a ggml type name, case-insensitively ("F16", "q8_0").
func ParseTensorType(s string) (TensorType, error) {
	for t, tt := range tensorTypes {
		if strings.EqualFold(tt.name, s) {
			return t, nil
		}
	}
	return 0, fmt.Errorf("gguf: unknown tensor type %q", s)
}

// MaxDims is the most dimensions a ggml tensor can have (GGML_MAX_DIMS).
const MaxDims = 4

// TensorSize returns the size in bytes of a tensor of type t and the given
// shape (ggml order), checking the shape, the block layout and overflow.
func TensorSize(t TensorType, shape []int64) (int64, error) {
	n, err := tensorSize(t, shape)
	if err != nil {
		return 0, fmt.Errorf("gguf: %w", err)
	}
	return n, nil
}

func tensorSize(t TensorType, shape []int64) (int64, error) {
	tt, ok := tensorTypes[t]
	if !ok {
		return 0, fmt.Errorf("invalid tensor type %d", uint32(t))
	}
	if len(shape) == 0 || len(shape) > MaxDims {
		return 0, fmt.Errorf("tensor has %d dimensions, want 1 to %d", len(shape), MaxDims)
	}
	n := int64(1)
	for i, d := range shape {
		if d <= 0 {
			return 0, fmt.Errorf("dimension %d is %d, must be positive", i, d)
		}
		hi, lo := bits.Mul64(uint64(n), uint64(d))
		if hi != 0 || lo > math.MaxInt64 {
			return 0, fmt.Errorf("shape %v overflows the element count", shape)
		}
		n = int64(lo)
	}
	if shape[0]%tt.blockSize != 0 {
		return 0, fmt.Errorf("row of %d elements is not a multiple of the %s block size %d", shape[0], tt.name, tt.blockSize)
	}
	blocks := n / tt.blockSize
	if blocks > math.MaxInt64/tt.blockBytes {
		return 0, fmt.Errorf("shape %v of type %s overflows the byte size", shape, tt.name)
	}
	return blocks * tt.blockBytes, nil
}

// FileType is the llama.cpp file type stored in general.file_type
// (enum llama_ftype): the type of most 2-D weights.
type FileType uint32

// File types of llama.cpp v0.4.0 (gaps were removed upstream).
const (
	FileTypeAllF32       FileType = 0
	FileTypeMostlyF16    FileType = 1
	FileTypeMostlyQ4_0   FileType = 2
	FileTypeMostlyQ4_1   FileType = 3
	FileTypeMostlyQ8_0   FileType = 7
	FileTypeMostlyQ5_0   FileType = 8
	FileTypeMostlyQ5_1   FileType = 9
	FileTypeMostlyQ2_K   FileType = 10
	FileTypeMostlyQ3_K_S FileType = 11
	FileTypeMostlyQ3_K_M FileType = 12
	FileTypeMostlyQ3_K_L FileType = 13
	FileTypeMostlyQ4_K_S FileType = 14
	FileTypeMostlyQ4_K_M FileType = 15
	FileTypeMostlyQ5_K_S FileType = 16
	FileTypeMostlyQ5_K_M FileType = 17
	FileTypeMostlyQ6_K   FileType = 18
	FileTypeMostlyIQ2XXS FileType = 19
	FileTypeMostlyIQ2XS  FileType = 20
	FileTypeMostlyQ2_K_S FileType = 21
	FileTypeMostlyIQ3XS  FileType = 22
	FileTypeMostlyIQ3XXS FileType = 23
	FileTypeMostlyIQ1S   FileType = 24
	FileTypeMostlyIQ4NL  FileType = 25
	FileTypeMostlyIQ3S   FileType = 26
	FileTypeMostlyIQ3M   FileType = 27
	FileTypeMostlyIQ2S   FileType = 28
	FileTypeMostlyIQ2M   FileType = 29
	FileTypeMostlyIQ4XS  FileType = 30
	FileTypeMostlyIQ1M   FileType = 31
	FileTypeMostlyBF16   FileType = 32
	FileTypeMostlyTQ1_0  FileType = 36
	FileTypeMostlyTQ2_0  FileType = 37
	FileTypeMostlyMXFP4  FileType = 38
	FileTypeMostlyNVFP4  FileType = 39
	FileTypeMostlyQ1_0   FileType = 40
	FileTypeMostlyQ2_0   FileType = 41
)

var fileTypeNames = map[FileType]string{
	FileTypeAllF32:       "ALL_F32",
	FileTypeMostlyF16:    "MOSTLY_F16",
	FileTypeMostlyQ4_0:   "MOSTLY_Q4_0",
	FileTypeMostlyQ4_1:   "MOSTLY_Q4_1",
	FileTypeMostlyQ8_0:   "MOSTLY_Q8_0",
	FileTypeMostlyQ5_0:   "MOSTLY_Q5_0",
	FileTypeMostlyQ5_1:   "MOSTLY_Q5_1",
	FileTypeMostlyQ2_K:   "MOSTLY_Q2_K",
	FileTypeMostlyQ3_K_S: "MOSTLY_Q3_K_S",
	FileTypeMostlyQ3_K_M: "MOSTLY_Q3_K_M",
	FileTypeMostlyQ3_K_L: "MOSTLY_Q3_K_L",
	FileTypeMostlyQ4_K_S: "MOSTLY_Q4_K_S",
	FileTypeMostlyQ4_K_M: "MOSTLY_Q4_K_M",
	FileTypeMostlyQ5_K_S: "MOSTLY_Q5_K_S",
	FileTypeMostlyQ5_K_M: "MOSTLY_Q5_K_M",
	FileTypeMostlyQ6_K:   "MOSTLY_Q6_K",
	FileTypeMostlyIQ2XXS: "MOSTLY_IQ2_XXS",
	FileTypeMostlyIQ2XS:  "MOSTLY_IQ2_XS",
	FileTypeMostlyQ2_K_S: "MOSTLY_Q2_K_S",
	FileTypeMostlyIQ3XS:  "MOSTLY_IQ3_XS",
	FileTypeMostlyIQ3XXS: "MOSTLY_IQ3_XXS",
	FileTypeMostlyIQ1S:   "MOSTLY_IQ1_S",
	FileTypeMostlyIQ4NL:  "MOSTLY_IQ4_NL",
	FileTypeMostlyIQ3S:   "MOSTLY_IQ3_S",
	FileTypeMostlyIQ3M:   "MOSTLY_IQ3_M",
	FileTypeMostlyIQ2S:   "MOSTLY_IQ2_S",
	FileTypeMostlyIQ2M:   "MOSTLY_IQ2_M",
	FileTypeMostlyIQ4XS:  "MOSTLY_IQ4_XS",
	FileTypeMostlyIQ1M:   "MOSTLY_IQ1_M",
	FileTypeMostlyBF16:   "MOSTLY_BF16",
	FileTypeMostlyTQ1_0:  "MOSTLY_TQ1_0",
	FileTypeMostlyTQ2_0:  "MOSTLY_TQ2_0",
	FileTypeMostlyMXFP4:  "MOSTLY_MXFP4_MOE",
	FileTypeMostlyNVFP4:  "MOSTLY_NVFP4",
	FileTypeMostlyQ1_0:   "MOSTLY_Q1_0",
	FileTypeMostlyQ2_0:   "MOSTLY_Q2_0",
}

// String returns the llama_ftype name without its LLAMA_FTYPE_ prefix
// ("MOSTLY_Q4_K_M"), or "unknown(N)".
func (ft FileType) String() string {
	if s, ok := fileTypeNames[ft]; ok {
		return s
	}
	return fmt.Sprintf("unknown(%d)", uint32(ft))
}
