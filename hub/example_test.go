package hub_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/llamago/llamago/hub"
)

func ExampleParseRef() {
	r, err := hub.ParseRef("ggml-org/gemma-3-1b-it-GGUF:q4_k_m")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(r.Repo, r.Quant)

	_, err = hub.ParseRef("gemma-3-1b")
	fmt.Println(err)
	// Output:
	// ggml-org/gemma-3-1b-it-GGUF q4_k_m
	// hub: invalid model reference "gemma-3-1b": missing '/' between user and repository (want <user>/<repo>[:quant], e.g. ggml-org/gemma-3-1b-it-GGUF:Q4_K_M)
}

// Download a model as llama-cli -hf does, sharing llama.cpp's cache. (Compiled, not
// run: it needs the network.)
func ExampleClient_Download() {
	ctx := context.Background()
	c := hub.NewClient() // HF_TOKEN, HF_ENDPOINT, LLAMA_CACHE, LLAMA_ARG_OFFLINE...
	c.Progress = func(p hub.Progress) {
		if p.Total > 0 && !p.Cached {
			fmt.Printf("\r%s %3d%%", p.Name, 100*p.Downloaded/p.Total)
		}
	}
	path, err := c.Download(ctx, "ggml-org/gemma-3-1b-it-GGUF:Q4_K_M")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("\nmodel at", path)
}

// Download a vision model and its projector, as llama-server -hf does. A repository
// without a projector is no failure: the model then takes text only. (Compiled, not run.)
func ExampleClient_DownloadProjector() {
	ctx := context.Background()
	c := hub.NewClient()
	const ref = "ggml-org/gemma-3-4b-it-GGUF:Q4_K_M"
	model, err := c.Download(ctx, ref)
	if err != nil {
		log.Fatal(err)
	}
	mmproj, err := c.DownloadProjector(ctx, ref, "")
	switch {
	case errors.Is(err, hub.ErrNoProjector):
		fmt.Println("text only:", err)
	case err != nil:
		log.Fatal(err)
	}
	fmt.Println("model at", model, "projector at", mmproj)
}
