package llama

/*
#include "shim.h"
*/
import "C"

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"runtime"
	"slices"
	"sync"
	"unicode/utf8"
	"unsafe"
)

// ChatTemplateParams configures NewChatTemplate.
type ChatTemplateParams struct {
	// Source is a Jinja chat template, or the name of one of llama.cpp's built-in
	// templates (BuiltinChatTemplates). Empty: the model's own template
	// (ModelInfo.ChatTemplate), or ChatML when the model has none.
	Source string
	// BOS and EOS are the template's bos_token and eos_token when there is no model
	// (with a model, its vocabulary's tokens are used).
	BOS, EOS string
	// NoJinja renders with llama.cpp's built-in templates only
	// (llama_chat_apply_template): no tools, no reasoning options, content-only replies.
	NoJinja bool
}

// ChatTemplate renders conversations into prompts with llama.cpp's chat machinery
// (common/chat: its Jinja engine plus the per-model tool-call and reasoning handling
// llama-server uses), so every model's template works as it does upstream. When a
// template cannot be used by the Jinja engine, or rendering fails, a conversation
// without tools falls back to llama.cpp's built-in templates when one matches.
//
// A ChatTemplate is safe for concurrent use. Close it when done.
type ChatTemplate struct {
	mu       sync.Mutex
	ptr      unsafe.Pointer // common_chat_templates; nil without Jinja
	source   string
	builtin  string // what llama_chat_apply_template gets; "" when no built-in template matches
	jinjaErr error  // why ptr is nil
	cleanup  runtime.Cleanup
}

// NewChatTemplate prepares the chat template of m (nil opts) or of opts.Source.
// m may be nil when opts.Source is set. A template that neither the Jinja engine nor
// the built-in templates can handle is an error matching ErrChat.
func NewChatTemplate(m *Model, opts *ChatTemplateParams) (*ChatTemplate, error) {
	var o ChatTemplateParams
	if opts != nil {
		o = *opts
	}
	if !utf8.ValidString(o.Source) || !utf8.ValidString(o.BOS) || !utf8.ValidString(o.EOS) {
		return nil, fmt.Errorf("%w: template: %w", ErrChat, ErrInvalidUTF8)
	}
	var mptr *C.struct_llama_model
	if m != nil {
		if err := m.rlock(); err != nil {
			return nil, err
		}
		defer m.mu.RUnlock()
		mptr = m.ptr
	} else if o.Source == "" {
		return nil, fmt.Errorf("%w: a chat template needs a model or a template source", ErrInvalidParams)
	}
	initBackend()
	t := &ChatTemplate{source: o.Source}
	if t.source == "" && m != nil {
		t.source = m.info.ChatTemplate
	}
	if slices.Contains(builtinChatTemplates(), o.Source) && o.Source != "chatml" {
		o.NoJinja = true // a built-in template's name, not Jinja source
	}
	if t.source != "" && builtinWorks(t.source) {
		t.builtin = t.source
	}
	if o.NoJinja {
		if t.builtin == "" {
			if t.source == "" {
				t.builtin = "chatml"
			} else {
				return nil, fmt.Errorf("%w: the template is not one of llama.cpp's built-in chat templates", ErrChat)
			}
		}
		t.jinjaErr = errors.New("Jinja disabled (NoJinja)")
		return t, nil
	}
	src, bos, eos := C.CString(o.Source), C.CString(o.BOS), C.CString(o.EOS)
	defer C.free(unsafe.Pointer(src))
	defer C.free(unsafe.Pointer(bos))
	defer C.free(unsafe.Pointer(eos))
	var cerr *C.char
	ptr := C.lgo_chat_templates_init(mptr, src, bos, eos, &cerr)
	if ptr == nil {
		t.jinjaErr = cError(fmt.Errorf("%w: template", ErrChat), cerr)
		if t.builtin == "" {
			return nil, t.jinjaErr
		}
		return t, nil
	}
	t.ptr = ptr
	if s := C.lgo_chat_templates_source(ptr, &cerr); s != nil {
		t.source = C.GoString(s)
		C.free(unsafe.Pointer(s))
	} else if cerr != nil {
		C.free(unsafe.Pointer(cerr))
	}
	t.cleanup = runtime.AddCleanup(t, func(p unsafe.Pointer) { C.lgo_chat_templates_free(p) }, ptr)
	return t, nil
}

// builtinWorks reports whether llama_chat_apply_template recognises a template.
func builtinWorks(tmpl string) bool {
	_, err := applyBuiltin(tmpl, []Message{{Role: RoleUser, Content: "hi"}}, true)
	return err == nil
}

// Source is the template source in use (the name of a built-in template without Jinja).
func (t *ChatTemplate) Source() string { return t.source }

// Jinja reports whether the template renders with the Jinja engine; without it only
// the built-in fallback is available. The error says why not.
func (t *ChatTemplate) Jinja() (bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.ptr != nil, t.jinjaErr
}

// Close frees the template. Calling it again is a no-op.
func (t *ChatTemplate) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ptr != nil {
		t.cleanup.Stop()
		C.lgo_chat_templates_free(t.ptr)
		t.ptr = nil
	}
	t.jinjaErr = ErrClosed
	t.builtin = ""
	return nil
}

// ChatPrompt is a rendered conversation and what generating its reply needs.
type ChatPrompt struct {
	// Prompt is the text to tokenize (with AddSpecial|ParseSpecial: the BOS token the
	// model adds is not repeated in the text).
	Prompt string
	// Grammar constrains the reply (tool calls, JSON schema); lazy grammars apply only
	// once one of GrammarTriggers appears. Use SamplingParams to apply them.
	Grammar         string
	GrammarLazy     bool
	GrammarTriggers []Trigger
	// PreservedTokens are special tokens the parser needs to see as text (e.g. "<tool_call>").
	PreservedTokens []string
	// Stop are stop strings the format needs besides the model's end-of-generation tokens.
	Stop []string
	// GenerationPrompt is the text that starts the reply (part of Prompt), as the parser sees it.
	GenerationPrompt string
	// SupportsThinking reports a reasoning template, with its thinking tags.
	SupportsThinking bool
	ThinkingStart    string
	ThinkingEnd      []string
	// Builtin reports that llama.cpp's built-in (non-Jinja) template rendered the prompt;
	// JinjaErr is the Jinja failure that led to it, if any.
	Builtin  bool
	JinjaErr error
	// Format tells a ChatParser how to read the reply.
	Format ChatFormat
}

type chatApplyRequest struct {
	Messages            []Message       `json:"messages"`
	Tools               []Tool          `json:"tools,omitempty"`
	ToolChoice          ToolChoice      `json:"tool_choice,omitempty"`
	ParallelToolCalls   bool            `json:"parallel_tool_calls"`
	AddGenerationPrompt bool            `json:"add_generation_prompt"`
	ContinueFinal       bool            `json:"continue_final_message"`
	ReasoningFormat     ReasoningFormat `json:"reasoning_format"`
	EnableThinking      bool            `json:"enable_thinking"`
	JSONSchema          string          `json:"json_schema,omitempty"`
	Grammar             string          `json:"grammar,omitempty"`
	Kwargs              map[string]any  `json:"kwargs,omitempty"`
}

type chatTrigger struct {
	Type  int    `json:"type"`
	Value string `json:"value"`
	Token int32  `json:"token"`
}

type chatApplyResult struct {
	Prompt           string        `json:"prompt"`
	Format           int           `json:"format"`
	FormatName       string        `json:"format_name"`
	Grammar          string        `json:"grammar"`
	GrammarLazy      bool          `json:"grammar_lazy"`
	GrammarTriggers  []chatTrigger `json:"grammar_triggers"`
	GenerationPrompt string        `json:"generation_prompt"`
	SupportsThinking bool          `json:"supports_thinking"`
	ThinkingStart    string        `json:"thinking_start_tag"`
	ThinkingEnd      []string      `json:"thinking_end_tags"`
	PreservedTokens  []string      `json:"preserved_tokens"`
	AdditionalStops  []string      `json:"additional_stops"`
	Parser           string        `json:"parser"`
}

// upstream's common_grammar_trigger_type
const (
	triggerToken = iota
	triggerWord
	triggerPattern
	triggerPatternFull
)

// Apply renders a conversation. Invalid requests (unknown roles, bad tool schemas,
// templates that fail) return errors matching ErrChat.
func (t *ChatTemplate) Apply(req *ChatRequest) (*ChatPrompt, error) {
	if req == nil {
		req = &ChatRequest{}
	}
	if err := req.check(); err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ptr == nil && t.builtin == "" {
		return nil, ErrClosed
	}
	if t.ptr == nil {
		return t.applyBuiltin(req, t.jinjaErr)
	}
	p, err := t.applyJinja(req)
	if err != nil && t.builtin != "" && len(req.Tools) == 0 && len(req.JSONSchema) == 0 && req.Grammar == "" {
		return t.applyBuiltin(req, err)
	}
	return p, err
}

func (t *ChatTemplate) applyJinja(req *ChatRequest) (*ChatPrompt, error) {
	r := chatApplyRequest{
		Messages:            req.Messages,
		Tools:               req.Tools,
		ToolChoice:          req.ToolChoice,
		ParallelToolCalls:   req.ParallelToolCalls,
		AddGenerationPrompt: !req.NoGenerationPrompt,
		ContinueFinal:       req.ContinueFinal,
		ReasoningFormat:     req.Reasoning,
		EnableThinking:      !req.DisableThinking,
		Grammar:             req.Grammar,
		Kwargs:              req.TemplateArgs,
	}
	if r.Messages == nil {
		r.Messages = []Message{}
	}
	if r.ReasoningFormat == "" {
		r.ReasoningFormat = ReasoningAuto
	}
	if len(req.JSONSchema) > 0 {
		r.JSONSchema = string(req.JSONSchema)
	}
	in, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrChat, err)
	}
	cin := C.CString(string(in))
	defer C.free(unsafe.Pointer(cin))
	var cerr *C.char
	out := C.lgo_chat_templates_apply(t.ptr, cin, &cerr)
	if out == nil {
		return nil, cError(fmt.Errorf("%w: render", ErrChat), cerr)
	}
	defer C.free(unsafe.Pointer(out))
	var res chatApplyResult
	if err := json.Unmarshal([]byte(C.GoString(out)), &res); err != nil {
		return nil, fmt.Errorf("%w: render: %v", ErrChat, err)
	}
	p := &ChatPrompt{
		Prompt:           res.Prompt,
		Grammar:          res.Grammar,
		GrammarLazy:      res.GrammarLazy,
		PreservedTokens:  res.PreservedTokens,
		Stop:             res.AdditionalStops,
		GenerationPrompt: res.GenerationPrompt,
		SupportsThinking: res.SupportsThinking,
		ThinkingStart:    res.ThinkingStart,
		ThinkingEnd:      res.ThinkingEnd,
		Format: ChatFormat{f: chatFormatJSON{
			Format: res.Format, Name: res.FormatName, Reasoning: r.ReasoningFormat,
			GenerationPrompt: res.GenerationPrompt, Parser: res.Parser, ParseToolCalls: true,
			Continuation: req.ContinueFinal,
		}},
	}
	for _, tr := range res.GrammarTriggers {
		switch tr.Type {
		case triggerToken:
			p.GrammarTriggers = append(p.GrammarTriggers, TriggerToken(Token(tr.Token)))
		case triggerWord:
			p.GrammarTriggers = append(p.GrammarTriggers, TriggerWord(tr.Value))
		case triggerPattern:
			p.GrammarTriggers = append(p.GrammarTriggers, TriggerPattern(tr.Value))
		case triggerPatternFull:
			pat := tr.Value
			if pat == "" || pat[0] != '^' {
				pat = "^" + pat
			}
			if pat[len(pat)-1] != '$' {
				pat += "$"
			}
			p.GrammarTriggers = append(p.GrammarTriggers, TriggerPattern(pat))
		}
	}
	return p, nil
}

func (t *ChatTemplate) applyBuiltin(req *ChatRequest, jinjaErr error) (*ChatPrompt, error) {
	if len(req.Tools) > 0 || len(req.JSONSchema) > 0 || req.Grammar != "" {
		return nil, fmt.Errorf("%w: tools, JSON schemas and grammars need a Jinja template (%v)", ErrChat, jinjaErr)
	}
	for _, m := range req.Messages {
		if len(m.ToolCalls) > 0 {
			return nil, fmt.Errorf("%w: tool calls need a Jinja template (%v)", ErrChat, jinjaErr)
		}
	}
	prompt, err := applyBuiltin(t.builtin, req.Messages, !req.NoGenerationPrompt)
	if err != nil {
		if jinjaErr != nil {
			err = fmt.Errorf("%w (Jinja: %v)", err, jinjaErr)
		}
		return nil, err
	}
	reasoning := req.Reasoning
	if reasoning == "" {
		reasoning = ReasoningAuto
	}
	return &ChatPrompt{Prompt: prompt, Builtin: true, JinjaErr: jinjaErr,
		Format: ChatFormat{f: chatFormatJSON{Name: "Content-only", Reasoning: reasoning}}}, nil
}

// ApplyBuiltinChatTemplate renders messages with llama.cpp's built-in templates
// (llama_chat_apply_template, no Jinja): tmpl is a name from BuiltinChatTemplates or a
// template source llama.cpp recognises. Only roles and text content are rendered.
func ApplyBuiltinChatTemplate(tmpl string, messages []Message, addAssistant bool) (string, error) {
	req := ChatRequest{Messages: messages}
	if err := req.check(); err != nil {
		return "", err
	}
	if !utf8.ValidString(tmpl) {
		return "", fmt.Errorf("%w: template: %w", ErrChat, ErrInvalidUTF8)
	}
	return applyBuiltin(tmpl, messages, addAssistant)
}

func applyBuiltin(tmpl string, messages []Message, addAssistant bool) (string, error) {
	type msg struct {
		Role    Role   `json:"role"`
		Content string `json:"content"`
	}
	msgs := make([]msg, len(messages))
	for i := range messages {
		msgs[i] = msg{messages[i].Role, messages[i].Text()}
	}
	in, err := json.Marshal(msgs)
	if err != nil {
		return "", err
	}
	ct, cin := C.CString(tmpl), C.CString(string(in))
	defer C.free(unsafe.Pointer(ct))
	defer C.free(unsafe.Pointer(cin))
	var cerr *C.char
	out := C.lgo_chat_builtin_apply(ct, cin, C.bool(addAssistant), &cerr)
	if out == nil {
		return "", cError(fmt.Errorf("%w: built-in template", ErrChat), cerr)
	}
	defer C.free(unsafe.Pointer(out))
	return C.GoString(out), nil
}

// BuiltinChatTemplates lists the names of llama.cpp's built-in chat templates.
func BuiltinChatTemplates() []string { return slices.Clone(builtinChatTemplates()) }

var builtinChatTemplates = sync.OnceValue(func() []string {
	var cerr *C.char
	out := C.lgo_chat_builtin_templates(&cerr)
	if out == nil {
		if cerr != nil {
			C.free(unsafe.Pointer(cerr))
		}
		return nil
	}
	defer C.free(unsafe.Pointer(out))
	var names []string
	_ = json.Unmarshal([]byte(C.GoString(out)), &names)
	return names
})

// SamplingParams returns base (nil: DefaultSamplingParams) with the prompt's grammar
// and triggers set, as llama-server sets them: a trigger word that is a single
// preserved special token of m becomes a token trigger. A lazy grammar without
// triggers can never start and is left out.
func (p *ChatPrompt) SamplingParams(m *Model, base *SamplingParams) (SamplingParams, error) {
	sp := DefaultSamplingParams()
	if base != nil {
		sp = *base
	}
	if p.Grammar == "" {
		return sp, nil
	}
	if sp.Grammar != "" || sp.ResponseFormat != nil {
		return sp, fmt.Errorf("%w: the chat prompt has a grammar; the sampling parameters must not have one", ErrChat)
	}
	if !p.GrammarLazy {
		sp.Grammar, sp.GrammarTriggers = p.Grammar, nil
		return sp, nil
	}
	preserved := map[Token]bool{}
	for _, tok := range p.PreservedTokens {
		if t, ok := singleToken(m, tok); ok {
			preserved[t] = true
		}
	}
	var triggers []Trigger
	for _, tr := range p.GrammarTriggers {
		if tr.Word != "" {
			if t, ok := singleToken(m, tr.Word); ok && preserved[t] {
				tr = TriggerToken(t)
			}
		}
		if tr.Pattern != "" {
			if _, err := regexp.Compile(tr.Pattern); err != nil {
				// llama.cpp uses ECMAScript regexes; one Go cannot check is left out
				// rather than failing the whole request.
				continue
			}
		}
		triggers = append(triggers, tr)
	}
	if len(triggers) == 0 {
		return sp, nil
	}
	sp.Grammar, sp.GrammarTriggers = p.Grammar, triggers
	return sp, nil
}

// NewSampler builds the sampler for generating the prompt's reply: base (nil:
// DefaultSamplingParams) with the prompt's grammar, which starts past the generation
// prompt the template already wrote, as llama-server's sampler does.
func (p *ChatPrompt) NewSampler(m *Model, base *SamplingParams) (*Sampler, error) {
	sp, err := p.SamplingParams(m, base)
	if err != nil {
		return nil, err
	}
	s, err := NewSamplerFromParams(m, &sp)
	if err != nil {
		return nil, err
	}
	if sp.Grammar != "" && len(sp.GrammarTriggers) == 0 && p.GenerationPrompt != "" {
		if err := prefillGrammar(m, s, p.GenerationPrompt); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

// PreservedTokenIDs are the tokens of PreservedTokens: generated, they must reach the
// ChatParser as text (see NewTextStream).
func (p *ChatPrompt) PreservedTokenIDs(m *Model) []Token {
	var ids []Token
	for _, t := range p.PreservedTokens {
		if tok, ok := singleToken(m, t); ok {
			ids = append(ids, tok)
		}
	}
	return ids
}

// singleToken returns the token text is when it tokenizes to exactly one (special) token.
func singleToken(m *Model, text string) (Token, bool) {
	if m == nil || text == "" {
		return 0, false
	}
	toks, err := m.Tokenize(text, ParseSpecial)
	if err != nil || len(toks) != 1 {
		return 0, false
	}
	return toks[0], true
}
