package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/llamago/llamago/internal/testmodel"
	"github.com/llamago/llamago/llama"
)

// Random weights do not call tools, so the streaming of tool calls is checked on the
// text a Qwen 2.5 model writes for one, fed to the real parser a few bytes at a time:
// the deltas a client accumulates must add up to the final message.
func TestStreamedToolCallDeltas(t *testing.T) {
	dir := filepath.Dir(testmodel.VocabPath(t, "qwen2"))
	src, err := os.ReadFile(filepath.Join(dir, "templates", "Qwen-Qwen2.5-7B-Instruct.jinja"))
	require.NoError(t, err)
	tmpl, err := llama.NewChatTemplate(nil, &llama.ChatTemplateParams{Source: string(src)})
	require.NoError(t, err)
	defer tmpl.Close()
	var tool llama.Tool
	require.NoError(t, tool.UnmarshalJSON([]byte(`{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}`)))
	prompt, err := tmpl.Apply(&llama.ChatRequest{Messages: []llama.Message{{Role: llama.RoleUser, Content: "Weather in Paris and Rome?"}}, Tools: []llama.Tool{tool}})
	require.NoError(t, err)

	reply := "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n" +
		"<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}}\n</tool_call>"
	parser, err := llama.NewChatParser(prompt.Format)
	require.NoError(t, err)
	defer parser.Close()

	var prev llama.Message
	var content string
	type call struct{ id, name, args string }
	var calls []call
	apply := func(d *chatMessage) {
		if d == nil {
			return
		}
		if d.Content != nil {
			content += *d.Content
		}
		for _, tc := range d.ToolCalls {
			require.NotNil(t, tc.Index)
			for len(calls) <= *tc.Index {
				calls = append(calls, call{})
			}
			c := &calls[*tc.Index]
			if tc.ID != "" {
				c.id = tc.ID
			}
			c.name += tc.Function.Name
			c.args += tc.Function.Arguments
		}
	}
	for n := 3; n < len(reply); n += 3 {
		if msg, err := parser.Parse(reply[:n], true); err == nil {
			apply(diffMessages(&prev, &msg))
		}
	}
	final, err := parser.Parse(reply, false)
	require.NoError(t, err)
	apply(diffMessages(&prev, &final))

	require.Len(t, final.ToolCalls, 2)
	assert.Equal(t, final.Content, content)
	require.Len(t, calls, 2)
	for i, c := range final.ToolCalls {
		assert.Equal(t, c.ID, calls[i].id)
		assert.Equal(t, "get_weather", calls[i].name)
		assert.JSONEq(t, c.Arguments, calls[i].args)
	}
	assert.JSONEq(t, `{"city":"Rome"}`, calls[1].args)
	assert.Nil(t, diffMessages(&prev, &final), "nothing new after the end")
}
