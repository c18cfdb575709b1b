package llama

/*
#include "shim.h"
*/
import "C"

import (
	"fmt"
	"runtime"
	"slices"
	"sync"
	"unsafe"

	"github.com/llamago/llamago/internal/modelcheck"
)

// LoRA is a LoRA adapter (a GGUF file made by llama.cpp's convert_lora_to_gguf.py) loaded
// for one model. Apply it to contexts of that model with Context.SetLoRA, each with its own
// scale. Close it when done: a context that still applies it keeps it alive until the
// context closes or applies other adapters; the adapter keeps its model alive likewise.
type LoRA struct {
	mu     sync.Mutex
	ptr    *C.struct_llama_adapter_lora
	model  *Model
	users  int // contexts that apply it
	closed bool
	meta   map[string]string

	cleanup runtime.Cleanup
}

// LoRAScale is an adapter and the scale a context applies it with (1: as trained; 0: not
// at all; the adapter's alpha/rank is applied on top, as llama.cpp does).
type LoRAScale struct {
	Adapter *LoRA
	Scale   float32
}

// LoadLoRA loads a LoRA adapter for m. The file gets the same pure-Go GGUF checks as a
// model file; llama.cpp then checks that it is an adapter of m's architecture whose
// tensors match m's.
func (m *Model) LoadLoRA(path string) (*LoRA, error) {
	if err := modelcheck.Adapter(path); err != nil {
		return nil, &LoadError{Path: path, Err: err}
	}
	cpath, err := cPath(path)
	if err != nil {
		return nil, err
	}
	defer C.free(unsafe.Pointer(cpath))
	if err := m.retain(); err != nil {
		return nil, err
	}
	errs := captureErrors()
	defer errs.done()
	ptr := C.llama_adapter_lora_init(m.ptr, cpath)
	if ptr == nil {
		m.release()
		return nil, &LoadError{Path: path, Err: errs.err("llama.cpp could not load the LoRA adapter")}
	}
	a := &LoRA{ptr: ptr, model: m, meta: loraMetadata(ptr)}
	a.cleanup = runtime.AddCleanup(a, freeLoRA, loraResources{ptr, m})
	return a, nil
}

type loraResources struct {
	ptr   *C.struct_llama_adapter_lora
	model *Model
}

func freeLoRA(r loraResources) {
	C.llama_adapter_lora_free(r.ptr)
	r.model.release()
}

func loraMetadata(ptr *C.struct_llama_adapter_lora) map[string]string {
	meta := map[string]string{}
	buf := make([]byte, 4096)
	str := func(n C.int32_t) string {
		if n < 0 {
			return ""
		}
		return C.GoString((*C.char)(unsafe.Pointer(&buf[0])))
	}
	for i := range C.llama_adapter_meta_count(ptr) {
		key := str(C.llama_adapter_meta_key_by_index(ptr, i, (*C.char)(unsafe.Pointer(&buf[0])), C.size_t(len(buf))))
		meta[key] = str(C.llama_adapter_meta_val_str_by_index(ptr, i, (*C.char)(unsafe.Pointer(&buf[0])), C.size_t(len(buf))))
	}
	return meta
}

// Metadata is the adapter file's GGUF metadata (scalar values as llama.cpp renders them),
// e.g. "adapter.lora.alpha".
func (a *LoRA) Metadata() map[string]string { return a.meta }

// Model is the model the adapter was loaded for.
func (a *LoRA) Model() *Model { return a.model }

// Close releases the adapter; it is freed once no context applies it. Calling Close again
// is a no-op; SetLoRA with a closed adapter returns ErrClosed.
func (a *LoRA) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.closed = true
	a.freeIfUnusedLocked()
	return nil
}

func (a *LoRA) freeIfUnusedLocked() {
	if a.closed && a.users == 0 && a.ptr != nil {
		a.cleanup.Stop()
		freeLoRA(loraResources{a.ptr, a.model})
		a.ptr = nil
	}
}

// use registers a context that applies the adapter.
func (a *LoRA) use() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return fmt.Errorf("LoRA adapter: %w", ErrClosed)
	}
	a.users++
	return nil
}

func (a *LoRA) unuse() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.users--
	a.freeIfUnusedLocked()
}

// appliedLoRA is what a context applies, shared with its cleanup.
type appliedLoRA struct{ list []LoRAScale }

func (l *appliedLoRA) releaseAll() {
	for _, s := range l.list {
		s.Adapter.unuse()
	}
	l.list = nil
}

// SetLoRA makes the context apply exactly these adapters with these scales from its next
// decode on (none: no adapter). Adapters must be open, loaded for the context's model, and
// listed once; scales must be finite. The KV cache is not recomputed: clear it (or the
// sequences) when text decoded before should be seen through the new adapters too.
func (c *Context) SetLoRA(adapters ...LoRAScale) error {
	ptrs := make([]*C.struct_llama_adapter_lora, len(adapters))
	scales := make([]C.float, len(adapters))
	for i, s := range adapters {
		switch {
		case s.Adapter == nil:
			return invalidParam("LoRA adapter %d is nil", i)
		case s.Adapter.model != c.model:
			return invalidParam("LoRA adapter %d was loaded for another model", i)
		case slices.ContainsFunc(adapters[:i], func(o LoRAScale) bool { return o.Adapter == s.Adapter }):
			return invalidParam("LoRA adapter %d is listed twice", i)
		}
		if err := finite("LoRA scale", s.Scale); err != nil {
			return err
		}
		scales[i] = C.float(s.Scale)
	}
	if err := c.enter(); err != nil {
		return err
	}
	defer c.mu.Unlock()
	for i, s := range adapters {
		if err := s.Adapter.use(); err != nil {
			for _, done := range adapters[:i] {
				done.Adapter.unuse()
			}
			return err
		}
		s.Adapter.mu.Lock()
		ptrs[i] = s.Adapter.ptr
		s.Adapter.mu.Unlock()
	}
	var pp **C.struct_llama_adapter_lora
	var sp *C.float
	if len(adapters) > 0 {
		// C memory: llama.cpp keeps the pointers it is given only for the call.
		pp = (**C.struct_llama_adapter_lora)(C.malloc(C.size_t(len(ptrs)) * C.size_t(unsafe.Sizeof(ptrs[0]))))
		defer C.free(unsafe.Pointer(pp))
		copy(unsafe.Slice(pp, len(ptrs)), ptrs)
		sp = &scales[0]
	}
	if rc := C.llama_set_adapters_lora(c.ptr, pp, C.size_t(len(adapters)), sp); rc != 0 {
		for _, s := range adapters {
			s.Adapter.unuse()
		}
		return fmt.Errorf("llama: set LoRA adapters: llama.cpp returned %d", int32(rc))
	}
	c.lora.releaseAll()
	c.lora.list = slices.Clone(adapters)
	return nil
}

// LoRA returns the adapters the context applies, with their scales.
func (c *Context) LoRA() []LoRAScale {
	if err := c.enter(); err != nil {
		return nil
	}
	defer c.mu.Unlock()
	return slices.Clone(c.lora.list)
}
