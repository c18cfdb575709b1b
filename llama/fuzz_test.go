package llama

// Fuzz targets for the inputs that reach llama.cpp. Each must return an error or a
// result, never crash the process (an abort in llama.cpp fails the fuzzer). Run one
// at a time, e.g.
//
//	GOMAXPROCS=1 go test -run='^$' -fuzz=FuzzTokenize -fuzztime=10m -parallel=1 ./llama/
//
// Seeds come from f.Add below and from testdata/fuzz/<target>/ (where `go test` also
// keeps the inputs of fixed crashes as regression cases).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/llamago/llamago/internal/modelcheck"
	"github.com/llamago/llamago/internal/testmodel"
	"github.com/llamago/llamago/llama/gguf"
)

// fuzzCache holds what a fuzz worker loads once: models by name, chat templates.
var fuzzCache struct {
	sync.Mutex
	models    map[string]*Model
	templates []*ChatTemplate
}

// fuzzModel loads (once per process) a vocab-only model of llama.cpp's models/ or, for
// "micro" and "micro-nobytes", the micro vocabulary (the latter without its byte tokens,
// a vocabulary llama.cpp's tokenizer throws on).
func fuzzModel(t testing.TB, name string) *Model {
	t.Helper()
	fuzzCache.Lock()
	defer fuzzCache.Unlock()
	if m := fuzzCache.models[name]; m != nil {
		return m
	}
	var path string
	switch name {
	case "micro", "micro-nobytes":
		var edit func([]gguf.KV) []gguf.KV
		if name == "micro-nobytes" {
			edit = renameByteTokens
		}
		path = filepath.Join(testmodel.Dir(t), name+".gguf")
		if err := os.WriteFile(path, microModel(t, 8, 16, edit), 0o644); err != nil {
			t.Fatal(err)
		}
	default:
		path = vocabPath(t, name)
	}
	m, err := LoadModel(context.Background(), path, &ModelParams{VocabOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if fuzzCache.models == nil {
		fuzzCache.models = map[string]*Model{}
	}
	fuzzCache.models[name] = m
	return m
}

// renameByteTokens renames the <0xXX> tokens of a vocabulary: SentencePiece byte
// fallback then finds no token for a byte, and llama.cpp throws std::out_of_range.
func renameByteTokens(meta []gguf.KV) []gguf.KV {
	for i, kv := range meta {
		if kv.Key == "tokenizer.ggml.tokens" {
			toks := append([]string(nil), kv.Value.Any().([]string)...)
			for j, tok := range toks {
				if strings.HasPrefix(tok, "<0x") {
					toks[j] = "byte" + tok[3:5]
				}
			}
			meta[i].Value = gguf.Array(toks)
		}
	}
	return meta
}

// fuzzVocabs are the vocabularies FuzzTokenize picks from. pieces: the pieces of
// Tokenize(text) joined are text again (byte-level BPE: no normalization, no lost
// characters); detok: so is Detokenize(Tokenize(text)) (no clean-up of spaces before
// punctuation either, which llama-bpe does).
var fuzzVocabs = []struct {
	name          string
	pieces, detok bool
}{
	{"llama-bpe", true, false},
	{"qwen2", true, true},
	{"llama-spm", false, false}, // SentencePiece: leading and repeated spaces are normalized
	{"bert-bge", false, false},  // WordPiece: lowercased, accents and spaces dropped
	{"gpt-2", true, false},
	{"micro", false, false},
	{"micro-nobytes", false, false}, // tokenizing may fail (an error, not a crash)
}

// FuzzTokenize: any text tokenizes (or is refused as invalid UTF-8), every token is in
// range and has a piece, detokenizing works, and byte-level BPE round-trips.
func FuzzTokenize(f *testing.F) {
	for _, s := range []string{"", " ", "Hello world", "  leading and  double  spaces ", "日本語のテキスト",
		"emoji 🦙🦙 and combining é", "<|begin_of_text|>special<|eot_id|>", "<s> </s> <unk>", "\x00\x01\t\n\r",
		"ÿ\u00a0\u2028\u200b", strings.Repeat("a", 300), "123,456.789 -- don't", "\xff\xfe invalid"} {
		for v := range fuzzVocabs {
			f.Add(s, uint8(v), uint8(v%4))
		}
	}
	f.Fuzz(func(t *testing.T, text string, vocab, flags uint8) {
		v := fuzzVocabs[int(vocab)%len(fuzzVocabs)]
		m := fuzzModel(t, v.name)
		tf := TokenizeFlags(flags) & (AddSpecial | ParseSpecial)
		toks, err := m.Tokenize(text, tf)
		if !utf8.ValidString(text) {
			if !errors.Is(err, ErrInvalidUTF8) {
				t.Fatalf("invalid UTF-8 accepted: %v", err)
			}
			return
		}
		if err != nil {
			if v.name == "micro-nobytes" && strings.HasPrefix(err.Error(), "llama: tokenize: llama.cpp failed") {
				return
			}
			t.Fatalf("%s: tokenize %q: %v", v.name, text, err)
		}
		var pieces []byte
		for _, tok := range toks {
			if !m.ValidToken(tok) {
				t.Fatalf("token %d out of range", tok)
			}
			if pieces, err = m.AppendTokenPiece(pieces, tok, tf != 0); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := m.Detokenize(toks, DetokenizeFlags(flags>>2)&(RemoveSpecial|RenderSpecial)); err != nil {
			t.Fatalf("%s: detokenize %v: %v", v.name, toks, err)
		}
		if tf != 0 {
			return
		}
		if v.pieces && string(pieces) != text {
			t.Fatalf("%s: the pieces of %q join to %q", v.name, text, pieces)
		}
		if back, err := m.Detokenize(toks, 0); v.detok && (err != nil || back != text) {
			t.Fatalf("%s: round trip of %q gave %q (%v)", v.name, text, back, err)
		}
	})
}

// FuzzLoadModel: model files go through the GGUF reader and the pre-check; what the
// pre-check accepts is loaded by llama.cpp (vocabulary only, then the whole model),
// tokenizes and decodes a few tokens. An input is either a whole file or, when it starts
// with fuzzEditMarker, metadata edits applied to the micro model (fuzzEdits): raw bytes
// mostly break the file's structure, edits reach llama.cpp's reading of the values.
// With LLAMAGO_FUZZ_STATS=dir, each worker keeps a count of the outcomes in dir.
func FuzzLoadModel(f *testing.F) {
	micro := microModel(f, 8, 16, nil)
	f.Add(micro)
	f.Add(microModel(f, 8, 16, renameByteTokens))
	// Files llama.cpp v0.4.0 aborts on; the pre-check refuses them.
	for _, edit := range hostileMicroEdits() {
		f.Add(microModel(f, 8, 16, edit.edit))
	}
	bad, _ := filepath.Glob(filepath.Join("gguf", "testdata", "bad", "*.gguf"))
	for _, p := range bad {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	for key := range fuzzEditKeys {
		for typ := range byte(16) {
			f.Add([]byte{fuzzEditMarker, byte(key), typ, 4, 1, 0, 0, 0})
		}
	}
	var once sync.Once
	var path string
	stats := fuzzStats{name: "load"}
	f.Fuzz(func(t *testing.T, data []byte) {
		once.Do(func() { path = filepath.Join(testmodel.Dir(t), fmt.Sprintf("fuzz-%d.gguf", os.Getpid())) })
		defer stats.flush()
		if len(data) > 0 && data[0] == fuzzEditMarker {
			var err error
			if data, err = fuzzEdits(data[1:]); err != nil {
				stats.unwritable++
				return
			}
		}
		if _, err := modelcheck.Read(bytes.NewReader(data), int64(len(data)), true); err != nil {
			stats.refused++
			return // refused before llama.cpp sees it
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		loadAndExercise(t, path, &stats)
	})
}

// FuzzModelMetadata is FuzzLoadModel with every input read as metadata edits of the
// micro model: small inputs the fuzzer mutates quickly, and files whose structure is
// sound, so that the values reach llama.cpp's loader far more often.
func FuzzModelMetadata(f *testing.F) {
	for key := range fuzzEditKeys {
		for typ := range byte(16) {
			f.Add([]byte{byte(key), typ, 4, 1, 0, 0, 0})
		}
	}
	f.Add([]byte{})
	var once sync.Once
	var path string
	stats := fuzzStats{name: "meta"}
	f.Fuzz(func(t *testing.T, data []byte) {
		once.Do(func() { path = filepath.Join(testmodel.Dir(t), fmt.Sprintf("fuzz-meta-%d.gguf", os.Getpid())) })
		defer stats.flush()
		file, err := fuzzEdits(data)
		if err != nil {
			stats.unwritable++
			return
		}
		if err := os.WriteFile(path, file, 0o644); err != nil {
			t.Fatal(err)
		}
		loadAndExercise(t, path, &stats)
	})
}

// fuzzStats counts what became of FuzzLoadModel's inputs in one worker.
type fuzzStats struct {
	name                                                  string
	unwritable, refused, llamaErr, vocabLoaded, loaded, n int
}

func (s *fuzzStats) flush() {
	if s.n++; s.n%500 != 0 {
		return
	}
	if dir := os.Getenv("LLAMAGO_FUZZ_STATS"); dir != "" {
		line := fmt.Sprintf("execs %d: edits the writer refused %d, refused by the pre-check %d, by llama.cpp %d, loaded vocab-only %d, loaded and decoded %d\n",
			s.n, s.unwritable, s.refused, s.llamaErr, s.vocabLoaded, s.loaded)
		_ = os.WriteFile(filepath.Join(dir, fmt.Sprintf("stats-%s-%d", s.name, os.Getpid())), []byte(line), 0o644)
	}
}

// fuzzEditMarker starts a FuzzLoadModel input of metadata edits.
const fuzzEditMarker = 0xED

// fuzzEditKeys are the keys FuzzLoadModel's edits set: what llama.cpp reads for the micro
// model's architecture and tokenizer, and a few more.
var fuzzEditKeys = []string{
	"general.architecture", "general.alignment", "general.file_type", "split.count", "split.no",
	"llama.block_count", "llama.context_length", "llama.embedding_length", "llama.feed_forward_length",
	"llama.attention.head_count", "llama.attention.head_count_kv", "llama.attention.key_length",
	"llama.attention.value_length", "llama.attention.layer_norm_rms_epsilon", "llama.rope.freq_base",
	"llama.rope.dimension_count", "llama.rope.scaling.type", "llama.rope.scaling.factor", "llama.vocab_size",
	"llama.expert_count", "llama.expert_used_count", "llama.expert_group_count", "llama.expert_group_used_count",
	"llama.nextn_predict_layers", "llama.attention.sliding_window", "llama.pooling_type", "llama.attention.causal",
	"llama.rope.scaling.original_context_length", "llama.attention.layer_norm_epsilon", "llama.expert_shared_count",
	"llama.leading_dense_block_count", "llama.interleave_moe_layer_step", "llama.attention.temperature_length",
	"tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens", "tokenizer.ggml.scores",
	"tokenizer.ggml.token_type", "tokenizer.ggml.merges", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
	"tokenizer.ggml.unknown_token_id", "tokenizer.ggml.padding_token_id", "tokenizer.ggml.eot_token_id",
	"tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_eos_token", "tokenizer.ggml.add_space_prefix",
	"tokenizer.ggml.eog_token_ids", "tokenizer.ggml.suppress_tokens", "tokenizer.chat_template",
	"tokenizer.ggml.precompiled_charsmap", "tokenizer.ggml.remove_extra_whitespaces",
}

// fuzzEdits turns data into up to four metadata edits of the micro model and returns the
// edited file: each edit is a key index, a value type and a length, then the value's bytes.
func fuzzEdits(data []byte) ([]byte, error) {
	next := func(n int) []byte {
		n = min(n, len(data))
		b := data[:n]
		data = data[n:]
		return b
	}
	u := func(n int) uint64 {
		var v uint64
		for i, c := range next(n) {
			v |= uint64(c) << (8 * i)
		}
		return v
	}
	var edits []func([]gguf.KV) []gguf.KV
	for range 4 {
		if len(data) < 3 {
			break
		}
		key := fuzzEditKeys[int(u(1))%len(fuzzEditKeys)]
		typ, n := u(1)%16, int(u(1))
		var v gguf.Value
		switch typ {
		case 0:
			v = gguf.Uint8(uint8(u(1)))
		case 1:
			v = gguf.Int8(int8(u(1)))
		case 2:
			v = gguf.Uint16(uint16(u(2)))
		case 3:
			v = gguf.Int16(int16(u(2)))
		case 4:
			v = gguf.Uint32(uint32(u(4)))
		case 5:
			v = gguf.Int32(int32(u(4)))
		case 6:
			v = gguf.Float32(math.Float32frombits(uint32(u(4))))
		case 7:
			v = gguf.Bool(u(1)&1 == 1)
		case 8:
			v = gguf.String(string(next(n)))
		case 9:
			v = gguf.Uint64(u(8))
		case 10:
			v = gguf.Int64(int64(u(8)))
		case 11:
			v = gguf.Float64(math.Float64frombits(u(8)))
		case 12: // n uint32, or n+256 repeating the first bytes (array lengths of the vocabulary's size)
			a := make([]uint32, n)
			for i := range a {
				a[i] = uint32(u(4))
			}
			v = gguf.Array(a)
		case 13:
			a := make([]int32, n+len(microWords)+259-255)
			for i := range a {
				a[i] = int32(u(1))
			}
			v = gguf.Array(a)
		case 14:
			a := make([]float32, n)
			for i := range a {
				a[i] = math.Float32frombits(uint32(u(4)))
			}
			v = gguf.Array(a)
		case 15:
			a := make([]string, n)
			for i := range a {
				a[i] = string(next(int(u(1)) % 8))
			}
			v = gguf.Array(a)
		}
		edits = append(edits, setKV(key, v))
	}
	return microModelBytes(8, 16, editKV(edits...)) // the writer refuses some values (general.alignment)
}

// exerciseModel tokenizes and detokenizes, and with decode, decodes and samples a few
// tokens; errors are fine, crashes are not.
func exerciseModel(t *testing.T, m *Model, decode bool) {
	toks, err := m.Tokenize("hello world 日本", AddSpecial|ParseSpecial)
	if err != nil {
		return
	}
	if _, err := m.Detokenize(toks, RenderSpecial); err != nil {
		return
	}
	if !decode || len(toks) == 0 {
		return
	}
	c, err := m.NewContext(&ContextParams{NCtx: 64, NBatch: 64, Threads: 1})
	if err != nil {
		return
	}
	defer c.Close()
	s, err := NewSampler(m, TopK(5), Seed(1))
	if err != nil {
		return
	}
	defer s.Close()
	for _, err := range c.Generate(t.Context(), toks, s, &GenerateParams{MaxTokens: 3, IgnoreEOG: true}) {
		if err != nil {
			return
		}
	}
}

// FuzzGrammar: any grammar text either builds a sampler or returns ErrGrammar; a built
// grammar then constrains a few sampling steps over a fixed set of candidates.
func FuzzGrammar(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(llamaCppDir(f), "grammars", "*.gbnf"))
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(string(b))
		}
	}
	for _, g := range []string{`root ::= "yes" | "no"`, `root ::= [a-z]+ "." `, `root ::= ("ab" | [0-9]{2,5})* "!"`,
		`root ::= x x ::= "a" x | "b"`, `root ::= <[1000]> | !<[2000]>`, `root ::= "\u00e9" [^\n]*`,
		"root ::= " + strings.Repeat("(", MaxGrammarNesting) + `"a"` + strings.Repeat(")", MaxGrammarNesting),
		"root ::= " + strings.Repeat("(", MaxGrammarNesting+1) + `"a"` + strings.Repeat(")", MaxGrammarNesting+1),
		`root ::= "a"{2000}`, `root ::= ("a"{40}){60}`, `root ::= root "a" | "b"`, `root ::= [`, "root ::= \"\xff\""} {
		f.Add(g)
	}
	f.Fuzz(func(t *testing.T, g string) {
		m := fuzzModel(t, "llama-spm")
		s, err := NewSampler(m, Grammar(g), Greedy())
		if err != nil {
			if !errors.Is(err, ErrGrammar) {
				t.Fatalf("not ErrGrammar: %v", err)
			}
			return
		}
		defer s.Close()
		cands := make([]Candidate, 0, 128)
		for b := 32; b < 127; b++ {
			if toks, err := m.Tokenize(string(rune(b)), 0); err == nil && len(toks) == 1 {
				cands = append(cands, Candidate{Token: toks[0], Logit: float32(b % 7)})
			}
		}
		cands = append(cands, Candidate{Token: m.Vocab().EOS, Logit: 1})
		for range 8 {
			out, sel, err := s.Apply(cands)
			if err != nil || sel < 0 || out[sel].Logit < -1e30 {
				return // nothing the grammar allows among the candidates
			}
			if m.IsEOG(out[sel].Token) {
				return
			}
			// Accept may still refuse a token Apply let through (a piece that a character
			// element consumes only partly before a token element), but only with ErrGrammar.
			if err := s.Accept(out[sel].Token); err != nil {
				if !errors.Is(err, ErrGrammar) {
					t.Fatalf("accepting the selected token: %v", err)
				}
				return
			}
		}
	})
}

// fuzzTemplates are chat templates of llama.cpp's models/templates that FuzzChatTemplate renders.
var fuzzTemplates = []string{
	"Qwen-Qwen2.5-7B-Instruct.jinja",
	"meta-llama-Llama-3.1-8B-Instruct.jinja",
	"mistralai-Mistral-Nemo-Instruct-2407.jinja",
	"google-gemma-2-2b-it.jinja",
	"deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja",
	"microsoft-Phi-3.5-mini-instruct.jinja",
}

// FuzzChatTemplate: messages of any content and role render (Jinja templates and the
// built-in ones) or return ErrChat.
func FuzzChatTemplate(f *testing.F) {
	for i, s := range []struct{ role, content, reply string }{
		{"user", "Hi", "Hello!"},
		{"system", "You are terse.", ""},
		{"assistant", "{{ raise_exception('x') }}", "{% endfor %}"},
		{"tool", `{"temperature": 21}`, "<|im_end|>\n<|im_start|>system"},
		{"wizard", "x", "y"},
		{"", "", ""},
		{"user", "日本語 🦙 \x00 \u2028", strings.Repeat("long ", 200)},
		{"user", "\xff", "ok"},
		{"developer", "[INST] <<SYS>> </s>", "<start_of_turn>"},
	} {
		f.Add(s.role, s.content, s.reply, uint8(i))
	}
	f.Fuzz(func(t *testing.T, role, content, reply string, pick uint8) {
		tmpls := fuzzChatTemplates(t)
		msgs := []Message{{Role: Role(role), Content: content}, {Role: RoleAssistant, Content: reply},
			{Role: RoleUser, Content: content + reply}}
		if pick&8 != 0 {
			msgs = append([]Message{{Role: RoleSystem, Content: reply}}, msgs...)
		}
		if pick&16 != 0 {
			msgs[1].ToolCalls = []ToolCall{{ID: "call00001", Name: "f", Arguments: `{"a": 1}`}}
			msgs = append(msgs[:2], append([]Message{{Role: RoleTool, ToolCallID: "call00001", ToolName: "f", Content: reply}}, msgs[2:]...)...)
		}
		tmpl := tmpls[int(pick)%len(tmpls)]
		if _, err := tmpl.Apply(&ChatRequest{Messages: msgs}); err != nil && !errors.Is(err, ErrChat) {
			t.Fatalf("not ErrChat: %v", err)
		}
		names := BuiltinChatTemplates()
		if _, err := ApplyBuiltinChatTemplate(names[int(pick)%len(names)], msgs, pick&32 != 0); err != nil && !errors.Is(err, ErrChat) {
			t.Fatalf("built-in template: not ErrChat: %v", err)
		}
	})
}

func fuzzChatTemplates(t testing.TB) []*ChatTemplate {
	fuzzCache.Lock()
	defer fuzzCache.Unlock()
	if fuzzCache.templates == nil {
		for _, name := range fuzzTemplates {
			fuzzCache.templates = append(fuzzCache.templates, readTemplate(t, name))
		}
	}
	return fuzzCache.templates
}

// loadAndExercise loads a fuzzed file vocabulary-only, then whole, exercising what
// loads; a load error must be a *LoadError. It counts the outcomes in stats.
func loadAndExercise(t *testing.T, path string, stats *fuzzStats) {
	for _, vocabOnly := range []bool{true, false} {
		m, err := LoadModel(t.Context(), path, &ModelParams{GPULayers: 0, VocabOnly: vocabOnly})
		if err != nil {
			var le *LoadError
			if !errors.As(err, &le) {
				t.Fatalf("not a *LoadError: %v", err)
			}
			if strings.Contains(err.Error(), "llama.cpp could not load") {
				stats.llamaErr++
			} else {
				stats.refused++
			}
			return
		}
		exerciseModel(t, m, !vocabOnly)
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
		if vocabOnly {
			stats.vocabLoaded++
		} else {
			stats.loaded++
		}
	}
}
