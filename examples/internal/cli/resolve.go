package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"

	"github.com/llamago/llamago/examples/internal/modelfile"
	"github.com/llamago/llamago/hub"
	"github.com/llamago/llamago/llama/gguf"
)

// ModelPath is the model file the flags name: the first -m (synthetic:SHAPE writes a
// random-weight model with weights of type weights), a download by -hf (and -hff) or -mu
// into llama.cpp's cache (progress on stderr), or the demo model.
func (m *ModelFlags) ModelPath(ctx context.Context, weights gguf.TensorType) (string, error) {
	if len(m.Models) > 1 && !m.ManyModels {
		return "", errors.New("-m given more than once: this program runs one model")
	}
	n := 0
	for _, s := range []string{m.Model, m.HFRepo, m.ModelURL} {
		if s != "" {
			n++
		}
	}
	switch {
	case n > 1:
		return "", errors.New("-m, -hf and -mu each name a model: give one")
	case m.HFFile != "" && m.HFRepo == "":
		return "", errors.New("-hff names a file of the -hf repository: give -hf too")
	case m.HFRepo != "" || m.ModelURL != "":
		c := m.hubClient()
		switch {
		case m.HFFile != "":
			return c.DownloadFile(ctx, m.HFRepo, m.HFFile)
		case m.HFRepo != "":
			return c.Download(ctx, m.HFRepo)
		default:
			return c.DownloadURL(ctx, m.ModelURL, "")
		}
	}
	return modelfile.ResolveDefault(m.Model, weights)
}

// ProjectorPath is the multimodal projector the flags name, "" for none: -mm, a download
// by -mmu, or with -hf the projector of the repository that goes with its model (the
// choice is package hub's, llama.cpp's), downloaded into the cache with its progress on
// stderr, as llama-server -hf does. --no-mmproj stops only that last one, as in
// llama.cpp: -mm and -mmu still count. A repository without a projector is no error: ""
// then, and the program takes text only (offline, a note on stderr says that one may
// exist but is not in the cache).
func (m *ModelFlags) ProjectorPath(ctx context.Context) (string, error) {
	switch {
	case m.MMProj != "" && m.MMProjURL != "":
		return "", errors.New("--mmproj and --mmproj-url each name a projector: give one")
	case m.MMProj != "":
		return m.MMProj, nil
	case m.MMProjURL != "":
		return m.hubClient().DownloadURL(ctx, m.MMProjURL, "")
	case m.HFRepo == "" || m.NoMMProj:
		return "", nil
	}
	p, err := m.hubClient().DownloadProjector(ctx, m.HFRepo, m.HFFile)
	if errors.Is(err, hub.ErrNoProjector) {
		if errors.Is(err, hub.ErrNotCached) {
			fmt.Fprintf(os.Stderr, "%v; going on without one\n", err)
		}
		return "", nil
	}
	return p, err
}

// hubClient downloads for -hf, -mu and -mmu: llama.cpp's cache and environment,
// --offline, progress on stderr.
func (m *ModelFlags) hubClient() *hub.Client {
	c := hub.NewClient()
	c.Offline = c.Offline || m.Offline
	c.Progress = progressBar(os.Stderr)
	return c
}

// progressBar draws downloads on w: a bar redrawn in place on a terminal, a line per
// file elsewhere.
func progressBar(w *os.File) func(hub.Progress) {
	tty := term.IsTerminal(int(w.Fd()))
	return func(p hub.Progress) {
		switch {
		case p.Cached && p.Done:
			fmt.Fprintf(w, "%s: cached\n", p.Name)
		case p.Done:
			if tty {
				io.WriteString(w, "\r\033[K")
			}
			fmt.Fprintf(w, "%s: downloaded %s\n", p.Name, mib(p.Downloaded))
		case tty && p.Total > 0:
			const width = 30
			n := int(p.Downloaded * width / p.Total)
			fmt.Fprintf(w, "\r%s [%s%s] %s / %s", p.Name, strings.Repeat("#", n), strings.Repeat(" ", width-n), mib(p.Downloaded), mib(p.Total))
		}
	}
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
