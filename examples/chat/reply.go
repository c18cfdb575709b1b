package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"time"

	"github.com/llamago/llamago/llama"
)

// ANSI styles for a terminal: reasoning is dimmed, apart from the answer.
const (
	dim   = "\x1b[2m"
	reset = "\x1b[0m"
)

// reply sends a message and streams the answer.
func (a *app) reply(sess *llama.ChatSession, text string) error {
	if len(a.pending) == 0 {
		return a.stream(sess, func(ctx context.Context) iter.Seq2[llama.ChatDelta, error] { return sess.Say(ctx, text) })
	}
	msg := llama.Message{Role: llama.RoleUser}
	for _, m := range a.pending {
		kind := "image"
		if m.IsAudio() {
			kind = "audio"
		}
		msg.Parts = append(msg.Parts, llama.ContentPart{Type: kind, Media: m})
	}
	msg.Parts = append(msg.Parts, llama.ContentPart{Type: "text", Text: text})
	a.sent, a.pending = append(a.sent, a.pending...), nil
	return a.stream(sess, func(ctx context.Context) iter.Seq2[llama.ChatDelta, error] { return sess.Send(ctx, msg) })
}

// attach decodes an image or audio file for the next message.
func (a *app) attach(path string) error {
	if a.projector == nil {
		return fmt.Errorf("%s: media needs a projector: start the chat with --mmproj FILE", path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	m, err := a.projector.DecodeMedia(data)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	a.pending = append(a.pending, m)
	return nil
}

func (a *app) closeMedia() {
	for _, m := range append(a.sent, a.pending...) {
		m.Close()
	}
	a.sent, a.pending = nil, nil
}

// stream runs one turn: the answer goes to out; the model's reasoning goes dimmed to out
// on a terminal (to stderr otherwise) while thinking is shown; tool calls are printed as
// calls once the turn ends.
func (a *app) stream(sess *llama.ChatSession, turn func(context.Context) iter.Seq2[llama.ChatDelta, error]) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a.mu.Lock()
	a.stopReply, a.stopping = cancel, false
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		a.stopReply, a.stopping = nil, false
		a.mu.Unlock()
	}()
	out := bufio.NewWriter(a.out)
	var thoughts io.Writer = a.errOut
	if a.outTTY {
		thoughts = out
	}
	thinking, printed := false, false
	endThinking := func() {
		if thinking {
			thinking = false
			a.style(thoughts, reset)
			fmt.Fprint(thoughts, "\n...done thinking.\n\n")
		}
	}
	var err error
	for d, e := range turn(ctx) {
		if e != nil {
			err = e
			break
		}
		if d.Reasoning != "" && a.showThinking {
			if !thinking {
				thinking = true
				a.style(thoughts, dim)
				fmt.Fprint(thoughts, "Thinking...\n")
			}
			fmt.Fprint(thoughts, d.Reasoning)
		}
		if d.Content != "" {
			endThinking()
			out.WriteString(d.Content)
			printed = true
		}
		out.Flush()
	}
	endThinking()
	t := sess.LastTurn()
	if err == nil && !printed && len(t.Message.ToolCalls) == 0 && t.Message.Content != "" {
		out.WriteString(t.Message.Content) // a reply the template's parser did not stream
	}
	out.WriteString("\n")
	out.Flush()
	if errors.Is(err, llama.ErrAborted) {
		fmt.Fprintln(a.errOut, "[stopped]")
		return err
	}
	if err != nil {
		return err
	}
	for _, c := range t.Message.ToolCalls {
		fmt.Fprintf(a.out, "[tool call] %s(%s)\n", c.Name, c.Arguments)
	}
	if a.verbose {
		fmt.Fprintf(a.errOut, "[%d tokens, %.1f t/s; prompt %d tokens, %d reused, %d decoded%s]\n",
			t.GeneratedTokens, perSecond(t.GeneratedTokens, t.Generation), t.PromptTokens,
			t.PromptTokensReused, t.PromptTokensDecoded, dropped(t.DroppedMessages))
	}
	return nil
}

func (a *app) style(w io.Writer, code string) {
	if a.outTTY {
		io.WriteString(w, code)
	}
}

func dropped(n int) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("; %d old messages dropped", n)
}

func perSecond(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}
