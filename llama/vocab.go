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

// Token is a vocabulary token id.
type Token int32

// NoToken is llama.cpp's LLAMA_TOKEN_NULL: the model has no such token.
const NoToken Token = -1

// VocabType is the tokenizer family of a model.
type VocabType int

const (
	VocabNone   VocabType = iota // no vocabulary
	VocabSPM                     // SentencePiece-style BPE with byte fallback (Llama 2, Mistral)
	VocabBPE                     // GPT-2 style byte-level BPE (Llama 3, Qwen)
	VocabWPM                     // WordPiece (BERT)
	VocabUGM                     // Unigram (T5)
	VocabRWKV                    // RWKV greedy
	VocabPLaMo2                  // PLaMo-2
)

func (v VocabType) String() string {
	names := [...]string{"none", "SPM", "BPE", "WPM", "UGM", "RWKV", "PLaMo2"}
	if v >= 0 && int(v) < len(names) {
		return names[v]
	}
	return fmt.Sprintf("VocabType(%d)", int(v))
}

// TokenAttr is a bit set of token attributes.
type TokenAttr uint32

const (
	TokenAttrUnknown     TokenAttr = 1 << 0
	TokenAttrUnused      TokenAttr = 1 << 1
	TokenAttrNormal      TokenAttr = 1 << 2
	TokenAttrControl     TokenAttr = 1 << 3
	TokenAttrUserDefined TokenAttr = 1 << 4
	TokenAttrByte        TokenAttr = 1 << 5
	TokenAttrNormalized  TokenAttr = 1 << 6
	TokenAttrLStrip      TokenAttr = 1 << 7
	TokenAttrRStrip      TokenAttr = 1 << 8
	TokenAttrSingleWord  TokenAttr = 1 << 9
)

// VocabInfo holds the vocabulary's size and special tokens (NoToken where absent).
type VocabInfo struct {
	Type    VocabType
	NTokens int
	BOS     Token // beginning of sequence
	EOS     Token // end of sequence
	EOT     Token // end of turn
	SEP     Token // sentence separator
	NL      Token // newline
	PAD     Token // padding
	Mask    Token
	// Fill-in-the-middle tokens.
	FIMPrefix, FIMSuffix, FIMMiddle, FIMPad, FIMRepo, FIMSep Token
	AddBOS, AddEOS, AddSEP                                   bool // whether tokenizing with AddSpecial adds them
}

func readVocabInfo(v *C.struct_llama_vocab) VocabInfo {
	return VocabInfo{
		Type:      VocabType(C.llama_vocab_type(v)),
		NTokens:   int(C.llama_vocab_n_tokens(v)),
		BOS:       Token(C.llama_vocab_bos(v)),
		EOS:       Token(C.llama_vocab_eos(v)),
		EOT:       Token(C.llama_vocab_eot(v)),
		SEP:       Token(C.llama_vocab_sep(v)),
		NL:        Token(C.llama_vocab_nl(v)),
		PAD:       Token(C.llama_vocab_pad(v)),
		Mask:      Token(C.llama_vocab_mask(v)),
		FIMPrefix: Token(C.llama_vocab_fim_pre(v)),
		FIMSuffix: Token(C.llama_vocab_fim_suf(v)),
		FIMMiddle: Token(C.llama_vocab_fim_mid(v)),
		FIMPad:    Token(C.llama_vocab_fim_pad(v)),
		FIMRepo:   Token(C.llama_vocab_fim_rep(v)),
		FIMSep:    Token(C.llama_vocab_fim_sep(v)),
		AddBOS:    bool(C.llama_vocab_get_add_bos(v)),
		AddEOS:    bool(C.llama_vocab_get_add_eos(v)),
		AddSEP:    bool(C.llama_vocab_get_add_sep(v)),
	}
}

// Vocab describes the model's vocabulary; it stays valid after Close.
func (m *Model) Vocab() VocabInfo { return m.vocabInfo }

// ValidToken reports whether t is a token id of this model.
func (m *Model) ValidToken(t Token) bool { return t >= 0 && int(t) < m.vocabInfo.NTokens }

func (m *Model) checkToken(t Token) error {
	if !m.ValidToken(t) {
		return fmt.Errorf("%w: %d (vocabulary has %d tokens)", ErrInvalidToken, t, m.vocabInfo.NTokens)
	}
	return nil
}

func (m *Model) checkTokens(tokens []Token) error {
	for _, t := range tokens {
		if err := m.checkToken(t); err != nil {
			return err
		}
	}
	return nil
}

// TokenizeFlags modify Tokenize.
type TokenizeFlags uint8

const (
	// AddSpecial adds the BOS/EOS tokens the model is configured to add.
	AddSpecial TokenizeFlags = 1 << iota
	// ParseSpecial turns special-token text such as "<|eot_id|>" into the special token
	// instead of tokenizing it as plain text.
	ParseSpecial
)

// Tokenize converts text to tokens. Text must be valid UTF-8.
func (m *Model) Tokenize(text string, flags TokenizeFlags) ([]Token, error) {
	return m.AppendTokens(nil, text, flags)
}

// AppendTokens tokenizes text and appends the tokens to dst.
func (m *Model) AppendTokens(dst []Token, text string, flags TokenizeFlags) ([]Token, error) {
	if !utf8.ValidString(text) {
		return dst, ErrInvalidUTF8
	}
	if len(text) > math.MaxInt32-8 {
		return dst, invalidParam("text of %d bytes is too long to tokenize", len(text))
	}
	if err := m.rlock(); err != nil {
		return dst, err
	}
	defer m.mu.RUnlock()
	// A token covers at least one byte, plus the special tokens that may be added.
	need := len(text) + 4
	for {
		dst = growTokens(dst, need)
		free := dst[len(dst):cap(dst)]
		var out *C.llama_token
		if len(free) > 0 {
			out = (*C.llama_token)(unsafe.Pointer(&free[0]))
		}
		var cerr *C.char
		n := C.lgo_tokenize(m.vocab, cStringData(text), C.int32_t(len(text)),
			out, C.int32_t(len(free)), C.bool(flags&AddSpecial != 0), C.bool(flags&ParseSpecial != 0), &cerr)
		switch {
		case n == C.LGO_EXCEPTION:
			return dst, vocabError("tokenize", cerr)
		case n == math.MinInt32:
			return dst, invalidParam("tokenization of %d bytes overflows", len(text))
		case n < 0:
			need = int(-n)
		default:
			return dst[:len(dst)+int(n)], nil
		}
	}
}

// vocabError reports a C++ exception llama.cpp threw while (de)tokenizing: a vocabulary
// it cannot handle for this text (e.g. SentencePiece without byte-fallback tokens).
func vocabError(op string, msg *C.char) error {
	text := "unknown C++ exception"
	if msg != nil {
		text = C.GoString(msg)
		C.free(unsafe.Pointer(msg))
	}
	return fmt.Errorf("llama: %s: llama.cpp failed on this vocabulary: %s", op, text)
}

// cStringData points C at the bytes of s without copying (C must not keep the pointer).
func cStringData(s string) *C.char {
	if len(s) == 0 {
		return cEmpty
	}
	return (*C.char)(unsafe.Pointer(unsafe.StringData(s)))
}

var cEmpty = C.CString("")

func growTokens(s []Token, n int) []Token {
	if cap(s)-len(s) >= n {
		return s
	}
	g := make([]Token, len(s), len(s)+n)
	copy(g, s)
	return g
}

// TokenPiece returns the text of one token. With special, control tokens such as
// "<|eot_id|>" render as their text; without, they render as nothing. A piece may be
// part of a multi-byte character: join pieces as bytes, not strings.
func (m *Model) TokenPiece(t Token, special bool) ([]byte, error) {
	return m.AppendTokenPiece(nil, t, special)
}

// AppendTokenPiece appends the text of token t to dst (see TokenPiece); with a dst of
// spare capacity it does not allocate.
func (m *Model) AppendTokenPiece(dst []byte, t Token, special bool) ([]byte, error) {
	if err := m.checkToken(t); err != nil {
		return dst, err
	}
	if err := m.rlock(); err != nil {
		return dst, err
	}
	defer m.mu.RUnlock()
	return appendPiece(m.vocab, dst, t, special), nil
}

// appendPiece converts a checked token with the vocab of a live model.
func appendPiece(v *C.struct_llama_vocab, dst []byte, t Token, special bool) []byte {
	need := 32
	for {
		dst = growBytes(dst, need)
		free := dst[len(dst):cap(dst)]
		n := C.llama_token_to_piece(v, C.llama_token(t), (*C.char)(unsafe.Pointer(&free[0])), C.int32_t(len(free)), 0, C.bool(special))
		if n >= 0 {
			return dst[:len(dst)+int(n)]
		}
		need = int(-n)
	}
}

func growBytes(s []byte, n int) []byte {
	if cap(s)-len(s) >= n {
		return s
	}
	g := make([]byte, len(s), 2*len(s)+n)
	copy(g, s)
	return g
}

// DetokenizeFlags modify Detokenize.
type DetokenizeFlags uint8

const (
	// RemoveSpecial drops a leading BOS and trailing EOS the model adds.
	RemoveSpecial DetokenizeFlags = 1 << iota
	// RenderSpecial renders special tokens as their text.
	RenderSpecial
)

// Detokenize converts tokens back to text, as llama.cpp does (joining pieces and
// undoing the tokenizer's space handling). The result may hold invalid UTF-8 when
// the tokens end inside a character.
func (m *Model) Detokenize(tokens []Token, flags DetokenizeFlags) (string, error) {
	for _, t := range tokens {
		if err := m.checkToken(t); err != nil {
			return "", err
		}
	}
	if len(tokens) == 0 {
		return "", nil
	}
	if len(tokens) > math.MaxInt32 {
		return "", invalidParam("too many tokens")
	}
	if err := m.rlock(); err != nil {
		return "", err
	}
	defer m.mu.RUnlock()
	buf := make([]byte, 4*len(tokens)+16)
	for {
		var cerr *C.char
		n := C.lgo_detokenize(m.vocab, (*C.llama_token)(unsafe.Pointer(&tokens[0])), C.int32_t(len(tokens)),
			(*C.char)(unsafe.Pointer(&buf[0])), C.int32_t(min(len(buf), math.MaxInt32)),
			C.bool(flags&RemoveSpecial != 0), C.bool(flags&RenderSpecial != 0), &cerr)
		if n == C.LGO_EXCEPTION {
			return "", vocabError("detokenize", cerr)
		}
		if n >= 0 {
			return string(buf[:n]), nil
		}
		if n == math.MinInt32 {
			return "", invalidParam("detokenized text too long")
		}
		buf = make([]byte, int(-n))
	}
}

// TokenText is the token's raw vocabulary entry (for SPM vocabularies with "▁" for spaces).
func (m *Model) TokenText(t Token) (string, error) {
	if err := m.checkToken(t); err != nil {
		return "", err
	}
	if err := m.rlock(); err != nil {
		return "", err
	}
	defer m.mu.RUnlock()
	return C.GoString(C.llama_vocab_get_text(m.vocab, C.llama_token(t))), nil
}

// TokenScore is the token's score in the vocabulary (merge priority or log-probability).
func (m *Model) TokenScore(t Token) (float32, error) {
	if err := m.checkToken(t); err != nil {
		return 0, err
	}
	if err := m.rlock(); err != nil {
		return 0, err
	}
	defer m.mu.RUnlock()
	return float32(C.llama_vocab_get_score(m.vocab, C.llama_token(t))), nil
}

// TokenAttrs returns the attributes of token t.
func (m *Model) TokenAttrs(t Token) (TokenAttr, error) {
	if err := m.checkToken(t); err != nil {
		return 0, err
	}
	if err := m.rlock(); err != nil {
		return 0, err
	}
	defer m.mu.RUnlock()
	return TokenAttr(C.llama_vocab_get_attr(m.vocab, C.llama_token(t))), nil
}

// IsEOG reports whether t ends generation (EOS, EOT and similar). It is false for
// invalid ids and after Close.
func (m *Model) IsEOG(t Token) bool {
	if !m.ValidToken(t) || m.rlock() != nil {
		return false
	}
	defer m.mu.RUnlock()
	return bool(C.llama_vocab_is_eog(m.vocab, C.llama_token(t)))
}

// IsControl reports whether t is a control token. It is false for invalid ids and after Close.
func (m *Model) IsControl(t Token) bool {
	if !m.ValidToken(t) || m.rlock() != nil {
		return false
	}
	defer m.mu.RUnlock()
	return bool(C.llama_vocab_is_control(m.vocab, C.llama_token(t)))
}
