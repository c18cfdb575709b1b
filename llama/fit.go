package llama

/*
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"context"
	"fmt"
	"sync"
	"unsafe"
)

// FitParams tunes FitToMemory. The zero value (or nil) is llama.cpp's default.
type FitParams struct {
	// MarginMiB is the memory to leave free on each device (the host's, without GPUs);
	// 0: 1024 MiB, as llama.cpp.
	MarginMiB int
	// MinNCtx is the smallest context the fit may choose when ContextParams.NCtx is 0;
	// 0: 4096, as llama.cpp.
	MinNCtx int
}

// FitResult is a configuration fitted to the free memory.
type FitResult struct {
	// Model and Context are the parameters to load and run with: GPULayers and
	// TensorSplit (several GPUs) chosen, and NCtx when it was 0. Where whole layers do
	// not fit, Model also keeps some of a layer's tensors in host memory; LoadModel
	// applies that (HostTensors counts the tensor patterns).
	Model       ModelParams
	Context     ContextParams
	HostTensors int
	// Fitted is false when even the smallest configuration is projected not to fit:
	// Model and Context are then the last one tried, and loading may fail.
	Fitted bool
}

// tensorOverride keeps tensors matching a pattern in a buffer type (a fit's decision).
type tensorOverride struct {
	pattern *C.char // static storage of llama.cpp's common/fit
	buft    C.ggml_backend_buffer_type_t
}

// fitMu serialises fits: llama.cpp's fitting swaps the process-wide log callback.
var fitMu sync.Mutex

// FitToMemory chooses how much of the model at path goes on the GPUs, and the context
// size when cp.NCtx is 0, so that model, KV cache and compute buffers fit the memory the
// devices have free now, with llama.cpp's own fitting (common/fit, behind llama-cli's
// default "-ngl auto"): it measures allocations without loading weights. It changes only
// what mp leaves at llama.cpp's default (GPULayers -1 = all, no TensorSplit; nil mp is all
// defaults) and the NCtx of 0; set them to keep them. The model file gets the same checks
// as LoadModel.
func FitToMemory(ctx context.Context, path string, mp *ModelParams, cp *ContextParams, fp *FitParams) (*FitResult, error) {
	initBackend()
	fail := func(err error) (*FitResult, error) { return nil, &LoadError{Path: path, Err: err} }
	facts, err := checkModelFile(path, false)
	if err != nil {
		return fail(err)
	}
	var m ModelParams
	if mp != nil {
		m = *mp
	}
	var c ContextParams
	if cp != nil {
		c = *cp
	}
	var f FitParams
	if fp != nil {
		f = *fp
	}
	if f.MarginMiB < 0 || f.MinNCtx < 0 || f.MinNCtx > 1<<24 {
		return nil, invalidParam("FitParams: MarginMiB %d and MinNCtx %d must be >= 0 (MinNCtx at most 2^24)", f.MarginMiB, f.MinNCtx)
	}
	if f.MarginMiB == 0 {
		f.MarginMiB = 1024
	}
	if f.MinNCtx == 0 {
		f.MinNCtx = 4096
	}
	if m.SplitMode == SplitTensor {
		return nil, invalidParam("fitting does not support SplitTensor")
	}
	if mp == nil {
		m.GPULayers = -1 // llama.cpp's default, as LoadModel(nil): the fit may choose
	}
	if m.GPULayers < -1 {
		m.GPULayers = -1
	}
	cmp := C.llama_model_default_params()
	var pins []unsafe.Pointer
	defer func() {
		for _, p := range pins {
			C.free(p)
		}
	}()
	if err := applyModelParams(&cmp, &m, &pins); err != nil {
		return nil, err
	}
	ccp, err := cContextParams(&c, 0, facts.pooling)
	if err != nil {
		return nil, err
	}
	if err := context.Cause(ctx); err != nil {
		return fail(aborted(err))
	}

	nDev := max(MaxDevices(), 1)
	split := (*[1 << 20]C.float)(C.calloc(C.size_t(nDev), C.sizeof_float))[:nDev:nDev]
	nOver := int(C.llama_max_tensor_buft_overrides())
	over := (*[1 << 20]C.struct_llama_model_tensor_buft_override)(C.calloc(C.size_t(nOver+1), C.sizeof_struct_llama_model_tensor_buft_override))[: nOver+1 : nOver+1]
	margins := (*[1 << 20]C.size_t)(C.calloc(C.size_t(nDev), C.sizeof_size_t))[:nDev:nDev]
	pins = append(pins, unsafe.Pointer(&split[0]), unsafe.Pointer(&over[0]), unsafe.Pointer(&margins[0]))
	for i := range margins {
		margins[i] = C.size_t(f.MarginMiB) << 20
	}
	if cmp.tensor_split != nil { // the caller's split: the fit keeps it
		copy(split, unsafe.Slice(cmp.tensor_split, nDev))
	}

	cpath := C.CString(path)
	pins = append(pins, unsafe.Pointer(cpath))
	fitMu.Lock()
	var cerr *C.char
	errs := captureErrors()
	status := C.lgo_fit(cpath, &cmp, &ccp, &split[0], &over[0], &margins[0], C.uint32_t(f.MinNCtx), &cerr)
	errs.done()
	fitMu.Unlock()
	switch status {
	case 0, 1:
	case -1:
		return fail(cError(ErrInvalidParams, cerr))
	default:
		return fail(errs.err("llama: fitting failed"))
	}
	if err := context.Cause(ctx); err != nil {
		return fail(aborted(err))
	}
	res := &FitResult{Fitted: status == 0}
	m.GPULayers = int(cmp.n_gpu_layers)
	if cmp.tensor_split == &split[0] && nDev > 1 {
		m.TensorSplit = make([]float32, 0, nDev)
		for _, v := range split {
			m.TensorSplit = append(m.TensorSplit, float32(v))
		}
	}
	m.hostTensors = nil
	if cmp.tensor_buft_overrides == &over[0] {
		for _, o := range over {
			if o.pattern == nil {
				break
			}
			m.hostTensors = append(m.hostTensors, tensorOverride{o.pattern, o.buft})
		}
	}
	res.HostTensors = len(m.hostTensors)
	c.NCtx = int(ccp.n_ctx)
	res.Model, res.Context = m, c
	return res, nil
}

// String describes the fit as one line, e.g. "47 layers on the GPUs, context 8192".
func (r *FitResult) String() string {
	layers := fmt.Sprintf("%d layers on the GPUs", r.Model.GPULayers)
	switch {
	case !SupportsGPUOffload():
		layers = "no GPU: the model in host memory"
	case r.Model.GPULayers < 0:
		layers = "all layers on the GPUs"
	}
	s := fmt.Sprintf("%s, context %d", layers, r.Context.NCtx)
	if r.HostTensors > 0 {
		s += fmt.Sprintf(", %d tensor groups kept in host memory", r.HostTensors)
	}
	if len(r.Model.TensorSplit) > 0 {
		s += fmt.Sprintf(", split %v", r.Model.TensorSplit)
	}
	if !r.Fitted {
		s += " (projected not to fit)"
	}
	return s
}
