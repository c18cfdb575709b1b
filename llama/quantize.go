package llama

/*
#include "shim.h"
*/
import "C"

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"github.com/llamago/llamago/llama/gguf"
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

// QuantizeParams configures Quantize, with the options of llama-quantize.
type QuantizeParams struct {
	Type              string // a name from QuantizeTypes, e.g. "Q4_K_M"; "" means Q8_0
	Threads           int    // 0: all cores
	AllowRequantize   bool   // quantize tensors that are already quantized
	LeaveOutputTensor bool   // keep output.weight unquantized
	Pure              bool   // every tensor in Type, without llama.cpp's per-tensor mix
	// OutputTensorType and TokenEmbeddingType override the type of output.weight and
	// token_embd.weight (--output-tensor-type, --token-embedding-type): a ggml type name
	// from QuantizeTensorTypes, e.g. "q8_0" or "f16"; "" keeps llama.cpp's choice.
	OutputTensorType   string
	TokenEmbeddingType string
	// IMatrix is an importance-matrix file made by llama-imatrix (--imatrix), in the
	// GGUF format or the legacy .dat format; "" quantizes without one. It is read and
	// checked in Go (finite values, sizes) before llama.cpp sees it.
	IMatrix string
	// Progress, when set, is called after each tensor with its name and the count done,
	// from llama.cpp's per-tensor log lines (on the goroutine that logs them).
	Progress func(done, total int, tensor string)
}

// quantizeMu serialises Quantize: progress comes from llama.cpp's process-wide log.
var quantizeMu sync.Mutex

// quantTensorTypes are the ggml types accepted for the per-tensor overrides: those
// ggml can quantize rows to without an importance matrix.
var quantTensorTypes = []gguf.TensorType{
	gguf.TypeF32, gguf.TypeF16, gguf.TypeBF16, gguf.TypeQ4_0, gguf.TypeQ4_1, gguf.TypeQ5_0, gguf.TypeQ5_1,
	gguf.TypeQ8_0, gguf.TypeQ2_K, gguf.TypeQ3_K, gguf.TypeQ4_K, gguf.TypeQ5_K, gguf.TypeQ6_K,
	gguf.TypeIQ4_NL, gguf.TypeIQ4_XS,
}

// QuantizeTensorTypes lists the tensor type names QuantizeParams.OutputTensorType and
// TokenEmbeddingType accept.
func QuantizeTensorTypes() []string {
	names := make([]string, len(quantTensorTypes))
	for i, t := range quantTensorTypes {
		names[i] = t.String()
	}
	return names
}

func parseQuantTensorType(field, name string) (C.enum_ggml_type, error) {
	if name == "" {
		return C.GGML_TYPE_COUNT, nil // llama.cpp's "not set"
	}
	t, err := gguf.ParseTensorType(name)
	if err == nil {
		for _, ok := range quantTensorTypes {
			if ok == t {
				return C.enum_ggml_type(t), nil
			}
		}
	}
	return 0, invalidParam("%s %q is not one of %v", field, name, QuantizeTensorTypes())
}

// Quantize writes a quantized copy of the GGUF model in to out with llama.cpp's quantizer.
// The input is pre-checked in Go like LoadModel's. ctx is checked before starting: the
// quantizer of llama.cpp v0.4.0 has no abort callback, so once it runs it cannot be
// interrupted; QuantizeParams.Progress reports each tensor. Calls run one at a time.
// On failure out is removed.
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
	outType, err := parseQuantTensorType("OutputTensorType", q.OutputTensorType)
	if err != nil {
		return err
	}
	embType, err := parseQuantTensorType("TokenEmbeddingType", q.TokenEmbeddingType)
	if err != nil {
		return err
	}
	var imat *cIMatrix
	if q.IMatrix != "" {
		entries, err := ReadIMatrix(q.IMatrix)
		if err != nil {
			return err
		}
		if err := checkIMatrix(in, entries); err != nil {
			return err
		}
		imat = newCIMatrix(entries)
		defer imat.free()
	}
	if _, err := checkModelFile(in, false); err != nil {
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
	cp.output_tensor_type = outType
	cp.token_embedding_type = embType
	if imat != nil {
		cp.imatrix = imat.ptr
	}
	cin, cout := C.CString(in), C.CString(out)
	defer C.free(unsafe.Pointer(cin))
	defer C.free(unsafe.Pointer(cout))
	quantizeMu.Lock()
	defer quantizeMu.Unlock()
	var panicked any
	if q.Progress != nil {
		stop := watchQuantizeLog(func(done, total int, tensor string) {
			defer func() {
				if r := recover(); r != nil && panicked == nil {
					panicked = r // the quantizer cannot be stopped: report it when it returns
				}
			}()
			if panicked == nil {
				q.Progress(done, total, tensor)
			}
		})
		defer stop()
	}
	errs := captureErrors()
	defer errs.done()
	if rc := C.llama_model_quantize(cin, cout, &cp); rc != 0 {
		os.Remove(out)
		return fmt.Errorf("llama: quantize %s: %w", in, errs.err("llama.cpp failed to quantize"))
	}
	if panicked != nil {
		os.Remove(out)
		return fmt.Errorf("llama: quantize %s: progress callback panicked: %v", in, panicked)
	}
	return nil
}

// ReadIMatrix reads an importance matrix written by llama-imatrix: the GGUF format
// (tensors "<weight>.in_sum2" and "<weight>.counts") or the legacy .dat format. It
// returns, per weight tensor name, the mean squared activation of each input column
// (per expert for 3-D weights), which is what llama.cpp's quantizer takes.
func ReadIMatrix(path string) (map[string][]float32, error) {
	f, err := gguf.Open(path)
	if err != nil {
		m, legacyErr := readLegacyIMatrix(path)
		if legacyErr != nil {
			return nil, fmt.Errorf("llama: imatrix %s: not GGUF (%v) nor legacy .dat (%w)", path, err, legacyErr)
		}
		return m, nil
	}
	defer f.Close()
	read := func(ti gguf.TensorInfo) ([]float32, error) {
		if ti.Type != gguf.TypeF32 {
			return nil, fmt.Errorf("tensor %s is %s, want f32", ti.Name, ti.Type)
		}
		r, err := f.TensorData(ti.Name)
		if err != nil {
			return nil, err
		}
		v := make([]float32, ti.Elements())
		return v, binary.Read(r, binary.LittleEndian, v)
	}
	out := map[string][]float32{}
	for _, ti := range f.Tensors {
		name, ok := strings.CutSuffix(ti.Name, ".in_sum2")
		if !ok {
			continue
		}
		ci, ok := f.Tensor(name + ".counts")
		if !ok {
			return nil, fmt.Errorf("llama: imatrix %s: %s has sums but no counts", path, name)
		}
		sums, err := read(ti)
		if err != nil {
			return nil, fmt.Errorf("llama: imatrix %s: %w", path, err)
		}
		counts, err := read(ci)
		if err != nil {
			return nil, fmt.Errorf("llama: imatrix %s: %w", path, err)
		}
		if len(counts) == 0 || len(sums)%len(counts) != 0 {
			return nil, fmt.Errorf("llama: imatrix %s: %s has %d sums for %d counts", path, name, len(sums), len(counts))
		}
		per := len(sums) / len(counts)
		for j, c := range counts {
			for i := range per {
				if c > 0 {
					sums[j*per+i] /= float32(math.Round(float64(c)))
				} else {
					sums[j*per+i] = 1
				}
			}
		}
		out[name] = sums
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("llama: imatrix %s has no entries", path)
	}
	return out, nil
}

// readLegacyIMatrix reads the .dat format: int32 entry count, then per entry the
// name (int32 length + bytes), int32 ncall, int32 nval and nval float32 sums of
// squares already divided by the tokens of each call.
func readLegacyIMatrix(path string) (map[string][]float32, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := st.Size()
	r := io.Reader(f)
	var n int32
	if err := binary.Read(r, binary.LittleEndian, &n); err != nil || n < 1 || int64(n) > size/16 {
		return nil, errors.New("no entries")
	}
	out := make(map[string][]float32, n)
	for i := range n {
		var l int32
		if err := binary.Read(r, binary.LittleEndian, &l); err != nil || l < 1 || int64(l) > size {
			return nil, fmt.Errorf("entry %d: bad name length", i)
		}
		name := make([]byte, l)
		if _, err := io.ReadFull(r, name); err != nil {
			return nil, fmt.Errorf("entry %d: %w", i, err)
		}
		var hdr [2]int32 // ncall, nval
		if err := binary.Read(r, binary.LittleEndian, &hdr); err != nil || hdr[1] < 1 || int64(hdr[1]) > size/4 {
			return nil, fmt.Errorf("entry %d: bad value count", i)
		}
		v := make([]float32, hdr[1])
		if err := binary.Read(r, binary.LittleEndian, v); err != nil {
			return nil, fmt.Errorf("entry %d: %w", i, err)
		}
		if hdr[0] > 0 {
			for j := range v {
				v[j] /= float32(hdr[0])
			}
		}
		out[string(name)] = v
	}
	return out, nil
}

// checkIMatrix rejects what would make llama.cpp's quantizer fail midway or misuse the
// data: non-finite values, and sizes that do not match the model's weights.
func checkIMatrix(model string, entries map[string][]float32) error {
	f, err := gguf.Open(model)
	if err != nil {
		return &LoadError{Path: model, Err: err}
	}
	defer f.Close()
	for name, v := range entries {
		for _, x := range v {
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				return invalidParam("imatrix entry %s has a non-finite value", name)
			}
		}
		ti, ok := f.Tensor(name)
		if !ok || len(ti.Shape) < 2 {
			continue // llama.cpp ignores entries of other tensors
		}
		want := ti.Shape[0]
		if len(ti.Shape) > 2 {
			want *= ti.Shape[2]
		}
		if int64(len(v)) != want && !strings.HasPrefix(name, "token_embd.") {
			return invalidParam("imatrix entry %s has %d values, the tensor needs %d", name, len(v), want)
		}
	}
	return nil
}

// cIMatrix is the C array of llama_model_imatrix_data Quantize passes to llama.cpp.
type cIMatrix struct {
	ptr   *C.struct_llama_model_imatrix_data
	alloc []unsafe.Pointer
}

func newCIMatrix(entries map[string][]float32) *cIMatrix {
	names := make([]string, 0, len(entries))
	for n := range entries {
		names = append(names, n)
	}
	sort.Strings(names)
	m := &cIMatrix{}
	arr := (*C.struct_llama_model_imatrix_data)(C.calloc(C.size_t(len(names)+1), C.sizeof_struct_llama_model_imatrix_data))
	m.ptr = arr
	m.alloc = append(m.alloc, unsafe.Pointer(arr))
	rows := unsafe.Slice(arr, len(names)+1)
	for i, n := range names {
		v := entries[n]
		cname := C.CString(n)
		data := C.malloc(C.size_t(max(1, len(v)) * 4))
		copy(unsafe.Slice((*float32)(data), len(v)), v)
		m.alloc = append(m.alloc, unsafe.Pointer(cname), data)
		rows[i].name, rows[i].data, rows[i].size = cname, (*C.float)(data), C.size_t(len(v))
	}
	return m // the last row stays zero: the terminator
}

func (m *cIMatrix) free() {
	for _, p := range m.alloc {
		C.free(p)
	}
	m.alloc = nil
}

// quantizeLine matches llama.cpp's per-tensor quantizer line: "[  12/ 291] blk.1.attn_q.weight - ...".
var quantizeLine = regexp.MustCompile(`^\[\s*(\d+)/\s*(\d+)\]\s+(\S+)`)

// watchQuantizeLog turns llama.cpp's per-tensor quantizer lines into progress calls.
func watchQuantizeLog(progress func(done, total int, tensor string)) (stop func()) {
	return watchLog(func(line string) {
		if m := quantizeLine.FindStringSubmatch(line); m != nil {
			done, _ := strconv.Atoi(m[1])
			total, _ := strconv.Atoi(m[2])
			progress(done, total, m[3])
		}
	})
}
