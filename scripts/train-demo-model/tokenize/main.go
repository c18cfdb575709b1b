// Command tokenize turns the King James Bible, as printed by Debian's bible-kjv
// program, into the token files the demo model trains on, using this module's own
// binding (a vocab-only llama.cpp model) for tokenization.
//
//	bible -l100000 'gen1:1-rev22:21' > kjv.txt
//	go run ./scripts/train-demo-model/tokenize -in kjv.txt -out .device/kjv
//
// Every chapter is one document: BOS, its verses as one paragraph (joined by spaces),
// EOS. Spaces rather than newlines between verses keep every verse opening the same
// tokens a prompt has (the SPM vocabulary tokenizes "For" at the start of a line
// without the space prefix of a prompt's "▁For"). A few chapters (every -val-every th,
// except the ones the tests quote) form the validation split. The training split also
// gets a "snippet" per verse: BOS, that verse and up to -snippet-verses-1 more of its
// chapter, in random order. A prompt is a verse opening right after BOS, with no
// chapter before it: without snippets the model learns to recall a verse only from
// the text that precedes it.
//
// Output (in -out): train.bin and val.bin (token ids, uint16 little-endian),
// meta.json (counts, ids, sources, sample prompts) and pieces.json (each token's text,
// for the training script's sample output).
package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/llamago/llamago/internal/llamacpp"
	"github.com/llamago/llamago/llama"
)

// Chapter is one chapter of the text.
type Chapter struct {
	Book    string
	Number  int
	Verses  []string
	Heading string // "Genesis 1"
}

var (
	headingRE = regexp.MustCompile(`^(\S.*) (\d+)$`)
	verseRE   = regexp.MustCompile(`^ +(\d+) (.*)$`)
)

// Parse reads the output of `bible -l100000 'gen1:1-rev22:21'`: a "Book N" heading
// per chapter, then one "  N text" line per verse (the large -l keeps every verse
// on one line), with blank lines between chapters.
func Parse(r io.Reader) ([]Chapter, error) {
	var chapters []Chapter
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		s := strings.TrimRight(sc.Text(), " \r")
		switch {
		case s == "":
		case verseRE.MatchString(s):
			m := verseRE.FindStringSubmatch(s)
			if len(chapters) == 0 {
				return nil, fmt.Errorf("line %d: verse before the first chapter heading", line)
			}
			ch := &chapters[len(chapters)-1]
			n, _ := strconv.Atoi(m[1])
			if n != len(ch.Verses)+1 {
				return nil, fmt.Errorf("line %d: %s: verse %d follows verse %d", line, ch.Heading, n, len(ch.Verses))
			}
			text := strings.Join(strings.Fields(m[2]), " ")
			if text == "" {
				return nil, fmt.Errorf("line %d: %s:%d is empty", line, ch.Heading, n)
			}
			ch.Verses = append(ch.Verses, text)
		case headingRE.MatchString(s):
			m := headingRE.FindStringSubmatch(s)
			n, _ := strconv.Atoi(m[2])
			chapters = append(chapters, Chapter{Book: m[1], Number: n, Heading: s})
		default:
			return nil, fmt.Errorf("line %d: unexpected text %q (was the text wrapped? use bible -l100000)", line, s)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for _, c := range chapters {
		if len(c.Verses) == 0 {
			return nil, fmt.Errorf("%s has no verses", c.Heading)
		}
	}
	if len(chapters) == 0 {
		return nil, errors.New("no chapters found")
	}
	return chapters, nil
}

// Text is a chapter's text: its verses as one paragraph.
func (c Chapter) Text() string { return strings.Join(c.Verses, " ") }

// keepInTrain are the chapters the tests and the README quote: never held out.
var keepInTrain = map[string]bool{
	"Genesis 1": true, "John 1": true, "John 3": true, "Psalms 23": true, "Matthew 6": true,
	"1 Corinthians 13": true, "Ecclesiastes 3": true, "John 11": true, "Exodus 20": true,
}

// IsVal reports whether chapter i (0-based, in canonical order) is held out.
func IsVal(i int, c Chapter, every int) bool {
	return every > 0 && i%every == every/2 && !keepInTrain[c.Heading]
}

// SamplePrompts are tokenized into meta.json for the training log's samples.
var SamplePrompts = []string{
	"In the beginning",
	"For God so loved the world",
	"The LORD is my shepherd",
	"And it came to pass",
}

type meta struct {
	Source        string         `json:"source"`
	SourceCommand string         `json:"source_command"`
	SourceSHA256  string         `json:"source_sha256"`
	Package       string         `json:"package,omitempty"`
	Vocab         string         `json:"vocab"`
	VocabSHA256   string         `json:"vocab_sha256"`
	NVocab        int            `json:"n_vocab"`
	BOS           int            `json:"bos"`
	EOS           int            `json:"eos"`
	Format        string         `json:"format"`
	Chapters      int            `json:"chapters"`
	Verses        int            `json:"verses"`
	ValEvery      int            `json:"val_every"`
	ValChapters   []string       `json:"val_chapters"`
	SnippetVerses int            `json:"snippet_verses"`
	Seed          uint64         `json:"seed"`
	TrainTokens   int            `json:"train_tokens"`
	ChapterTokens int            `json:"train_chapter_tokens"`
	SnippetTokens int            `json:"train_snippet_tokens"`
	ValTokens     int            `json:"val_tokens"`
	Prompts       map[string]any `json:"prompts"`
}

func main() {
	in := flag.String("in", "", "output of `bible -l100000 'gen1:1-rev22:21'` (required)")
	vocab := flag.String("vocab", "", "vocab GGUF (default: llama.cpp's models/ggml-vocab-llama-spm.gguf)")
	out := flag.String("out", ".device/kjv", "output directory")
	valEvery := flag.Int("val-every", 50, "hold out every n-th chapter for validation (0: none)")
	snippets := flag.Int("snippet-verses", 4, "most verses per snippet (0: no snippets)")
	seed := flag.Uint64("seed", 1, "seed for the snippets' lengths and order")
	flag.Parse()
	if err := run(*in, *vocab, *out, *valEvery, *snippets, *seed); err != nil {
		fmt.Fprintln(os.Stderr, "tokenize:", err)
		os.Exit(1)
	}
}

func run(in, vocab, out string, valEvery, snippetVerses int, seed uint64) error {
	if in == "" {
		return errors.New("-in is required")
	}
	raw, err := os.ReadFile(in)
	if err != nil {
		return err
	}
	chapters, err := Parse(strings.NewReader(string(raw)))
	if err != nil {
		return fmt.Errorf("%s: %w", in, err)
	}
	if vocab == "" {
		if vocab, err = llamacpp.Model("ggml-vocab-llama-spm.gguf"); err != nil {
			return err
		}
	}
	vocabBytes, err := os.ReadFile(vocab)
	if err != nil {
		return err
	}
	m, err := llama.LoadModel(context.Background(), vocab, &llama.ModelParams{VocabOnly: true})
	if err != nil {
		return err
	}
	defer m.Close()
	vi := m.Vocab()
	if vi.NTokens > 1<<16 {
		return fmt.Errorf("vocabulary of %d tokens does not fit uint16 ids", vi.NTokens)
	}
	bos, eos := int(vi.BOS), int(vi.EOS)
	if bos < 0 || eos < 0 {
		return errors.New("the vocabulary needs BOS and EOS tokens")
	}

	md := meta{
		Source:        "King James Version of the Bible (1611), Debian package bible-kjv-text",
		SourceCommand: "bible -l100000 'gen1:1-rev22:21'",
		SourceSHA256:  sha(raw),
		Package:       packageVersion(),
		Vocab:         filepath.Base(vocab),
		VocabSHA256:   sha(vocabBytes),
		NVocab:        vi.NTokens,
		BOS:           bos,
		EOS:           eos,
		Format:        "uint16 little-endian token ids; each chapter is BOS, its verses joined by spaces, EOS; then, in train.bin, a snippet per verse in random order: BOS, the verse and up to snippet_verses-1 following verses of its chapter",
		Chapters:      len(chapters),
		ValEvery:      valEvery,
		SnippetVerses: snippetVerses,
		Seed:          seed,
		Prompts:       map[string]any{},
	}
	var train, val []uint16
	var trainChapters []Chapter
	for i, c := range chapters {
		md.Verses += len(c.Verses)
		toks, err := m.Tokenize(c.Text(), llama.AddSpecial)
		if err != nil {
			return fmt.Errorf("%s: %w", c.Heading, err)
		}
		if len(toks) == 0 || int(toks[0]) != bos {
			return fmt.Errorf("%s: tokenization did not start with BOS", c.Heading)
		}
		toks = append(toks, llama.Token(eos))
		if IsVal(i, c, valEvery) {
			val = appendIDs(val, toks)
			md.ValChapters = append(md.ValChapters, c.Heading)
		} else {
			train = appendIDs(train, toks)
			trainChapters = append(trainChapters, c)
		}
	}
	md.ChapterTokens = len(train)

	// Snippets: one per verse, BOS + 1..snippetVerses verses from there, shuffled.
	rng := rand.New(rand.NewPCG(seed, 0x6b6a76))
	var snips [][]llama.Token
	for _, c := range trainChapters {
		for k := range c.Verses {
			if snippetVerses <= 0 {
				break
			}
			n := 1 + rng.IntN(snippetVerses)
			toks, err := m.Tokenize(strings.Join(c.Verses[k:min(k+n, len(c.Verses))], " "), llama.AddSpecial)
			if err != nil {
				return err
			}
			snips = append(snips, toks)
		}
	}
	rng.Shuffle(len(snips), func(i, j int) { snips[i], snips[j] = snips[j], snips[i] })
	for _, toks := range snips {
		train = appendIDs(train, toks)
	}
	md.SnippetTokens = len(train) - md.ChapterTokens
	md.TrainTokens, md.ValTokens = len(train), len(val)

	for _, p := range SamplePrompts {
		toks, err := m.Tokenize(p, llama.AddSpecial)
		if err != nil {
			return err
		}
		md.Prompts[p] = toks
	}
	pieces := make([]string, vi.NTokens)
	for t := range pieces {
		b, err := m.TokenPiece(llama.Token(t), false)
		if err != nil {
			return err
		}
		pieces[t] = string(b)
	}

	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	if err := writeIDs(filepath.Join(out, "train.bin"), train); err != nil {
		return err
	}
	if err := writeIDs(filepath.Join(out, "val.bin"), val); err != nil {
		return err
	}
	if err := writeJSON(filepath.Join(out, "meta.json"), md); err != nil {
		return err
	}
	if err := writeJSON(filepath.Join(out, "pieces.json"), pieces); err != nil {
		return err
	}
	fmt.Printf("%d chapters, %d verses -> %s: train %d tokens (%d chapter, %d snippet), val %d tokens (%d chapters)\n",
		md.Chapters, md.Verses, out, md.TrainTokens, md.ChapterTokens, md.SnippetTokens, md.ValTokens, len(md.ValChapters))
	return nil
}

func appendIDs(dst []uint16, toks []llama.Token) []uint16 {
	for _, t := range toks {
		dst = append(dst, uint16(t))
	}
	return dst
}

func writeIDs(path string, ids []uint16) error {
	b := make([]byte, 2*len(ids))
	for i, id := range ids {
		binary.LittleEndian.PutUint16(b[2*i:], id)
	}
	return os.WriteFile(path, b, 0o644)
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", " ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func sha(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// packageVersion is the installed bible-kjv-text version, when dpkg knows it.
func packageVersion() string {
	out, err := exec.Command("dpkg-query", "-W", "-f=${Package} ${Version}", "bible-kjv-text").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}
