package llama

import (
	"slices"
	"strings"
	"unicode/utf8"
)

// TextStream turns generated tokens into streamable text, as GenerateText does, for
// loops that sample tokens themselves (a serving engine): every string it returns is
// valid UTF-8 (a piece ending inside a character waits for the rest; bytes that can
// never form one become U+FFFD), text that may begin a stop string is held back, and
// a stop string itself is never returned. Special tokens render as nothing, except
// the visible ones. A TextStream serves one generation and one goroutine.
type TextStream struct {
	m       *Model
	visible []Token
	stops   *stopMatcher
	text    []byte // text not yet returned
	stopped bool
}

// NewTextStream starts the text of one generation by m that ends before any of stops.
// Special tokens in visible render as their text (a chat format's preserved tokens,
// see ChatPrompt.PreservedTokenIDs).
func NewTextStream(m *Model, stops []string, visible []Token) *TextStream {
	var nonEmpty []string
	for _, s := range stops {
		if s != "" {
			nonEmpty = append(nonEmpty, s)
		}
	}
	return &TextStream{m: m, visible: visible, stops: newStopMatcher(nonEmpty)}
}

// Push adds the next generated token. It returns the text that is now safe to emit
// (often empty) and whether a stop string was completed: then the text before it is
// returned and the stream takes no more tokens. Invalid tokens are errors.
func (s *TextStream) Push(t Token) (text string, stopped bool, err error) {
	if s.stopped {
		return "", true, nil
	}
	from := len(s.text)
	if s.text, err = s.m.AppendTokenPiece(s.text, t, slices.Contains(s.visible, t)); err != nil {
		return "", false, err
	}
	safe := len(s.text)
	if s.stops != nil {
		var hit bool
		if safe, hit = s.stops.check(s.text, from); hit {
			s.stopped = true
			out := s.take(safe)
			s.text = s.text[:0]
			return out, true, nil
		}
	}
	return s.take(completeUTF8(s.text[:safe])), false, nil
}

// Flush returns the text still held back (the generation ended for another reason than
// a stop string: nothing can complete one any more).
func (s *TextStream) Flush() string {
	if s.stopped {
		return ""
	}
	return s.take(len(s.text))
}

// Stopped reports whether a stop string ended the stream.
func (s *TextStream) Stopped() bool { return s.stopped }

// take returns the first n bytes of the held text as valid UTF-8 and drops them.
func (s *TextStream) take(n int) string {
	if n == 0 {
		return ""
	}
	out := string(s.text[:n])
	if !utf8.ValidString(out) {
		out = strings.ToValidUTF8(out, "\uFFFD")
	}
	s.text = append(s.text[:0], s.text[n:]...)
	return out
}
