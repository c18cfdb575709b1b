package llama

/*
#include "shim.h"
*/
import "C"

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"os"
	"slices"
	"strings"
	"unsafe"
)

// Saved state: a context's KV memory, whole or of one sequence, as bytes or as llama.cpp's
// session files (which also hold the tokens the state was decoded from). State restored
// into a context lets generation continue without decoding those tokens again. llama.cpp
// does not keep logits in the state: decode the last token again (at its position, after
// removing it) before sampling.
//
// The bytes of State and SeqState start with a 16-byte header of ours: what they hold
// (a whole context or a sequence) and a fingerprint of the model (its metadata, size and
// parameter count), which SetState and SetSeqState check; llama.cpp's own bytes follow.
// The files are llama.cpp's formats as they are, readable by its tools, so restoring them
// checks only what llama.cpp checks: the architecture (whole state), the number of layers,
// the cache types and row sizes, the cells the context has. Two models that differ only in
// their weights (fine-tunes of one base) have the same fingerprint: keep state with the
// model it came from.

// ErrInvalidState is returned when saved state cannot be restored into a context:
// truncated or foreign data, another model or cache type, too small a context. The
// context stays usable: data our checks refuse leaves it as it was; when llama.cpp refuses
// it part way, what the restore was replacing (the whole memory, or the sequence) is left
// empty.
var ErrInvalidState = errors.New("llama: invalid saved state")

// State returns the context's whole state: the KV memory of every sequence.
func (c *Context) State() ([]byte, error) {
	if err := c.enter(); err != nil {
		return nil, err
	}
	defer c.mu.Unlock()
	n := C.llama_state_get_size(c.ptr)
	if n == 0 {
		return nil, errors.New("llama: cannot get the state size")
	}
	buf := c.model.stateHeader(stateWhole, int(n))
	if got := C.llama_state_get_data(c.ptr, (*C.uint8_t)(unsafe.Pointer(&buf[stateHeaderSize])), n); got != n {
		return nil, fmt.Errorf("llama: state: wrote %d of %d bytes", got, n)
	}
	return buf, nil
}

// SetState replaces the context's whole state with one returned by State.
func (c *Context) SetState(state []byte) error {
	data, err := c.model.stateData(stateWhole, state)
	if err != nil {
		return err
	}
	if err := c.enter(); err != nil {
		return err
	}
	defer c.mu.Unlock()
	errs := captureErrors()
	defer errs.done()
	got := C.llama_state_set_data(c.ptr, (*C.uint8_t)(unsafe.Pointer(&data[0])), C.size_t(len(data)))
	if got == 0 {
		c.forgetOutputs()
		return fmt.Errorf("%w: %w", ErrInvalidState, errs.err("llama.cpp refused it"))
	}
	if int(got) != len(data) {
		c.clearMemory()
		return fmt.Errorf("%w: %d bytes after the state", ErrInvalidState, len(data)-int(got))
	}
	c.forgetOutputs()
	return nil
}

// SeqState returns the KV memory of one sequence.
func (c *Context) SeqState(seq SeqID) ([]byte, error) {
	if err := c.checkSeq(seq); err != nil {
		return nil, err
	}
	if err := c.enter(); err != nil {
		return nil, err
	}
	defer c.mu.Unlock()
	n := C.llama_state_seq_get_size(c.ptr, C.llama_seq_id(seq))
	if n == 0 {
		return nil, fmt.Errorf("llama: cannot get the state size of sequence %d", seq)
	}
	buf := c.model.stateHeader(stateSeq, int(n))
	if got := C.llama_state_seq_get_data(c.ptr, (*C.uint8_t)(unsafe.Pointer(&buf[stateHeaderSize])), n, C.llama_seq_id(seq)); got != n {
		return nil, fmt.Errorf("llama: state of sequence %d: wrote %d of %d bytes", seq, got, n)
	}
	return buf, nil
}

// SetSeqState replaces the KV memory of sequence seq with one returned by SeqState (of
// any sequence: the cells are restored into seq).
func (c *Context) SetSeqState(seq SeqID, state []byte) error {
	if err := c.checkSeq(seq); err != nil {
		return err
	}
	data, err := c.model.stateData(stateSeq, state)
	if err != nil {
		return err
	}
	if err := c.enter(); err != nil {
		return err
	}
	defer c.mu.Unlock()
	errs := captureErrors()
	defer errs.done()
	got := C.llama_state_seq_set_data(c.ptr, (*C.uint8_t)(unsafe.Pointer(&data[0])), C.size_t(len(data)), C.llama_seq_id(seq))
	if got == 0 {
		return fmt.Errorf("%w: %w", ErrInvalidState, errs.err("llama.cpp refused it"))
	}
	if int(got) != len(data) {
		c.removeSeq(seq)
		return fmt.Errorf("%w: %d bytes after the state of a sequence", ErrInvalidState, len(data)-int(got))
	}
	return nil
}

// SaveStateFile writes the context's whole state and the tokens it was decoded from to a
// llama.cpp session file (llama-cli's --prompt-cache format).
func (c *Context) SaveStateFile(path string, tokens []Token) error {
	if err := c.model.checkTokens(tokens); err != nil {
		return err
	}
	cpath, err := cPath(path)
	if err != nil {
		return err
	}
	defer C.free(unsafe.Pointer(cpath))
	if err := c.enter(); err != nil {
		return err
	}
	defer c.mu.Unlock()
	errs := captureErrors()
	defer errs.done()
	if !C.llama_state_save_file(c.ptr, cpath, tokenPtr(tokens), C.size_t(len(tokens))) {
		return fmt.Errorf("llama: save state to %s: %w", path, errs.err("llama.cpp failed"))
	}
	return nil
}

// LoadStateFile replaces the context's whole state with a session file's and returns the
// file's tokens.
func (c *Context) LoadStateFile(path string) ([]Token, error) {
	if err := checkFile(path); err != nil {
		return nil, err
	}
	cpath, err := cPath(path)
	if err != nil {
		return nil, err
	}
	defer C.free(unsafe.Pointer(cpath))
	if err := c.enter(); err != nil {
		return nil, err
	}
	defer c.mu.Unlock()
	tokens := make([]Token, c.nCtx)
	var n C.size_t
	errs := captureErrors()
	defer errs.done()
	ok := C.llama_state_load_file(c.ptr, cpath, tokenPtr(tokens), C.size_t(len(tokens)), &n)
	c.forgetOutputs()
	if !ok {
		c.clearMemory()
		return nil, fmt.Errorf("%w: %s: %w", ErrInvalidState, path, errs.err("llama.cpp refused it"))
	}
	return tokens[:n:n], nil
}

// SaveSeqStateFile writes the KV memory of sequence seq and the tokens it was decoded
// from to a llama.cpp sequence state file (llama-server's slot save format).
func (c *Context) SaveSeqStateFile(path string, seq SeqID, tokens []Token) error {
	if err := c.checkSeq(seq); err != nil {
		return err
	}
	if err := c.model.checkTokens(tokens); err != nil {
		return err
	}
	cpath, err := cPath(path)
	if err != nil {
		return err
	}
	defer C.free(unsafe.Pointer(cpath))
	if err := c.enter(); err != nil {
		return err
	}
	defer c.mu.Unlock()
	errs := captureErrors()
	defer errs.done()
	if C.llama_state_seq_save_file(c.ptr, cpath, C.llama_seq_id(seq), tokenPtr(tokens), C.size_t(len(tokens))) == 0 {
		return fmt.Errorf("llama: save state of sequence %d to %s: %w", seq, path, errs.err("llama.cpp failed"))
	}
	return nil
}

// LoadSeqStateFile replaces the KV memory of sequence seq with a sequence state file's
// and returns the file's tokens.
func (c *Context) LoadSeqStateFile(path string, seq SeqID) ([]Token, error) {
	if err := c.checkSeq(seq); err != nil {
		return nil, err
	}
	if err := checkFile(path); err != nil {
		return nil, err
	}
	cpath, err := cPath(path)
	if err != nil {
		return nil, err
	}
	defer C.free(unsafe.Pointer(cpath))
	if err := c.enter(); err != nil {
		return nil, err
	}
	defer c.mu.Unlock()
	errs := captureErrors()
	defer errs.done()
	// The first call reads only the token count (checked against the file's size).
	var n C.size_t
	if C.llama_state_seq_load_file(c.ptr, cpath, C.llama_seq_id(seq), nil, 0, &n) == 0 {
		return nil, fmt.Errorf("%w: %s: %w", ErrInvalidState, path, errs.err("llama.cpp refused it"))
	}
	if int(n) > c.nCtx {
		return nil, fmt.Errorf("%w: %s holds %d tokens, more than the context's %d", ErrInvalidState, path, n, c.nCtx)
	}
	tokens := make([]Token, max(int(n), 1))
	if C.llama_state_seq_load_file(c.ptr, cpath, C.llama_seq_id(seq), tokenPtr(tokens), C.size_t(len(tokens)), &n) == 0 {
		c.removeSeq(seq)
		return nil, fmt.Errorf("%w: %s: %w", ErrInvalidState, path, errs.err("llama.cpp refused it"))
	}
	return tokens[:n:n], nil
}

const (
	stateMagic      = "LGOS"
	stateVersion    = 1
	stateHeaderSize = 16
)

type stateKind byte

const (
	stateWhole stateKind = 1
	stateSeq   stateKind = 2
)

func (k stateKind) String() string {
	if k == stateWhole {
		return "a whole context's state"
	}
	return "a sequence's state"
}

// stateHeader returns a buffer for n bytes of llama.cpp state after our header.
func (m *Model) stateHeader(kind stateKind, n int) []byte {
	buf := make([]byte, stateHeaderSize+n)
	copy(buf, stateMagic)
	buf[4], buf[5] = stateVersion, byte(kind)
	binary.LittleEndian.PutUint64(buf[8:], m.fingerprint)
	return buf
}

// stateData checks our header of state and returns llama.cpp's bytes after it.
func (m *Model) stateData(kind stateKind, state []byte) ([]byte, error) {
	switch {
	case len(state) <= stateHeaderSize || string(state[:4]) != stateMagic:
		return nil, fmt.Errorf("%w: not state from State or SeqState", ErrInvalidState)
	case state[4] != stateVersion:
		return nil, fmt.Errorf("%w: unknown version %d", ErrInvalidState, state[4])
	case stateKind(state[5]) != kind:
		return nil, fmt.Errorf("%w: %v, not %v", ErrInvalidState, stateKind(state[5]), kind)
	case binary.LittleEndian.Uint64(state[8:]) != m.fingerprint:
		return nil, fmt.Errorf("%w: state of another model", ErrInvalidState)
	}
	return state[stateHeaderSize:], nil
}

// modelFingerprint identifies a model for saved state: a hash of its metadata, size and
// parameter count.
func modelFingerprint(info ModelInfo) uint64 {
	h := fnv.New64a()
	for _, k := range slices.Sorted(maps.Keys(info.Metadata)) {
		fmt.Fprintf(h, "%s=%s\n", k, info.Metadata[k])
	}
	fmt.Fprintf(h, "%d %d", info.Size, info.Params)
	return h.Sum64()
}

// forgetOutputs drops what the last decode left: a restored state has no logits.
func (c *Context) forgetOutputs() { c.outputs, c.nOutputs = c.outputs[:0], 0 }

// clearMemory empties the KV memory after a restore that failed part way (the caller holds c.mu).
func (c *Context) clearMemory() {
	if mem := C.llama_get_memory(c.ptr); mem != nil {
		C.llama_memory_clear(mem, true)
	}
}

// removeSeq empties one sequence after a restore that failed part way (the caller holds c.mu).
func (c *Context) removeSeq(seq SeqID) {
	if mem := C.llama_get_memory(c.ptr); mem != nil {
		C.llama_memory_seq_rm(mem, C.llama_seq_id(seq), -1, -1)
	}
}

// cPath is path as a C string (free it), refusing NUL bytes, which would cut it short.
func cPath(path string) (*C.char, error) {
	if path == "" || strings.IndexByte(path, 0) >= 0 {
		return nil, invalidParam("file path %q", path)
	}
	return C.CString(path), nil
}

func tokenPtr(tokens []Token) *C.llama_token {
	if len(tokens) == 0 {
		return nil
	}
	return (*C.llama_token)(unsafe.Pointer(&tokens[0]))
}

// checkFile refuses what llama.cpp's file reader should not be given: a missing path or
// a directory (reading one fails inside llama_file in ways that differ by platform).
func checkFile(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidState, err)
	}
	if fi.IsDir() {
		return fmt.Errorf("%w: %s is a directory", ErrInvalidState, path)
	}
	return nil
}
