package llama

/*
#include "shim.h"
*/
import "C"

// ModelInfo describes a loaded model. It is read once at load time, so reading it
// costs nothing and stays valid after Close.
type ModelInfo struct {
	Architecture  string // general.architecture, e.g. "llama", "qwen2"
	Name          string // general.name, when the file has one
	Description   string // llama.cpp's summary, e.g. "llama 8B Q4_K - Medium"
	FileType      string // e.g. "Q8_0", "Q4_K - Medium"
	Size          uint64 // bytes of all tensors
	Params        uint64 // number of parameters
	NCtxTrain     int    // context length the model was trained with
	NEmbd         int
	NLayer        int
	NHead         int
	NHeadKV       int
	NSWA          int     // sliding-window size, 0 when the model has none
	RopeFreqScale float32 // the model's trained RoPE frequency scale
	HasEncoder    bool
	HasDecoder    bool
	Recurrent     bool // Mamba, RWKV, ...
	Hybrid        bool // attention plus recurrent layers
	Diffusion     bool
	// DecoderStartToken is the first decoder token of encoder-decoder models, -1 otherwise.
	DecoderStartToken Token
	// ChatTemplate is the default chat template (tokenizer.chat_template), "" if none.
	ChatTemplate string
	// Metadata holds every GGUF metadata key with llama.cpp's string rendering of its value
	// (arrays are summarised by llama.cpp; read the file with package gguf for full arrays).
	Metadata map[string]string
}

// Info describes the model.
func (m *Model) Info() ModelInfo { return m.info }

func readModelInfo(m *Model) ModelInfo {
	p := m.ptr
	info := ModelInfo{
		Description:       cBuffer(func(buf *C.char, n C.size_t) C.int32_t { return C.llama_model_desc(p, buf, n) }),
		FileType:          C.GoString(C.llama_ftype_name(C.llama_model_ftype(p))),
		Size:              uint64(C.llama_model_size(p)),
		Params:            uint64(C.llama_model_n_params(p)),
		NCtxTrain:         int(C.llama_model_n_ctx_train(p)),
		NEmbd:             int(C.llama_model_n_embd(p)),
		NLayer:            int(C.llama_model_n_layer(p)),
		NSWA:              int(C.llama_model_n_swa(p)),
		RopeFreqScale:     float32(C.llama_model_rope_freq_scale_train(p)),
		HasEncoder:        bool(C.llama_model_has_encoder(p)),
		HasDecoder:        bool(C.llama_model_has_decoder(p)),
		Recurrent:         bool(C.llama_model_is_recurrent(p)),
		Hybrid:            bool(C.llama_model_is_hybrid(p)),
		Diffusion:         bool(C.llama_model_is_diffusion(p)),
		DecoderStartToken: Token(C.llama_model_decoder_start_token(p)),
	}
	if info.NLayer > 0 { // the per-layer getters abort on a vocab-only model
		info.NHead = int(C.llama_model_n_head(p))
		info.NHeadKV = int(C.llama_model_n_head_kv(p))
	}
	if t := C.llama_model_chat_template(p, nil); t != nil {
		info.ChatTemplate = C.GoString(t)
	}
	n := int(C.llama_model_meta_count(p))
	info.Metadata = make(map[string]string, n)
	for i := range n {
		ci := C.int32_t(i)
		key := cBuffer(func(buf *C.char, n C.size_t) C.int32_t { return C.llama_model_meta_key_by_index(p, ci, buf, n) })
		info.Metadata[key] = cBuffer(func(buf *C.char, n C.size_t) C.int32_t {
			return C.llama_model_meta_val_str_by_index(p, ci, buf, n)
		})
	}
	info.Architecture = info.Metadata["general.architecture"]
	info.Name = info.Metadata["general.name"]
	return info
}

// cBuffer calls a llama.cpp function that writes a NUL-terminated string into a buffer
// and returns the full length (or -1), growing the buffer when it was too small.
func cBuffer(fill func(buf *C.char, n C.size_t) C.int32_t) string {
	size := 256
	for {
		buf := C.malloc(C.size_t(size))
		n := int(fill((*C.char)(buf), C.size_t(size)))
		if n < 0 {
			C.free(buf)
			return ""
		}
		if n < size {
			s := C.GoStringN((*C.char)(buf), C.int(n))
			C.free(buf)
			return s
		}
		C.free(buf)
		size = n + 1
	}
}
