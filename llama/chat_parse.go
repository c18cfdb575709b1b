package llama

/*
#include "shim.h"
*/
import "C"

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"unicode/utf8"
	"unsafe"
)

// ChatFormat tells a ChatParser how a reply is written: the format llama.cpp chose
// for the template (tool-call syntax, reasoning tags) with its parser. It is opaque;
// get it from ChatPrompt.Format. Its JSON form (MarshalJSON) can be stored and read
// back to parse later with the same llama.cpp build.
type ChatFormat struct {
	f chatFormatJSON
}

type chatFormatJSON struct {
	Format           int             `json:"format"`
	Name             string          `json:"name,omitempty"`
	Reasoning        ReasoningFormat `json:"reasoning_format"`
	GenerationPrompt string          `json:"generation_prompt"`
	Parser           string          `json:"parser"`
	ParseToolCalls   bool            `json:"parse_tool_calls"`
	Continuation     bool            `json:"continuation,omitempty"`
}

// Name is llama.cpp's name of the format, e.g. "peg-native" or "Content-only".
func (f ChatFormat) Name() string {
	if f.f.Name == "" {
		return "Content-only"
	}
	return f.f.Name
}

// MarshalJSON stores the format.
func (f ChatFormat) MarshalJSON() ([]byte, error) { return json.Marshal(f.f) }

// UnmarshalJSON reads a format stored by MarshalJSON.
func (f *ChatFormat) UnmarshalJSON(b []byte) error { return json.Unmarshal(b, &f.f) }

// Parse parses a reply once; use a ChatParser for text that grows (streaming).
func (f ChatFormat) Parse(text string, partial bool) (Message, error) {
	p, err := NewChatParser(f)
	if err != nil {
		return Message{}, err
	}
	defer p.Close()
	return p.Parse(text, partial)
}

// ChatParser turns model output into an assistant Message (content, reasoning, tool
// calls) with llama.cpp's parser for the format. Parse the whole output so far after
// each new piece with partial set for streaming: partial parses return what is known
// (a tool call whose arguments are still being written has incomplete Arguments), and
// tool calls keep their ids across parses. A ChatParser is safe for concurrent use.
type ChatParser struct {
	mu      sync.Mutex
	ptr     unsafe.Pointer
	ids     []string
	cleanup runtime.Cleanup
}

// NewChatParser prepares a parser for format f.
func NewChatParser(f ChatFormat) (*ChatParser, error) {
	in, err := json.Marshal(f.f)
	if err != nil {
		return nil, err
	}
	initBackend()
	cin := C.CString(string(in))
	defer C.free(unsafe.Pointer(cin))
	var cerr *C.char
	ptr := C.lgo_chat_parser_init(cin, &cerr)
	if ptr == nil {
		return nil, cError(fmt.Errorf("%w: parser", ErrChat), cerr)
	}
	p := &ChatParser{ptr: ptr}
	p.cleanup = runtime.AddCleanup(p, func(ptr unsafe.Pointer) { C.lgo_chat_parser_free(ptr) }, ptr)
	return p, nil
}

// Close frees the parser. Calling it again is a no-op.
func (p *ChatParser) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ptr != nil {
		p.cleanup.Stop()
		C.lgo_chat_parser_free(p.ptr)
		p.ptr = nil
	}
	return nil
}

type parsedMessage struct {
	Content          string `json:"content"`
	ReasoningContent string `json:"reasoning_content"`
	ToolCalls        []struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
		ID        string `json:"id"`
	} `json:"tool_calls"`
}

// Parse parses text, the model's output so far (without the prompt). With partial,
// text may stop anywhere, even inside a character (the incomplete end is ignored).
// Output that does not match the format is an error matching ErrChat; for a partial
// parse that means nothing usable has been written yet.
func (p *ChatParser) Parse(text string, partial bool) (Message, error) {
	if partial {
		text = text[:completeUTF8([]byte(text))]
	}
	if !utf8.ValidString(text) {
		return Message{}, fmt.Errorf("%w: parse: %w", ErrChat, ErrInvalidUTF8)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ptr == nil {
		return Message{}, ErrClosed
	}
	ctext := C.CString(text)
	defer C.free(unsafe.Pointer(ctext))
	var cerr *C.char
	out := C.lgo_chat_parser_parse(p.ptr, ctext, C.size_t(len(text)), C.bool(partial), &cerr)
	if out == nil {
		return Message{}, cError(fmt.Errorf("%w: parse", ErrChat), cerr)
	}
	defer C.free(unsafe.Pointer(out))
	var pm parsedMessage
	if err := json.Unmarshal([]byte(C.GoString(out)), &pm); err != nil {
		return Message{}, fmt.Errorf("%w: parse: %v", ErrChat, err)
	}
	m := Message{Role: RoleAssistant, Content: pm.Content, ReasoningContent: pm.ReasoningContent}
	for i, tc := range pm.ToolCalls {
		if i >= len(p.ids) {
			id := tc.ID
			if id == "" {
				id = newToolCallID()
			}
			p.ids = append(p.ids, id)
		}
		if tc.ID == "" {
			tc.ID = p.ids[i]
		}
		m.ToolCalls = append(m.ToolCalls, ToolCall{ID: tc.ID, Name: tc.Name, Arguments: tc.Arguments})
	}
	return m, nil
}

// Reset forgets the tool call ids of earlier parses, for parsing another reply.
func (p *ChatParser) Reset() {
	p.mu.Lock()
	p.ids = p.ids[:0]
	p.mu.Unlock()
}

const idChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

// newToolCallID returns a random id in the style of OpenAI's ("call_" + 24 characters).
func newToolCallID() string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	var sb strings.Builder
	sb.WriteString("call_")
	for _, c := range b {
		sb.WriteByte(idChars[int(c)%len(idChars)])
	}
	return sb.String()
}
