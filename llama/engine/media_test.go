package engine_test

import (
	"bytes"
	"os"
	"sync"
	"testing"

	"github.com/llamago/llamago/internal/synth"
	"github.com/llamago/llamago/internal/testmodel"
	"github.com/llamago/llamago/llama"
	"github.com/llamago/llamago/llama/engine"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Requests with images run beside text requests: each gives what the same prompt gives
// alone through Context.GenerateMedia (greedy), for LLaVA-style and Qwen2-VL (M-RoPE)
// projectors, and a slot that held an image serves a text request afterwards.
func TestMediaRequests(t *testing.T) {
	for _, typ := range []string{synth.ProjectorMLP, synth.ProjectorQwen2VL} {
		t.Run(typ, func(t *testing.T) {
			path, projector := testmodel.ProjectorPair(t, typ, 4)
			m, err := llama.LoadModel(t.Context(), path, &llama.ModelParams{GPULayers: 0})
			require.NoError(t, err)
			defer m.Close()
			p, err := m.LoadProjector(projector, &llama.ProjectorParams{Threads: 2})
			require.NoError(t, err)
			defer p.Close()

			jpeg, err := os.ReadFile(testmodel.MediaFile(t, "test-1.jpeg"))
			require.NoError(t, err)
			photo, err := p.DecodeMedia(jpeg)
			require.NoError(t, err)
			defer photo.Close()
			red, err := llama.NewImageRGB(28, 28, bytes.Repeat([]byte{200, 10, 10}, 28*28))
			require.NoError(t, err)
			defer red.Close()
			images := []*llama.Media{photo, red}
			prompt := "<|im_start|>user\n" + llama.MediaMarker + "Describe the image.<|im_end|>\n<|im_start|>assistant\n"
			const n = 6
			alone := func(img *llama.Media) string {
				c, err := m.NewContext(&llama.ContextParams{NCtx: 2048, Threads: 2})
				require.NoError(t, err)
				defer c.Close()
				s, err := llama.NewSamplerFromParams(m, greedy())
				require.NoError(t, err)
				defer s.Close()
				var out string
				for piece, err := range c.GenerateMedia(t.Context(), p, prompt, []*llama.Media{img}, s, &llama.GenerateParams{MaxTokens: n, IgnoreEOG: true}) {
					require.NoError(t, err)
					out += piece
				}
				return out
			}
			want := []string{alone(images[0]), alone(images[1])}

			e := newEngine(t, m, &engine.Params{Slots: 3, Context: &llama.ContextParams{NCtx: 4096, Threads: 2}})
			text := prompts(t, m, 1)[0]
			var wg sync.WaitGroup
			got := make([]string, 2)
			var results [2]engine.Result
			var promptTokens [2]int
			for i, img := range images {
				wg.Add(1)
				go func() {
					defer wg.Done()
					mp, err := p.Prompt(prompt, []*llama.Media{img}, true)
					if !assert.NoError(t, err) {
						return
					}
					defer mp.Close()
					promptTokens[i] = mp.Tokens()
					_, got[i], err = collect(t.Context(), e, &engine.Request{Media: mp, Sampling: greedy(), MaxTokens: n, IgnoreEOG: true, Result: &results[i]})
					assert.NoError(t, err)
				}()
			}
			toks, _, err := collect(t.Context(), e, &engine.Request{Prompt: text, Sampling: greedy(), MaxTokens: n, IgnoreEOG: true})
			require.NoError(t, err)
			assert.Len(t, toks, n)
			wg.Wait()
			assert.Equal(t, want, got, "each image request as alone")
			for i := range results {
				assert.Equal(t, promptTokens[i], results[i].PromptTokens, "image tokens counted")
			}
			assert.NotEqual(t, want[0], want[1], "the image matters")

			// Every slot serves text afterwards, images or not before.
			for range 3 {
				toks, _, err := collect(t.Context(), e, &engine.Request{Prompt: text, Sampling: greedy(), MaxTokens: n, IgnoreEOG: true})
				require.NoError(t, err)
				assert.Len(t, toks, n)
			}
			mp, err := p.Prompt(prompt, images[:1], true)
			require.NoError(t, err)
			defer mp.Close()
			_, _, err = collect(t.Context(), e, &engine.Request{Media: mp, Prompt: text})
			assert.ErrorIs(t, err, llama.ErrInvalidParams, "Media and Prompt")
		})
	}
}
