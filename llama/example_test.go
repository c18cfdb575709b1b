package llama_test

import (
	"context"
	"fmt"
	"log"

	"github.com/llamago/llamago/llama"
)

// The examples run on the repository's demo model, a small model trained on the King James
// Bible (models/kjv-demo.gguf; its own module, so not in the llamago module zip). Greedy
// sampling makes their output reproducible: the model recites the verses it was trained on.
const demoModel = "../models/kjv-demo.gguf"

// Load a model, open a context and stream a continuation of a prompt.
func Example() {
	ctx := context.Background()
	m, err := llama.LoadModel(ctx, demoModel, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	c, err := m.NewContext(&llama.ContextParams{NCtx: 512})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	s, err := llama.NewSampler(m, llama.Greedy())
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	prompt := "The LORD is my shepherd;"
	fmt.Print(prompt)
	var res llama.GenerateResult
	for piece, err := range c.GenerateText(ctx, prompt, s, &llama.GenerateParams{MaxTokens: 5}) {
		if err != nil {
			log.Fatal(err) // cancellation matches both llama.ErrAborted and ctx's cause
		}
		fmt.Print(piece)
	}
	res = c.LastGeneration()
	fmt.Printf("\n%d tokens, finished by %s\n", res.GeneratedTokens, res.FinishReason)
	// Output:
	// The LORD is my shepherd; I shall not want.
	// 5 tokens, finished by length
}

// A conversation that keeps its KV cache between turns: each turn decodes only what the
// cache does not hold yet. The demo model's chat template makes a turn a continuation.
func ExampleChatSession() {
	ctx := context.Background()
	m, err := llama.LoadModel(ctx, demoModel, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	c, err := m.NewContext(&llama.ContextParams{NCtx: 512})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	greedy := llama.DefaultSamplingParams()
	greedy.Temperature = 0
	chat, err := llama.NewChatSession(c, &llama.ChatSessionParams{Sampling: &greedy, MaxTokens: 5})
	if err != nil {
		log.Fatal(err)
	}
	defer chat.Close()

	for _, say := range []string{"The LORD is my shepherd;", "He maketh me to lie down"} {
		fmt.Print("> ", say, "\n<")
		for d, err := range chat.Say(ctx, say) {
			if err != nil {
				log.Fatal(err)
			}
			fmt.Print(d.Content)
		}
		turn := chat.LastTurn()
		fmt.Printf("\n(%d prompt tokens, %d of them from the cache)\n", turn.PromptTokens, turn.PromptTokensReused)
	}
	// Output:
	// > The LORD is my shepherd;
	// < I shall not want.
	// (10 prompt tokens, 0 of them from the cache)
	// > He maketh me to lie down
	// < in green pastures:
	// (22 prompt tokens, 14 of them from the cache)
}
