package llama

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// formatFor renders a one-question conversation with the weather tool and returns the
// format its reply is parsed with.
func formatFor(t *testing.T, template string, req *ChatRequest) ChatFormat {
	t.Helper()
	tmpl := readTemplate(t, template)
	defer tmpl.Close()
	if req == nil {
		req = &ChatRequest{Tools: []Tool{weatherTool}}
	}
	req.Messages = []Message{{Role: RoleUser, Content: "Weather in Paris?"}}
	p, err := tmpl.Apply(req)
	require.NoError(t, err)
	return p.Format
}

func TestChatParseToolCalls(t *testing.T) {
	for _, tc := range []struct {
		name, template, output string
		content                string
		calls                  []ToolCall // ID "" means generated
	}{
		{"llama3.1 json", "meta-llama-Llama-3.1-8B-Instruct.jinja",
			`{"name": "get_weather", "parameters": {"city": "Paris"}}`, "",
			[]ToolCall{{Name: "get_weather", Arguments: `{"city": "Paris"}`}}},
		{"llama3.2 json", "meta-llama-Llama-3.2-3B-Instruct.jinja",
			`{"type": "function", "name": "get_weather", "parameters": {"city": "Paris"}}`, "",
			[]ToolCall{{Name: "get_weather", Arguments: `{"city": "Paris"}`}}},
		{"llama3.3 json", "meta-llama-Llama-3.3-70B-Instruct.jinja",
			`{"name": "get_weather", "parameters": {"city": "Rome"}}`, "",
			[]ToolCall{{Name: "get_weather", Arguments: `{"city": "Rome"}`}}},
		{"llama3 plain text", "meta-llama-Llama-3.1-8B-Instruct.jinja", "It is sunny.", "It is sunny.", nil},
		{"qwen2.5 hermes", "Qwen-Qwen2.5-7B-Instruct.jinja",
			"Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>",
			"Let me check.\n", []ToolCall{{Name: "get_weather", Arguments: `{"city": "Paris"}`}}},
		{"hermes 3", "NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja",
			"<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>",
			"", []ToolCall{{Name: "get_weather", Arguments: `{"city": "Paris"}`}}},
		{"mistral nemo", "mistralai-Mistral-Nemo-Instruct-2407.jinja",
			`[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "abc123xyz"}]`, "",
			[]ToolCall{{ID: "abc123xyz", Name: "get_weather", Arguments: `{"city": "Paris"}`}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := formatFor(t, tc.template, nil)
			m, err := f.Parse(tc.output, false)
			require.NoError(t, err)
			assert.Equal(t, RoleAssistant, m.Role)
			assert.Equal(t, tc.content, m.Content)
			require.Len(t, m.ToolCalls, len(tc.calls))
			for i, want := range tc.calls {
				got := m.ToolCalls[i]
				assert.Equal(t, want.Name, got.Name)
				assert.JSONEq(t, want.Arguments, got.Arguments)
				if want.ID != "" {
					assert.Equal(t, want.ID, got.ID)
				} else {
					assert.True(t, strings.HasPrefix(got.ID, "call_"), got.ID)
				}
			}
		})
	}
}

// TestChatParseStreaming parses every prefix of replies as a stream does: partial
// parses never fail once the text is under way, content only grows, a tool call appears
// with its name and keeps its id, and the final parse has the complete call.
func TestChatParseStreaming(t *testing.T) {
	for _, tc := range []struct {
		template, output, content string
		id                        string // the id the model writes, "" for none
	}{
		{"Qwen-Qwen2.5-7B-Instruct.jinja", "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>", "Let me check.\n", ""},
		{"meta-llama-Llama-3.1-8B-Instruct.jinja", `{"name": "get_weather", "parameters": {"city": "Paris"}}`, "", ""},
		{"mistralai-Mistral-Nemo-Instruct-2407.jinja", `[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "abc123xyz"}]`, "", "abc123xyz"},
	} {
		t.Run(tc.template, func(t *testing.T) {
			p, err := NewChatParser(formatFor(t, tc.template, nil))
			require.NoError(t, err)
			defer p.Close()
			var id, content string
			sawPartialCall := false
			for i := 1; i <= len(tc.output); i++ {
				m, err := p.Parse(tc.output[:i], true)
				require.NoError(t, err, "prefix %q", tc.output[:i])
				assert.True(t, strings.HasPrefix(m.Content, content) || strings.HasPrefix(content, m.Content),
					"content %q then %q", content, m.Content)
				content = m.Content
				if len(m.ToolCalls) > 0 {
					tcall := m.ToolCalls[0]
					if id == "" || tcall.ID == tc.id {
						id = tcall.ID // a generated id until the model writes its own
					}
					assert.Equal(t, id, tcall.ID, "ids are stable across partial parses")
					if tcall.Name == "get_weather" && !json.Valid([]byte(tcall.Arguments)) {
						sawPartialCall = true
					}
				}
			}
			assert.True(t, sawPartialCall, "a call shows before its arguments are complete")
			m, err := p.Parse(tc.output, false)
			require.NoError(t, err)
			assert.Equal(t, tc.content, m.Content)
			require.Len(t, m.ToolCalls, 1)
			assert.Equal(t, id, m.ToolCalls[0].ID)
			assert.JSONEq(t, `{"city": "Paris"}`, m.ToolCalls[0].Arguments)
		})
	}
}

func TestChatParseReasoning(t *testing.T) {
	f := formatFor(t, "Qwen-Qwen3-0.6B.jinja", &ChatRequest{})
	m, err := f.Parse("<think>\nThe user wants weather.\n</think>\n\nIt is sunny.", false)
	require.NoError(t, err)
	assert.Equal(t, "The user wants weather.\n", m.ReasoningContent)
	assert.Equal(t, "It is sunny.", m.Content)
	m, err = f.Parse("<think>\nStill think", true)
	require.NoError(t, err)
	assert.Equal(t, "Still think", m.ReasoningContent)
	assert.Empty(t, m.Content)

	// ReasoningNone leaves thinking in the content.
	f = formatFor(t, "Qwen-Qwen3-0.6B.jinja", &ChatRequest{Reasoning: ReasoningNone})
	m, err = f.Parse("<think>\nhmm\n</think>\n\nIt is sunny.", false)
	require.NoError(t, err)
	assert.Empty(t, m.ReasoningContent)
	assert.Contains(t, m.Content, "It is sunny.")

	// The format survives a JSON round trip.
	b, err := json.Marshal(formatFor(t, "Qwen-Qwen3-0.6B.jinja", &ChatRequest{}))
	require.NoError(t, err)
	var f2 ChatFormat
	require.NoError(t, json.Unmarshal(b, &f2))
	m, err = f2.Parse("<think>x</think>y", false)
	require.NoError(t, err)
	assert.Equal(t, "x", m.ReasoningContent)
	assert.Equal(t, "y", m.Content)
}

func TestChatParseBadInput(t *testing.T) {
	p, err := NewChatParser(formatFor(t, "Qwen-Qwen2.5-7B-Instruct.jinja", nil))
	require.NoError(t, err)
	_, err = p.Parse("bad \xff utf8", false)
	assert.ErrorIs(t, err, ErrInvalidUTF8)
	// A partial parse cuts an incomplete character at the end instead of failing.
	m, err := p.Parse("caf\xc3", true)
	require.NoError(t, err)
	assert.Equal(t, "caf", m.Content)
	require.NoError(t, p.Close())
	require.NoError(t, p.Close())
	_, err = p.Parse("x", false)
	assert.ErrorIs(t, err, ErrClosed)

	var f ChatFormat
	require.NoError(t, json.Unmarshal([]byte(`{"format": 99}`), &f))
	_, err = NewChatParser(f)
	assert.ErrorIs(t, err, ErrChat)
	require.NoError(t, json.Unmarshal([]byte(`{"format": 2, "parser": "{not an arena"}`), &f))
	_, err = NewChatParser(f)
	assert.ErrorIs(t, err, ErrChat)
	require.NoError(t, json.Unmarshal([]byte(`{"format": 1, "reasoning_format": "psychic"}`), &f))
	_, err = NewChatParser(f)
	assert.ErrorIs(t, err, ErrChat)

	// Output that breaks a strict format is an error, not a crash.
	g := formatFor(t, "openai-gpt-oss-120b.jinja", nil)
	_, err = g.Parse("<|channel|>final<|message|>ok<|end|><|start|>garbage", false)
	_ = err // either parses leniently or fails; it must return
}
