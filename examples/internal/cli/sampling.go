package cli

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/llamago/llamago/llama"
)

// SamplingFlags are llama.cpp's sampling flags: every sampler it has.
type SamplingFlags struct {
	Sampling       llama.SamplingParams
	IgnoreEOS      bool   // --ignore-eos
	GrammarFile    string // --grammar-file
	JSONSchema     string // -j
	JSONSchemaFile string // -jf
	breakersSet    bool
}

func (s *SamplingFlags) defaults() { s.Sampling = llama.DefaultSamplingParams() }

// Sampling registers the sampler flags, with llama.cpp's defaults.
func Sampling(f *Flags) {
	s := &f.SamplingFlags
	p := &s.Sampling
	g := f.Group("sampling")
	g.Func("-s, --seed", "SEED", "RNG seed (-1: random)", "-1", func(v string) error {
		n, err := strconv.ParseInt(v, 10, 64)
		switch {
		case err != nil || n < -1 || n > math.MaxUint32:
			return errNumber
		case n == -1:
			p.Seed = llama.DefaultSeed
		default:
			p.Seed = uint32(n)
		}
		return nil
	})
	g.Float(&p.Temperature, "--temp, --temperature", "temperature (0: greedy)")
	g.Int(&p.TopK, "--top-k", "top-k sampling (0: off)")
	g.Float(&p.TopP, "--top-p", "top-p sampling (1.0: off)")
	g.Float(&p.MinP, "--min-p", "min-p sampling (0.0: off)")
	g.Float(&p.TypicalP, "--typical, --typical-p", "locally typical sampling, parameter p (1.0: off)")
	g.Float(&p.TopNSigma, "--top-nsigma, --top-n-sigma", "top-n-sigma sampling (-1.0: off)")
	g.Float(&p.XTCProbability, "--xtc-probability", "xtc probability (0.0: off)")
	g.Float(&p.XTCThreshold, "--xtc-threshold", "xtc threshold (1.0: off)")
	g.Float(&p.DynaTempRange, "--dynatemp-range", "dynamic temperature range (0.0: off)")
	g.Float(&p.DynaTempExponent, "--dynatemp-exp", "dynamic temperature exponent")
	g.Int(&p.Mirostat, "--mirostat", "Mirostat sampling (0: off, 1: Mirostat, 2: Mirostat 2.0); replaces top-k, top-p and typical")
	g.Float(&p.MirostatEta, "--mirostat-lr", "Mirostat learning rate, parameter eta")
	g.Float(&p.MirostatTau, "--mirostat-ent", "Mirostat target entropy, parameter tau")
	g.Int(&p.RepeatLastN, "--repeat-last-n", "last n tokens to consider for penalties (0: off, -1: the context size)")
	g.Float(&p.RepeatPenalty, "--repeat-penalty", "penalise repeated sequences of tokens (1.0: off)")
	g.Float(&p.PresencePenalty, "--presence-penalty", "repeat alpha presence penalty (0.0: off)")
	g.Float(&p.FrequencyPenalty, "--frequency-penalty", "repeat alpha frequency penalty (0.0: off)")
	g.Float(&p.DRYMultiplier, "--dry-multiplier", "DRY sampling multiplier (0.0: off)")
	g.Float(&p.DRYBase, "--dry-base", "DRY sampling base value")
	g.Int(&p.DRYAllowedLength, "--dry-allowed-length", "allowed length for DRY sampling")
	g.Int(&p.DRYLastN, "--dry-penalty-last-n", "DRY penalty for the last n tokens (0: off, -1: the context size)")
	g.Func("--dry-sequence-breaker", "STRING", "add a sequence breaker for DRY sampling, clearing the defaults first; 'none' for none", `'\n', ':', '"', '*'`, func(v string) error {
		if !s.breakersSet {
			p.DRYBreakers, s.breakersSet = nil, true
		}
		if v != "none" {
			p.DRYBreakers = append(p.DRYBreakers, v)
		}
		return nil
	})
	g.Func("-l, --logit-bias", "TOKEN_ID(+/-)BIAS", "modify the likelihood of a token appearing in the completion, e.g. 15043+1 or 15043-inf", "", func(v string) error {
		i := strings.IndexAny(v[min(1, len(v)):], "+-") + 1
		if i <= 0 {
			return fmt.Errorf("want TOKEN_ID+BIAS or TOKEN_ID-BIAS")
		}
		id, err1 := strconv.Atoi(v[:i])
		bias, err2 := strconv.ParseFloat(v[i:], 32)
		if err1 != nil || err2 != nil || id < 0 {
			return fmt.Errorf("want TOKEN_ID+BIAS or TOKEN_ID-BIAS")
		}
		if p.LogitBias == nil {
			p.LogitBias = map[llama.Token]float32{}
		}
		p.LogitBias[llama.Token(id)] += float32(bias)
		return nil
	})
	g.Bool(&s.IgnoreEOS, "--ignore-eos", "ignore the end-of-generation token and continue generating")
	g.String(&p.Grammar, "--grammar", "GRAMMAR", "BNF-like grammar to constrain generations (see llama.cpp's grammars/)")
	g.String(&s.GrammarFile, "--grammar-file", "FNAME", "file to read the grammar from")
	g.String(&s.JSONSchema, "-j, --json-schema", "SCHEMA", "JSON schema to constrain generations, e.g. '{}' for any JSON object")
	g.String(&s.JSONSchemaFile, "-jf, --json-schema-file", "FNAME", "file containing a JSON schema")
}

// Params returns the sampling parameters the flags describe, the grammar or JSON schema
// files read.
func (s *SamplingFlags) Params() (*llama.SamplingParams, error) {
	p := s.Sampling
	grammar, err := oneOf("--grammar", p.Grammar, "--grammar-file", s.GrammarFile)
	if err != nil {
		return nil, err
	}
	p.Grammar = grammar
	schema, err := oneOf("-j", s.JSONSchema, "-jf", s.JSONSchemaFile)
	if err != nil {
		return nil, err
	}
	if schema != "" {
		if p.Grammar != "" {
			return nil, fmt.Errorf("a grammar and a JSON schema: give one")
		}
		if !json.Valid([]byte(schema)) {
			return nil, fmt.Errorf("-j: not valid JSON")
		}
		p.ResponseFormat = &llama.ResponseFormat{JSONSchema: json.RawMessage(schema)}
	}
	if _, err := p.Stages(); err != nil {
		return nil, err
	}
	return &p, nil
}
