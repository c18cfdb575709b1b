package llama

/*
#include "shim.h"
*/
import "C"

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"
)

// FlashAttention selects whether attention uses the fused flash-attention kernels.
type FlashAttention int

const (
	FlashAttentionAuto FlashAttention = iota // llama.cpp decides per device (default)
	FlashAttentionOn
	FlashAttentionOff
)

// CacheType is the element type of the K or V cache.
type CacheType int

const (
	CacheF16 CacheType = iota // default
	CacheF32
	CacheBF16
	CacheQ8_0
	CacheQ4_0
	CacheQ4_1
	CacheIQ4_NL
	CacheQ5_0
	CacheQ5_1
)

var cacheTypes = [...]struct {
	name string
	ggml C.enum_ggml_type
}{
	CacheF16:    {"f16", C.GGML_TYPE_F16},
	CacheF32:    {"f32", C.GGML_TYPE_F32},
	CacheBF16:   {"bf16", C.GGML_TYPE_BF16},
	CacheQ8_0:   {"q8_0", C.GGML_TYPE_Q8_0},
	CacheQ4_0:   {"q4_0", C.GGML_TYPE_Q4_0},
	CacheQ4_1:   {"q4_1", C.GGML_TYPE_Q4_1},
	CacheIQ4_NL: {"iq4_nl", C.GGML_TYPE_IQ4_NL},
	CacheQ5_0:   {"q5_0", C.GGML_TYPE_Q5_0},
	CacheQ5_1:   {"q5_1", C.GGML_TYPE_Q5_1},
}

func (t CacheType) String() string {
	if t >= 0 && int(t) < len(cacheTypes) {
		return cacheTypes[t].name
	}
	return fmt.Sprintf("CacheType(%d)", int(t))
}

// ParseCacheType parses a cache type name as llama.cpp's tools write it ("f16", "q8_0", ...).
func ParseCacheType(s string) (CacheType, error) {
	for i, t := range cacheTypes {
		if t.name == s {
			return CacheType(i), nil
		}
	}
	return 0, invalidParam("unknown cache type %q", s)
}

// PoolingType says how embeddings of a sequence's tokens are combined.
type PoolingType int

const (
	PoolingDefault PoolingType = iota // as the model declares
	PoolingNone                       // one embedding per token
	PoolingMean
	PoolingCLS
	PoolingLast
	PoolingRank // classification head of reranking models
)

// AttentionType overrides the model's attention for embeddings.
type AttentionType int

const (
	AttentionDefault AttentionType = iota
	AttentionCausal
	AttentionNonCausal
)

// DefaultNCtx is the context size used when ContextParams.NCtx is 0 (or params are nil),
// capped by the model's training context. Larger contexts cost memory up front.
const DefaultNCtx = 4096

// ContextParams configures NewContext. Zero values pick the defaults noted per field,
// which are llama.cpp's except where said.
type ContextParams struct {
	NCtx    int // context size in tokens; 0 = min(DefaultNCtx, the model's training context)
	NBatch  int // most tokens per Decode call; 0 = 2048 (llama.cpp caps it at NCtx)
	NUBatch int // most tokens per compute graph; 0 = 512
	NSeqMax int // number of sequences (parallel slots); 0 = 1
	// Threads for generation and ThreadsBatch for prompt processing;
	// 0 = PhysicalCores() and Threads respectively (llama.cpp defaults to 4).
	Threads      int
	ThreadsBatch int
	// FlashAttention, and the K and V cache element types.
	FlashAttention FlashAttention
	TypeK, TypeV   CacheType
	// Embeddings makes decodes produce embeddings (read with Embeddings/SequenceEmbeddings).
	Embeddings bool
	Pooling    PoolingType
	Attention  AttentionType
	// RoPE overrides; 0 = from the model.
	RopeFreqBase, RopeFreqScale float32
	// NoOffloadKQV keeps the KV cache and attention on the CPU when layers are on a GPU.
	NoOffloadKQV bool
	// NoOpOffload stops offloading host tensor operations to the device.
	NoOpOffload bool
	// SWAFull allocates a full-size cache for sliding-window attention layers
	// (needed to reuse cached prefixes of SWA models across turns).
	SWAFull bool
	// KVUnified uses one KV buffer for all sequences (good when they share a long prefix).
	KVUnified bool
	// NoPerf turns off the timings read by Perf.
	NoPerf bool
}

// Context holds the KV cache and compute buffers for decoding with a Model. It serves
// one goroutine at a time: a call made while another is in progress returns
// ErrContextBusy instead of corrupting state. Close it when done; it keeps its Model's
// memory alive until then.
type Context struct {
	mu      sync.Mutex // held by the call in progress
	lastMu  sync.Mutex // guards lastGen
	lastGen GenerateResult
	closing atomic.Bool
	ptr     *C.struct_llama_context
	abort   *C.lgo_abort // C memory read by the abort callback
	model   *Model
	cleanup runtime.Cleanup

	nCtx, nBatch, nUBatch, nSeqMax int
	nVocab, nEmbdOut               int
	embeddings                     bool
	noMemory                       bool // encoder-only models: a batch is one micro-batch
	maxPos                         Pos  // > 0: positions must stay below it (learned position embeddings)
	pooling                        PoolingType
	threads, threadsBatch          int

	// outputs maps each batch index of the last decode to its output row, or -1.
	outputs  []int32
	nOutputs int
	scratch  *Batch // for DecodeTokens
	epoch    int32  // of the last armed call, see lgo_abort

	attached *attachedSamplers // see SetBackendSampler
	lora     *appliedLoRA      // see SetLoRA
	thread   *computeThread    // nil: computes on the caller's thread (see computeThread)
	// autoDevice: the output layer is computed on a GPU, so generations sample there
	// by themselves where they can (placeSampling).
	autoDevice bool
	job        computeJob
	rowOut     []*RowSample // SampleRows' scratch: the requests, then those sampled on the CPU
	pickIdx    []C.int32_t  // SampleRows' scratch: rows and the device's picks
	picked     []C.llama_token
}

// contextResources is what the cleanup of an unclosed Context frees; it holds the
// Model, so the model's own cleanup cannot run first.
type contextResources struct {
	ptr      *C.struct_llama_context
	abort    *C.lgo_abort
	model    *Model
	attached *attachedSamplers
	lora     *appliedLoRA
	thread   *computeThread
}

func (r contextResources) free() {
	r.thread.stop()
	C.llama_free(r.ptr)
	C.free(unsafe.Pointer(r.abort))
	r.attached.releaseAll()
	r.lora.releaseAll() // after the context: it held the adapters
	r.model.release()
}

// NewContext creates a decoding context. A nil params means the defaults.
func (m *Model) NewContext(params *ContextParams) (*Context, error) {
	var p ContextParams
	if params != nil {
		p = *params
	}
	cp, err := m.contextParams(&p)
	if err != nil {
		return nil, err
	}
	if err := m.retain(); err != nil {
		return nil, err
	}
	if m.vocabOnly {
		m.release()
		return nil, invalidParam("the model was loaded with VocabOnly: it has no weights to decode with")
	}
	abort := (*C.lgo_abort)(C.calloc(1, C.sizeof_lgo_abort))
	C.lgo_context_params_set_abort(&cp, abort)
	errs := captureErrors()
	defer errs.done()
	ptr := C.llama_init_from_model(m.ptr, cp)
	if ptr == nil {
		C.free(unsafe.Pointer(abort))
		m.release()
		return nil, errs.err("llama: cannot create context")
	}
	c := &Context{
		ptr:          ptr,
		abort:        abort,
		model:        m,
		nCtx:         int(C.llama_n_ctx(ptr)),
		nBatch:       int(C.llama_n_batch(ptr)),
		nUBatch:      int(C.llama_n_ubatch(ptr)),
		nSeqMax:      int(C.llama_n_seq_max(ptr)),
		nVocab:       m.vocabInfo.NTokens,
		nEmbdOut:     int(C.llama_model_n_embd_out(m.ptr)),
		embeddings:   p.Embeddings,
		noMemory:     C.llama_get_memory(ptr) == nil,
		pooling:      poolingFromC(C.llama_pooling_type(ptr)),
		threads:      int(cp.n_threads),
		threadsBatch: int(cp.n_threads_batch),
	}
	if m.facts.learnedPositions {
		c.maxPos = Pos(m.info.NCtxTrain)
	}
	c.attached, c.lora = &attachedSamplers{}, &appliedLoRA{}
	if m.cpuLayers {
		t, err := startComputeThread()
		if err != nil {
			C.llama_free(ptr)
			C.free(unsafe.Pointer(abort))
			m.release()
			return nil, err
		}
		c.thread = t
	}
	c.autoDevice = !m.cpuLayers
	c.cleanup = runtime.AddCleanup(c, contextResources.free, c.resources())
	return c, nil
}

func (m *Model) contextParams(p *ContextParams) (C.struct_llama_context_params, error) {
	nCtx := DefaultNCtx
	if t := m.info.NCtxTrain; t > 0 && t < nCtx {
		nCtx = t
	}
	return cContextParams(p, nCtx, m.facts.pooling)
}

// cContextParams checks p and converts it; NCtx 0 becomes nCtxDefault (0: left to
// llama.cpp's fitting, see FitToMemory), PoolingDefault is modelPooling for the checks.
func cContextParams(p *ContextParams, nCtxDefault int, modelPooling PoolingType) (C.struct_llama_context_params, error) {
	cp := C.llama_context_default_params()
	check := func(name string, v, lo, hi int) error {
		if v < lo || v > hi {
			return invalidParam("%s = %d out of range [%d, %d]", name, v, lo, hi)
		}
		return nil
	}
	const maxThreads = 512 // GGML_MAX_N_THREADS
	for _, err := range []error{
		check("NCtx", p.NCtx, 0, 1<<24),
		check("NBatch", p.NBatch, 0, 1<<24),
		check("NUBatch", p.NUBatch, 0, 1<<24),
		check("NSeqMax", p.NSeqMax, 0, maxParallelSequences()),
		check("Threads", p.Threads, 0, maxThreads),
		check("ThreadsBatch", p.ThreadsBatch, 0, maxThreads),
	} {
		if err != nil {
			return cp, err
		}
	}
	nCtx := p.NCtx
	if nCtx == 0 {
		nCtx = nCtxDefault
	}
	cp.n_ctx = C.uint32_t(nCtx)
	if p.NBatch > 0 {
		cp.n_batch = C.uint32_t(p.NBatch)
	}
	if p.NUBatch > 0 {
		cp.n_ubatch = C.uint32_t(p.NUBatch)
	}
	if p.NSeqMax > 0 {
		cp.n_seq_max = C.uint32_t(p.NSeqMax)
	}
	threads := p.Threads
	if threads == 0 {
		threads = PhysicalCores()
	}
	threadsBatch := p.ThreadsBatch
	if threadsBatch == 0 {
		threadsBatch = threads
	}
	cp.n_threads, cp.n_threads_batch = C.int32_t(threads), C.int32_t(threadsBatch)

	switch p.FlashAttention {
	case FlashAttentionAuto:
		cp.flash_attn_type = C.LLAMA_FLASH_ATTN_TYPE_AUTO
	case FlashAttentionOn:
		cp.flash_attn_type = C.LLAMA_FLASH_ATTN_TYPE_ENABLED
	case FlashAttentionOff:
		cp.flash_attn_type = C.LLAMA_FLASH_ATTN_TYPE_DISABLED
	default:
		return cp, invalidParam("unknown FlashAttention %d", p.FlashAttention)
	}
	for _, kv := range []struct {
		name string
		t    CacheType
		dst  *C.enum_ggml_type
	}{{"TypeK", p.TypeK, &cp.type_k}, {"TypeV", p.TypeV, &cp.type_v}} {
		if kv.t < 0 || int(kv.t) >= len(cacheTypes) {
			return cp, invalidParam("unknown %s %d", kv.name, kv.t)
		}
		*kv.dst = cacheTypes[kv.t].ggml
	}
	if p.Pooling < PoolingDefault || p.Pooling > PoolingRank {
		return cp, invalidParam("unknown Pooling %d", p.Pooling)
	}
	cp.pooling_type = C.enum_llama_pooling_type(int(p.Pooling) - 1) // PoolingDefault -> UNSPECIFIED (-1)
	if p.Attention < AttentionDefault || p.Attention > AttentionNonCausal {
		return cp, invalidParam("unknown Attention %d", p.Attention)
	}
	cp.attention_type = C.enum_llama_attention_type(int(p.Attention) - 1)
	if p.RopeFreqBase < 0 || p.RopeFreqScale < 0 {
		return cp, invalidParam("RoPE overrides must be >= 0")
	}
	cp.rope_freq_base, cp.rope_freq_scale = C.float(p.RopeFreqBase), C.float(p.RopeFreqScale)
	cp.embeddings = C.bool(p.Embeddings)
	cp.offload_kqv = C.bool(!p.NoOffloadKQV)
	cp.op_offload = C.bool(!p.NoOpOffload)
	cp.swa_full = C.bool(p.SWAFull)
	cp.kv_unified = C.bool(p.KVUnified)
	cp.no_perf = C.bool(p.NoPerf)
	pooling := p.Pooling
	if pooling == PoolingDefault {
		pooling = modelPooling
	}
	if p.Embeddings && pooling == PoolingMean && cp.n_seq_max > 1 {
		// llama.cpp's mean-pooling graph is reserved with the micro-batch split evenly
		// across the sequences and aborts when it cannot be.
		nub := min(cp.n_ubatch, cp.n_batch, cp.n_ctx)
		if nub%cp.n_seq_max != 0 {
			return cp, invalidParam("with mean pooling, NUBatch (%d) must be a multiple of NSeqMax (%d)", nub, cp.n_seq_max)
		}
	}
	return cp, nil
}

func poolingFromC(t C.enum_llama_pooling_type) PoolingType {
	return PoolingType(int(t) + 1)
}

func (c *Context) resources() contextResources {
	return contextResources{c.ptr, c.abort, c.model, c.attached, c.lora, c.thread}
}

// enter claims the context for one call; the caller must c.mu.Unlock() when it returns nil.
func (c *Context) enter() error {
	if !c.mu.TryLock() {
		if c.closing.Load() {
			return ErrClosed
		}
		return ErrContextBusy
	}
	if c.ptr == nil {
		c.mu.Unlock()
		return ErrClosed
	}
	return nil
}

// Close frees the context. A decode in progress on another goroutine is aborted and
// Close waits for it to return. Calling Close again is a no-op.
func (c *Context) Close() error {
	if !c.closing.Swap(true) && c.abort != nil {
		atomic.StoreInt32((*int32)(unsafe.Pointer(&c.abort.aborted)), -1)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ptr == nil {
		return nil
	}
	c.cleanup.Stop()
	if c.scratch != nil {
		c.scratch.Close()
	}
	c.resources().free()
	c.ptr, c.outputs = nil, nil
	return nil
}

// BindThread makes the calling OS thread the one c computes on from now on, instead of
// a thread of its own (package documentation, "Threads"), for a loop that owns c and
// stays locked to its OS thread (runtime.LockOSThread) for c's whole life. Such a
// goroutine should end without unlocking, on a thread other than the process's main
// thread, so that the thread and its CPU workers end with it (see computeThread). Calls
// from other threads still work, slower once their CPU workers outnumber the cores.
//
// Deprecated: it saves a hand-over per decode but waits for each in a cgo call, where
// Go's monitor thread preempts the CPU workers: the context's own thread measured as
// fast or faster (docs/performance.md, 2026-12-07). It stays for existing callers.
func (c *Context) BindThread() error {
	if err := c.enter(); err != nil {
		return err
	}
	defer c.mu.Unlock()
	c.thread.stop()
	c.thread = nil
	return nil
}

// Model is the model this context decodes with.
func (c *Context) Model() *Model { return c.model }

// NCtx is the context size in tokens (llama.cpp rounds the request up to a multiple of 256).
func (c *Context) NCtx() int { return c.nCtx }

// NBatch is the most tokens one Decode accepts (llama.cpp caps the request at NCtx).
func (c *Context) NBatch() int { return c.nBatch }

// NUBatch is the most tokens per compute graph.
func (c *Context) NUBatch() int { return c.nUBatch }

// NSeqMax is the number of sequences.
func (c *Context) NSeqMax() int { return c.nSeqMax }

// Threads returns the thread counts for generation and for batches (prompts).
func (c *Context) Threads() (threads, threadsBatch int) { return c.threads, c.threadsBatch }

// SetThreads changes the thread counts for generation and for batches.
func (c *Context) SetThreads(threads, threadsBatch int) error {
	if threads < 1 || threads > 512 || threadsBatch < 1 || threadsBatch > 512 {
		return invalidParam("threads %d/%d out of range [1, 512]", threads, threadsBatch)
	}
	if err := c.enter(); err != nil {
		return err
	}
	defer c.mu.Unlock()
	C.llama_set_n_threads(c.ptr, C.int32_t(threads), C.int32_t(threadsBatch))
	c.threads, c.threadsBatch = threads, threadsBatch
	return nil
}
