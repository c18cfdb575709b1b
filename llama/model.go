package llama

/*
#include "shim.h"
*/
import "C"

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"runtime/cgo"
	"slices"
	"sync"
	"time"
	"unsafe"

	"github.com/llamago/llamago/internal/modelcheck"
)

// SplitMode says how a model is spread over several GPUs.
type SplitMode int

const (
	SplitLayer  SplitMode = iota // whole layers (and their KV cache) per GPU; llama.cpp's default
	SplitNone                    // everything on ModelParams.MainGPU
	SplitRow                     // rows of each matrix across GPUs
	SplitTensor                  // tensor parallelism across GPUs
)

func (s SplitMode) String() string {
	switch s {
	case SplitLayer:
		return "layer"
	case SplitNone:
		return "none"
	case SplitRow:
		return "row"
	case SplitTensor:
		return "tensor"
	default:
		return fmt.Sprintf("SplitMode(%d)", int(s))
	}
}

func (s SplitMode) c() (C.enum_llama_split_mode, error) {
	switch s {
	case SplitLayer:
		return C.LLAMA_SPLIT_MODE_LAYER, nil
	case SplitNone:
		return C.LLAMA_SPLIT_MODE_NONE, nil
	case SplitRow:
		return C.LLAMA_SPLIT_MODE_ROW, nil
	case SplitTensor:
		return C.LLAMA_SPLIT_MODE_TENSOR, nil
	default:
		return 0, invalidParam("unknown split mode %d", int(s))
	}
}

// ModelParams configures LoadModel. A nil *ModelParams means llama.cpp's defaults
// (all layers on the GPU when there is one, mmap on).
type ModelParams struct {
	// GPULayers is how many layers to place on GPUs, as llama.cpp's n_gpu_layers:
	// negative means all of them, 0 means none (CPU only).
	GPULayers int
	// SplitMode, MainGPU and TensorSplit spread the model over several GPUs.
	// TensorSplit gives each device's proportion (at most MaxDevices entries).
	SplitMode   SplitMode
	MainGPU     int
	TensorSplit []float32
	// Devices restricts offloading to these devices (from Devices()); nil means all.
	Devices []Device
	// NoMmap reads the file into memory instead of memory-mapping it.
	NoMmap bool
	// Mlock keeps the model's memory resident (no swapping).
	Mlock bool
	// VocabOnly loads only the vocabulary: tokenization without weights.
	VocabOnly bool
	// CheckTensors validates tensor data while loading (slow).
	CheckTensors bool
	// Progress, when set, is called with values from 0 to 1 during loading, on the
	// goroutine that called LoadModel.
	Progress func(fraction float32)

	hostTensors []tensorOverride // tensors FitToMemory keeps in host memory
}

// Model is a loaded model. Its methods are safe for concurrent use by many goroutines;
// each goroutine decodes through its own Context.
type Model struct {
	mu       sync.RWMutex // write-held only to free; read-held around every use of ptr
	ptr      *C.struct_llama_model
	vocab    *C.struct_llama_vocab
	closed   bool // Close was called; ptr is freed once the last Context closes
	contexts int  // open Contexts, each holding the model alive
	cleanup  runtime.Cleanup

	path         string
	facts        modelFacts
	vocabOnly    bool
	loadDuration time.Duration
	info         ModelInfo
	fingerprint  uint64 // of saved state, see state.go
	vocabInfo    VocabInfo
	rpc          *rpcUse // the RPC workers holding layers (rpc.go); nil: none
	cpuLayers    bool    // the CPU computes layers: contexts get a computeThread
}

// loadProgress is the state the C progress callback reaches through a cgo.Handle.
type loadProgress struct {
	ctx      context.Context
	fn       func(float32)
	panicked any
}

func (l *loadProgress) report(fraction float32) (keepGoing bool) {
	if l.ctx.Err() != nil {
		return false
	}
	if l.fn != nil {
		defer func() {
			if r := recover(); r != nil {
				l.panicked = r
				keepGoing = false
			}
		}()
		l.fn(fraction)
	}
	return true
}

// LoadModel loads a GGUF model file. Cancelling ctx stops loading between tensors and
// returns an error matching both ErrAborted and ctx's cause. Failures are *LoadError.
func LoadModel(ctx context.Context, path string, params *ModelParams) (*Model, error) {
	initBackend()
	fail := func(err error) (*Model, error) { return nil, &LoadError{Path: path, Err: err} }
	facts, err := checkModelFile(path, params != nil && params.VocabOnly)
	if err != nil {
		return fail(err)
	}
	if params != nil && params.SplitMode == SplitTensor && Backend == "cuda" && !flashAttnHeadDims[facts.headDim] {
		return fail(invalidParam("SplitTensor needs flash attention, which llama.cpp's CUDA kernels lack for head size %d: use SplitLayer", facts.headDim))
	}
	if err := context.Cause(ctx); err != nil {
		return fail(aborted(err))
	}

	cp := C.llama_model_default_params()
	var pins []unsafe.Pointer // C memory that must outlive the load call
	defer func() {
		for _, p := range pins {
			C.free(p)
		}
	}()
	if params != nil {
		if err := applyModelParams(&cp, params, &pins); err != nil {
			return fail(err)
		}
	}
	rpc := rpcUseOf(&cp)
	progress := &loadProgress{ctx: ctx}
	if params != nil {
		progress.fn = params.Progress
	}
	handle := cgo.NewHandle(progress)
	defer handle.Delete()
	C.lgo_model_params_set_progress(&cp, C.uintptr_t(handle))

	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	errs := captureErrors()
	defer errs.done()
	start := time.Now()
	ptr := C.llama_model_load_from_file(cpath, cp)
	if err := rpc.err(); err != nil { // a worker failed while llama.cpp loaded (rpc.go)
		if ptr != nil {
			C.llama_model_free(ptr)
		}
		return fail(err)
	}
	if ptr == nil {
		switch {
		case progress.panicked != nil:
			return fail(fmt.Errorf("progress callback panicked: %v", progress.panicked))
		case context.Cause(ctx) != nil:
			return fail(aborted(context.Cause(ctx)))
		default:
			return fail(errs.err("llama.cpp could not load the model"))
		}
	}
	m := &Model{ptr: ptr, vocab: C.llama_model_get_vocab(ptr), path: path, facts: facts,
		vocabOnly: params != nil && params.VocabOnly, loadDuration: time.Since(start), rpc: rpc}
	m.info = readModelInfo(m)
	m.cpuLayers = computesOnCPU(&cp, m.info.NLayer, params != nil && len(params.hostTensors) > 0)
	m.fingerprint = modelFingerprint(m.info)
	m.vocabInfo = readVocabInfo(m.vocab)
	m.cleanup = runtime.AddCleanup(m, func(p *C.struct_llama_model) { C.llama_model_free(p) }, ptr)
	return m, nil
}

// computesOnCPU reports whether a model loaded with cp computes layers on the CPU: no
// GPU (or RPC) device takes them, fewer than all layers and the output go to one
// (n_gpu_layers <= n_layer), or tensors are kept on the host.
func computesOnCPU(cp *C.struct_llama_model_params, nLayer int, hostTensors bool) bool {
	if hostTensors || (cp.n_gpu_layers >= 0 && int(cp.n_gpu_layers) <= nLayer) {
		return true
	}
	offloads := func(d C.ggml_backend_dev_t) bool {
		t := C.ggml_backend_dev_type(d)
		return t == C.GGML_BACKEND_DEVICE_TYPE_GPU || t == C.GGML_BACKEND_DEVICE_TYPE_IGPU
	}
	if cp.devices != nil {
		return !slices.ContainsFunc(paramDevices(cp), offloads)
	}
	for i := range C.ggml_backend_dev_count() {
		if offloads(C.ggml_backend_dev_get(i)) {
			return false
		}
	}
	return true
}

// paramDevices is cp.devices, the NULL-terminated list of devices to load onto, as a slice
// (nil when cp.devices is nil: every device).
func paramDevices(cp *C.struct_llama_model_params) []C.ggml_backend_dev_t {
	if cp.devices == nil {
		return nil
	}
	n := 0
	for unsafe.Slice(cp.devices, n+1)[n] != nil {
		n++
	}
	return unsafe.Slice(cp.devices, n)
}

// modelFacts are what the pre-check learned of a model file.
type modelFacts struct {
	headDim          int
	learnedPositions bool
	pooling          PoolingType
}

// flashAttnHeadDims are the head sizes of llama.cpp v0.4.0's CUDA flash-attention kernels.
// SplitTensor needs flash attention; without a kernel, llama.cpp aborts in the first decode.
var flashAttnHeadDims = map[int]bool{40: true, 64: true, 72: true, 80: true, 96: true, 112: true, 128: true,
	192: true, 256: true, 320: true, 512: true, 576: true}

// checkModelFile turns bad paths and files into clear errors before llama.cpp sees them
// (package internal/modelcheck).
func checkModelFile(path string, vocabOnly bool) (modelFacts, error) {
	f, err := modelcheck.File(path, vocabOnly)
	return modelFacts{headDim: f.HeadDim, learnedPositions: f.LearnedPositions, pooling: PoolingType(f.Pooling + 1)}, err
}

func applyModelParams(cp *C.struct_llama_model_params, p *ModelParams, pins *[]unsafe.Pointer) error {
	cp.n_gpu_layers = C.int32_t(max(min(p.GPULayers, math.MaxInt32), -1))
	mode, err := p.SplitMode.c()
	if err != nil {
		return err
	}
	cp.split_mode = mode
	if p.MainGPU < 0 || p.MainGPU >= max(MaxDevices(), 1) {
		return invalidParam("MainGPU %d out of range [0, %d)", p.MainGPU, MaxDevices())
	}
	cp.main_gpu = C.int32_t(p.MainGPU)
	switch {
	case p.NoMmap && p.Mlock:
		cp.load_mode = C.LLAMA_LOAD_MODE_MLOCK
	case p.NoMmap:
		cp.load_mode = C.LLAMA_LOAD_MODE_NONE
	case p.Mlock:
		cp.load_mode = C.LLAMA_LOAD_MODE_MMAP_MLOCK
	}
	cp.vocab_only = C.bool(p.VocabOnly)
	cp.check_tensors = C.bool(p.CheckTensors)

	if len(p.TensorSplit) > 0 {
		n := MaxDevices()
		if len(p.TensorSplit) > n {
			return invalidParam("TensorSplit has %d entries, this build supports at most %d devices", len(p.TensorSplit), n)
		}
		split := (*[1 << 20]C.float)(C.calloc(C.size_t(n), C.sizeof_float))[:n:n]
		*pins = append(*pins, unsafe.Pointer(&split[0]))
		for i, v := range p.TensorSplit {
			if v < 0 || math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return invalidParam("TensorSplit[%d] = %v: proportions must be finite and >= 0", i, v)
			}
			split[i] = C.float(v)
		}
		cp.tensor_split = &split[0]
	}
	if len(p.hostTensors) > 0 {
		n := len(p.hostTensors)
		over := (*[1 << 20]C.struct_llama_model_tensor_buft_override)(C.calloc(C.size_t(n+1), C.sizeof_struct_llama_model_tensor_buft_override))[: n+1 : n+1]
		*pins = append(*pins, unsafe.Pointer(&over[0]))
		for i, o := range p.hostTensors {
			over[i].pattern, over[i].buft = o.pattern, o.buft
		}
		cp.tensor_buft_overrides = &over[0]
	}
	if len(p.Devices) > 0 {
		n := len(p.Devices)
		devs := (*[1 << 20]C.ggml_backend_dev_t)(C.calloc(C.size_t(n+1), C.size_t(unsafe.Sizeof(C.ggml_backend_dev_t(nil)))))[: n+1 : n+1]
		*pins = append(*pins, unsafe.Pointer(&devs[0]))
		for i, d := range p.Devices {
			h, err := modelDevice(d) // deviceHandle, or a remote device (rpc.go)
			if err != nil {
				return err
			}
			devs[i] = h
		}
		cp.devices = &devs[0]
	}
	return nil
}

// Close releases the model. Contexts still open keep working; the memory is freed when
// the last of them closes. Calling Close again is a no-op.
func (m *Model) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	m.freeIfUnusedLocked()
	return nil
}

func (m *Model) freeIfUnusedLocked() {
	if m.closed && m.contexts == 0 && m.ptr != nil {
		m.cleanup.Stop()
		C.llama_model_free(m.ptr)
		m.ptr, m.vocab = nil, nil
	}
}

// retain registers a new Context on the model.
func (m *Model) retain() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	m.contexts++
	return nil
}

// release is called when a Context closes (or is garbage collected).
func (m *Model) release() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.contexts--
	m.freeIfUnusedLocked()
}

// rlock read-locks the model for a call into C, failing after Close; the caller
// must m.mu.RUnlock() when it returns nil.
func (m *Model) rlock() error {
	m.mu.RLock()
	if m.closed {
		m.mu.RUnlock()
		return ErrClosed
	}
	return nil
}

// LoadDuration is how long LoadModel took.
func (m *Model) LoadDuration() time.Duration { return m.loadDuration }

// Path is the file the model was loaded from.
func (m *Model) Path() string { return m.path }
