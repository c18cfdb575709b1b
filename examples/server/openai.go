package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/llamago/llamago/llama"
)

// The OpenAI API's request and response bodies, as far as this server implements them.

// samplingFields are the sampling parameters the completion endpoints share; nil
// means the llama.cpp default.
type samplingFields struct {
	Temperature      *float32           `json:"temperature"`
	TopP             *float32           `json:"top_p"`
	TopK             *int               `json:"top_k"` // extension, as llama-server
	MinP             *float32           `json:"min_p"` // extension
	Seed             *int64             `json:"seed"`
	FrequencyPenalty *float32           `json:"frequency_penalty"`
	PresencePenalty  *float32           `json:"presence_penalty"`
	RepeatPenalty    *float32           `json:"repeat_penalty"` // extension
	LogitBias        map[string]float32 `json:"logit_bias"`
	Stop             stopList           `json:"stop"`
	N                *int               `json:"n"`
	Stream           bool               `json:"stream"`
	StreamOptions    *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	MaxTokens           *int `json:"max_tokens"`
	MaxCompletionTokens *int `json:"max_completion_tokens"`
	// See logprobsAsked.
	Logprobs    json.RawMessage `json:"logprobs"` // chat: a bool; completions: a count
	TopLogprobs *int            `json:"top_logprobs"`
	policyIgnored
}

// policyIgnored are fields OpenAI documents that change no output here: accepted and
// ignored (an unknown field is refused, see decode).
type policyIgnored struct {
	User             string          `json:"user"`
	Store            *bool           `json:"store"`
	Metadata         json.RawMessage `json:"metadata"`
	ServiceTier      string          `json:"service_tier"`
	PromptCacheKey   string          `json:"prompt_cache_key"`
	SafetyIdentifier string          `json:"safety_identifier"`
}

// params turns the request's fields into sampling parameters.
func (f *samplingFields) params(m *llama.Model) (llama.SamplingParams, error) {
	p := llama.DefaultSamplingParams()
	if f.N != nil && *f.N != 1 {
		return p, badRequest("n", "only n=1 is supported")
	}
	set := func(dst *float32, v *float32, name string, lo, hi float32) error {
		if v == nil {
			return nil
		}
		if *v < lo || *v > hi {
			return badRequest(name, fmt.Sprintf("%s must be in [%g, %g]", name, lo, hi))
		}
		*dst = *v
		return nil
	}
	for _, err := range []error{
		set(&p.Temperature, f.Temperature, "temperature", 0, 2),
		set(&p.TopP, f.TopP, "top_p", 0, 1),
		set(&p.MinP, f.MinP, "min_p", 0, 1),
		set(&p.FrequencyPenalty, f.FrequencyPenalty, "frequency_penalty", -2, 2),
		set(&p.PresencePenalty, f.PresencePenalty, "presence_penalty", -2, 2),
		set(&p.RepeatPenalty, f.RepeatPenalty, "repeat_penalty", 0, 10),
	} {
		if err != nil {
			return p, err
		}
	}
	if f.TopK != nil {
		if *f.TopK < 0 {
			return p, badRequest("top_k", "top_k must not be negative")
		}
		p.TopK = *f.TopK
	}
	if f.Seed != nil {
		p.Seed = uint32(*f.Seed)
	}
	if len(f.LogitBias) > 0 {
		p.LogitBias = map[llama.Token]float32{}
		for k, v := range f.LogitBias {
			id, err := strconv.Atoi(k)
			if err != nil || !m.ValidToken(llama.Token(id)) {
				return p, badRequest("logit_bias", fmt.Sprintf("logit_bias key %q is not a token id of this model", k))
			}
			if v < -100 || v > 100 {
				return p, badRequest("logit_bias", "logit_bias values must be in [-100, 100]")
			}
			p.LogitBias[llama.Token(id)] = v
		}
	}
	return p, nil
}

// maxTokens is max_completion_tokens, else max_tokens, else def.
func (f *samplingFields) maxTokens(def int) (int, error) {
	n := def
	switch {
	case f.MaxCompletionTokens != nil:
		n = *f.MaxCompletionTokens
	case f.MaxTokens != nil:
		n = *f.MaxTokens
	}
	if n < 0 {
		return 0, badRequest("max_tokens", "max_tokens must not be negative")
	}
	return n, nil
}

func (f *samplingFields) includeUsage() bool {
	return f.StreamOptions != nil && f.StreamOptions.IncludeUsage
}

// stopList is "stop": a string or a list of up to 4 strings.
type stopList []string

func (s *stopList) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*s = stopList{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return errors.New("stop must be a string or a list of strings")
	}
	*s = many
	return nil
}

type chatCompletionRequest struct {
	Model             string          `json:"model"`
	Messages          []chatMessageIn `json:"messages"`
	Tools             []llama.Tool    `json:"tools"` // OpenAI's {"type": "function", "function": {...}}
	ToolChoice        json.RawMessage `json:"tool_choice"`
	ParallelToolCalls *bool           `json:"parallel_tool_calls"`
	ResponseFormat    *struct {
		Type       string `json:"type"` // text, json_object, json_schema
		JSONSchema *struct {
			Name   string          `json:"name"`
			Schema json.RawMessage `json:"schema"`
			Strict bool            `json:"strict"`
		} `json:"json_schema"`
	} `json:"response_format"`
	ChatTemplateKwargs map[string]any `json:"chat_template_kwargs"` // extension, as llama-server
	samplingFields
}

type usage struct {
	PromptTokens        int `json:"prompt_tokens"`
	CompletionTokens    int `json:"completion_tokens"`
	TotalTokens         int `json:"total_tokens"`
	PromptTokensDetails *struct {
		CachedTokens int `json:"cached_tokens"`
	} `json:"prompt_tokens_details,omitempty"`
}

type chatCompletion struct {
	ID                string       `json:"id"`
	Object            string       `json:"object"`
	Created           int64        `json:"created"`
	Model             string       `json:"model"`
	SystemFingerprint string       `json:"system_fingerprint"`
	Choices           []chatChoice `json:"choices"`
	Usage             *usage       `json:"usage,omitempty"`
}

type chatChoice struct {
	Index        int           `json:"index"`
	Message      *chatMessage  `json:"message,omitempty"`
	Delta        *chatMessage  `json:"delta,omitempty"`
	FinishReason *string       `json:"finish_reason"`
	Logprobs     *chatLogprobs `json:"logprobs"`
}

// chatMessage is an assistant message or a streamed delta of one.
type chatMessage struct {
	Role             string         `json:"role,omitempty"`
	Content          *string        `json:"content,omitempty"`
	ReasoningContent string         `json:"reasoning_content,omitempty"`
	ToolCalls        []toolCallJSON `json:"tool_calls,omitempty"`
	Refusal          *string        `json:"refusal,omitempty"`
}

type toolCallJSON struct {
	Index    *int   `json:"index,omitempty"` // in stream deltas
	ID       string `json:"id,omitempty"`
	Type     string `json:"type,omitempty"`
	Function struct {
		Name      string `json:"name,omitempty"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

type completionRequest struct {
	Model  string          `json:"model"`
	Prompt json.RawMessage `json:"prompt"`
	Echo   bool            `json:"echo"`
	Suffix *string         `json:"suffix"`  // refused when set
	BestOf *int            `json:"best_of"` // only 1
	samplingFields
}

type completion struct {
	ID                string             `json:"id"`
	Object            string             `json:"object"`
	Created           int64              `json:"created"`
	Model             string             `json:"model"`
	SystemFingerprint string             `json:"system_fingerprint"`
	Choices           []completionChoice `json:"choices"`
	Usage             *usage             `json:"usage,omitempty"`
}

type completionChoice struct {
	Index        int                 `json:"index"`
	Text         string              `json:"text"`
	Logprobs     *completionLogprobs `json:"logprobs"`
	FinishReason *string             `json:"finish_reason"`
}

type embeddingRequest struct {
	Model          string          `json:"model"`
	Input          json.RawMessage `json:"input"`
	EncodingFormat string          `json:"encoding_format"` // float (default) or base64
	Dimensions     *int            `json:"dimensions"`
	User           string          `json:"user"` // ignored
}

type embeddingList struct {
	Object string      `json:"object"`
	Data   []embedding `json:"data"`
	Model  string      `json:"model"`
	Usage  usage       `json:"usage"`
}

type embedding struct {
	Object    string `json:"object"`
	Index     int    `json:"index"`
	Embedding any    `json:"embedding"` // []float32, or a base64 string of little-endian float32
}

type modelObject struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
	Loaded  bool   `json:"loaded"` // extension: in memory now (several models, -model repeated)
}

// apiError is the body of every error response.
type apiError struct {
	status  int
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

func (e *apiError) Error() string { return e.Message }

func badRequest(param, msg string) *apiError {
	e := &apiError{status: 400, Message: msg, Type: "invalid_request_error"}
	if param != "" {
		e.Param = &param
	}
	return e
}
