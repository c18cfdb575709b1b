package llama

/*
#include "shim.h"
*/
import "C"

import (
	"fmt"
	"regexp"
	"unicode/utf8"
	"unsafe"

	"github.com/llamago/llamago/internal/gbnf"
)

// MaxGrammarNesting bounds the parenthesis nesting of a GBNF grammar: llama.cpp's parser
// recurses per level and would overflow the stack on grammars nested thousands deep.
const MaxGrammarNesting = 256

// MaxGrammarRepetitionChain bounds repetitions applied directly to a repetition, such as
// x++, ((x)+)* or x{0,10}{0,10}: llama.cpp's grammar stacks multiply with each level.
const MaxGrammarRepetitionChain = 2

// The checker (package internal/gbnf) enforces the limits documented here.
const (
	_ = uint(MaxGrammarNesting-gbnf.MaxNesting) + uint(gbnf.MaxNesting-MaxGrammarNesting)
	_ = uint(MaxGrammarRepetitionChain-gbnf.MaxRepetitionChain) + uint(gbnf.MaxRepetitionChain-MaxGrammarRepetitionChain)
)

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

// checkGBNF refuses what llama.cpp's grammar parser cannot survive (see package gbnf).
func checkGBNF(g string) error {
	if err := gbnf.Check(g); err != nil {
		return fmt.Errorf("%w: %w", ErrGrammar, err)
	}
	return nil
}
