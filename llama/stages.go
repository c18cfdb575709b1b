package llama

/*
#include "shim.h"
*/
import "C"

import (
	"fmt"
	"math"
	"unicode/utf8"
	"unsafe"
)

// Stage is one step of a sampler chain, made by the functions in this file. Stages
// are plain values: build them once and reuse them for many samplers.
type Stage interface {
	check(m *Model) error      // validates parameters in Go, before any C call
	add(b *chainBuilder) error // appends the llama.cpp sampler(s)
}

// configStage is a stage that sets chain-wide values (Seed, MinKeep) wherever it appears.
type configStage interface{ configure(b *chainBuilder) }

// chainBuilder assembles a chain; its model is retained, so m.vocab stays valid.
type chainBuilder struct {
	m        *Model
	chain    *C.struct_llama_sampler
	grammar  *C.struct_llama_sampler
	seed     uint32
	minKeep  int
	terminal bool // a stage that picks the token was added
	greedy   bool // ... and it was Greedy
	n        int  // samplers in the chain
	// leadingTopK is k when the chain starts with TopK(k), 0 < k < vocabulary size;
	// leadingGreedy, when it starts with Greedy.
	leadingTopK   int
	leadingGreedy bool
}

// preselect is how many top candidates lgo_sample_row may hand the chain instead of all
// (0: all): top-k's k, or 1 for a chain that is only Greedy (stages after it would see
// every candidate).
func (b *chainBuilder) preselect() int {
	if b.leadingGreedy {
		if b.n == 1 {
			return 1
		}
		return 0
	}
	return b.leadingTopK
}

// push appends the stage st describes to the chain: lgo_chain_add makes it with its
// llama_sampler_init_<kind> behind the shim's exception barrier, so a C++ exception there
// (out of memory, a DRY breaker the vocabulary cannot tokenize) is an error here.
func (b *chainBuilder) push(st C.lgo_stage) error {
	var cerr *C.char
	if C.lgo_chain_add(b.chain, &st, &cerr) != 0 {
		return cError(errSampler, cerr)
	}
	b.n++
	return nil
}

func finite(name string, v float32) error {
	if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
		return invalidParam("%s = %v must be finite", name, v)
	}
	return nil
}

func inRange(name string, v, lo, hi float32) error {
	if err := finite(name, v); err != nil {
		return err
	}
	if v < lo || v > hi {
		return invalidParam("%s = %v out of range [%v, %v]", name, v, lo, hi)
	}
	return nil
}

// --- configuration ---

type seedStage struct{ Seed uint32 }

// Seed sets the seed of the chain's random stages (the final Dist, XTC, Mirostat).
// Without it, or with DefaultSeed, the seed is random.
func Seed(seed uint32) Stage { return seedStage{seed} }

func (s seedStage) configure(b *chainBuilder) { b.seed = s.Seed }
func (seedStage) check(*Model) error          { return nil }
func (seedStage) add(*chainBuilder) error     { return nil }

type minKeepStage struct{ N int }

// MinKeep makes TopP, MinP, Typical and XTC keep at least n candidates (default 0).
func MinKeep(n int) Stage { return minKeepStage{n} }

func (s minKeepStage) configure(b *chainBuilder) { b.minKeep = s.N }
func (s minKeepStage) check(*Model) error {
	if s.N < 0 {
		return invalidParam("MinKeep = %d must be >= 0", s.N)
	}
	return nil
}
func (minKeepStage) add(*chainBuilder) error { return nil }

// --- stages that pick the token ---

type greedyStage struct{}

// Greedy picks the most likely token.
func Greedy() Stage { return greedyStage{} }

func (greedyStage) check(*Model) error { return nil }
func (greedyStage) add(b *chainBuilder) error {
	b.leadingGreedy = b.leadingGreedy || b.n == 0
	b.terminal, b.greedy = true, true
	return b.push(C.lgo_stage{kind: C.LGO_STAGE_GREEDY})
}

type distStage struct{}

// Dist picks a token at random by probability, with the chain's Seed.
func Dist() Stage { return distStage{} }

func (distStage) check(*Model) error { return nil }
func (distStage) add(b *chainBuilder) error {
	b.terminal = true
	return b.push(C.lgo_stage{kind: C.LGO_STAGE_DIST, seed: C.uint32_t(b.seed)})
}

type mirostatStage struct {
	Version  int
	Tau, Eta float32
}

// Mirostat is Mirostat 1.0 sampling targeting surprise tau with learning rate eta
// (llama.cpp's defaults: 5.0, 0.1). It picks the token.
func Mirostat(tau, eta float32) Stage { return mirostatStage{1, tau, eta} }

// MirostatV2 is Mirostat 2.0 sampling; it picks the token.
func MirostatV2(tau, eta float32) Stage { return mirostatStage{2, tau, eta} }

func (s mirostatStage) check(*Model) error {
	if err := inRange("mirostat tau", s.Tau, 0, 1e6); err != nil {
		return err
	}
	return inRange("mirostat eta", s.Eta, 0, 1e6)
}
func (s mirostatStage) add(b *chainBuilder) error {
	b.terminal = true
	st := C.lgo_stage{kind: C.LGO_STAGE_MIROSTAT, n_vocab: C.int32_t(b.m.vocabInfo.NTokens), seed: C.uint32_t(b.seed),
		f: [3]C.float{C.float(s.Tau), C.float(s.Eta)}, i: [2]C.int32_t{100}} // m = 100, as in the paper
	if s.Version == 2 {
		st.kind = C.LGO_STAGE_MIROSTAT_V2 // the same but n_vocab and m
	}
	return b.push(st)
}

type adaptivePStage struct{ Target, Decay float32 }

// AdaptiveP picks tokens near a target probability, adapting over time (decay in
// [0, 0.99]). It picks the token; use it after a mild truncation such as MinP.
func AdaptiveP(target, decay float32) Stage { return adaptivePStage{target, decay} }

func (s adaptivePStage) check(*Model) error {
	if err := inRange("adaptive-p target", s.Target, 0, 1); err != nil {
		return err
	}
	return inRange("adaptive-p decay", s.Decay, 0, 0.99)
}
func (s adaptivePStage) add(b *chainBuilder) error {
	b.terminal = true
	return b.push(C.lgo_stage{kind: C.LGO_STAGE_ADAPTIVE_P, f: [3]C.float{C.float(s.Target), C.float(s.Decay)},
		seed: C.uint32_t(b.seed)})
}

// --- filters and transforms ---

type topKStage struct{ K int }

// TopK keeps the k most likely tokens; 0 keeps all.
func TopK(k int) Stage { return topKStage{k} }

func (s topKStage) check(*Model) error {
	if s.K < 0 || s.K > math.MaxInt32 {
		return invalidParam("TopK = %d must be >= 0", s.K)
	}
	return nil
}
func (s topKStage) add(b *chainBuilder) error {
	if b.n == 0 && s.K > 0 && s.K < b.m.vocabInfo.NTokens {
		b.leadingTopK = s.K
	}
	return b.push(C.lgo_stage{kind: C.LGO_STAGE_TOP_K, i: [2]C.int32_t{C.int32_t(s.K)}})
}

type probStage struct {
	Kind string // "top-p", "min-p", "typical"
	P    float32
}

// TopP keeps the smallest set of tokens whose probabilities add up to p (nucleus sampling); 1 keeps all.
func TopP(p float32) Stage { return probStage{"top-p", p} }

// MinP keeps tokens at least p times as likely as the most likely one; 0 keeps all.
func MinP(p float32) Stage { return probStage{"min-p", p} }

// Typical is locally typical sampling with mass p; 1 keeps all.
func Typical(p float32) Stage { return probStage{"typical", p} }

func (s probStage) check(*Model) error { return inRange(s.Kind, s.P, 0, 1) }
func (s probStage) add(b *chainBuilder) error {
	st := C.lgo_stage{kind: C.LGO_STAGE_TYPICAL, f: [3]C.float{C.float(s.P)}, min_keep: C.size_t(b.minKeep)}
	switch s.Kind {
	case "top-p":
		st.kind = C.LGO_STAGE_TOP_P
	case "min-p":
		st.kind = C.LGO_STAGE_MIN_P
	}
	return b.push(st)
}

type tempStage struct{ T, Delta, Exponent float32 }

// Temp divides logits by t: below 1 sharpens, above 1 flattens; 0 keeps only the most
// likely token.
func Temp(t float32) Stage { return tempStage{T: t, Exponent: 1} }

// DynamicTemp varies the temperature in [t-delta, t+delta] with the entropy of the
// distribution (exponent shapes the mapping; 1 is linear).
func DynamicTemp(t, delta, exponent float32) Stage { return tempStage{t, delta, exponent} }

func (s tempStage) check(*Model) error {
	if err := inRange("temperature", s.T, 0, 1e6); err != nil {
		return err
	}
	if err := inRange("temperature delta", s.Delta, 0, 1e6); err != nil {
		return err
	}
	return inRange("temperature exponent", s.Exponent, 0, 1e6)
}
func (s tempStage) add(b *chainBuilder) error {
	if s.Delta == 0 {
		return b.push(C.lgo_stage{kind: C.LGO_STAGE_TEMP, f: [3]C.float{C.float(s.T)}})
	}
	return b.push(C.lgo_stage{kind: C.LGO_STAGE_TEMP_EXT, f: [3]C.float{C.float(s.T), C.float(s.Delta), C.float(s.Exponent)}})
}

type topNSigmaStage struct{ N float32 }

// TopNSigma keeps tokens whose logits are within n standard deviations of the maximum;
// n <= 0 keeps all.
func TopNSigma(n float32) Stage { return topNSigmaStage{n} }

func (s topNSigmaStage) check(*Model) error { return finite("top-n-sigma", s.N) }
func (s topNSigmaStage) add(b *chainBuilder) error {
	return b.push(C.lgo_stage{kind: C.LGO_STAGE_TOP_N_SIGMA, f: [3]C.float{C.float(s.N)}})
}

type xtcStage struct{ Probability, Threshold float32 }

// XTC ("exclude top choices") removes, with the given probability, the most likely
// tokens above threshold except the least likely of them; threshold > 0.5 disables it.
func XTC(probability, threshold float32) Stage { return xtcStage{probability, threshold} }

func (s xtcStage) check(*Model) error {
	if err := inRange("XTC probability", s.Probability, 0, 1); err != nil {
		return err
	}
	return inRange("XTC threshold", s.Threshold, 0, 1)
}
func (s xtcStage) add(b *chainBuilder) error {
	return b.push(C.lgo_stage{kind: C.LGO_STAGE_XTC, f: [3]C.float{C.float(s.Probability), C.float(s.Threshold)},
		min_keep: C.size_t(b.minKeep), seed: C.uint32_t(b.seed)})
}

type penaltiesStage struct {
	LastN                       int
	Repeat, Frequency, Presence float32
}

// Penalties penalises tokens among the last lastN (0 disables): repeat divides their
// logits (1 = off), frequency and presence subtract per occurrence and once (0 = off).
func Penalties(lastN int, repeat, frequency, presence float32) Stage {
	return penaltiesStage{lastN, repeat, frequency, presence}
}

func (s penaltiesStage) check(*Model) error {
	if s.LastN < 0 || s.LastN > 1<<24 {
		return invalidParam("penalty last n = %d out of range [0, %d]", s.LastN, 1<<24)
	}
	if err := inRange("repeat penalty", s.Repeat, 1e-6, 1e6); err != nil {
		return err
	}
	if err := finite("frequency penalty", s.Frequency); err != nil {
		return err
	}
	return finite("presence penalty", s.Presence)
}
func (s penaltiesStage) add(b *chainBuilder) error {
	return b.push(C.lgo_stage{kind: C.LGO_STAGE_PENALTIES, n_vocab: C.int32_t(b.m.vocabInfo.NTokens),
		i: [2]C.int32_t{C.int32_t(s.LastN)}, f: [3]C.float{C.float(s.Repeat), C.float(s.Frequency), C.float(s.Presence)}})
}

type dryStage struct {
	Multiplier, Base float32
	AllowedLength    int
	LastN            int
	Breakers         []string
}

// DefaultDRYBreakers returns llama.cpp's default DRY sequence breakers.
func DefaultDRYBreakers() []string { return []string{"\n", ":", "\"", "*"} }

// DRY ("don't repeat yourself") penalises tokens that extend a repetition longer than
// allowedLength within the last lastN tokens (-1: the whole context) by
// multiplier * base^(length - allowedLength). Breakers end a repetition; nil means
// DefaultDRYBreakers. multiplier 0 disables it.
func DRY(multiplier, base float32, allowedLength, lastN int, breakers []string) Stage {
	if breakers == nil {
		breakers = DefaultDRYBreakers()
	}
	return dryStage{multiplier, base, allowedLength, lastN, append([]string(nil), breakers...)}
}

func (s dryStage) check(*Model) error {
	if err := inRange("DRY multiplier", s.Multiplier, 0, 1e6); err != nil {
		return err
	}
	if err := inRange("DRY base", s.Base, 0, 1e6); err != nil {
		return err
	}
	if s.AllowedLength < 0 || s.AllowedLength > 1<<20 {
		return invalidParam("DRY allowed length = %d out of range", s.AllowedLength)
	}
	if s.LastN < -1 || s.LastN > 1<<24 {
		return invalidParam("DRY last n = %d out of range [-1, %d]", s.LastN, 1<<24)
	}
	if len(s.Breakers) > 1024 {
		return invalidParam("%d DRY breakers: at most 1024", len(s.Breakers))
	}
	for _, br := range s.Breakers {
		if br == "" || len(br) > 256 || !utf8.ValidString(br) {
			return invalidParam("DRY breaker %q must be valid UTF-8 of 1 to 256 bytes", br)
		}
	}
	return nil
}
func (s dryStage) add(b *chainBuilder) error {
	strs := cStrings(s.Breakers)
	defer strs.free()
	return b.push(C.lgo_stage{kind: C.LGO_STAGE_DRY, vocab: b.m.vocab, f: [3]C.float{C.float(s.Multiplier), C.float(s.Base)},
		i: [2]C.int32_t{C.int32_t(s.AllowedLength), C.int32_t(s.LastN)}, strs: strs.ptr(), n_strs: C.size_t(len(strs))})
}

type logitBiasStage struct{ Bias map[Token]float32 }

// LogitBias adds a bias to the logits of given tokens (math.Inf(-1) bans a token).
func LogitBias(bias map[Token]float32) Stage {
	cp := make(map[Token]float32, len(bias))
	for t, v := range bias {
		cp[t] = v
	}
	return logitBiasStage{cp}
}

func (s logitBiasStage) check(m *Model) error {
	for t, v := range s.Bias {
		if err := m.checkToken(t); err != nil {
			return fmt.Errorf("logit bias: %w", err)
		}
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 1) {
			return invalidParam("logit bias of token %d = %v: must be a number or -Inf", t, v)
		}
	}
	return nil
}
func (s logitBiasStage) add(b *chainBuilder) error {
	if len(s.Bias) == 0 {
		return nil
	}
	arr := (*[1 << 28]C.llama_logit_bias)(C.malloc(C.size_t(len(s.Bias)) * C.sizeof_llama_logit_bias))[:len(s.Bias):len(s.Bias)]
	defer C.free(unsafe.Pointer(&arr[0]))
	i := 0
	for t, v := range s.Bias {
		arr[i] = C.llama_logit_bias{token: C.llama_token(t), bias: C.float(v)}
		i++
	}
	return b.push(C.lgo_stage{kind: C.LGO_STAGE_LOGIT_BIAS, n_vocab: C.int32_t(b.m.vocabInfo.NTokens),
		bias: &arr[0], n_bias: C.int32_t(len(arr))})
}

type infillStage struct{}

// Infill is for fill-in-the-middle: it merges candidates sharing a prefix and prefers
// ending when end-of-generation is likely. Use it after TopK/TopP.
func Infill() Stage { return infillStage{} }

func (infillStage) check(*Model) error { return nil }
func (infillStage) add(b *chainBuilder) error {
	return b.push(C.lgo_stage{kind: C.LGO_STAGE_INFILL, vocab: b.m.vocab})
}

// cStringArray is a C array of C strings, in C memory: it may sit in a struct passed to C
// (lgo_stage), where cgo allows no Go pointer.
type cStringArray []*C.char

func cStrings(ss []string) cStringArray {
	if len(ss) == 0 {
		return nil
	}
	a := unsafe.Slice((**C.char)(C.malloc(C.size_t(len(ss))*C.size_t(unsafe.Sizeof((*C.char)(nil))))), len(ss))
	for i, s := range ss {
		a[i] = C.CString(s)
	}
	return a
}

// ptr is the array for C (nil when empty).
func (a cStringArray) ptr() **C.char {
	if len(a) == 0 {
		return nil
	}
	return &a[0]
}

func (a cStringArray) free() {
	for _, s := range a {
		C.free(unsafe.Pointer(s))
	}
	if len(a) > 0 {
		C.free(unsafe.Pointer(&a[0]))
	}
}
