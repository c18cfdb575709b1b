package llama

/*
#include "shim.h"
*/
import "C"

import (
	"encoding/json"
	"fmt"
	"unsafe"
)

// SamplingParams is the common sampling configuration, for users who do not build
// chains by hand. DefaultSamplingParams holds llama.cpp's defaults; the stages are
// chained in llama.cpp's default order: logit bias, penalties, DRY, top-n-sigma,
// top-k, typical, top-p, min-p, XTC, temperature, then a seeded pick (or Mirostat).
type SamplingParams struct {
	Seed uint32 // DefaultSeed: random

	Temperature      float32 // <= 0: greedy
	DynaTempRange    float32 // 0: off
	DynaTempExponent float32
	TopK             int     // 0: off
	TopP             float32 // 1: off
	MinP             float32 // 0: off
	TypicalP         float32 // 1: off
	TopNSigma        float32 // <= 0: off
	XTCProbability   float32 // 0: off
	XTCThreshold     float32
	MinKeep          int
	Mirostat         int // 0: off, 1 or 2
	MirostatTau      float32
	MirostatEta      float32
	RepeatLastN      int     // 0: off
	RepeatPenalty    float32 // 1: off
	FrequencyPenalty float32 // 0: off
	PresencePenalty  float32 // 0: off
	DRYMultiplier    float32 // 0: off
	DRYBase          float32
	DRYAllowedLength int
	DRYLastN         int // -1: the whole context
	DRYBreakers      []string
	LogitBias        map[Token]float32
	Grammar          string    // GBNF; see Grammar
	GrammarTriggers  []Trigger // non-empty makes the grammar lazy
	ResponseFormat   *ResponseFormat
}

// ResponseFormat constrains output to JSON (OpenAI's response_format).
type ResponseFormat struct {
	// JSONSchema constrains output to values of this JSON schema. Empty with JSONObject
	// set means any JSON object.
	JSONSchema json.RawMessage
	JSONObject bool
}

// DefaultSamplingParams returns llama.cpp's default sampling parameters.
func DefaultSamplingParams() SamplingParams {
	return SamplingParams{
		Seed:             DefaultSeed,
		Temperature:      0.8,
		DynaTempExponent: 1,
		TopK:             40,
		TopP:             0.95,
		MinP:             0.05,
		TypicalP:         1,
		TopNSigma:        -1,
		XTCThreshold:     0.1,
		MirostatTau:      5,
		MirostatEta:      0.1,
		RepeatLastN:      64,
		RepeatPenalty:    1,
		DRYBase:          1.75,
		DRYAllowedLength: 2,
		DRYLastN:         -1,
		DRYBreakers:      DefaultDRYBreakers(),
	}
}

// NewSamplerFromParams builds a sampler from p (nil: DefaultSamplingParams).
func NewSamplerFromParams(m *Model, p *SamplingParams) (*Sampler, error) {
	if p == nil {
		d := DefaultSamplingParams()
		p = &d
	}
	stages, err := p.Stages()
	if err != nil {
		return nil, err
	}
	return NewSampler(m, stages...)
}

// Stages returns the sampler stages p describes.
func (p *SamplingParams) Stages() ([]Stage, error) {
	st := []Stage{Seed(p.Seed), MinKeep(p.MinKeep)}
	grammar := p.Grammar
	if f := p.ResponseFormat; f != nil && (len(f.JSONSchema) > 0 || f.JSONObject) {
		if grammar != "" {
			return nil, invalidParam("set Grammar or ResponseFormat, not both")
		}
		schema := f.JSONSchema
		if len(schema) == 0 {
			schema = json.RawMessage(`{"type": "object"}`)
		}
		g, err := JSONSchemaToGrammar(schema)
		if err != nil {
			return nil, err
		}
		grammar = g
	}
	if grammar != "" {
		if len(p.GrammarTriggers) > 0 {
			st = append(st, LazyGrammar(grammar, p.GrammarTriggers...))
		} else {
			st = append(st, Grammar(grammar))
		}
	}
	if len(p.LogitBias) > 0 {
		st = append(st, LogitBias(p.LogitBias))
	}
	if p.Mirostat != 0 {
		switch p.Mirostat {
		case 1:
			return append(st, Temp(p.Temperature), Mirostat(p.MirostatTau, p.MirostatEta)), nil
		case 2:
			return append(st, Temp(p.Temperature), MirostatV2(p.MirostatTau, p.MirostatEta)), nil
		default:
			return nil, invalidParam("Mirostat = %d: must be 0, 1 or 2", p.Mirostat)
		}
	}
	if p.RepeatLastN != 0 && (p.RepeatPenalty != 1 || p.FrequencyPenalty != 0 || p.PresencePenalty != 0) {
		st = append(st, Penalties(p.RepeatLastN, p.RepeatPenalty, p.FrequencyPenalty, p.PresencePenalty))
	}
	if p.DRYMultiplier != 0 {
		st = append(st, DRY(p.DRYMultiplier, p.DRYBase, p.DRYAllowedLength, p.DRYLastN, p.DRYBreakers))
	}
	if p.Temperature <= 0 {
		return append(st, Greedy()), nil
	}
	if p.TopNSigma > 0 {
		st = append(st, TopNSigma(p.TopNSigma))
	}
	if p.TopK > 0 {
		st = append(st, TopK(p.TopK))
	}
	if p.TypicalP < 1 {
		st = append(st, Typical(p.TypicalP))
	}
	if p.TopP < 1 {
		st = append(st, TopP(p.TopP))
	}
	if p.MinP > 0 {
		st = append(st, MinP(p.MinP))
	}
	if p.XTCProbability > 0 {
		st = append(st, XTC(p.XTCProbability, p.XTCThreshold))
	}
	return append(st, DynamicTemp(p.Temperature, p.DynaTempRange, p.DynaTempExponent), Dist()), nil
}

// JSONSchemaToGrammar converts a JSON schema to a GBNF grammar with llama.cpp's own
// converter (the one llama-server uses for response_format).
func JSONSchemaToGrammar(schema json.RawMessage) (string, error) {
	if !json.Valid(schema) {
		return "", fmt.Errorf("%w: JSON schema is not valid JSON", ErrGrammar)
	}
	initBackend()
	cs := C.CString(string(schema))
	defer C.free(unsafe.Pointer(cs))
	var cerr *C.char
	g := C.lgo_json_schema_to_grammar(cs, &cerr)
	if g == nil {
		return "", cError(fmt.Errorf("%w: JSON schema", ErrGrammar), cerr)
	}
	defer C.free(unsafe.Pointer(g))
	return C.GoString(g), nil
}
