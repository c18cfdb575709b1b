package llama

/*
#include "shim.h"
*/
import "C"

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"unsafe"
)

// quantTypes are the file types llama.cpp's quantizer writes, by llama-quantize's names.
var quantTypes = map[string]C.enum_llama_ftype{
	"F32": C.LLAMA_FTYPE_ALL_F32, "F16": C.LLAMA_FTYPE_MOSTLY_F16, "BF16": C.LLAMA_FTYPE_MOSTLY_BF16,
	"Q8_0": C.LLAMA_FTYPE_MOSTLY_Q8_0, "Q4_0": C.LLAMA_FTYPE_MOSTLY_Q4_0, "Q4_1": C.LLAMA_FTYPE_MOSTLY_Q4_1,
	"Q5_0": C.LLAMA_FTYPE_MOSTLY_Q5_0, "Q5_1": C.LLAMA_FTYPE_MOSTLY_Q5_1,
	"Q2_K": C.LLAMA_FTYPE_MOSTLY_Q2_K, "Q3_K_S": C.LLAMA_FTYPE_MOSTLY_Q3_K_S, "Q3_K_M": C.LLAMA_FTYPE_MOSTLY_Q3_K_M,
	"Q3_K_L": C.LLAMA_FTYPE_MOSTLY_Q3_K_L, "Q4_K_S": C.LLAMA_FTYPE_MOSTLY_Q4_K_S, "Q4_K_M": C.LLAMA_FTYPE_MOSTLY_Q4_K_M,
	"Q5_K_S": C.LLAMA_FTYPE_MOSTLY_Q5_K_S, "Q5_K_M": C.LLAMA_FTYPE_MOSTLY_Q5_K_M, "Q6_K": C.LLAMA_FTYPE_MOSTLY_Q6_K,
	"IQ4_NL": C.LLAMA_FTYPE_MOSTLY_IQ4_NL, "IQ4_XS": C.LLAMA_FTYPE_MOSTLY_IQ4_XS,
	"IQ3_XXS": C.LLAMA_FTYPE_MOSTLY_IQ3_XXS, "IQ3_XS": C.LLAMA_FTYPE_MOSTLY_IQ3_XS, "IQ3_S": C.LLAMA_FTYPE_MOSTLY_IQ3_S,
	"IQ3_M": C.LLAMA_FTYPE_MOSTLY_IQ3_M, "TQ1_0": C.LLAMA_FTYPE_MOSTLY_TQ1_0, "TQ2_0": C.LLAMA_FTYPE_MOSTLY_TQ2_0,
}

// QuantizeTypes lists the file types Quantize accepts.
func QuantizeTypes() []string {
	names := make([]string, 0, len(quantTypes))
	for n := range quantTypes {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// QuantizeParams configures Quantize.
type QuantizeParams struct {
	Type              string // a name from QuantizeTypes, e.g. "Q4_K_M"; "" means Q8_0
	Threads           int    // 0: all cores
	AllowRequantize   bool   // quantize tensors that are already quantized
	LeaveOutputTensor bool   // keep output.weight unquantized
	Pure              bool   // every tensor in Type, without llama.cpp's per-tensor mix
}

// Quantize writes a quantized copy of the GGUF model in to out with llama.cpp's quantizer.
// ctx is checked before starting; the quantizer itself cannot be interrupted.
func Quantize(ctx context.Context, in, out string, p *QuantizeParams) error {
	initBackend()
	var q QuantizeParams
	if p != nil {
		q = *p
	}
	if q.Type == "" {
		q.Type = "Q8_0"
	}
	ftype, ok := quantTypes[q.Type]
	if !ok {
		return invalidParam("unknown quantization type %q (one of %v)", q.Type, QuantizeTypes())
	}
	if q.Threads < 0 || q.Threads > 512 {
		return invalidParam("Threads = %d out of range [0, 512]", q.Threads)
	}
	if err := checkModelFile(in, false); err != nil {
		return &LoadError{Path: in, Err: err}
	}
	if a, b := filepath.Clean(in), filepath.Clean(out); a == b {
		return invalidParam("output %s is the input", out)
	}
	if st, err := os.Stat(out); err == nil && st.IsDir() {
		return invalidParam("output %s is a directory", out)
	}
	if err := context.Cause(ctx); err != nil {
		return aborted(err)
	}
	cp := C.llama_model_quantize_default_params()
	cp.ftype = ftype
	cp.nthread = C.int32_t(q.Threads)
	cp.allow_requantize = C.bool(q.AllowRequantize)
	cp.quantize_output_tensor = C.bool(!q.LeaveOutputTensor)
	cp.pure = C.bool(q.Pure)
	cin, cout := C.CString(in), C.CString(out)
	defer C.free(unsafe.Pointer(cin))
	defer C.free(unsafe.Pointer(cout))
	since := llamaErrors.mark()
	if rc := C.llama_model_quantize(cin, cout, &cp); rc != 0 {
		os.Remove(out)
		return fmt.Errorf("llama: quantize %s: %w", in, llamaErrors.since(since, "llama.cpp failed to quantize"))
	}
	return nil
}
