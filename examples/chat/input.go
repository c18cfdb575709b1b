package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"
)

// errInterrupt is Ctrl-C at the prompt.
var errInterrupt = errors.New("interrupted")

// lineReader reads one line of input after a prompt; io.EOF at the end of input.
type lineReader interface {
	readLine(prompt string) (string, error)
}

// isTerminal reports whether f is a terminal.
func isTerminal(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }

// terminalReader edits lines in a terminal: arrows, Home/End, Ctrl-A/E/K/U/W, and the
// history of earlier lines (up/down), as golang.org/x/term's Terminal does. The terminal
// is raw only while a line is read, so Ctrl-C during a reply is a signal as usual.
type terminalReader struct {
	fd   int
	in   *ctrlCWatch
	term *term.Terminal
}

func newTerminalReader(in *os.File, out io.Writer) *terminalReader {
	w := &ctrlCWatch{r: in}
	return &terminalReader{fd: int(in.Fd()), in: w, term: term.NewTerminal(struct {
		io.Reader
		io.Writer
	}{w, out}, "")}
}

func (r *terminalReader) readLine(prompt string) (string, error) {
	state, err := term.MakeRaw(r.fd)
	if err != nil {
		return "", err
	}
	defer term.Restore(r.fd, state)
	r.term.SetPrompt(prompt)
	r.in.seen = false
	line, err := r.term.ReadLine()
	if errors.Is(err, io.EOF) && r.in.seen {
		return "", errInterrupt
	}
	return line, err
}

// ctrlCWatch notes a Ctrl-C byte in raw input (x/term's Terminal reports it as the end
// of input, like Ctrl-D).
type ctrlCWatch struct {
	r    io.Reader
	seen bool
}

func (w *ctrlCWatch) Read(p []byte) (int, error) {
	n, err := w.r.Read(p)
	if bytes.IndexByte(p[:n], 3) >= 0 {
		w.seen = true
	}
	return n, err
}

// scanReader reads lines from a pipe or file, writing the prompt as a terminal would.
type scanReader struct {
	lines *bufio.Scanner
	out   io.Writer
}

func newScanReader(in io.Reader, out io.Writer) *scanReader {
	s := bufio.NewScanner(in)
	s.Buffer(make([]byte, 0, 64*1024), 16<<20)
	return &scanReader{lines: s, out: out}
}

func (r *scanReader) readLine(prompt string) (string, error) {
	fmt.Fprint(r.out, prompt)
	if r.lines.Scan() {
		return r.lines.Text(), nil
	}
	if err := r.lines.Err(); err != nil {
		return "", err
	}
	return "", io.EOF
}

// readMessage reads one message: a line, lines joined by a trailing backslash, or a
// block between """ lines. At the end of input inside a message it returns what there is.
func readMessage(r lineReader) (string, error) {
	var b strings.Builder
	paste := false
	prompt := ">>> "
	for {
		line, err := r.readLine(prompt)
		if err != nil {
			if errors.Is(err, io.EOF) && b.Len() > 0 {
				return b.String(), nil
			}
			return "", err
		}
		prompt = "... "
		switch {
		case paste && strings.TrimSpace(line) == `"""`:
			return b.String(), nil
		case paste:
			b.WriteString(line)
			b.WriteByte('\n')
			continue
		case b.Len() == 0 && strings.HasPrefix(strings.TrimSpace(line), `"""`):
			paste = true
			rest := strings.TrimPrefix(strings.TrimSpace(line), `"""`)
			if r, ok := strings.CutSuffix(rest, `"""`); ok && rest != "" { // """one line"""
				return r, nil
			}
			if rest != "" {
				b.WriteString(rest)
				b.WriteByte('\n')
			}
			continue
		case strings.HasSuffix(line, `\`):
			b.WriteString(strings.TrimSuffix(line, `\`))
			b.WriteByte('\n')
			continue
		}
		b.WriteString(line)
		return b.String(), nil
	}
}
