// Command chat is an interactive terminal chat with a model, using the model's own chat
// template (llama.cpp's Jinja engine) and a llama.ChatSession that reuses the KV cache
// between turns. Replies stream as they are generated.
//
// Interactive mode (stdin is a terminal, or -i): type a message and press Enter. End a
// line with \ to continue on the next one, or paste between two lines of """.
// Commands: /reset, /system <text>, /save <file>, /load <file>, /help, /quit.
// Ctrl-C stops the current reply; Ctrl-C at the prompt (or twice during a reply) exits.
// Ctrl-D (end of input) exits.
//
// Non-interactive mode, for scripts: -p "prompt", or the whole of stdin when it is not
// a terminal; the reply goes to stdout, everything else to stderr.
//
// Without -model it runs on the repository's demo model, models/kjv-demo.gguf (trained on
// the King James Bible by scripts/train-demo-model): its chat template makes the
// conversation plain text, so it continues what you type in the style of the KJV. When
// that file is missing it runs on a synthetic model (random weights: the replies are
// gibberish) whose Qwen2 vocabulary carries a ChatML chat template.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"time"

	"github.com/llamago/llamago/examples/internal/adapterflags"
	"github.com/llamago/llamago/examples/internal/draftflags"
	"github.com/llamago/llamago/examples/internal/modelfile"
	"github.com/llamago/llamago/examples/internal/samplingflags"
	"github.com/llamago/llamago/llama"
	"github.com/llamago/llamago/llama/gguf"
)

type config struct {
	model       string
	gpuLayers   int
	nCtx        int
	threads     int
	maxTokens   int
	system      string
	template    string // file with a Jinja template overriding the model's
	prompt      string
	interactive bool
	sampling    *llama.SamplingParams
	adapters    *adapterflags.Flags
	draft       *draftflags.Flags
}

func main() {
	var cfg config
	flag.StringVar(&cfg.model, "model", "", "GGUF model file (default: the demo model "+modelfile.Demo+
		"; "+modelfile.Synthetic+"SHAPE: random weights, e.g. "+modelfile.Synthetic+"qwen2-0.5b)")
	flag.IntVar(&cfg.gpuLayers, "ngl", -1, "layers on the GPU (-1: all)")
	flag.IntVar(&cfg.nCtx, "ctx", 4096, "context size in tokens")
	flag.IntVar(&cfg.threads, "t", 0, "threads (0: physical cores)")
	flag.IntVar(&cfg.maxTokens, "n", 1024, "most tokens per reply (0: until the model stops or the context is full)")
	flag.StringVar(&cfg.system, "system", "", "system prompt")
	flag.StringVar(&cfg.template, "template", "", "file holding a Jinja chat template to use instead of the model's")
	flag.StringVar(&cfg.prompt, "p", "", "send this message, print the reply and exit")
	flag.BoolVar(&cfg.interactive, "i", false, "interactive even when stdin is not a terminal")
	cfg.sampling = samplingflags.Register(flag.CommandLine)
	cfg.adapters = adapterflags.Register(flag.CommandLine)
	cfg.draft = draftflags.Register(flag.CommandLine)
	verbose := flag.Bool("v", false, "show llama.cpp's log")
	flag.Parse()
	if *verbose {
		llama.SetLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})))
	}

	ints := make(chan os.Signal, 1)
	signal.Notify(ints, os.Interrupt)
	a := &app{cfg: cfg, in: os.Stdin, out: os.Stdout, errOut: os.Stderr,
		inTTY: isTerminal(os.Stdin), errTTY: isTerminal(os.Stderr)}
	os.Exit(a.run(ints))
}

// app is one run of the chat: its configuration, streams and interrupt state.
type app struct {
	cfg           config
	in            io.Reader
	out, errOut   io.Writer
	inTTY, errTTY bool

	mu        sync.Mutex
	stopReply context.CancelFunc // set while a reply is streaming
	stopping  bool               // Ctrl-C was pressed during this reply
	loading   context.CancelFunc // set while the model loads
}

// run returns the process exit status: 0, 1 for errors, 130 after Ctrl-C.
func (a *app) run(ints <-chan os.Signal) int {
	quit := make(chan struct{})
	go a.handleInterrupts(ints, quit)

	sess, cleanup, err := a.open()
	if err != nil {
		fmt.Fprintln(a.errOut, "chat:", err)
		if errors.Is(err, llama.ErrAborted) {
			return 130
		}
		return 1
	}
	defer cleanup()

	oneShot := a.cfg.prompt != "" || (!a.inTTY && !a.cfg.interactive)
	if oneShot {
		prompt := a.cfg.prompt
		if prompt == "" {
			b, err := io.ReadAll(a.in)
			if err != nil {
				fmt.Fprintln(a.errOut, "chat: reading stdin:", err)
				return 1
			}
			prompt = strings.TrimSpace(string(b))
		}
		if prompt == "" {
			fmt.Fprintln(a.errOut, "chat: no input: pass -p \"message\", pipe a message to stdin, or use a terminal")
			return 1
		}
		if err := a.reply(sess, prompt); err != nil && !errors.Is(err, llama.ErrAborted) {
			fmt.Fprintln(a.errOut, "chat:", err)
			return 1
		} else if err != nil {
			return 130
		}
		return 0
	}
	return a.repl(sess)
}

// handleInterrupts stops the reply in progress on Ctrl-C, or exits when none is (or
// when a reply was already being stopped).
func (a *app) handleInterrupts(ints <-chan os.Signal, quit <-chan struct{}) {
	for {
		select {
		case <-quit:
			return
		case <-ints:
		}
		a.mu.Lock()
		switch {
		case a.loading != nil:
			a.loading()
		case a.stopReply != nil && !a.stopping:
			a.stopping = true
			a.stopReply()
		default:
			a.mu.Unlock()
			fmt.Fprintln(a.out)
			os.Exit(130)
		}
		a.mu.Unlock()
	}
}

// open loads the model and starts the session.
func (a *app) open() (*llama.ChatSession, func(), error) {
	path, err := modelfile.ResolveDefault(a.cfg.model, gguf.TypeQ8_0)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	a.mu.Lock()
	a.loading = cancel
	a.mu.Unlock()
	bar := newProgressBar(a.errOut, a.errTTY)
	m, err := llama.LoadModel(ctx, path, &llama.ModelParams{GPULayers: a.cfg.gpuLayers, Progress: bar.update})
	bar.done()
	a.mu.Lock()
	a.loading = nil
	a.mu.Unlock()
	cancel()
	if err != nil {
		return nil, nil, err
	}
	c, err := m.NewContext(&llama.ContextParams{NCtx: a.cfg.nCtx, Threads: a.cfg.threads})
	if err != nil {
		m.Close()
		return nil, nil, err
	}
	if a.cfg.adapters != nil {
		// The context keeps the adapters it applies: they need no closing of their own later.
		adapters, err := a.cfg.adapters.Load(m)
		if err == nil {
			err = adapters.Apply(c)
			adapters.Close()
		}
		if err != nil {
			c.Close()
			m.Close()
			return nil, nil, err
		}
	}
	var tmpl *llama.ChatTemplate
	if a.cfg.template != "" {
		src, err := os.ReadFile(a.cfg.template)
		if err == nil {
			tmpl, err = llama.NewChatTemplate(m, &llama.ChatTemplateParams{Source: string(src)})
		}
		if err != nil {
			c.Close()
			m.Close()
			return nil, nil, err
		}
	}
	sp := &llama.ChatSessionParams{
		Template: tmpl, System: a.cfg.system, Sampling: a.cfg.sampling, MaxTokens: a.cfg.maxTokens,
		Overflow: llama.OverflowDropOldest,
	}
	var drafts *draftflags.Drafts
	if a.cfg.draft != nil {
		drafts, err = a.cfg.draft.Load(context.Background(), m, a.cfg.gpuLayers, a.cfg.nCtx)
		if err == nil && drafts != nil {
			sp.DraftMax = drafts.Max
			sp.Draft, err = drafts.New()
		}
		if err != nil {
			drafts.Close()
			c.Close()
			m.Close()
			return nil, nil, err
		}
	}
	closeDrafts := func() {
		if d, ok := sp.Draft.(io.Closer); ok {
			d.Close()
		}
		drafts.Close()
	}
	sess, err := llama.NewChatSession(c, sp)
	if err != nil {
		closeDrafts()
		c.Close()
		m.Close()
		return nil, nil, err
	}
	info := m.Info()
	fmt.Fprintf(a.errOut, "%s: %s, loaded in %v (%s backend), context %d tokens\n", path, info.Description,
		m.LoadDuration().Round(time.Millisecond), llama.Backend, c.NCtx())
	return sess, func() {
		sess.Close()
		closeDrafts()
		if tmpl != nil {
			tmpl.Close()
		}
		c.Close()
		m.Close()
	}, nil
}

// reply sends a message and streams the answer to out.
func (a *app) reply(sess *llama.ChatSession, text string) error {
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
	w := bufio.NewWriter(a.out)
	var err error
	for d, e := range sess.Say(ctx, text) {
		if e != nil {
			err = e
			break
		}
		w.WriteString(d.Text)
		w.Flush()
	}
	w.WriteString("\n")
	w.Flush()
	if errors.Is(err, llama.ErrAborted) {
		fmt.Fprintln(a.errOut, "[stopped]")
		return err
	}
	if err != nil {
		return err
	}
	t := sess.LastTurn()
	if a.inTTY || a.cfg.interactive {
		fmt.Fprintf(a.errOut, "[%d tokens, %.1f t/s; prompt %d tokens, %d reused, %d decoded%s]\n",
			t.GeneratedTokens, perSecond(t.GeneratedTokens, t.Generation), t.PromptTokens,
			t.PromptTokensReused, t.PromptTokensDecoded, dropped(t.DroppedMessages))
	}
	return nil
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

const help = `Type a message and press Enter. End a line with \ to continue it on the next line,
or paste text between two lines holding only """.
Commands:
  /reset          forget the conversation (keeps the system prompt)
  /system <text>  set the system prompt (empty: remove it)
  /save <file>    save the conversation as JSON
  /load <file>    load a conversation saved with /save
  /help           this text
  /quit           exit (also Ctrl-D; Ctrl-C stops a reply, at the prompt it exits)`

// repl is the interactive loop. It returns the exit status.
func (a *app) repl(sess *llama.ChatSession) int {
	lines := bufio.NewScanner(a.in)
	lines.Buffer(make([]byte, 0, 64*1024), 16<<20)
	if a.inTTY {
		fmt.Fprintln(a.errOut, `Chat away. /help for commands, Ctrl-D to exit.`)
	}
	for {
		input, ok := a.readInput(lines)
		if !ok {
			if err := lines.Err(); err != nil {
				fmt.Fprintln(a.errOut, "chat: reading input:", err)
				return 1
			}
			fmt.Fprintln(a.out) // end of input: leave the prompt line
			return 0
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

// readInput reads one message: a line, lines joined by a trailing backslash, or a
// block between """ lines. ok is false at the end of input with nothing read.
func (a *app) readInput(lines *bufio.Scanner) (string, bool) {
	fmt.Fprint(a.out, "> ")
	var b strings.Builder
	paste := false
	for lines.Scan() {
		line := lines.Text()
		switch {
		case paste && strings.TrimSpace(line) == `"""`:
			return b.String(), true
		case paste:
			b.WriteString(line)
			b.WriteByte('\n')
			continue
		case b.Len() == 0 && strings.TrimSpace(line) == `"""`:
			paste = true
			continue
		case strings.HasSuffix(line, `\`):
			b.WriteString(strings.TrimSuffix(line, `\`))
			b.WriteByte('\n')
			fmt.Fprint(a.out, ". ")
			continue
		}
		b.WriteString(line)
		return b.String(), true
	}
	if b.Len() > 0 { // end of input inside a continued message: send what there is
		return b.String(), true
	}
	return "", false
}

// command runs a slash command; it reports whether to quit.
func (a *app) command(sess *llama.ChatSession, input string) bool {
	name, arg, _ := strings.Cut(input, " ")
	arg = strings.TrimSpace(arg)
	switch name {
	case "/quit", "/exit":
		return true
	case "/help":
		fmt.Fprintln(a.errOut, help)
	case "/reset":
		sess.Reset()
		fmt.Fprintln(a.errOut, "[conversation reset]")
	case "/system":
		sess.SetSystem(arg)
		if arg == "" {
			fmt.Fprintln(a.errOut, "[system prompt removed]")
		} else {
			fmt.Fprintln(a.errOut, "[system prompt set]")
		}
	case "/save", "/load":
		if arg == "" {
			fmt.Fprintf(a.errOut, "usage: %s <file>\n", name)
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
		fmt.Fprintf(a.errOut, "unknown command %s (/help lists them)\n", name)
	}
	return false
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

// progressBar draws model loading progress on a terminal; elsewhere it stays silent.
type progressBar struct {
	w     io.Writer
	tty   bool
	shown int // last percentage drawn, -1 before the first
}

func newProgressBar(w io.Writer, tty bool) *progressBar {
	return &progressBar{w: w, tty: tty, shown: -1}
}

func (p *progressBar) update(f float32) {
	if !p.tty {
		return
	}
	pct := int(f * 100)
	if pct == p.shown {
		return
	}
	p.shown = pct
	const width = 30
	n := pct * width / 100
	fmt.Fprintf(p.w, "\rloading [%s%s] %3d%%", strings.Repeat("#", n), strings.Repeat(" ", width-n), pct)
}

func (p *progressBar) done() {
	if p.tty && p.shown >= 0 {
		fmt.Fprint(p.w, "\r\033[K")
	}
}
