package llama

/*
#include "shim.h"
*/
import "C"

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"
	"unsafe"
)

// MaxGrammarNesting bounds the parenthesis nesting of a GBNF grammar: llama.cpp's parser
// recurses per level and would overflow the stack on grammars nested thousands deep.
const MaxGrammarNesting = 256

// Trigger starts a lazy grammar (see LazyGrammar).
type Trigger struct {
	Word    string // literal text in the output
	Pattern string // a regular expression matched from the start of the output; the grammar
	// constrains the text from its first capture group on
	Token Token // a token id; used when Word and Pattern are empty
}

// TriggerWord triggers when the output contains word.
func TriggerWord(word string) Trigger { return Trigger{Word: word} }

// TriggerPattern triggers when the output matches pattern.
func TriggerPattern(pattern string) Trigger { return Trigger{Pattern: pattern} }

// TriggerToken triggers when token t is generated.
func TriggerToken(t Token) Trigger { return Trigger{Token: t} }

type grammarStage struct {
	GBNF     string
	Root     string
	Lazy     bool
	Triggers []Trigger
}

// Grammar constrains output to a GBNF grammar (llama.cpp's grammars/README.md) whose
// start rule is "root". Only one grammar per sampler.
func Grammar(gbnf string) Stage { return grammarStage{GBNF: gbnf, Root: "root"} }

// LazyGrammar constrains output to a grammar only once a trigger appears (as tool-call
// formats do: free text until "<tool_call>", then strict JSON).
func LazyGrammar(gbnf string, triggers ...Trigger) Stage {
	return grammarStage{GBNF: gbnf, Root: "root", Lazy: true, Triggers: append([]Trigger(nil), triggers...)}
}

func (s grammarStage) check(m *Model) error {
	if err := checkGBNF(s.GBNF); err != nil {
		return err
	}
	if s.Lazy && len(s.Triggers) == 0 {
		return fmt.Errorf("%w: a lazy grammar needs at least one trigger", ErrGrammar)
	}
	for _, t := range s.Triggers {
		switch {
		case t.Word != "":
			if !utf8.ValidString(t.Word) {
				return fmt.Errorf("%w: trigger word is not valid UTF-8", ErrGrammar)
			}
		case t.Pattern != "":
			// llama.cpp compiles patterns as ECMAScript regexes; Go's RE2 syntax is close
			// enough to reject the malformed ones here.
			if _, err := regexp.Compile(t.Pattern); err != nil {
				return fmt.Errorf("%w: trigger pattern %q: %v", ErrGrammar, t.Pattern, err)
			}
		default:
			if err := m.checkToken(t.Token); err != nil {
				return fmt.Errorf("%w: trigger: %w", ErrGrammar, err)
			}
		}
	}
	return nil
}

func (s grammarStage) add(b *chainBuilder) error {
	if b.grammar != nil {
		return fmt.Errorf("%w: only one grammar per sampler", ErrGrammar)
	}
	var patterns []string
	var tokens []C.llama_token
	for _, t := range s.Triggers {
		switch {
		case t.Word != "":
			patterns = append(patterns, regexp.QuoteMeta(t.Word))
		case t.Pattern != "":
			patterns = append(patterns, t.Pattern)
		default:
			tokens = append(tokens, C.llama_token(t.Token))
		}
	}
	gbnf, root := C.CString(s.GBNF), C.CString(s.Root)
	defer C.free(unsafe.Pointer(gbnf))
	defer C.free(unsafe.Pointer(root))
	pats := cStrings(patterns)
	defer pats.free()
	var tokPtr *C.llama_token
	if len(tokens) > 0 {
		tokPtr = &tokens[0]
	}
	var cerr *C.char
	errs := captureErrors()
	defer errs.done()
	g := C.lgo_grammar_init(b.m.vocab, gbnf, root, pats.ptr(), C.size_t(len(patterns)), tokPtr, C.size_t(len(tokens)), &cerr)
	if g == nil {
		if cerr == nil {
			return errs.err("llama: grammar")
		}
		return cError(ErrGrammar, cerr)
	}
	b.grammar = g
	return nil
}

// checkGBNF rejects what llama.cpp's grammar parser cannot survive: invalid UTF-8,
// parenthesis nesting deeper than MaxGrammarNesting, repetitions {m,n} with n < m, left
// recursion it does not detect itself and repetition chains longer than
// MaxGrammarRepetitionChain (grammar_check.go). Syntax errors are left to the parser,
// which reports them.
func checkGBNF(g string) error {
	if i := strings.IndexByte(g, 0); i >= 0 {
		g = g[:i] // what llama.cpp sees of it (a C string)
	}
	if g == "" {
		return fmt.Errorf("%w: empty grammar", ErrGrammar)
	}
	if !utf8.ValidString(g) {
		return fmt.Errorf("%w: not valid UTF-8", ErrGrammar)
	}
	depth := 0
	for i := 0; i < len(g); i++ {
		switch g[i] {
		case '#': // comment to end of line
			for i < len(g) && g[i] != '\n' {
				i++
			}
		case '"', '[': // string literal or character class, with backslash escapes
			end := byte('"')
			if g[i] == '[' {
				end = ']'
			}
			for i++; i < len(g) && g[i] != end; i++ {
				if g[i] == '\\' {
					i++
				}
			}
		case '(':
			depth++
			if depth > MaxGrammarNesting {
				return fmt.Errorf("%w: nested deeper than %d levels", ErrGrammar, MaxGrammarNesting)
			}
		case ')':
			depth--
		case '{':
			if lo, hi, ok := parseRepetition(g[i+1:]); ok && hi < lo {
				return fmt.Errorf("%w: repetition {%d,%d} has its maximum below its minimum", ErrGrammar, lo, hi)
			}
		}
	}
	return checkGrammarShape(g)
}

// parseRepetition reads the "m,n}" of a repetition {m,n} as llama.cpp's parser does
// (blanks and comments allowed around the numbers). llama.cpp computes n-m unsigned: with
// n < m it loops almost forever, adding rules until memory runs out.
func parseRepetition(s string) (lo, hi uint64, ok bool) {
	skip := func() {
		for len(s) > 0 {
			switch s[0] {
			case ' ', '\t', '\r', '\n':
				s = s[1:]
			case '#':
				for len(s) > 0 && s[0] != '\n' && s[0] != '\r' {
					s = s[1:]
				}
			default:
				return
			}
		}
	}
	number := func() (uint64, bool) {
		n := 0
		for n < len(s) && s[n] >= '0' && s[n] <= '9' {
			n++
		}
		v, err := strconv.ParseUint(s[:n], 10, 64)
		s = s[n:]
		return v, err == nil // no digits, or too many for llama.cpp's stoull (which throws)
	}
	skip()
	if lo, ok = number(); !ok {
		return 0, 0, false
	}
	skip()
	if len(s) == 0 || s[0] != ',' {
		return 0, 0, false
	}
	s = s[1:]
	skip()
	if hi, ok = number(); !ok {
		return 0, 0, false
	}
	return lo, hi, true
}
