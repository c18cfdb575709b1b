package llama

/*
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"os"
	"runtime"
	"sync"
	"unicode/utf8"
	"unsafe"

	"github.com/llamago/llamago/internal/modelcheck"
)

// ErrMedia reports media that cannot be used: bytes that are no image or audio this build
// decodes, absurd dimensions, media the projector does not take (audio for a vision-only
// projector), or a prompt whose markers do not match its media.
var ErrMedia = errors.New("llama: media")

// MaxImageSide bounds the width and height of an image: llama.cpp's image preprocessing
// allocates per pixel and would exhaust memory on absurd sizes.
const MaxImageSide = 16384

// ProjectorParams configures LoadProjector. The zero value (or nil) runs the projector on
// the GPU when the build has one.
type ProjectorParams struct {
	NoGPU   bool // keep the projector on the CPU
	Threads int  // CPU threads for encoding media; 0 = PhysicalCores()
}

// Projector is a multimodal projector (an "mmproj" GGUF file: a vision or audio encoder
// and the projection into the model's embeddings) for one model, through llama.cpp's
// libmtmd. It turns images and audio into embeddings the model reads where the prompt has
// Marker. Goroutines may share it (evaluations take turns); Close frees it.
type Projector struct {
	mu      sync.RWMutex // read: decoding media, splitting prompts (thread-safe in libmtmd); write: evaluating, Close
	ptr     *C.struct_mtmd_context
	model   *Model
	caps    ProjectorCaps
	cleanup runtime.Cleanup
}

// ProjectorCaps says what a projector takes.
type ProjectorCaps struct {
	Vision, Audio bool
	// AudioSampleRate is the sample rate audio is resampled to, 0 without audio.
	AudioSampleRate int
	// MRoPE: the model places media tokens with multi-dimensional positions (Qwen2-VL and
	// kin); a media item then takes fewer positions than tokens.
	MRoPE bool
	// Marker is the text that stands for one media item in a prompt ("<__media__>").
	Marker string
}

// LoadProjector loads the projector file at path for m. The file gets the pure-Go GGUF
// checks of a model file; llama.cpp then checks that it is a projector it knows whose
// output matches the model's embeddings.
func (m *Model) LoadProjector(path string, p *ProjectorParams) (*Projector, error) {
	var params ProjectorParams
	if p != nil {
		params = *p
	}
	if params.Threads < 0 || params.Threads > 512 {
		return nil, invalidParam("Threads %d out of range [0, 512]", params.Threads)
	}
	if params.Threads == 0 {
		params.Threads = PhysicalCores()
	}
	fail := func(err error) (*Projector, error) { return nil, &LoadError{Path: path, Err: err} }
	if _, err := os.Stat(path); err != nil {
		return fail(err)
	}
	if err := modelcheck.Projector(path); err != nil {
		return fail(err)
	}
	if err := m.retain(); err != nil {
		return nil, err
	}
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var cerr *C.char
	errs := captureErrors()
	ptr := C.lgo_mtmd_init(cpath, m.ptr, C.bool(!params.NoGPU && SupportsGPUOffload()), C.int(params.Threads), &cerr)
	errs.done()
	if ptr == nil {
		m.release()
		if cerr != nil {
			C.free(unsafe.Pointer(cerr))
		}
		return fail(errs.err("cannot load the projector"))
	}
	pr := &Projector{ptr: ptr, model: m}
	var caps C.lgo_mtmd_caps
	if C.lgo_mtmd_info(ptr, &caps, &cerr) != 0 {
		C.lgo_mtmd_free(ptr)
		m.release()
		return fail(cError(ErrMedia, cerr))
	}
	pr.caps = ProjectorCaps{Vision: bool(caps.vision), Audio: bool(caps.audio), AudioSampleRate: max(int(caps.sample_rate), 0),
		MRoPE: bool(caps.mrope), Marker: C.GoString(caps.marker)}
	pr.cleanup = runtime.AddCleanup(pr, func(r projectorResources) { r.free() }, projectorResources{ptr, m})
	return pr, nil
}

type projectorResources struct {
	ptr   *C.struct_mtmd_context
	model *Model
}

func (r projectorResources) free() {
	C.lgo_mtmd_free(r.ptr)
	r.model.release()
}

// Caps says what the projector takes and how prompts name media.
func (p *Projector) Caps() ProjectorCaps { return p.caps }

// Close frees the projector. Calling it again is a no-op.
func (p *Projector) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ptr == nil {
		return nil
	}
	p.cleanup.Stop()
	projectorResources{p.ptr, p.model}.free()
	p.ptr = nil
	return nil
}

// rlock holds the projector open for a thread-safe call; the caller RUnlocks p.mu when
// it returns nil.
func (p *Projector) rlock() error {
	if p == nil {
		return invalidParam("no projector")
	}
	p.mu.RLock()
	if p.ptr == nil {
		p.mu.RUnlock()
		return ErrClosed
	}
	return nil
}

// Media is an image or an audio clip, decoded and ready for a projector. Close frees it.
type Media struct {
	ptr           *C.struct_mtmd_bitmap
	width, height int // pixels; for audio, height 1 and width the samples
	audio         bool
	cleanup       runtime.Cleanup
}

// DecodeMedia decodes the bytes of an image file (JPEG, PNG, BMP, GIF, TGA, PSD, HDR, PNM)
// or an audio file (WAV, MP3, FLAC), told apart by their contents, for this projector
// (audio is resampled to its rate). Corrupt or unknown bytes, absurd sizes and media the
// projector does not take are ErrMedia.
func (p *Projector) DecodeMedia(data []byte) (*Media, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: no data", ErrMedia)
	}
	if w, h, ok := imageSize(data); ok && (w > MaxImageSide || h > MaxImageSide || w == 0 || h == 0) {
		return nil, fmt.Errorf("%w: image of %d×%d pixels (at most %d per side)", ErrMedia, w, h, MaxImageSide)
	}
	if err := p.rlock(); err != nil {
		return nil, err
	}
	defer p.mu.RUnlock()
	buf := C.CBytes(data)
	defer C.free(buf)
	var cerr *C.char
	ptr := C.lgo_mtmd_bitmap_from_buf(p.ptr, (*C.uchar)(buf), C.size_t(len(data)), &cerr)
	if ptr == nil {
		return nil, cError(ErrMedia, cerr)
	}
	m := newMedia(ptr)
	if m.audio && !p.caps.Audio || !m.audio && !p.caps.Vision {
		m.Close()
		kind := map[bool]string{true: "audio", false: "images"}[m.audio]
		return nil, fmt.Errorf("%w: the projector does not take %s", ErrMedia, kind)
	}
	return m, nil
}

// NewImageRGB makes an image from raw pixels: width×height RGB triples, row by row.
func NewImageRGB(width, height int, rgb []byte) (*Media, error) {
	switch {
	case width <= 0 || height <= 0 || width > MaxImageSide || height > MaxImageSide:
		return nil, fmt.Errorf("%w: image of %d×%d pixels (1 to %d per side)", ErrMedia, width, height, MaxImageSide)
	case len(rgb) != width*height*3:
		return nil, fmt.Errorf("%w: %d bytes for %d×%d RGB pixels, want %d", ErrMedia, len(rgb), width, height, width*height*3)
	}
	buf := C.CBytes(rgb)
	defer C.free(buf)
	var cerr *C.char
	ptr := C.lgo_mtmd_bitmap_from_rgb(C.uint32_t(width), C.uint32_t(height), (*C.uchar)(buf), &cerr)
	if ptr == nil {
		return nil, cError(ErrMedia, cerr)
	}
	return newMedia(ptr), nil
}

func newMedia(ptr *C.struct_mtmd_bitmap) *Media {
	var nx, ny C.uint32_t
	var audio C.bool
	C.lgo_mtmd_bitmap_info(ptr, &nx, &ny, &audio)
	m := &Media{ptr: ptr, width: int(nx), height: int(ny), audio: bool(audio)}
	m.cleanup = runtime.AddCleanup(m, func(p *C.struct_mtmd_bitmap) { C.lgo_mtmd_bitmap_free(p) }, ptr)
	return m
}

// IsAudio reports an audio clip.
func (m *Media) IsAudio() bool { return m.audio }

// Size is an image's width and height in pixels (an audio clip's samples and 1).
func (m *Media) Size() (width, height int) { return m.width, m.height }

// Close frees the media. Calling it again is a no-op.
func (m *Media) Close() error {
	if m.ptr != nil {
		m.cleanup.Stop()
		C.lgo_mtmd_bitmap_free(m.ptr)
		m.ptr = nil
	}
	return nil
}

// MediaPrompt is a prompt with media, split by its projector into text and media chunks
// (Projector.Prompt). Context.EvalMedia evaluates all of it but the trailing text, which
// is then decoded like any prompt (Text); GenerateMedia and ChatSession do both, the
// serving engine does it for requests with media. Close frees it.
type MediaPrompt struct {
	p        *Projector
	chunks   *C.struct_mtmd_input_chunks
	nChunks  int
	nTokens  int // text and media
	nMedia   int
	lastText []Token
}

// Text is the prompt's trailing text: what is decoded after EvalMedia.
func (mp *MediaPrompt) Text() []Token { return mp.lastText }

// Tokens counts all the prompt's tokens, media included; MediaTokens those of its media.
func (mp *MediaPrompt) Tokens() int { return mp.nTokens }

// MediaTokens counts the tokens of the prompt's images and audio.
func (mp *MediaPrompt) MediaTokens() int { return mp.nMedia }

// Close frees the prompt. Calling it again is a no-op.
func (mp *MediaPrompt) Close() error {
	if mp.chunks != nil {
		C.lgo_mtmd_chunks_free(mp.chunks)
		mp.chunks = nil
	}
	return nil
}

// Prompt splits a prompt at its markers (Caps().Marker, MediaMarker by default), one per
// item of media, in order, tokenizing the text around them (special tokens parsed; BOS
// when addSpecial). The prompt must end with text after the last marker.
func (p *Projector) Prompt(text string, media []*Media, addSpecial bool) (*MediaPrompt, error) {
	if err := p.rlock(); err != nil {
		return nil, err
	}
	defer p.mu.RUnlock()
	return p.tokenize(text, media, addSpecial)
}

// tokenize splits prompt at its markers, one per media item.
func (p *Projector) tokenize(prompt string, media []*Media, addSpecial bool) (*MediaPrompt, error) {
	if !utf8.ValidString(prompt) {
		return nil, ErrInvalidUTF8
	}
	ptrs := make([]*C.struct_mtmd_bitmap, len(media))
	for i, m := range media {
		if m == nil || m.ptr == nil {
			return nil, fmt.Errorf("%w: media %d is nil or closed", ErrMedia, i)
		}
		ptrs[i] = m.ptr
	}
	cbitmaps := (**C.struct_mtmd_bitmap)(C.calloc(C.size_t(max(len(ptrs), 1)), C.size_t(unsafe.Sizeof(uintptr(0)))))
	defer C.free(unsafe.Pointer(cbitmaps))
	copy(unsafe.Slice(cbitmaps, len(ptrs)), ptrs)
	ctext := C.CString(prompt)
	defer C.free(unsafe.Pointer(ctext))
	var cerr *C.char
	chunks := C.lgo_mtmd_tokenize(p.ptr, ctext, C.bool(addSpecial), cbitmaps, C.size_t(len(ptrs)), &cerr)
	if chunks == nil {
		return nil, cError(ErrMedia, cerr)
	}
	mp := &MediaPrompt{p: p, chunks: chunks}
	var nChunks, nTokens, nMedia C.size_t
	if C.lgo_mtmd_chunks_info(chunks, &nChunks, &nTokens, &nMedia) != 0 {
		mp.Close()
		return nil, fmt.Errorf("%w: reading the prompt's chunks failed", ErrMedia)
	}
	mp.nChunks, mp.nTokens, mp.nMedia = int(nChunks), int(nTokens), int(nMedia)
	var n C.size_t
	toks := C.lgo_mtmd_last_text(chunks, &n)
	if toks == nil || n == 0 {
		mp.Close()
		return nil, invalidParam("a prompt with media must end with text after the last marker (the chat template's assistant prefix)")
	}
	mp.lastText = append([]Token(nil), unsafe.Slice((*Token)(unsafe.Pointer(toks)), int(n))...)
	return mp, nil
}

// EvalMedia evaluates mp but its trailing text into sequence seq of c from position pos
// on: each media item encoded by the projector and its embeddings decoded, the text
// between decoded. It returns the position at which to decode mp.Text(). Cancelling
// ctx stops the decodes (ErrAborted); the projector's evaluations take turns.
func (c *Context) EvalMedia(ctx context.Context, mp *MediaPrompt, seq SeqID, pos Pos) (Pos, error) {
	if mp == nil || mp.chunks == nil {
		return pos, invalidParam("no media prompt (nil or closed)")
	}
	if mp.p.model != c.model {
		return pos, invalidParam("the media prompt's projector was loaded for another model")
	}
	if err := c.checkSeq(seq); err != nil {
		return pos, err
	}
	if pos < 0 {
		return pos, invalidParam("position %d", pos)
	}
	if err := c.enter(); err != nil {
		return pos, err
	}
	defer c.mu.Unlock()
	c.dropAutoSampling(-1)
	if _, last, _ := c.seqRange(seq); pos != last+1 {
		return pos, fmt.Errorf("%w: media at position %d, the sequence continues at %d", ErrInvalidBatch, pos, last+1)
	}
	// Cells, not positions (fewer with M-RoPE), bound what fits; refused before encoding.
	if need := int(pos) + mp.nTokens - len(mp.lastText); need > c.nCtxSeq() {
		return pos, fmt.Errorf("%w: the media prompt needs %d cells, the sequence holds %d", ErrContextFull, need, c.nCtxSeq())
	}
	if err := context.Cause(ctx); err != nil {
		return pos, aborted(err)
	}
	defer c.arm(ctx)()
	next, err := mp.eval(c, pos, seq)
	if err != nil && ctx.Err() != nil {
		return pos, aborted(context.Cause(ctx))
	}
	return next, err
}

// eval decodes all chunks but the last into seq from pos on and returns the next
// position; the context is claimed.
func (mp *MediaPrompt) eval(c *Context, pos Pos, seq SeqID) (Pos, error) {
	p := mp.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ptr == nil {
		return pos, ErrClosed
	}
	if mp.chunks == nil {
		return pos, invalidParam("the media prompt is closed")
	}
	var next C.llama_pos
	var err error
	eval := func() {
		var cerr *C.char
		errs := captureErrors() // on the thread that evaluates, which logs
		defer errs.done()
		if C.lgo_mtmd_eval(p.ptr, c.ptr, mp.chunks, C.size_t(mp.nChunks-1), C.llama_pos(pos), C.llama_seq_id(seq),
			C.int32_t(c.nBatch), &next, &cerr) != 0 {
			msg := "llama: media prompt"
			if cerr != nil {
				msg += ": " + C.GoString(cerr)
				C.free(unsafe.Pointer(cerr))
			}
			err = errs.err(msg)
		}
	}
	if c.thread != nil {
		c.job = computeJob{fn: eval}
		c.thread.run(&c.job)
		c.job.fn = nil
	} else {
		eval()
	}
	if err != nil {
		return pos, err
	}
	return Pos(next), nil
}

// GenerateMedia is GenerateText for a prompt with media: prompt holds the projector's
// Marker once per item of media, in order (a chat template renders it where a message
// has media). The text around the media is tokenized as GenerateText does; each media item
// is encoded by the projector and its embeddings decoded into the sequence at its place,
// then generation goes on as usual.
func (c *Context) GenerateMedia(ctx context.Context, p *Projector, prompt string, media []*Media, s *Sampler, opts *GenerateParams) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		var o GenerateParams
		if opts != nil {
			o = *opts
		}
		if p != nil && p.model != c.model {
			yield("", invalidParam("the projector was loaded for another model"))
			return
		}
		_, last, err := c.MemorySeqPosRange(o.Seq)
		if err != nil {
			yield("", err)
			return
		}
		mp, err := p.Prompt(prompt, media, last < 0)
		if err != nil {
			yield("", err)
			return
		}
		defer mp.Close()
		if o.Draft != nil {
			yield("", invalidParam("speculative decoding of a prompt with media is not supported"))
			return
		}
		o.media = mp
		for piece, err := range c.generateText(ctx, mp.lastText, s, &o) {
			if !yield(piece, err) {
				return
			}
		}
	}
}

// imageSize reads the pixel size from the header of a PNG, GIF, BMP or JPEG file, before
// the decoder allocates for it; ok is false for other data.
func imageSize(b []byte) (w, h int, ok bool) {
	be16 := func(i int) int { return int(b[i])<<8 | int(b[i+1]) }
	le16 := func(i int) int { return int(b[i]) | int(b[i+1])<<8 }
	be32 := func(i int) int { return int(b[i])<<24 | int(b[i+1])<<16 | int(b[i+2])<<8 | int(b[i+3]) }
	le32 := func(i int) int {
		return int(int32(uint32(b[i]) | uint32(b[i+1])<<8 | uint32(b[i+2])<<16 | uint32(b[i+3])<<24))
	}
	switch {
	case len(b) >= 24 && string(b[:8]) == "\x89PNG\r\n\x1a\n":
		return be32(16), be32(20), true
	case len(b) >= 10 && (string(b[:6]) == "GIF87a" || string(b[:6]) == "GIF89a"):
		return le16(6), le16(8), true
	case len(b) >= 26 && string(b[:2]) == "BM":
		w, h := le32(18), le32(22)
		if h < 0 {
			h = -h
		}
		return w, h, true
	case len(b) >= 4 && b[0] == 0xFF && b[1] == 0xD8:
		for i := 2; i+9 < len(b); {
			if b[i] != 0xFF {
				return 0, 0, false
			}
			marker := b[i+1]
			if marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC {
				return be16(i + 7), be16(i + 5), true
			}
			i += 2 + be16(i+2)
		}
	}
	return 0, 0, false
}
