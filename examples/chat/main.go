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
// It takes llama-cli's flags (-m, -hf, -c, -n, -sys, -ngl, every sampler; -h lists them).
// Without -m it runs on the repository's demo model, models/kjv-demo.gguf (trained on
// the King James Bible by scripts/train-demo-model): its chat template makes the
// conversation plain text, so it continues what you type in the style of the KJV. When
// that file is missing it runs on a synthetic model (random weights: the replies are
// gibberish) whose Qwen2 vocabulary carries a ChatML chat template.
package main

import (
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
	"github.com/llamago/llamago/examples/internal/cli"
	"github.com/llamago/llamago/examples/internal/draftflags"
	"github.com/llamago/llamago/llama"
	"github.com/llamago/llamago/llama/gguf"
)

// options is the parsed command line: llama.cpp's flags (package cli) and chat's own.
type options struct {
	*cli.Flags
	templateFile string // a Jinja template overriding the model's
	interactive  bool
	media        []string // image and audio files for the first message
	adapters     *adapterflags.Flags
	draft        *draftflags.Flags

	// read from the flags
	model    *llama.ModelParams
	context  *llama.ContextParams
	sampling *llama.SamplingParams
	prompt   string
	system   string
}

// parseFlags reads the command line; flag.ErrHelp after -h.
func parseFlags(args []string, errOut io.Writer) (*options, error) {
	f := cli.New("chat", "Chat with a model in the terminal (llama-cli's flags; /help inside lists the commands).")
	f.SetOutput(errOut)
	f.CtxSize, f.NPredict = 4096, 1024
	f.Register(cli.Model, cli.Context, cli.Prompt, cli.Sampling)
	o := &options{Flags: f}
	g := f.Group("chat")
	g.String(&o.templateFile, "--chat-template-file", "FNAME", "a Jinja chat template to use instead of the model's")
	g.Bool(&o.interactive, "-i, --interactive", "interactive even when stdin is not a terminal")
	o.adapters = adapterflags.Register(f.Group("adapters"))
	o.draft = draftflags.Register(f.Group("speculative decoding"))
	mm := f.Group("multimodal")
	f.RegisterProjector(mm, "multimodal projector (mmproj GGUF) of the model, for images and audio")
	mm.Func("--image, --audio", "FNAME", "an image or audio file sent with the first message (repeat for several; /image FILE inside)", "", func(v string) error {
		o.media = append(o.media, v)
		return nil
	})
	if err := f.Parse(args); err != nil {
		return nil, err
	}
	var err error
	if o.model, err = f.ModelFlags.Params(); err != nil {
		return nil, err
	}
	if o.context, err = f.ContextFlags.Params(); err != nil {
		return nil, err
	}
	if o.sampling, err = f.SamplingFlags.Params(); err != nil {
		return nil, err
	}
	if o.prompt, err = f.Text(); err != nil {
		return nil, err
	}
	if o.system, err = f.System(); err != nil {
		return nil, err
	}
	return o, nil
}

func main() {
	o, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		if !errors.Is(err, cli.ErrUsage) {
			fmt.Fprintln(os.Stderr, "chat:", err)
		}
		os.Exit(2)
	}
	if o.Verbose {
		llama.SetLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})))
	}

	ints := make(chan os.Signal, 1)
	signal.Notify(ints, os.Interrupt)
	a := &app{cfg: o, in: os.Stdin, out: os.Stdout, errOut: os.Stderr,
		inTTY: isTerminal(os.Stdin), outTTY: isTerminal(os.Stdout), errTTY: isTerminal(os.Stderr)}
	os.Exit(a.run(ints))
}

// app is one run of the chat: its configuration, streams and interrupt state.
type app struct {
	cfg                   *options
	in                    io.Reader
	out, errOut           io.Writer
	inTTY, outTTY, errTTY bool

	// what /show and /set use
	model        *llama.Model
	template     *llama.ChatTemplate
	nCtx         int
	projector    *llama.Projector // -mm
	pending      []*llama.Media   // attached to the next message (/image, --image)
	sent         []*llama.Media   // in the conversation: freed when the chat ends
	showThinking bool             // a reasoning model thinks, and its thoughts are shown
	verbose      bool             // statistics after each reply

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
	a.showThinking = true
	a.verbose = a.inTTY || a.cfg.interactive

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
	path, err := a.cfg.ModelPath(context.Background(), gguf.TypeQ8_0)
	if err != nil {
		return nil, nil, err
	}
	mmproj, err := a.cfg.ProjectorPath(context.Background()) // -mm, -mmu, or -hf's
	if err != nil {
		return nil, nil, err
	}
	if a.cfg.model, a.cfg.context, err = a.cfg.Fit(context.Background(), path, a.cfg.model, a.cfg.context, a.errOut); err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	a.mu.Lock()
	a.loading = cancel
	a.mu.Unlock()
	bar := newProgressBar(a.errOut, a.errTTY)
	mp := *a.cfg.model
	mp.Progress = bar.update
	m, err := llama.LoadModel(ctx, path, &mp)
	bar.done()
	a.mu.Lock()
	a.loading = nil
	a.mu.Unlock()
	cancel()
	if err != nil {
		return nil, nil, err
	}
	c, err := m.NewContext(a.cfg.context)
	if err != nil {
		m.Close()
		return nil, nil, err
	}
	{
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
	var tp *llama.ChatTemplateParams
	if a.cfg.templateFile != "" {
		src, err := os.ReadFile(a.cfg.templateFile)
		if err != nil {
			c.Close()
			m.Close()
			return nil, nil, err
		}
		tp = &llama.ChatTemplateParams{Source: string(src)}
	}
	tmpl, err := llama.NewChatTemplate(m, tp)
	if err != nil {
		c.Close()
		m.Close()
		return nil, nil, err
	}
	a.model, a.template, a.nCtx = m, tmpl, c.NCtx()
	sp := &llama.ChatSessionParams{
		Template: tmpl, System: a.cfg.system, Sampling: a.cfg.sampling, MaxTokens: a.cfg.MaxTokens(),
		Overflow: llama.OverflowDropOldest,
	}
	if mmproj != "" {
		if a.projector, err = m.LoadProjector(mmproj, &llama.ProjectorParams{NoGPU: a.cfg.model.GPULayers == 0}); err != nil {
			tmpl.Close()
			c.Close()
			m.Close()
			return nil, nil, err
		}
		sp.Projector = a.projector
		caps := a.projector.Caps()
		fmt.Fprintf(a.errOut, "%s: multimodal projector loaded (vision %v, audio %v)\n", mmproj, caps.Vision, caps.Audio)
	}
	for _, path := range a.cfg.media {
		if err := a.attach(path); err != nil {
			a.closeMedia()
			if a.projector != nil {
				a.projector.Close()
			}
			tmpl.Close()
			c.Close()
			m.Close()
			return nil, nil, err
		}
	}
	var drafts *draftflags.Drafts
	{
		drafts, err = a.cfg.draft.Load(context.Background(), m, a.cfg.model.GPULayers, c.NCtx())
		if err == nil && drafts != nil {
			sp.DraftMax = drafts.Max
			sp.Draft, err = drafts.New()
		}
		if err != nil {
			drafts.Close()
			tmpl.Close()
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
		tmpl.Close()
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
		a.closeMedia()
		if a.projector != nil {
			a.projector.Close()
		}
		tmpl.Close()
		c.Close()
		m.Close()
	}, nil
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
