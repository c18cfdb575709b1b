package llama

import (
	"encoding/json"
	"fmt"
	"unicode/utf8"
)

// Chat: conversations rendered with the model's own chat template (llama.cpp's Jinja
// engine, as llama-server renders them), model output parsed back into typed messages
// (content, reasoning, tool calls), and ChatSession, which keeps a conversation and its
// KV cache. See ChatTemplate, ChatParser and ChatSession.

// Role is the author of a chat message.
type Role string

// The roles every chat template knows.
const (
	RoleSystem    Role = "system"
	RoleUser      Role = "user"
	RoleAssistant Role = "assistant"
	RoleTool      Role = "tool" // the result of a tool call
)

// ContentPart is one part of a multi-part message content: text ("text"), or an image
// ("image") or audio clip ("audio") in Media, which a template renders as MediaMarker and a
// ChatSession with a Projector feeds to the model there.
type ContentPart struct {
	Type  string `json:"type"` // "text", "image" or "audio"
	Text  string `json:"text"`
	Media *Media `json:"-"`
}

// MediaMarker stands for one media item in a rendered prompt (libmtmd's default marker).
const MediaMarker = "<__media__>"

// MarshalJSON writes a text part; a media part becomes the text MediaMarker.
func (p ContentPart) MarshalJSON() ([]byte, error) {
	if p.Type == "image" || p.Type == "audio" {
		return json.Marshal(struct {
			Type string `json:"type"`
			Text string `json:"text"`
		}{"text", MediaMarker})
	}
	return json.Marshal(struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}{p.Type, p.Text})
}

// media returns the media of the messages' parts, in order.
func media(msgs []Message) []*Media {
	var out []*Media
	for _, m := range msgs {
		for _, p := range m.Parts {
			if p.Media != nil {
				out = append(out, p.Media)
			}
		}
	}
	return out
}

// ToolCall is a call of a tool (function) by the assistant.
type ToolCall struct {
	ID        string // may be empty when the format has no ids; ChatParser assigns one
	Name      string
	Arguments string // JSON text of the arguments object (may be incomplete in partial parses)
}

// Message is one message of a conversation. Its JSON form is OpenAI's chat message format.
type Message struct {
	Role    Role
	Content string
	// Parts is a multi-part content, used instead of Content when not empty.
	Parts []ContentPart
	// ReasoningContent is the assistant's reasoning ("thinking"), kept apart from Content.
	ReasoningContent string
	// ToolCalls are the assistant's tool calls.
	ToolCalls []ToolCall
	// ToolName and ToolCallID identify, in a RoleTool message, the call it answers.
	ToolName   string
	ToolCallID string
}

// Text is the message's content as one string (parts joined with newlines; media parts
// as MediaMarker).
func (m *Message) Text() string {
	if len(m.Parts) == 0 {
		return m.Content
	}
	var b []byte
	for i, p := range m.Parts {
		if i > 0 {
			b = append(b, '\n')
		}
		if p.Type == "image" || p.Type == "audio" {
			b = append(b, MediaMarker...)
		} else {
			b = append(b, p.Text...)
		}
	}
	return string(b)
}

type oaiFunctionCall struct {
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
}

type oaiToolCall struct {
	ID       string          `json:"id,omitempty"`
	Type     string          `json:"type"`
	Function oaiFunctionCall `json:"function"`
}

type oaiMessage struct {
	Role             Role            `json:"role"`
	Content          json.RawMessage `json:"content"`
	ReasoningContent string          `json:"reasoning_content,omitempty"`
	ToolCalls        []oaiToolCall   `json:"tool_calls,omitempty"`
	Name             string          `json:"name,omitempty"`
	ToolCallID       string          `json:"tool_call_id,omitempty"`
}

// MarshalJSON writes the message in OpenAI's chat format.
func (m Message) MarshalJSON() ([]byte, error) {
	o := oaiMessage{Role: m.Role, ReasoningContent: m.ReasoningContent, Name: m.ToolName, ToolCallID: m.ToolCallID}
	var err error
	if len(m.Parts) > 0 {
		o.Content, err = json.Marshal(m.Parts)
	} else {
		o.Content, err = json.Marshal(m.Content)
	}
	if err != nil {
		return nil, err
	}
	for _, tc := range m.ToolCalls {
		args := tc.Arguments
		if args == "" {
			args = "{}"
		}
		o.ToolCalls = append(o.ToolCalls, oaiToolCall{ID: tc.ID, Type: "function", Function: oaiFunctionCall{tc.Name, args}})
	}
	return json.Marshal(o)
}

// UnmarshalJSON reads a message in OpenAI's chat format (content as a string, an array
// of parts or null; tool call arguments as a JSON string or object).
func (m *Message) UnmarshalJSON(b []byte) error {
	var o struct {
		oaiMessage
		ToolCalls []struct {
			ID       string `json:"id"`
			Function struct {
				Name      string          `json:"name"`
				Arguments json.RawMessage `json:"arguments"`
			} `json:"function"`
		} `json:"tool_calls"`
	}
	if err := json.Unmarshal(b, &o); err != nil {
		return err
	}
	*m = Message{Role: o.Role, ReasoningContent: o.ReasoningContent, ToolName: o.Name, ToolCallID: o.ToolCallID}
	if len(o.Content) > 0 && string(o.Content) != "null" {
		if o.Content[0] == '[' {
			if err := json.Unmarshal(o.Content, &m.Parts); err != nil {
				return err
			}
		} else if err := json.Unmarshal(o.Content, &m.Content); err != nil {
			return err
		}
	}
	for _, tc := range o.ToolCalls {
		args := string(tc.Function.Arguments)
		var s string
		if json.Unmarshal(tc.Function.Arguments, &s) == nil {
			args = s
		}
		m.ToolCalls = append(m.ToolCalls, ToolCall{ID: tc.ID, Name: tc.Function.Name, Arguments: args})
	}
	return nil
}

// Tool is a function the model may call, described by a JSON schema of its arguments.
type Tool struct {
	Name        string
	Description string
	// Parameters is the JSON schema of the arguments object; empty means no arguments.
	Parameters json.RawMessage
}

// MarshalJSON writes the tool in OpenAI's format ({"type": "function", "function": {...}}).
func (t Tool) MarshalJSON() ([]byte, error) {
	params := t.Parameters
	if len(params) == 0 {
		params = json.RawMessage(`{"type": "object", "properties": {}}`)
	}
	return json.Marshal(map[string]any{
		"type": "function",
		"function": map[string]any{
			"name": t.Name, "description": t.Description, "parameters": params,
		},
	})
}

// UnmarshalJSON reads a tool in OpenAI's format.
func (t *Tool) UnmarshalJSON(b []byte) error {
	var o struct {
		Function struct {
			Name        string          `json:"name"`
			Description string          `json:"description"`
			Parameters  json.RawMessage `json:"parameters"`
		} `json:"function"`
	}
	if err := json.Unmarshal(b, &o); err != nil {
		return err
	}
	*t = Tool{Name: o.Function.Name, Description: o.Function.Description, Parameters: o.Function.Parameters}
	return nil
}

// ToolChoice says whether the model may, must or must not call tools.
type ToolChoice string

const (
	ToolChoiceAuto     ToolChoice = "auto" // the model decides (default)
	ToolChoiceRequired ToolChoice = "required"
	ToolChoiceNone     ToolChoice = "none"
)

// ReasoningFormat says where a reasoning model's thinking goes when its output is parsed.
type ReasoningFormat string

const (
	// ReasoningAuto extracts thinking into Message.ReasoningContent (the default).
	ReasoningAuto ReasoningFormat = "auto"
	// ReasoningNone leaves thinking in Content, tags included.
	ReasoningNone ReasoningFormat = "none"
	// ReasoningDeepSeek is llama-server's "deepseek": like ReasoningAuto.
	ReasoningDeepSeek ReasoningFormat = "deepseek"
	// ReasoningDeepSeekLegacy is llama-server's "deepseek-legacy".
	ReasoningDeepSeekLegacy ReasoningFormat = "deepseek-legacy"
)

// ChatRequest is a conversation to render, with what the model may do next.
type ChatRequest struct {
	Messages []Message
	// Tools the model may call, and whether it must (ToolChoice "" means auto).
	Tools             []Tool
	ToolChoice        ToolChoice
	ParallelToolCalls bool
	// NoGenerationPrompt leaves out the assistant header that starts the reply.
	NoGenerationPrompt bool
	// ContinueFinal renders the last (assistant) message open, for the model to continue it.
	ContinueFinal bool
	// Reasoning says where thinking goes when parsing ("": ReasoningAuto);
	// DisableThinking asks templates that support it not to think (enable_thinking=false).
	Reasoning       ReasoningFormat
	DisableThinking bool
	// JSONSchema or Grammar constrain the reply (not together with tools).
	JSONSchema json.RawMessage
	Grammar    string
	// TemplateArgs are extra variables for the template (chat_template_kwargs), e.g.
	// {"reasoning_effort": "low"}.
	TemplateArgs map[string]any
}

var validRoles = map[Role]bool{RoleSystem: true, RoleUser: true, RoleAssistant: true, RoleTool: true, "developer": true}

// check validates the request before it reaches C++.
func (r *ChatRequest) check() error {
	for i := range r.Messages {
		m := &r.Messages[i]
		if !validRoles[m.Role] {
			return fmt.Errorf("%w: message %d: invalid role %q (want system, user, assistant or tool)", ErrChat, i, m.Role)
		}
		if !utf8.ValidString(m.Content) || !utf8.ValidString(m.ReasoningContent) {
			return fmt.Errorf("%w: message %d: %w", ErrChat, i, ErrInvalidUTF8)
		}
		for _, p := range m.Parts {
			if !utf8.ValidString(p.Text) {
				return fmt.Errorf("%w: message %d: %w", ErrChat, i, ErrInvalidUTF8)
			}
			switch {
			case p.Type == "text":
			case p.Type == "image" || p.Type == "audio":
				if p.Media == nil || p.Media.ptr == nil || p.Media.IsAudio() != (p.Type == "audio") {
					return fmt.Errorf("%w: message %d: %s part without %s media (or closed)", ErrChat, i, p.Type, p.Type)
				}
			default:
				return fmt.Errorf("%w: message %d: content part type %q: want text, image or audio", ErrChat, i, p.Type)
			}
		}
		if len(m.ToolCalls) > 0 && m.Role != RoleAssistant {
			return fmt.Errorf("%w: message %d: only assistant messages have tool calls", ErrChat, i)
		}
		for _, tc := range m.ToolCalls {
			if tc.Name == "" {
				return fmt.Errorf("%w: message %d: tool call without a name", ErrChat, i)
			}
			if tc.Arguments != "" && !json.Valid([]byte(tc.Arguments)) {
				return fmt.Errorf("%w: message %d: tool call %s: arguments are not valid JSON", ErrChat, i, tc.Name)
			}
		}
	}
	seen := map[string]bool{}
	for _, t := range r.Tools {
		if err := t.check(); err != nil {
			return err
		}
		if seen[t.Name] {
			return fmt.Errorf("%w: tool %q defined twice", ErrChat, t.Name)
		}
		seen[t.Name] = true
	}
	switch r.ToolChoice {
	case "", ToolChoiceAuto, ToolChoiceNone, ToolChoiceRequired:
	default:
		return fmt.Errorf("%w: invalid tool choice %q", ErrChat, r.ToolChoice)
	}
	if r.ToolChoice == ToolChoiceRequired && len(r.Tools) == 0 {
		return fmt.Errorf("%w: tool choice %q without tools", ErrChat, r.ToolChoice)
	}
	switch r.Reasoning {
	case "", ReasoningAuto, ReasoningNone, ReasoningDeepSeek, ReasoningDeepSeekLegacy:
	default:
		return fmt.Errorf("%w: invalid reasoning format %q", ErrChat, r.Reasoning)
	}
	if len(r.JSONSchema) > 0 && !json.Valid(r.JSONSchema) {
		return fmt.Errorf("%w: JSON schema is not valid JSON", ErrChat)
	}
	if (len(r.JSONSchema) > 0 || r.Grammar != "") && len(r.Tools) > 0 && r.ToolChoice != ToolChoiceNone {
		return fmt.Errorf("%w: a JSON schema or grammar cannot be combined with tools", ErrChat)
	}
	return nil
}

// check validates a tool definition: a name and an object schema.
func (t *Tool) check() error {
	if t.Name == "" {
		return fmt.Errorf("%w: tool without a name", ErrChat)
	}
	if len(t.Parameters) == 0 {
		return nil
	}
	var schema any
	if err := json.Unmarshal(t.Parameters, &schema); err != nil {
		return fmt.Errorf("%w: tool %q: parameters are not valid JSON: %v", ErrChat, t.Name, err)
	}
	obj, ok := schema.(map[string]any)
	if !ok {
		return fmt.Errorf("%w: tool %q: parameters must be a JSON schema object", ErrChat, t.Name)
	}
	if typ, ok := obj["type"]; ok && typ != "object" {
		return fmt.Errorf("%w: tool %q: parameters must describe an object, not %v", ErrChat, t.Name, typ)
	}
	if props, ok := obj["properties"]; ok {
		if _, ok := props.(map[string]any); !ok {
			return fmt.Errorf("%w: tool %q: properties must be an object", ErrChat, t.Name)
		}
	}
	return nil
}
