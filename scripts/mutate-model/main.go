// Command mutate-model is a whole-file mutation fuzzer for llamago's model loading: it
// mutates the raw bytes of a real model file (header, keys, string contents, array lengths,
// tensor infos, data: every byte is eligible, the metadata part more often) and loads each
// result in a child process, as a user's program would (LoadModel, a context, one decode),
// so that a crash inside llama.cpp is caught and kept instead of ending the run.
//
//	go run ./scripts/mutate-model -model models/kjv-demo.gguf -duration 30m -out /tmp/mutations
//
// The first crash of each class (the assertion or last line of the child's output, numbers
// removed) is saved as <out>/crash-<n>.patch: the bytes that differ from the model file,
// "offset hex" per line, small enough to keep as a regression case (llama's
// TestMutatedDemoModel applies the patches in llama/testdata/mutations to the demo model),
// with the child's last output lines in crash-<n>.txt. At the end a summary: files tried,
// loads that failed with an error, loaded, crashed by class.
package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/llamago/llamago/llama"
	"github.com/llamago/llamago/llama/gguf"
)

func main() {
	model := flag.String("model", "models/kjv-demo.gguf", "model file to mutate")
	duration := flag.Duration("duration", 5*time.Minute, "how long to run")
	limit := flag.Int("n", 0, "most files to try (0: until -duration)")
	workers := flag.Int("workers", 2, "child processes at once")
	out := flag.String("out", "mutations", "directory for crashing files")
	seed := flag.Uint64("seed", uint64(time.Now().UnixNano()), "random seed")
	load := flag.String("load", "", "(child mode) load this file and exit")
	flag.Parse()
	if *load != "" {
		os.Exit(child(*load))
	}
	if err := run(*model, *duration, *limit, *workers, *out, *seed); err != nil {
		fmt.Fprintln(os.Stderr, "mutate-model:", err)
		os.Exit(1)
	}
}

// child loads path as a user would; exit 0 whether it loads or fails with an error.
func child(path string) int {
	ctx := context.Background()
	m, err := llama.LoadModel(ctx, path, &llama.ModelParams{GPULayers: 0})
	if err != nil {
		fmt.Println("error:", err)
		return 0
	}
	defer m.Close()
	toks, err := m.Tokenize("In the beginning God created the heaven and the earth.", llama.AddSpecial)
	if err == nil {
		_, err = m.Detokenize(toks, 0)
	}
	c, cerr := m.NewContext(&llama.ContextParams{NCtx: 128, Threads: 1})
	if cerr == nil {
		defer c.Close()
		if len(toks) > 0 {
			err = c.DecodeTokens(ctx, toks[:min(len(toks), 8)], 0, 0)
		}
	}
	fmt.Println("loaded:", err, cerr)
	return 0
}

type result struct {
	crashed bool
	failed  bool // an error from LoadModel
	class   string
	output  string
}

func run(model string, duration time.Duration, limit, workers int, out string, seed uint64) error {
	base, err := os.ReadFile(model)
	if err != nil {
		return err
	}
	f, err := gguf.Read(bytes.NewReader(base), int64(len(base)))
	if err != nil {
		return err
	}
	meta := f.DataOffset // header, metadata and tensor infos
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "mutate-model-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	fmt.Printf("%s: %d bytes, %d of header/metadata/tensor infos; seed %d\n", model, len(base), meta, seed)

	deadline := time.Now().Add(duration)
	var tried, failed, loaded atomic.Int64
	var mu sync.Mutex
	classes := map[string]int{}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			buf := make([]byte, len(base))
			path := filepath.Join(tmp, fmt.Sprintf("w%d.gguf", w))
			for time.Now().Before(deadline) {
				n := tried.Add(1)
				if limit > 0 && n > int64(limit) {
					return
				}
				copy(buf, base)
				mutate(rng, buf, int(meta))
				if err := os.WriteFile(path, buf, 0o644); err != nil {
					fmt.Fprintln(os.Stderr, err)
					return
				}
				r := try(self, path)
				switch {
				case r.crashed:
					mu.Lock()
					classes[r.class]++
					first := classes[r.class] == 1
					mu.Unlock()
					name := filepath.Join(out, fmt.Sprintf("crash-%d", n))
					if first {
						os.WriteFile(name+".patch", patch(base, buf), 0o644)
						os.WriteFile(name+".txt", []byte(r.output), 0o644)
						fmt.Printf("new class after %d files: %s (%s)\n", n, r.class, name)
					}
				case r.failed:
					failed.Add(1)
				default:
					loaded.Add(1)
				}
			}
		})
	}
	wg.Wait()
	n := min(tried.Load(), int64(max(limit, 0)))
	if limit == 0 {
		n = tried.Load() - int64(workers) // the last increment of each worker did not run
	}
	crashes := 0
	for _, c := range classes {
		crashes += c
	}
	fmt.Printf("files tried: %d, errors: %d, loaded: %d, crashes: %d in %d classes\n", n, failed.Load(), loaded.Load(), crashes, len(classes))
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range classes {
			if !yield(k) {
				return
			}
		}
	})
	for _, k := range keys {
		fmt.Printf("  %5d  %s\n", classes[k], k)
	}
	return nil
}

// patch lists the runs of bytes where b differs from a: "offset hex" per line.
func patch(a, b []byte) []byte {
	var out bytes.Buffer
	for i := 0; i < len(a); i++ {
		if a[i] == b[i] {
			continue
		}
		j := i
		for j < len(a) && (a[j] != b[j] || j+1 < len(a) && a[j+1] != b[j+1]) {
			j++
		}
		fmt.Fprintf(&out, "%d %x\n", i, b[i:j])
		i = j
	}
	return out.Bytes()
}

var digits = regexp.MustCompile(`[0-9]+`)

// try loads path in a child process.
func try(self, path string) result {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, self, "-load", path)
	output, err := cmd.CombinedOutput()
	text := string(output)
	if err == nil {
		return result{failed: strings.Contains(text, "error:"), output: text}
	}
	lines := strings.Split(strings.TrimSpace(text), "\n")
	last := lines[len(lines)-1]
	for i := len(lines) - 1; i >= 0; i-- { // the assertion or exception line, when there is one
		if strings.Contains(lines[i], "GGML_ASSERT") || strings.Contains(lines[i], "terminate called") ||
			strings.Contains(lines[i], "what():") || strings.Contains(lines[i], "panic:") {
			last = lines[i]
			break
		}
	}
	if ctx.Err() != nil {
		last = "timeout"
	}
	class := err.Error() + ": " + digits.ReplaceAllString(last, "N")
	return result{crashed: true, class: class, output: strings.Join(lines[max(0, len(lines)-40):], "\n")}
}

// mutate changes 1 to 8 places of buf; three in four land in the first meta bytes.
func mutate(rng *rand.Rand, buf []byte, meta int) {
	for range 1 + rng.IntN(8) {
		end := len(buf)
		if rng.IntN(4) > 0 {
			end = meta
		}
		at := rng.IntN(end)
		switch rng.IntN(6) {
		case 0: // flip a bit
			buf[at] ^= 1 << rng.IntN(8)
		case 1: // a random byte
			buf[at] = byte(rng.IntN(256))
		case 2: // an interesting 32-bit value (lengths, counts, types, ids)
			if at+4 <= len(buf) {
				vals := []uint32{0, 1, 2, 0x7f, 0x80, 0xff, 0x7fff, 0xffff, 0x7fffffff, 0x80000000, 0xffffffff, uint32(rng.IntN(64))}
				binary.LittleEndian.PutUint32(buf[at:], vals[rng.IntN(len(vals))])
			}
		case 3: // an interesting 64-bit value (string and array lengths, offsets, dims)
			if at+8 <= len(buf) {
				vals := []uint64{0, 1, 1 << 31, 1 << 32, 1<<63 - 1, 1 << 63, ^uint64(0), uint64(rng.IntN(1 << 16))}
				binary.LittleEndian.PutUint64(buf[at:], vals[rng.IntN(len(vals))])
			}
		case 4: // add or subtract a little
			buf[at] += byte(rng.IntN(9) - 4)
		case 5: // copy a chunk from elsewhere
			n := 1 + rng.IntN(16)
			from := rng.IntN(len(buf) - n)
			if at+n <= len(buf) {
				copy(buf[at:at+n], buf[from:from+n])
			}
		}
	}
}
