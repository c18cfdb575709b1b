package gbnf

import (
	"fmt"
	"math"
	"strconv"
)

// Left recursion in GBNF: llama.cpp refuses a rule that can reach itself before
// consuming input, but its check only sees rules that have an empty alternative as able
// to match nothing. Through a rule that can match nothing otherwise (ws ::= [ ]*), left
// recursion goes unnoticed and llama.cpp's parser expands grammar stacks until memory
// runs out (e.g. term ::= ws expr ")" with expr ::= term ...). checkLeftRecursion finds
// it with a complete nullability analysis.

// elem is one element of a GBNF sequence, as far as the analysis needs it.
type elem struct {
	ref      string   // a rule reference
	group    [][]elem // the alternatives of a group (also wraps an element repeated twice)
	empty    bool     // the empty literal ""
	terminal bool     // a literal, class, token or '.' that consumes input
	min, max uint64   // repetition bounds (1, 1 without one; max unbounded for *, +, {m,})
}

const unbounded = math.MaxUint64

// parser mirrors the recursive-descent parser of llama-grammar.cpp. It reports
// failure (ok false) on anything llama.cpp would refuse; llama.cpp then reports the error.
type parser struct {
	s   string
	pos int
}

func (p *parser) peek(off int) byte {
	if p.pos+off < len(p.s) {
		return p.s[p.pos+off]
	}
	return 0
}

// space skips blanks and comments, and newlines when newlineOK (parse_space).
func (p *parser) space(newlineOK bool) {
	for {
		switch c := p.peek(0); {
		case c == ' ' || c == '\t':
			p.pos++
		case c == '#':
			for c := p.peek(0); c != 0 && c != '\r' && c != '\n'; c = p.peek(0) {
				p.pos++
			}
		case newlineOK && (c == '\r' || c == '\n'):
			p.pos++
		default:
			return
		}
	}
}

func isWordChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-'
}

func (p *parser) name() (string, bool) {
	start := p.pos
	for isWordChar(p.peek(0)) {
		p.pos++
	}
	return p.s[start:p.pos], p.pos > start
}

func (p *parser) number() (uint64, bool) {
	start := p.pos
	for c := p.peek(0); c >= '0' && c <= '9'; c = p.peek(0) {
		p.pos++
	}
	v, err := strconv.ParseUint(p.s[start:p.pos], 10, 64)
	return v, err == nil
}

// until skips to just after the unescaped byte end; n counts the characters skipped.
func (p *parser) until(end byte) (n int, ok bool) {
	for {
		switch c := p.peek(0); c {
		case 0:
			return n, false
		case end:
			p.pos++
			return n, true
		case '\\':
			p.pos += 2
		default:
			p.pos++
		}
		n++
	}
}

func (p *parser) alternates(nested bool) ([][]elem, bool) {
	var alts [][]elem
	for {
		seq, ok := p.sequence(nested)
		if !ok {
			return nil, false
		}
		alts = append(alts, seq)
		if p.peek(0) != '|' {
			return alts, true
		}
		p.pos++
		p.space(true)
	}
}

func (p *parser) sequence(nested bool) ([]elem, bool) {
	var seq []elem
	repeat := func(min, max uint64) bool {
		if len(seq) == 0 {
			return false
		}
		last := &seq[len(seq)-1]
		if last.min != 1 || last.max != 1 { // repeating a repetition
			*last = elem{group: [][]elem{{*last}}, min: 1, max: 1}
		}
		last.min, last.max = min, max
		return true
	}
	for {
		elem := elem{min: 1, max: 1}
		switch c := p.peek(0); {
		case c == '"':
			p.pos++
			n, ok := p.until('"')
			if !ok {
				return nil, false
			}
			elem.empty, elem.terminal = n == 0, n > 0
		case c == '[':
			p.pos++
			if p.peek(0) == '^' {
				p.pos++
			}
			n, ok := p.until(']')
			if !ok {
				return nil, false
			}
			// llama.cpp emits nothing for [] and [^]: they match the empty string.
			elem.empty, elem.terminal = n == 0, n > 0
		case c == '<' || c == '!':
			if c == '!' {
				p.pos++
			}
			if p.peek(0) != '<' {
				return nil, false
			}
			if _, ok := p.until('>'); !ok {
				return nil, false
			}
			elem.terminal = true
		case isWordChar(c):
			elem.ref, _ = p.name()
		case c == '(':
			p.pos++
			p.space(true)
			alts, ok := p.alternates(true)
			if !ok || p.peek(0) != ')' {
				return nil, false
			}
			p.pos++
			elem.group = alts
		case c == '.':
			p.pos++
			elem.terminal = true
		case c == '*' || c == '+' || c == '?':
			p.pos++
			p.space(nested)
			min, max := uint64(0), uint64(unbounded)
			switch c {
			case '+':
				min = 1
			case '?':
				max = 1
			}
			if !repeat(min, max) {
				return nil, false
			}
			continue
		case c == '{':
			p.pos++
			p.space(nested)
			min, ok := p.number()
			if !ok {
				return nil, false
			}
			p.space(nested)
			max := min
			if p.peek(0) == ',' {
				p.pos++
				p.space(nested)
				max = unbounded
				if c := p.peek(0); c >= '0' && c <= '9' {
					if max, ok = p.number(); !ok {
						return nil, false
					}
					p.space(nested)
				}
			}
			if p.peek(0) != '}' || max < min {
				return nil, false
			}
			p.pos++
			p.space(nested)
			if max > 2000 { // llama.cpp's MAX_REPETITION_THRESHOLD: treated as unbounded
				max = unbounded
			}
			if !repeat(min, max) {
				return nil, false
			}
			continue
		default:
			return seq, true
		}
		p.space(nested)
		seq = append(seq, elem)
	}
}

// parse returns the rules of a grammar (a later definition replaces an earlier one,
// as in llama.cpp), or false when llama.cpp would refuse its syntax.
func parse(g string) (map[string][][]elem, bool) {
	p := &parser{s: g}
	rules := map[string][][]elem{}
	p.space(true)
	for p.pos < len(p.s) {
		name, ok := p.name()
		if !ok {
			return nil, false
		}
		p.space(false)
		if p.peek(0) != ':' || p.peek(1) != ':' || p.peek(2) != '=' {
			return nil, false
		}
		p.pos += 3
		p.space(true)
		alts, ok := p.alternates(false)
		if !ok {
			return nil, false
		}
		switch p.peek(0) {
		case '\r':
			p.pos++
			if p.peek(0) == '\n' {
				p.pos++
			}
		case '\n':
			p.pos++
		case 0:
		default:
			return nil, false
		}
		p.space(true)
		rules[name] = alts
	}
	return rules, true
}

// MaxRepetitionChain bounds repetitions applied directly to a repetition, such as
// x++, ((x)+)* or x{0,10}{0,10} (also through a rule whose whole body is one repeated
// element): llama.cpp's grammar stacks multiply with each level (3 nested '+' cost 0.1 ms
// per token over a hundred candidates, 8 cost 10-35 ms, 27 exhaust memory).
const MaxRepetitionChain = 2

// checkShape refuses grammars llama.cpp's grammar engine cannot run within bounded
// memory: hidden left recursion and long chains of directly nested repetitions.
func checkShape(g string) error {
	rules, ok := parse(g)
	if !ok {
		return nil
	}
	if err := checkLeftRecursion(rules); err != nil {
		return err
	}
	return checkRepetitionChains(rules)
}

// checkRepetitionChains refuses repetition chains longer than MaxRepetitionChain.
func checkRepetitionChains(rules map[string][][]elem) error {
	// inner is what e repeats when that is a single element: the only element of a group
	// or of a rule with one alternative.
	inner := func(e elem) (elem, bool) {
		alts := e.group
		if e.ref != "" {
			alts = rules[e.ref]
		}
		if len(alts) == 1 && len(alts[0]) == 1 {
			return alts[0][0], true
		}
		return elem{}, false
	}
	var chain func(e elem, depth int) int
	chain = func(e elem, depth int) int {
		n := 0
		if e.max > 1 {
			n = 1
		}
		if in, ok := inner(e); ok && depth < 64 { // depth: rules that are each other's whole body
			n += chain(in, depth+1)
		}
		return n
	}
	var walk func(alts [][]elem) error
	walk = func(alts [][]elem) error {
		for _, seq := range alts {
			for _, e := range seq {
				if n := chain(e, 0); n > MaxRepetitionChain {
					return fmt.Errorf("%d repetitions applied directly to each other (at most %d): llama.cpp's grammar stacks grow exponentially with them",
						n, MaxRepetitionChain)
				}
				if err := walk(e.group); err != nil {
					return err
				}
			}
		}
		return nil
	}
	for _, alts := range rules {
		if err := walk(alts); err != nil {
			return err
		}
	}
	return nil
}

// checkLeftRecursion refuses grammars with a rule that can reach itself without consuming
// input (see above).
func checkLeftRecursion(rules map[string][][]elem) error {
	nullable := map[string]bool{}
	var elemNullable func(e elem) bool
	altsNullable := func(alts [][]elem) bool {
	alt:
		for _, seq := range alts {
			for _, e := range seq {
				if !elemNullable(e) {
					continue alt
				}
			}
			return true
		}
		return false
	}
	elemNullable = func(e elem) bool {
		switch {
		case e.min == 0 || e.empty:
			return true
		case e.ref != "":
			return nullable[e.ref]
		case e.group != nil:
			return altsNullable(e.group)
		}
		return false
	}
	for changed := true; changed; {
		changed = false
		for name, alts := range rules {
			if !nullable[name] && altsNullable(alts) {
				nullable[name], changed = true, true
			}
		}
	}
	// first[name]: the rules that name's expansion can begin with.
	var firstRefs func(alts [][]elem, into map[string]bool)
	firstRefs = func(alts [][]elem, into map[string]bool) {
		for _, seq := range alts {
			for _, e := range seq {
				if e.max == 0 { // x{0} and x{0,0} are dropped
					continue
				}
				if e.ref != "" {
					into[e.ref] = true
				} else if e.group != nil {
					firstRefs(e.group, into)
				}
				if !elemNullable(e) {
					break
				}
			}
		}
	}
	first := map[string]map[string]bool{}
	for name, alts := range rules {
		first[name] = map[string]bool{}
		firstRefs(alts, first[name])
	}
	const (
		unvisited = iota
		inProgress
		done
	)
	state := map[string]int{}
	var visit func(name string) string
	visit = func(name string) string {
		switch state[name] {
		case inProgress:
			return name
		case done:
			return ""
		}
		state[name] = inProgress
		for next := range first[name] {
			if _, defined := rules[next]; defined {
				if r := visit(next); r != "" {
					return r
				}
			}
		}
		state[name] = done
		return ""
	}
	for name := range rules {
		if r := visit(name); r != "" {
			return fmt.Errorf("rule %q is left-recursive (it can reach itself before matching any input)", r)
		}
	}
	return nil
}
