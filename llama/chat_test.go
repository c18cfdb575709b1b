package llama

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestChatBadInput(t *testing.T) {
	tmpl := readTemplate(t, "Qwen-Qwen2.5-7B-Instruct.jinja")
	defer tmpl.Close()
	user := Message{Role: RoleUser, Content: "hi"}
	for name, req := range map[string]*ChatRequest{
		"invalid role":           {Messages: []Message{{Role: "wizard", Content: "x"}}},
		"empty role":             {Messages: []Message{{Content: "x"}}},
		"invalid UTF-8":          {Messages: []Message{{Role: RoleUser, Content: "\xff"}}},
		"image part":             {Messages: []Message{{Role: RoleUser, Parts: []ContentPart{{Type: "image_url", Text: "x"}}}}},
		"user tool calls":        {Messages: []Message{{Role: RoleUser, ToolCalls: []ToolCall{{Name: "f"}}}}},
		"unnamed tool call":      {Messages: []Message{{Role: RoleAssistant, ToolCalls: []ToolCall{{Arguments: "{}"}}}}},
		"bad call arguments":     {Messages: []Message{{Role: RoleAssistant, ToolCalls: []ToolCall{{Name: "f", Arguments: "{nope"}}}}},
		"unnamed tool":           {Messages: []Message{user}, Tools: []Tool{{Parameters: json.RawMessage(`{"type": "object"}`)}}},
		"schema not JSON":        {Messages: []Message{user}, Tools: []Tool{{Name: "f", Parameters: json.RawMessage(`{"type": `)}}},
		"schema not object":      {Messages: []Message{user}, Tools: []Tool{{Name: "f", Parameters: json.RawMessage(`[1, 2]`)}}},
		"schema of a string":     {Messages: []Message{user}, Tools: []Tool{{Name: "f", Parameters: json.RawMessage(`{"type": "string"}`)}}},
		"properties not object":  {Messages: []Message{user}, Tools: []Tool{{Name: "f", Parameters: json.RawMessage(`{"type": "object", "properties": 3}`)}}},
		"duplicate tool":         {Messages: []Message{user}, Tools: []Tool{weatherTool, weatherTool}},
		"bad tool choice":        {Messages: []Message{user}, Tools: []Tool{weatherTool}, ToolChoice: "maybe"},
		"required without tools": {Messages: []Message{user}, ToolChoice: ToolChoiceRequired},
		"bad reasoning":          {Messages: []Message{user}, Reasoning: "vibes"},
		"schema and tools":       {Messages: []Message{user}, Tools: []Tool{weatherTool}, JSONSchema: json.RawMessage(`{"type": "object"}`)},
		"schema not valid JSON":  {Messages: []Message{user}, JSONSchema: json.RawMessage(`{`)},
		// Reaches upstream's converter, which throws: the barrier turns it into an error.
		"unsupported schema":   {Messages: []Message{user}, Tools: []Tool{{Name: "f", Parameters: json.RawMessage(`{"type": "object", "properties": {"a": {"$ref": "#/nowhere"}}}`)}}},
		"response schema $ref": {Messages: []Message{user}, JSONSchema: json.RawMessage(`{"$ref": "#/definitions/missing"}`)},
	} {
		_, err := tmpl.Apply(req)
		assert.ErrorIs(t, err, ErrChat, name)
	}
	// A template that fails at render time (raise_exception) returns its message.
	strict, err := NewChatTemplate(nil, &ChatTemplateParams{Source: `{% for m in messages %}{% if m.role == 'user' %}{{ raise_exception('no users here') }}{% endif %}{% endfor %}`})
	require.NoError(t, err)
	defer strict.Close()
	_, err = strict.Apply(&ChatRequest{Messages: []Message{user}})
	require.ErrorIs(t, err, ErrChat)
	assert.Contains(t, err.Error(), "no users here")
}

func TestChatTemplateBadSource(t *testing.T) {
	for name, src := range map[string]string{
		"unclosed block": "{% for m in messages %}{{ m.content }}",
		"bad syntax":     "{% for in %}",
		"unclosed expr":  "{{ messages[0",
		"invalid UTF-8":  "{{ '\xff' }}",
	} {
		_, err := NewChatTemplate(nil, &ChatTemplateParams{Source: src})
		assert.Error(t, err, name)
	}
	_, err := NewChatTemplate(nil, nil)
	assert.ErrorIs(t, err, ErrInvalidParams)
	_, err = NewChatTemplate(nil, &ChatTemplateParams{Source: "not-a-template-name", NoJinja: true})
	assert.ErrorIs(t, err, ErrChat)
}

func TestChatTemplateBuiltinFallback(t *testing.T) {
	names := BuiltinChatTemplates()
	require.Contains(t, names, "llama3")
	require.Contains(t, names, "chatml")
	msgs := []Message{{Role: RoleSystem, Content: "sys"}, {Role: RoleUser, Content: "hi"}}

	// A built-in template by name.
	tmpl, err := NewChatTemplate(nil, &ChatTemplateParams{Source: "llama3"})
	require.NoError(t, err)
	jinja, _ := tmpl.Jinja()
	assert.False(t, jinja)
	p, err := tmpl.Apply(&ChatRequest{Messages: msgs})
	require.NoError(t, err)
	assert.True(t, p.Builtin)
	assert.Equal(t, "<|start_header_id|>system<|end_header_id|>\n\nsys<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n", p.Prompt)
	_, err = tmpl.Apply(&ChatRequest{Messages: msgs, Tools: []Tool{weatherTool}})
	assert.ErrorIs(t, err, ErrChat, "tools need Jinja")
	m, err := p.Format.Parse("Hello", false)
	require.NoError(t, err)
	assert.Equal(t, "Hello", m.Content)
	require.NoError(t, tmpl.Close())
	_, err = tmpl.Apply(&ChatRequest{Messages: msgs})
	assert.ErrorIs(t, err, ErrClosed)

	// A Jinja template the engine cannot parse, but llama.cpp recognises (ChatML markers):
	// the built-in template renders it.
	broken := "{% for message in messages %}<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %"
	tmpl, err = NewChatTemplate(nil, &ChatTemplateParams{Source: broken})
	require.NoError(t, err)
	defer tmpl.Close()
	jinja, jerr := tmpl.Jinja()
	assert.False(t, jinja)
	assert.ErrorIs(t, jerr, ErrChat)
	p, err = tmpl.Apply(&ChatRequest{Messages: msgs})
	require.NoError(t, err)
	assert.True(t, p.Builtin)
	assert.Equal(t, "<|im_start|>system\nsys<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n", p.Prompt)

	// NoJinja with the model's own template, and the direct API.
	out, err := ApplyBuiltinChatTemplate("chatml", msgs, false)
	require.NoError(t, err)
	assert.Equal(t, "<|im_start|>system\nsys<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n", out)
	_, err = ApplyBuiltinChatTemplate("no such template", msgs, true)
	assert.ErrorIs(t, err, ErrChat)
	_, err = ApplyBuiltinChatTemplate("chatml", []Message{{Role: "bad"}}, true)
	assert.ErrorIs(t, err, ErrChat)
}

func TestChatTemplateFromModel(t *testing.T) {
	m := loadQwenTiny(t)
	tmpl, err := NewChatTemplate(m, nil)
	require.NoError(t, err)
	defer tmpl.Close()
	assert.Equal(t, m.Info().ChatTemplate, tmpl.Source())
	p, err := tmpl.Apply(&ChatRequest{Messages: []Message{{Role: RoleUser, Content: "Hi"}}})
	require.NoError(t, err)
	// The Qwen2 vocabulary's ChatML template adds a default system prompt.
	assert.Equal(t, "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", p.Prompt)

	// Multi-part content renders as text.
	p, err = tmpl.Apply(&ChatRequest{Messages: []Message{{Role: RoleUser, Parts: []ContentPart{{Type: "text", Text: "a"}, {Type: "text", Text: "b"}}}}})
	require.NoError(t, err)
	assert.Contains(t, p.Prompt, "a")

	// The same with the built-in template only.
	bt, err := NewChatTemplate(m, &ChatTemplateParams{NoJinja: true})
	require.NoError(t, err)
	defer bt.Close()
	pb, err := bt.Apply(&ChatRequest{Messages: []Message{{Role: RoleUser, Content: "Hi"}}})
	require.NoError(t, err)
	assert.True(t, pb.Builtin)
	assert.Contains(t, pb.Prompt, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")

	require.NoError(t, m.Close())
	_, err = NewChatTemplate(m, nil)
	assert.ErrorIs(t, err, ErrClosed)
}

func TestMessageJSON(t *testing.T) {
	in := []Message{
		{Role: RoleUser, Parts: []ContentPart{{Type: "text", Text: "a"}}},
		{Role: RoleAssistant, ReasoningContent: "r", ToolCalls: []ToolCall{{ID: "1", Name: "f", Arguments: `{"x":1}`}}},
		{Role: RoleTool, ToolName: "f", ToolCallID: "1", Content: "ok"},
	}
	b, err := json.Marshal(in)
	require.NoError(t, err)
	assert.Contains(t, string(b), `"arguments":"{\"x\":1}"`)
	var out []Message
	require.NoError(t, json.Unmarshal(b, &out))
	assert.Equal(t, in, out)
	// Arguments as an object (as some clients send them) and null content.
	var m Message
	require.NoError(t, json.Unmarshal([]byte(`{"role":"assistant","content":null,"tool_calls":[{"type":"function","function":{"name":"f","arguments":{"x":1}}}]}`), &m))
	assert.Equal(t, `{"x":1}`, m.ToolCalls[0].Arguments)
}
