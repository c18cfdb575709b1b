package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/llamago/llamago/internal/testmodel"
	"github.com/llamago/llamago/llama/gguf"
)

// With a draft model (-md, here the model itself) and with prompt lookup, greedy replies
// are what the server gives without drafts, and the drafts show in the metrics.
func TestSpeculativeServer(t *testing.T) {
	type reply struct {
		Choices []struct {
			Message struct{ Content string }
		}
	}
	var want reply
	startServer(t).client(t, "chat", &want)
	require.Len(t, want.Choices, 1)
	model := testmodel.Path(t, "qwen2-tiny", gguf.TypeQ8_0)
	for _, args := range [][]string{{"-md", model}, {"-spec-type", "ngram-simple"}} {
		s := startServer(t, args...)
		var got reply
		s.client(t, "chat", &got)
		require.Len(t, got.Choices, 1)
		assert.Equal(t, want.Choices[0].Message.Content, got.Choices[0].Message.Content, "%v", args)
		m := s.metrics(t)
		if args[0] == "-md" {
			assert.Positive(t, m["llamago_draft_accepted_total"], "the model drafting for itself is taken")
		}
		assert.LessOrEqual(t, m["llamago_draft_accepted_total"], m["llamago_draft_tokens_total"])
	}
}
