// Package examples_test runs every example as a user would: each takes -h, and the ones
// that run a model take a llama-cli style command line (package examples/internal/cli).
package examples_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/llamago/llamago/examples/internal/modelfile"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func build(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("go", "build", "-o", dir+string(filepath.Separator), "./...").CombinedOutput()
	require.NoError(t, err, "go build ./examples/...: %s", out)
	return dir
}

func run(t *testing.T, bin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), bin, args...)
	cmd.Env = append(os.Environ(), "LLAMAGO_CACHE="+t.TempDir())
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

func TestExamplesCommandLine(t *testing.T) {
	bin := build(t)
	// Every example answers -h with its flags and exit status 0.
	shared := []string{"-m, --model FNAME", "-hf, -hfr, --hf-repo", "-ngl, --gpu-layers, --n-gpu-layers", "-c, --ctx-size", "-t, --threads", "-fa, --flash-attn"}
	sampling := []string{"--temp, --temperature", "--top-k", "--dry-multiplier", "--mirostat", "--xtc-probability", "-l, --logit-bias", "--grammar-file", "-j, --json-schema"}
	for name, want := range map[string][]string{
		"generate":   append(append([]string{"-p, --prompt", "-n, --predict, --n-predict", "--lora"}, shared...), sampling...),
		"chat":       append(append([]string{"-sys, --system-prompt", "--chat-template-file", "-i, --interactive"}, shared...), sampling...),
		"server":     append([]string{"--host", "--port", "-np, --parallel", "-a, --alias", "-to, --timeout"}, shared...),
		"embed":      append([]string{"--pooling", "-np, --parallel"}, shared...),
		"perplexity": append([]string{"-f, --file", "--chunks"}, shared...),
		"bench":      {"-m", "-ngl"},
		"quantize":   nil,
		"rpc-server": nil,
		"gguf":       nil,
	} {
		stdout, stderr, err := run(t, filepath.Join(bin, name), "-h")
		assert.NoError(t, err, "%s -h: %s", name, stderr)
		help := stdout + stderr
		assert.NotEmpty(t, help, name)
		for _, w := range want {
			assert.Contains(t, help, w, "%s -h", name)
		}
	}

	demo, err := modelfile.DemoPath()
	require.NoError(t, err)
	// A llama-cli command line: the demo model recites Genesis 1:1 greedily.
	stdout, stderr, err := run(t, filepath.Join(bin, "generate"), "-m", demo, "-p", "In the beginning God", "-n", "8",
		"-c", "256", "-t", "2", "-ngl", "0", "--temp", "0", "--top-k", "40", "-s", "1")
	require.NoError(t, err, stderr)
	assert.True(t, strings.HasPrefix(stdout, "In the beginning God created the heaven"), stdout)

	// -ngl auto: llama.cpp's fitting chooses the layers and, with -c 0, the context.
	stdout, stderr, err = run(t, filepath.Join(bin, "generate"), "-m", demo, "-p", "In the beginning God", "-n", "4",
		"-c", "0", "-t", "2", "-ngl", "auto", "--temp", "0")
	require.NoError(t, err, stderr)
	assert.Regexp(t, `-ngl auto: .*, context \d+`, stderr)
	assert.True(t, strings.HasPrefix(stdout, "In the beginning God created"), stdout)

	stdout, stderr, err = run(t, filepath.Join(bin, "chat"), "--model", demo, "--prompt", "The LORD is my shepherd;", "--n-predict", "6",
		"--ctx-size", "512", "--threads", "2", "--temp", "0", "--repeat-penalty", "1.0")
	require.NoError(t, err, stderr)
	assert.NotEmpty(t, strings.TrimSpace(stdout))

	text := filepath.Join(t.TempDir(), "text.txt")
	require.NoError(t, os.WriteFile(text, bytes.Repeat([]byte("In the beginning God created the heaven and the earth. "), 40), 0o644))
	stdout, stderr, err = run(t, filepath.Join(bin, "perplexity"), "-m", demo, "-f", text, "-c", "128", "--chunks", "2", "-t", "2")
	require.NoError(t, err, stderr)
	assert.Contains(t, stdout, "Final estimate: PPL = ")

	stdout, stderr, err = run(t, filepath.Join(bin, "embed"), "-m", "synthetic:bert-tiny", "-t", "2", "first text", "second text")
	require.NoError(t, err, stderr)
	assert.Contains(t, stdout, `"embedding":[`)

	// A flag the examples do not know fails with status 2 and names it.
	_, stderr, err = run(t, filepath.Join(bin, "generate"), "--no-such-flag")
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee)
	assert.Equal(t, 2, ee.ExitCode())
	assert.Contains(t, stderr, "flag provided but not defined: -no-such-flag")
}
