package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"strconv"
	"strings"

	"github.com/llamago/llamago/llama"
)

const help = `Type a message and press Enter. End a line with \ to continue it on the next line, or
write text between two lines holding only """. Up and down arrows recall earlier lines.
Commands:
  /set parameter NAME VALUE  change sampling: temperature, top_k, top_p, min_p, typical_p,
                             repeat_penalty, repeat_last_n, presence_penalty, frequency_penalty,
                             mirostat, mirostat_tau, mirostat_eta, seed, num_predict
  /set system TEXT           set the system prompt (/set system with no text removes it)
  /set think, /set nothink   let a reasoning model think (shown dimmed), or not
  /set verbose, /set quiet   show or hide the statistics after each reply
  /show info                 the model
  /show template             the chat template
  /show parameters           the sampling parameters in use
  /show system               the system prompt
  /clear                     forget the conversation (keeps the system prompt)
  /regen                     drop the last reply and generate a new one
  /image FILE, /audio FILE   attach an image or audio file to the next message (needs --mmproj)
  /save FILE, /load FILE     save or load the conversation (with its KV cache) as JSON
  /help, /?                  this text
  /bye                       exit (also Ctrl-D, or Ctrl-C at the prompt; Ctrl-C stops a reply)`

// repl is the interactive loop. It returns the exit status.
func (a *app) repl(sess *llama.ChatSession) int {
	var lines lineReader = newScanReader(a.in, a.out)
	if f, ok := a.in.(*os.File); ok && a.inTTY {
		lines = newTerminalReader(f, a.out)
	}
	if a.inTTY {
		fmt.Fprintln(a.errOut, `Chat away. /? for help, /bye or Ctrl-D to exit.`)
	}
	for {
		input, err := readMessage(lines)
		switch {
		case errors.Is(err, errInterrupt):
			fmt.Fprintln(a.out)
			return 130
		case errors.Is(err, io.EOF):
			fmt.Fprintln(a.out) // leave the prompt line
			return 0
		case err != nil:
			fmt.Fprintln(a.errOut, "chat: reading input:", err)
			return 1
		}
		input = strings.TrimSpace(input)
		if input == "" {
			continue
		}
		if strings.HasPrefix(input, "/") {
			if quit := a.command(sess, input); quit {
				return 0
			}
			continue
		}
		if err := a.reply(sess, input); err != nil && !errors.Is(err, llama.ErrAborted) {
			fmt.Fprintln(a.errOut, "chat:", err)
		}
	}
}

// command runs a slash command; it reports whether to quit.
func (a *app) command(sess *llama.ChatSession, input string) bool {
	name, arg, _ := strings.Cut(input, " ")
	arg = strings.TrimSpace(arg)
	switch name {
	case "/bye", "/quit", "/exit":
		return true
	case "/help", "/?":
		fmt.Fprintln(a.errOut, help)
	case "/clear", "/reset":
		sess.Reset()
		fmt.Fprintln(a.errOut, "[conversation cleared]")
	case "/system":
		a.setSystem(sess, arg)
	case "/set":
		a.set(sess, arg)
	case "/show":
		a.show(sess, arg)
	case "/regen":
		a.regenerate(sess)
	case "/image", "/audio":
		if arg == "" {
			fmt.Fprintf(a.errOut, "usage: %s FILE\n", name)
		} else if err := a.attach(arg); err != nil {
			fmt.Fprintf(a.errOut, "%s: %v\n", name, err)
		} else {
			fmt.Fprintf(a.errOut, "[%s attached to the next message]\n", arg)
		}
	case "/save", "/load":
		if arg == "" {
			fmt.Fprintf(a.errOut, "usage: %s FILE\n", name)
			return false
		}
		var err error
		if name == "/save" {
			err = saveSession(sess, arg)
		} else {
			err = loadSession(sess, arg)
		}
		if err != nil {
			fmt.Fprintf(a.errOut, "%s: %v\n", name, err)
		} else {
			verb := map[string]string{"/save": "saved", "/load": "loaded"}[name]
			fmt.Fprintf(a.errOut, "[%s %s: %d messages]\n", verb, arg, len(sess.Messages()))
		}
	default:
		fmt.Fprintf(a.errOut, "unknown command %s (/? lists them)\n", name)
	}
	return false
}

func (a *app) setSystem(sess *llama.ChatSession, text string) {
	sess.SetSystem(text)
	if text == "" {
		fmt.Fprintln(a.errOut, "[system prompt removed]")
	} else {
		fmt.Fprintln(a.errOut, "[system prompt set]")
	}
}

func (a *app) set(sess *llama.ChatSession, arg string) {
	what, rest, _ := strings.Cut(arg, " ")
	rest = strings.TrimSpace(rest)
	switch what {
	case "parameter":
		name, value, _ := strings.Cut(rest, " ")
		if err := a.setParameter(sess, name, strings.TrimSpace(value)); err != nil {
			fmt.Fprintln(a.errOut, "/set parameter:", err)
			return
		}
		fmt.Fprintf(a.errOut, "[set %s to %s]\n", name, strings.TrimSpace(value))
	case "system":
		a.setSystem(sess, rest)
	case "think", "nothink":
		a.showThinking = what == "think"
		sess.SetThinking(a.showThinking)
		fmt.Fprintf(a.errOut, "[thinking %s]\n", map[bool]string{true: "on", false: "off"}[a.showThinking])
	case "verbose", "quiet":
		a.verbose = what == "verbose"
		fmt.Fprintf(a.errOut, "[statistics %s]\n", map[bool]string{true: "on", false: "off"}[a.verbose])
	default:
		fmt.Fprintln(a.errOut, "usage: /set parameter NAME VALUE | system TEXT | think | nothink | verbose | quiet")
	}
}

// setParameter sets a sampling parameter by its ollama name.
func (a *app) setParameter(sess *llama.ChatSession, name, value string) error {
	if value == "" {
		return errors.New("usage: /set parameter NAME VALUE")
	}
	if name == "num_predict" {
		n, err := strconv.Atoi(value)
		if err != nil {
			return err
		}
		return sess.SetMaxTokens(max(n, 0))
	}
	p := sess.Sampling()
	floats := map[string]*float32{"temperature": &p.Temperature, "top_p": &p.TopP, "min_p": &p.MinP, "typical_p": &p.TypicalP,
		"repeat_penalty": &p.RepeatPenalty, "presence_penalty": &p.PresencePenalty, "frequency_penalty": &p.FrequencyPenalty,
		"mirostat_tau": &p.MirostatTau, "mirostat_eta": &p.MirostatEta}
	ints := map[string]*int{"top_k": &p.TopK, "repeat_last_n": &p.RepeatLastN, "mirostat": &p.Mirostat}
	switch {
	case floats[name] != nil:
		f, err := strconv.ParseFloat(value, 32)
		if err != nil {
			return err
		}
		*floats[name] = float32(f)
	case ints[name] != nil:
		n, err := strconv.Atoi(value)
		if err != nil {
			return err
		}
		*ints[name] = n
	case name == "seed":
		n, err := strconv.ParseUint(value, 10, 32)
		if err != nil {
			return err
		}
		p.Seed = uint32(n)
	default:
		return fmt.Errorf("unknown parameter %q (/? lists them)", name)
	}
	return sess.SetSampling(&p)
}

func (a *app) show(sess *llama.ChatSession, what string) {
	switch what {
	case "info":
		info := a.model.Info()
		fmt.Fprintf(a.errOut, "  architecture    %s\n  description     %s\n  parameters      %d\n  context length  %d (trained), %d (this chat)\n  embedding       %d\n  layers          %d\n",
			info.Architecture, info.Description, info.Params, info.NCtxTrain, a.nCtx, info.NEmbd, info.NLayer)
		if info.Name != "" {
			fmt.Fprintf(a.errOut, "  name            %s\n", info.Name)
		}
	case "template":
		fmt.Fprintln(a.errOut, a.template.Source())
	case "parameters":
		p := sess.Sampling()
		seed := strconv.FormatUint(uint64(p.Seed), 10)
		if p.Seed == llama.DefaultSeed {
			seed = "random"
		}
		fmt.Fprintf(a.errOut, "  temperature       %g\n  top_k             %d\n  top_p             %g\n  min_p             %g\n  typical_p         %g\n"+
			"  repeat_penalty    %g\n  repeat_last_n     %d\n  presence_penalty  %g\n  frequency_penalty %g\n  mirostat          %d\n  seed              %s\n",
			p.Temperature, p.TopK, p.TopP, p.MinP, p.TypicalP, p.RepeatPenalty, p.RepeatLastN, p.PresencePenalty, p.FrequencyPenalty, p.Mirostat, seed)
	case "system":
		if s := sess.System(); s != "" {
			fmt.Fprintln(a.errOut, s)
		} else {
			fmt.Fprintln(a.errOut, "[no system prompt]")
		}
	default:
		fmt.Fprintln(a.errOut, "usage: /show info | template | parameters | system")
	}
}

// regenerate drops the last reply and streams a new one to the same messages.
func (a *app) regenerate(sess *llama.ChatSession) {
	msgs := sess.Messages()
	end := len(msgs)
	for end > 0 && (msgs[end-1].Role == llama.RoleAssistant || msgs[end-1].Role == llama.RoleTool) {
		end--
	}
	if end == len(msgs) || end == 0 || msgs[end-1].Role != llama.RoleUser {
		fmt.Fprintln(a.errOut, "[no reply to regenerate]")
		return
	}
	sess.Reset()
	rest := msgs[:end]
	if rest[0].Role == llama.RoleSystem {
		rest = rest[1:]
	}
	if err := sess.Append(rest...); err != nil {
		fmt.Fprintln(a.errOut, "/regen:", err)
		return
	}
	err := a.stream(sess, func(ctx context.Context) iter.Seq2[llama.ChatDelta, error] { return sess.Respond(ctx) })
	if err != nil && !errors.Is(err, llama.ErrAborted) {
		fmt.Fprintln(a.errOut, "chat:", err)
	}
}

func saveSession(sess *llama.ChatSession, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := sess.Save(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func loadSession(sess *llama.ChatSession, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return sess.Load(f)
}
