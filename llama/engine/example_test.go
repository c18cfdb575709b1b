package engine_test

import (
	"context"
	"fmt"
	"log"
	"strings"
	"sync"

	"github.com/llamago/llamago/llama"
	"github.com/llamago/llamago/llama/engine"
)

// Serve several requests at once from one context: the engine batches their decoding.
// (The demo model of the repository, trained on the King James Bible, with greedy
// sampling so that the output is reproducible.)
func Example() {
	ctx := context.Background()
	m, err := llama.LoadModel(ctx, "../../models/kjv-demo.gguf", nil)
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	e, err := engine.New(m, &engine.Params{Slots: 2, Context: &llama.ContextParams{NCtx: 1024}})
	if err != nil {
		log.Fatal(err)
	}
	defer e.Close()

	greedy := llama.DefaultSamplingParams()
	greedy.Temperature = 0
	prompts := []string{"The LORD is my shepherd;", "In the beginning God created"}
	replies := make([]string, len(prompts))
	var wg sync.WaitGroup
	for i, prompt := range prompts {
		wg.Go(func() {
			tokens, err := m.Tokenize(prompt, llama.AddSpecial)
			if err != nil {
				log.Fatal(err)
			}
			var text strings.Builder
			for d, err := range e.Generate(ctx, &engine.Request{
				Prompt: tokens, Sampling: &greedy, MaxTokens: 32, Stop: []string{"."}, // one verse
			}) {
				if err != nil {
					log.Fatal(err)
				}
				text.WriteString(d.Text)
			}
			replies[i] = prompt + text.String()
		})
	}
	wg.Wait()
	for _, r := range replies {
		fmt.Println(r)
	}
	// Output:
	// The LORD is my shepherd; I shall not want
	// In the beginning God created the heaven and the earth
}
