package llama

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var weatherTool = Tool{
	Name:        "get_weather",
	Description: "Get the current weather in a city",
	Parameters:  json.RawMessage(`{"type": "object", "properties": {"city": {"type": "string", "description": "The city"}}, "required": ["city"]}`),
}

func templatePath(t testing.TB, name string) string {
	t.Helper()
	return filepath.Join(llamaCppDir(t), "models", "templates", name)
}

// readTemplate prepares one of llama.cpp's models/templates/*.jinja without a model.
func readTemplate(t testing.TB, name string) *ChatTemplate {
	t.Helper()
	src, err := os.ReadFile(templatePath(t, name))
	require.NoError(t, err)
	tmpl, err := NewChatTemplate(nil, &ChatTemplateParams{Source: string(src), BOS: "<s>", EOS: "</s>"})
	require.NoError(t, err, name)
	return tmpl
}

// conversation is the fixed conversation every template renders: a system prompt, a
// finished exchange, a tool call with its result, and a new question.
func conversation(withTools bool) []Message {
	msgs := []Message{
		{Role: RoleSystem, Content: "You are terse."},
		{Role: RoleUser, Content: "Hi"},
		{Role: RoleAssistant, Content: "Hello!"},
		{Role: RoleUser, Content: "Weather in Paris?"},
	}
	if withTools {
		msgs = append(msgs,
			Message{Role: RoleAssistant, ToolCalls: []ToolCall{{ID: "call00001", Name: "get_weather", Arguments: `{"city": "Paris"}`}}},
			Message{Role: RoleTool, ToolCallID: "call00001", ToolName: "get_weather", Content: `{"temperature": 21}`},
			Message{Role: RoleAssistant, Content: "It is 21 degrees."},
			Message{Role: RoleUser, Content: "And in Rome?"},
		)
	}
	return msgs
}

// noToolHistory lists templates that cannot render a conversation holding tool calls
// and tool results, with the reason; they still render tool definitions.
var noToolHistory = map[string]string{
	// The template has no tool roles and raises "Conversation roles must alternate
	// user/assistant/..." on a tool result; llama.cpp's own renderer fails the same way.
	"google-gemma-2-2b-it.jinja": "roles must alternate; no tool messages",
}

// TestChatTemplatesRenderAll renders the fixed conversation with every Jinja template
// llama.cpp ships: without tools, with tool definitions, and with tool definitions and
// a history of tool calls and results (noToolHistory lists the one exception).
func TestChatTemplatesRenderAll(t *testing.T) {
	files, err := filepath.Glob(templatePath(t, "*.jinja"))
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(files), 60)
	var plain, tools, history int
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			tmpl := readTemplate(t, name)
			defer tmpl.Close()
			jinja, _ := tmpl.Jinja()
			require.True(t, jinja)
			p, err := tmpl.Apply(&ChatRequest{Messages: conversation(false)})
			require.NoError(t, err)
			assert.Contains(t, p.Prompt, "Weather in Paris?")
			assert.False(t, p.Builtin)
			plain++

			pt, err := tmpl.Apply(&ChatRequest{Messages: conversation(false), Tools: []Tool{weatherTool}})
			require.NoError(t, err)
			assert.Contains(t, pt.Prompt, "Weather in Paris?")
			// The format's parser loads and survives any text (an error is fine: plain
			// text is not valid output for every format).
			parser, err := NewChatParser(pt.Format)
			require.NoError(t, err)
			_, _ = parser.Parse("Sunny.", true)
			_, _ = parser.Parse("Sunny.", false)
			require.NoError(t, parser.Close())
			tools++

			ph, err := tmpl.Apply(&ChatRequest{Messages: conversation(true), Tools: []Tool{weatherTool}})
			if reason, ok := noToolHistory[name]; ok {
				assert.Error(t, err, "listed as failing (%s) but rendered: update noToolHistory", reason)
				return
			}
			require.NoError(t, err)
			assert.Contains(t, ph.Prompt, "And in Rome?")
			history++
		})
	}
	t.Logf("%d templates: %d rendered without tools, %d with tools, %d with tool-call history (%d listed exceptions)",
		len(files), plain, tools, history, len(noToolHistory))
	assert.Equal(t, len(files), plain)
	assert.Equal(t, len(files), tools)
	assert.Equal(t, len(files)-len(noToolHistory), history)
}

// today is the date as Llama 3.x templates print it (strftime_now("%d %b %Y")).
func today() string { return time.Now().Format("02 Jan 2006") }

func TestChatTemplateExpectedText(t *testing.T) {
	llamaToolsPreamble := "Given the following functions, please respond with a JSON for a function call with its proper arguments that best answers the given prompt.\n\n" +
		"Respond in the format {\"name\": function name, \"parameters\": dictionary of argument name and its value}.Do not use variables.\n\n" +
		"{\n    \"type\": \"function\",\n    \"function\": {\n        \"name\": \"get_weather\",\n        \"description\": \"Get the current weather in a city\",\n" +
		"        \"parameters\": {\n            \"type\": \"object\",\n            \"properties\": {\n                \"city\": {\n" +
		"                    \"type\": \"string\",\n                    \"description\": \"The city\"\n                }\n            },\n" +
		"            \"required\": [\n                \"city\"\n            ]\n        }\n    }\n}\n\n"
	llama3 := func(env, firstUser string) string {
		return "<s><|start_header_id|>system<|end_header_id|>\n\n" + env +
			"Cutting Knowledge Date: December 2023\nToday Date: " + today() + "\n\nYou are terse.<|eot_id|>" +
			"<|start_header_id|>user<|end_header_id|>\n\n" + firstUser + "Hi<|eot_id|>" +
			"<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>" +
			"<|start_header_id|>user<|end_header_id|>\n\nWeather in Paris?<|eot_id|>" +
			"<|start_header_id|>assistant<|end_header_id|>\n\n"
	}
	qwenTools := "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n" +
		"You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n" +
		`{"type": "function", "function": {"name": "get_weather", "description": "Get the current weather in a city", "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "The city"}}, "required": ["city"]}}}` +
		"\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n" +
		"<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call>"
	qwen := func(tools string) string {
		return "<|im_start|>system\nYou are terse." + tools + "<|im_end|>\n" +
			"<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n" +
			"<|im_start|>user\nWeather in Paris?<|im_end|>\n<|im_start|>assistant\n"
	}
	mistralTools := `[AVAILABLE_TOOLS][{"type": "function", "function": {"name": "get_weather", "description": "Get the current weather in a city", "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "The city"}}, "required": ["city"]}}}][/AVAILABLE_TOOLS]`
	mistral := func(tools string) string {
		// Mistral puts the system prompt into the last user message.
		return "<s>[INST]Hi[/INST]Hello!</s>" + tools + "[INST]You are terse.\n\nWeather in Paris?[/INST]"
	}
	for _, tc := range []struct {
		template      string
		plain, tooled string
		header        string // the generation prompt: the start of the reply
	}{
		{"meta-llama-Llama-3.1-8B-Instruct.jinja", llama3("", ""), llama3("Environment: ipython\n", llamaToolsPreamble), "<|start_header_id|>assistant<|end_header_id|>\n\n"},
		{"meta-llama-Llama-3.2-3B-Instruct.jinja", llama3("", ""), llama3("Environment: ipython\n", llamaToolsPreamble), "<|start_header_id|>assistant<|end_header_id|>\n\n"},
		{"meta-llama-Llama-3.3-70B-Instruct.jinja", llama3("", ""), llama3("Environment: ipython\n", llamaToolsPreamble), "<|start_header_id|>assistant<|end_header_id|>\n\n"},
		{"Qwen-Qwen2.5-7B-Instruct.jinja", qwen(""), qwen(qwenTools), "<|im_start|>assistant\n"},
		{"mistralai-Mistral-Nemo-Instruct-2407.jinja", mistral(""), mistral(mistralTools), ""},
	} {
		t.Run(tc.template, func(t *testing.T) {
			tmpl := readTemplate(t, tc.template)
			defer tmpl.Close()
			p, err := tmpl.Apply(&ChatRequest{Messages: conversation(false)})
			require.NoError(t, err)
			assert.Equal(t, tc.plain, p.Prompt)
			p, err = tmpl.Apply(&ChatRequest{Messages: conversation(false), Tools: []Tool{weatherTool}})
			require.NoError(t, err)
			assert.Equal(t, tc.tooled, p.Prompt)
			p, err = tmpl.Apply(&ChatRequest{Messages: conversation(false), NoGenerationPrompt: true})
			require.NoError(t, err)
			assert.Equal(t, tc.plain, p.Prompt+tc.header, "without the generation prompt the assistant header is left out")
		})
	}
}
