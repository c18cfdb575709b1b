package llama

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"

	"github.com/llamago/llamago/llama/gguf"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// loadQwenTiny loads the qwen2-tiny synthetic model (Qwen2 vocabulary, whose GGUF
// carries a ChatML chat template) on the CPU.
func loadQwenTiny(t testing.TB) *Model {
	t.Helper()
	m, err := LoadModel(context.Background(), synthModel(t, "qwen2-tiny", gguf.TypeF16), &ModelParams{GPULayers: 0})
	require.NoError(t, err)
	t.Cleanup(func() { m.Close() })
	return m
}

func greedyParams() *SamplingParams {
	sp := DefaultSamplingParams()
	sp.Temperature = 0
	return &sp
}

func newTestSession(t *testing.T, m *Model, nCtx int, p *ChatSessionParams) (*Context, *ChatSession) {
	t.Helper()
	c, err := m.NewContext(&ContextParams{NCtx: nCtx, Threads: 1})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	s, err := NewChatSession(c, p)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return c, s
}

func drain(t testing.TB, seq func(func(ChatDelta, error) bool)) (string, error) {
	t.Helper()
	var text string
	for d, err := range seq {
		if err != nil {
			return text, err
		}
		text += d.Text
	}
	return text, nil
}

func TestChatSessionReusesPrefix(t *testing.T) {
	m := loadQwenTiny(t)
	require.Contains(t, m.Info().ChatTemplate, "<|im_start|>", "the qwen2 vocab carries a ChatML template")
	c, s := newTestSession(t, m, 512, &ChatSessionParams{System: "You are terse.", Sampling: greedyParams(), MaxTokens: 8})

	text, err := drain(t, s.Say(t.Context(), "Hello there"))
	require.NoError(t, err)
	t1 := s.LastTurn()
	assert.Equal(t, text, t1.Text)
	assert.Equal(t, 0, t1.PromptTokensReused)
	assert.Equal(t, t1.PromptTokens, t1.PromptTokensDecoded)
	assert.Positive(t, t1.GeneratedTokens)
	require.Len(t, s.Messages(), 3)
	assert.Equal(t, RoleAssistant, s.Messages()[2].Role)

	require.NoError(t, c.PerfReset())
	_, err = drain(t, s.Say(t.Context(), "And again"))
	require.NoError(t, err)
	t2 := s.LastTurn()
	// The second turn reuses the first prompt (all but its last token, "\n", which the
	// re-tokenized reply may merge with) and decodes only the rest.
	assert.GreaterOrEqual(t, t2.PromptTokensReused, t1.PromptTokens-1)
	assert.Equal(t, t2.PromptTokens-t2.PromptTokensReused, t2.PromptTokensDecoded)
	assert.Less(t, t2.PromptTokensDecoded, t2.PromptTokens-t1.PromptTokens+t1.GeneratedTokens+1)
	perf, err := c.Perf()
	require.NoError(t, err)
	// llama.cpp counts the decoded prompt tokens (batches of more than one token) itself.
	assert.Equal(t, t2.PromptTokensDecoded, perf.PromptTokens)
	require.Len(t, s.Messages(), 5)

	// The cache holds exactly what the session believes: a third turn after Reset
	// reuses the system prompt only.
	s.Reset()
	require.Len(t, s.Messages(), 1)
	_, err = drain(t, s.Say(t.Context(), "New topic"))
	require.NoError(t, err)
	t3 := s.LastTurn()
	assert.Positive(t, t3.PromptTokensReused)
	assert.Less(t, t3.PromptTokensReused, t1.PromptTokens)
}

func TestChatSessionSaveLoad(t *testing.T) {
	m := loadQwenTiny(t)
	_, s := newTestSession(t, m, 512, &ChatSessionParams{System: "sys", Sampling: greedyParams(), MaxTokens: 4})
	_, err := drain(t, s.Say(t.Context(), "one"))
	require.NoError(t, err)
	var buf bytes.Buffer
	require.NoError(t, s.Save(&buf))
	saved := s.Messages()

	_, s2 := newTestSession(t, m, 512, &ChatSessionParams{Sampling: greedyParams(), MaxTokens: 4})
	require.NoError(t, s2.Load(bytes.NewReader(buf.Bytes())))
	assert.Equal(t, saved, s2.Messages())
	assert.Equal(t, "sys", s2.System())
	_, err = drain(t, s2.Say(t.Context(), "two"))
	require.NoError(t, err)
	assert.Len(t, s2.Messages(), 5)

	assert.ErrorIs(t, s2.Load(bytes.NewReader([]byte(`{"version": 1, "messages": [{"role": "wizard", "content": "x"}]}`))), ErrChat)
	assert.ErrorIs(t, s2.Load(bytes.NewReader([]byte(`{"version": 7, "messages": []}`))), ErrChat)
	assert.ErrorIs(t, s2.Load(bytes.NewReader([]byte(`not json`))), ErrChat)
	assert.Len(t, s2.Messages(), 5, "a failed load leaves the session unchanged")
}

// A saved session carries its KV cache: after Load the next turn decodes only its new
// message, and replies as the original session would.
func TestChatSessionSaveLoadRestoresCache(t *testing.T) {
	m := loadQwenTiny(t)
	p := &ChatSessionParams{System: "sys", Sampling: greedyParams(), MaxTokens: 4}
	_, s := newTestSession(t, m, 512, p)
	_, err := drain(t, s.Say(t.Context(), "one"))
	require.NoError(t, err)
	var buf bytes.Buffer
	require.NoError(t, s.Save(&buf))
	head, _, _ := bytes.Cut(buf.Bytes(), []byte("\n"))
	var f sessionFile
	require.NoError(t, json.Unmarshal(head, &f))
	assert.Equal(t, 2, f.Version)
	assert.NotEmpty(t, f.Cached)
	assert.Equal(t, len(head)+1+f.StateBytes, buf.Len())

	_, restored := newTestSession(t, m, 512, p)
	require.NoError(t, restored.Load(bytes.NewReader(buf.Bytes())))
	want, err := drain(t, s.Say(t.Context(), "two"))
	require.NoError(t, err)
	got, err := drain(t, restored.Say(t.Context(), "two"))
	require.NoError(t, err)
	assert.Equal(t, want, got)
	assert.Equal(t, s.LastTurn().PromptTokensReused, restored.LastTurn().PromptTokensReused)
	assert.Positive(t, restored.LastTurn().PromptTokensReused, "the restored cache was reused")

	// A cache of another model, damaged or cut short: an error, the conversation as it was.
	other := loadTiny(t)
	_, foreign := newTestSession(t, other, 512, &ChatSessionParams{Template: mustTemplate(t, other)})
	damagedHeader, damagedCells := bytes.Clone(buf.Bytes()), bytes.Clone(buf.Bytes())
	damagedHeader[len(head)+1] = 'X'                // our magic
	damagedCells[len(head)+1+stateHeaderSize] = 'X' // llama.cpp's
	for name, data := range map[string][]byte{
		"damaged header": damagedHeader,
		"cut short":      buf.Bytes()[:buf.Len()-10],
		"no newline":     bytes.Replace(buf.Bytes(), []byte("}\n"), []byte("} "), 1),
	} {
		assert.ErrorIs(t, restored.Load(bytes.NewReader(data)), ErrChat, name)
		assert.Len(t, restored.Messages(), 5, name)
	}
	assert.ErrorIs(t, restored.Load(bytes.NewReader(damagedCells)), ErrInvalidState)
	assert.Len(t, restored.Messages(), 5)
	_, hi, err := restored.c.MemorySeqPosRange(0)
	require.NoError(t, err)
	assert.Equal(t, Pos(-1), hi, "a cache llama.cpp refused leaves the sequence empty")
	err = foreign.Load(bytes.NewReader(buf.Bytes()))
	assert.ErrorIs(t, err, ErrInvalidState)
	assert.ErrorContains(t, err, "another model")
	assert.Empty(t, foreign.Messages())
	_, err = drain(t, restored.Say(t.Context(), "three"))
	assert.NoError(t, err, "the session still works")
}

func mustTemplate(t *testing.T, m *Model) *ChatTemplate {
	tmpl, err := NewChatTemplate(m, &ChatTemplateParams{Source: "{% for m in messages %}{{ m.content }}{% endfor %}"})
	require.NoError(t, err)
	t.Cleanup(func() { tmpl.Close() })
	return tmpl
}

func TestChatSessionOverflow(t *testing.T) {
	m := loadQwenTiny(t)
	long := bytes.Repeat([]byte("llamas graze on the high plains. "), 12)

	// OverflowError: the turn fails and the history stays as it was.
	_, s := newTestSession(t, m, 256, &ChatSessionParams{System: "sys", Sampling: greedyParams(), MaxTokens: 4})
	_, err := drain(t, s.Say(t.Context(), string(long)+string(long)+string(long)))
	require.ErrorIs(t, err, ErrContextFull)
	assert.Len(t, s.Messages(), 1)

	// OverflowDropOldest: old turns go, the system prompt stays.
	_, s = newTestSession(t, m, 256, &ChatSessionParams{System: "sys", Sampling: greedyParams(), MaxTokens: 4, Overflow: OverflowDropOldest})
	dropped := 0
	for range 4 {
		_, err := drain(t, s.Say(t.Context(), string(long)))
		require.NoError(t, err)
		dropped += s.LastTurn().DroppedMessages
		assert.Equal(t, "sys", s.System())
	}
	assert.Positive(t, dropped)
	assert.Less(t, len(s.Messages()), 9)
}

func TestChatSessionCancel(t *testing.T) {
	m := loadQwenTiny(t)
	_, s := newTestSession(t, m, 512, &ChatSessionParams{Sampling: &SamplingParams{Temperature: 0, Seed: 1}})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	n := 0
	var gotErr error
	for _, err := range s.Say(ctx, "Tell me a long story") {
		if err != nil {
			gotErr = err
			break
		}
		n++
		if n == 3 {
			cancel()
		}
	}
	require.ErrorIs(t, gotErr, ErrAborted)
	require.ErrorIs(t, gotErr, context.Canceled)
	msgs := s.Messages()
	require.Len(t, msgs, 2, "the partial reply is kept")
	assert.Equal(t, RoleAssistant, msgs[1].Role)
	// The session goes on after a cancelled reply.
	_, err := drain(t, s.Say(t.Context(), "Shorter, please"))
	require.NoError(t, err)
}

func TestChatSessionToolGrammar(t *testing.T) {
	m := loadQwenTiny(t)
	tmpl := readTemplate(t, "Qwen-Qwen2.5-7B-Instruct.jinja")
	defer tmpl.Close()

	// Tool choice auto: a lazy grammar triggered by the tool-call tag.
	p, err := tmpl.Apply(&ChatRequest{Messages: conversation(false), Tools: []Tool{weatherTool}})
	require.NoError(t, err)
	sp, err := p.SamplingParams(m, nil)
	require.NoError(t, err)
	assert.NotEmpty(t, sp.Grammar)
	assert.Equal(t, []Trigger{TriggerWord("<tool_call>\n")}, sp.GrammarTriggers)
	_, err = p.SamplingParams(m, &SamplingParams{Grammar: "root ::= \"x\""})
	assert.ErrorIs(t, err, ErrChat, "two grammars")

	// Tool choice required: a grammar for the whole reply, which starts with the
	// generation prompt the template wrote; the session advances the grammar past it.
	sampling := greedyParams()
	sampling.Temperature, sampling.Seed = 1, 7
	_, s := newTestSession(t, m, 512, &ChatSessionParams{
		Template: tmpl, Tools: []Tool{weatherTool}, ToolChoice: ToolChoiceRequired, Sampling: sampling, MaxTokens: 24,
	})
	_, err = drain(t, s.Say(t.Context(), "Weather in Paris?"))
	require.NoError(t, err)
	turn := s.LastTurn()
	// Random weights write free text, which the grammar allows before a call; the end of
	// generation is forbidden until a call was made.
	if turn.FinishReason == FinishEOG {
		assert.NotEmpty(t, turn.Message.ToolCalls, turn.Text)
	}

	// The tool's answer goes back into the conversation.
	require.NoError(t, s.Append(Message{Role: RoleTool, ToolCallID: "call00001", ToolName: "get_weather", Content: `{"temp": 21}`}))
	require.ErrorIs(t, s.Append(Message{Role: "robot", Content: "x"}), ErrChat)
	_, err = drain(t, s.Respond(t.Context()))
	require.NoError(t, err)
	assert.Equal(t, RoleAssistant, s.Messages()[len(s.Messages())-1].Role)
}

func TestChatSessionBadParams(t *testing.T) {
	m := loadQwenTiny(t)
	c, err := m.NewContext(&ContextParams{NCtx: 256, Threads: 1})
	require.NoError(t, err)
	defer c.Close()
	for _, p := range []*ChatSessionParams{
		{Seq: 3},
		{MaxTokens: -1},
		{Overflow: 9},
		{Tools: []Tool{{Name: ""}}},
		{Tools: []Tool{{Name: "f", Parameters: json.RawMessage(`{"type": "string"}`)}}},
		{ToolChoice: "sometimes"},
		{Reasoning: "telepathy"},
	} {
		_, err := NewChatSession(c, p)
		assert.Error(t, err, "%+v", p)
	}
	_, err = NewChatSession(nil, nil)
	assert.ErrorIs(t, err, ErrInvalidParams)
	s, err := NewChatSession(c, nil)
	require.NoError(t, err)
	require.NoError(t, s.Close())
	require.NoError(t, s.Close())
	_, err = drain(t, s.Say(t.Context(), "hi"))
	assert.ErrorIs(t, err, ErrClosed)
	assert.Empty(t, s.Messages())
}

// Sampling, the reply cap and thinking change between turns; bad values are refused and
// leave the session as it was.
func TestChatSessionSetters(t *testing.T) {
	m := loadQwenTiny(t)
	_, s := newTestSession(t, m, 512, &ChatSessionParams{Sampling: greedyParams(), MaxTokens: 8})
	assert.Equal(t, float32(0), s.Sampling().Temperature)

	require.NoError(t, s.SetMaxTokens(3))
	_, err := drain(t, s.Say(t.Context(), "Hello"))
	require.NoError(t, err)
	assert.LessOrEqual(t, s.LastTurn().GeneratedTokens, 3)

	hot := DefaultSamplingParams()
	hot.Temperature, hot.Seed = 1.5, 7
	require.NoError(t, s.SetSampling(&hot))
	assert.Equal(t, hot.Temperature, s.Sampling().Temperature)
	bad := hot
	bad.Mirostat = 9
	assert.ErrorIs(t, s.SetSampling(&bad), ErrInvalidParams)
	assert.Equal(t, hot.Mirostat, s.Sampling().Mirostat, "the old parameters stay")
	require.NoError(t, s.SetSampling(nil))
	assert.Equal(t, DefaultSamplingParams().Temperature, s.Sampling().Temperature)
	assert.ErrorIs(t, s.SetMaxTokens(-1), ErrInvalidParams)

	s.SetThinking(false)
	assert.True(t, s.request(nil).DisableThinking)
	s.SetThinking(true)
	assert.False(t, s.request(nil).DisableThinking)
}
