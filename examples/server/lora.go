package main

import (
	"fmt"
	"net/http"
	"slices"

	"github.com/llamago/llamago/llama"
)

// loraAdapter is an adapter of -lora / -lora-scaled as llama-server's /lora-adapters shows it.
type loraAdapter struct {
	ID    int     `json:"id"`
	Path  string  `json:"path,omitempty"`
	Scale float32 `json:"scale"`
}

// GET /lora-adapters: the adapters the server loaded, with the scales it applies now.
func (s *server) loraAdapters(w http.ResponseWriter, r *http.Request) error {
	applied := s.primary.engine.LoRA()
	out := []loraAdapter{}
	for i, a := range s.adapters.LoRA {
		var scale float32
		if j := slices.IndexFunc(applied, func(x llama.LoRAScale) bool { return x.Adapter == a.Adapter }); j >= 0 {
			scale = applied[j].Scale
		}
		out = append(out, loraAdapter{ID: i, Path: s.adapters.Paths[i], Scale: scale})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// POST /lora-adapters with [{"id": 0, "scale": 0.5}, ...]: the scales from the next decode
// step on, for every request; adapters not listed get scale 0 (as llama-server does).
func (s *server) setLoRAAdapters(w http.ResponseWriter, r *http.Request) error {
	var body []loraAdapter
	if err := decode(r, &body); err != nil {
		return err
	}
	var set []llama.LoRAScale
	for _, a := range body {
		if a.ID < 0 || a.ID >= len(s.adapters.LoRA) {
			return badRequest("id", fmt.Sprintf("no LoRA adapter %d (the server has %d)", a.ID, len(s.adapters.LoRA)))
		}
		if slices.ContainsFunc(set, func(x llama.LoRAScale) bool { return x.Adapter == s.adapters.LoRA[a.ID].Adapter }) {
			return badRequest("id", fmt.Sprintf("LoRA adapter %d listed twice", a.ID))
		}
		if a.Scale != 0 {
			set = append(set, llama.LoRAScale{Adapter: s.adapters.LoRA[a.ID].Adapter, Scale: a.Scale})
		}
	}
	if err := s.primary.engine.SetLoRA(r.Context(), set...); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]bool{"success": true})
	return nil
}
