// Package gbnf checks GBNF grammars for what llama.cpp's grammar parser and engine cannot
// survive (deep nesting, reversed repetitions, hidden left recursion, repetition chains),
// so that the binding can refuse them with an error before llama.cpp aborts or runs out of
// memory. Syntax errors are left to llama.cpp's parser, which reports them.
package gbnf

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxNesting bounds the parenthesis nesting of a grammar: llama.cpp's parser recurses per
// level and would overflow the stack on grammars nested thousands deep.
const MaxNesting = 256

// Check rejects what llama.cpp's grammar parser cannot survive: invalid UTF-8,
// parenthesis nesting deeper than MaxNesting, repetitions {m,n} with n < m, left
// recursion it does not detect itself and repetition chains longer than
// MaxRepetitionChain (shape.go). Syntax errors are left to the parser,
// which reports them.
func Check(g string) error {
	if i := strings.IndexByte(g, 0); i >= 0 {
		g = g[:i] // what llama.cpp sees of it (a C string)
	}
	if g == "" {
		return errors.New("empty grammar")
	}
	if !utf8.ValidString(g) {
		return errors.New("not valid UTF-8")
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
			if depth > MaxNesting {
				return fmt.Errorf("nested deeper than %d levels", MaxNesting)
			}
		case ')':
			depth--
		case '{':
			if lo, hi, ok := parseRepetition(g[i+1:]); ok && hi < lo {
				return fmt.Errorf("repetition {%d,%d} has its maximum below its minimum", lo, hi)
			}
		}
	}
	return checkShape(g)
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
