package llama

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// goldenCases reads upstream's tokenizer test pairs: texts separated by
// "\n__ggml_vocab_test__\n" in .inp, one line of token ids per text in .out.
func goldenCases(t *testing.T, inp string) (texts []string, want [][]Token) {
	raw, err := os.ReadFile(inp)
	require.NoError(t, err)
	out, err := os.ReadFile(strings.TrimSuffix(inp, ".inp") + ".out")
	require.NoError(t, err)
	const sep = "\n__ggml_vocab_test__\n"
	s := string(raw)
	for len(s) > 0 {
		i := strings.Index(s, sep)
		if i < 0 {
			texts = append(texts, s)
			break
		}
		texts = append(texts, s[:i])
		s = s[i+len(sep):]
	}
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	require.Len(t, lines, len(texts), "%s: .inp and .out disagree on the number of tests", inp)
	for _, line := range lines {
		toks := []Token{}
		for _, f := range strings.Fields(line) {
			v, err := strconv.Atoi(f)
			require.NoError(t, err)
			toks = append(toks, Token(v))
		}
		want = append(want, toks)
	}
	return texts, want
}

func TestTokenizerGoldens(t *testing.T) {
	inputs, err := filepath.Glob(filepath.Join(llamaCppDir(t), "models", "ggml-vocab-*.gguf.inp"))
	require.NoError(t, err)
	require.NotEmpty(t, inputs)
	total, passed := 0, 0
	for _, inp := range inputs {
		name := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(inp), "ggml-vocab-"), ".gguf.inp")
		t.Run(name, func(t *testing.T) {
			m, err := LoadModel(t.Context(), strings.TrimSuffix(inp, ".inp"), &ModelParams{VocabOnly: true})
			require.NoError(t, err)
			defer m.Close()
			texts, want := goldenCases(t, inp)
			for i, text := range texts {
				total++
				got, err := m.Tokenize(text, 0)
				if assert.NoError(t, err, "text %q", text) && assert.Equal(t, want[i], got, "text %q", text) {
					passed++
				}
				// Lossless vocabularies give the text back, piece by piece and through
				// Detokenize (WordPiece and Unigram normalise, so only their decoding is checked).
				var joined []byte
				for _, tok := range got {
					joined, err = m.AppendTokenPiece(joined, tok, false)
					require.NoError(t, err)
				}
				back, err := m.Detokenize(got, 0)
				require.NoError(t, err)
				switch m.Vocab().Type {
				case VocabBPE:
					assert.Equal(t, text, string(joined), "pieces of %q", text)
				case VocabSPM: // adds a space prefix
					assert.Equal(t, text, strings.TrimPrefix(string(joined), " "), "pieces of %q", text)
					assert.Equal(t, text, back, "detokenized %q", text)
				}
			}
		})
	}
	t.Logf("tokenizer goldens: %d of %d passed", passed, total)
	assert.Equal(t, total, passed)
}

func TestVocabOnlyModel(t *testing.T) {
	m, err := LoadModel(t.Context(), vocabPath(t, "llama-bpe"), &ModelParams{VocabOnly: true})
	require.NoError(t, err)
	defer m.Close()

	v := m.Vocab()
	assert.Equal(t, VocabBPE, v.Type)
	assert.Equal(t, 128256, v.NTokens)
	assert.Equal(t, Token(128000), v.BOS)
	assert.True(t, m.IsEOG(v.EOS))
	assert.Equal(t, "llama", m.Info().Architecture)

	toks, err := m.Tokenize("Hello world", AddSpecial)
	require.NoError(t, err)
	require.NotEmpty(t, toks)
	assert.Equal(t, v.BOS, toks[0], "AddSpecial adds BOS for Llama 3")

	// Special tokens are text unless ParseSpecial.
	plain, err := m.Tokenize("<|eot_id|>", 0)
	require.NoError(t, err)
	parsed, err := m.Tokenize("<|eot_id|>", ParseSpecial)
	require.NoError(t, err)
	assert.Greater(t, len(plain), 1)
	require.Len(t, parsed, 1)
	assert.True(t, m.IsEOG(parsed[0]))
	attrs, err := m.TokenAttrs(parsed[0])
	require.NoError(t, err)
	assert.NotZero(t, attrs&TokenAttrControl)

	piece, err := m.TokenPiece(parsed[0], true)
	require.NoError(t, err)
	assert.Equal(t, "<|eot_id|>", string(piece))
	piece, err = m.TokenPiece(parsed[0], false)
	require.NoError(t, err)
	assert.Empty(t, piece, "control tokens render as nothing without special")

	text, err := m.Detokenize(toks, RemoveSpecial)
	require.NoError(t, err)
	assert.Equal(t, "Hello world", text)
	text, err = m.Detokenize(toks, RenderSpecial)
	require.NoError(t, err)
	assert.Equal(t, "<|begin_of_text|>Hello world", text)

	// Pieces can split a multi-byte character; joined as bytes they are the text.
	emoji, err := m.Tokenize("🦙", 0)
	require.NoError(t, err)
	var joined []byte
	for _, tok := range emoji {
		joined, err = m.AppendTokenPiece(joined, tok, false)
		require.NoError(t, err)
	}
	assert.Equal(t, "🦙", string(joined))

	// A context needs weights.
	_, err = m.NewContext(nil)
	assert.ErrorIs(t, err, ErrInvalidParams)
}

func TestVocabBadInput(t *testing.T) {
	m, err := LoadModel(t.Context(), vocabPath(t, "llama-spm"), &ModelParams{VocabOnly: true})
	require.NoError(t, err)
	n := m.Vocab().NTokens

	for _, bad := range []Token{-1, -100, Token(n), Token(n + 5)} {
		_, err := m.TokenPiece(bad, false)
		assert.ErrorIs(t, err, ErrInvalidToken, "token %d", bad)
		_, err = m.Detokenize([]Token{1, bad}, 0)
		assert.ErrorIs(t, err, ErrInvalidToken, "token %d", bad)
		_, err = m.TokenAttrs(bad)
		assert.ErrorIs(t, err, ErrInvalidToken)
		_, err = m.TokenText(bad)
		assert.ErrorIs(t, err, ErrInvalidToken)
		assert.False(t, m.IsEOG(bad))
	}
	_, err = m.Tokenize("abc\xff\xfe", 0)
	assert.ErrorIs(t, err, ErrInvalidUTF8)

	// Empty text and embedded NULs are fine.
	toks, err := m.Tokenize("", 0)
	require.NoError(t, err)
	assert.Empty(t, toks)
	toks, err = m.Tokenize("a\x00b", 0)
	require.NoError(t, err)
	assert.NotEmpty(t, toks)

	// The next valid call works, and after Close everything says ErrClosed.
	toks, err = m.Tokenize("still alive", AddSpecial)
	require.NoError(t, err)
	require.NoError(t, m.Close())
	require.NoError(t, m.Close(), "Close twice")
	_, err = m.Tokenize("x", 0)
	assert.ErrorIs(t, err, ErrClosed)
	_, err = m.TokenPiece(toks[0], false)
	assert.ErrorIs(t, err, ErrClosed)
	_, err = m.Detokenize(toks, 0)
	assert.ErrorIs(t, err, ErrClosed)
	assert.False(t, m.IsEOG(m.Vocab().EOS))
	_, err = m.NewContext(nil)
	assert.ErrorIs(t, err, ErrClosed)
	assert.True(t, slices.Equal(toks[:1], []Token{m.Vocab().BOS}), "info stays readable after Close")
}
