package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/llamago/llamago/examples/internal/cli/hubtest"
	"github.com/llamago/llamago/examples/internal/modelfile"
	"github.com/llamago/llamago/internal/synth"
	"github.com/llamago/llamago/internal/testmodel"
	"github.com/llamago/llamago/llama/gguf"

	"github.com/llamago/llamago/llama"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The tests run the real binary on a tiny synthetic model with the Qwen2 vocabulary
// (whose GGUF carries a ChatML template): as a script would (pipes) and as a person
// would (a pseudo-terminal made by util-linux's script(1)).

var (
	buildOnce sync.Once
	binPath   string
	workDir   string
	modelPath string
	buildErr  error
)

// runAsMain makes the test binary run the chat program instead of the tests.
const runAsMain = "LLAMAGO_CHAT_TEST_RUN_MAIN"

func setup(t *testing.T) (bin, model string) {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "llamago-chat-test-")
		if err != nil {
			buildErr = err
			return
		}
		// The test binary is the program (see TestMain): built with this test's tags and flags.
		binPath, buildErr = os.Executable()
		if buildErr != nil {
			return
		}
		os.Setenv(runAsMain, "1") // inherited by the processes the tests start, not read here again
		workDir = dir
		vocab, err := modelfile.VocabPath("qwen2")
		if err != nil {
			buildErr = err
			return
		}
		modelPath = filepath.Join(workDir, "qwen2-tiny.gguf")
		buildErr = synth.WriteFile(modelPath, synth.Options{Shape: "qwen2-tiny", VocabPath: vocab, Type: gguf.TypeF16, Seed: 3})
	})
	require.NoError(t, buildErr)
	return binPath, modelPath
}

func TestMain(m *testing.M) {
	if os.Getenv(runAsMain) == "1" {
		main()
		os.Exit(0)
	}
	code := m.Run()
	if workDir != "" {
		os.RemoveAll(workDir)
	}
	os.Exit(code)
}

func chatArgs(model string, extra ...string) []string {
	return append([]string{"-m", model, "-c", "512", "-n", "8", "-temp", "0", "-t", "1"}, extra...)
}

func runPiped(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	bin, _ := setup(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code = cmd.ProcessState.ExitCode()
	if err != nil && code == 0 {
		t.Fatal(err)
	}
	return out.String(), errOut.String(), code
}

func TestNonInteractive(t *testing.T) {
	_, model := setup(t)

	// Piped stdin is the message; the reply alone goes to stdout.
	out, errOut, code := runPiped(t, "Hello there\n", chatArgs(model)...)
	require.Equal(t, 0, code, errOut)
	assert.True(t, strings.HasSuffix(out, "\n"))
	assert.NotContains(t, out, "> ", "no prompt in script mode")
	assert.NotContains(t, errOut, "loading [", "no progress bar off a terminal")

	// -p wins over stdin; greedy sampling makes the reply reproducible.
	out2, errOut, code := runPiped(t, "", chatArgs(model, "-p", "Hello there")...)
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, out, out2)

	// Nothing to say is an error, not a hang.
	_, errOut, code = runPiped(t, "  \n", chatArgs(model)...)
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "no input")

	// A missing model file is a clean error.
	_, errOut, code = runPiped(t, "hi", "-m", filepath.Join(t.TempDir(), "none.gguf"))
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "chat:")
}

func TestInteractiveWithoutTerminal(t *testing.T) {
	_, model := setup(t)
	save := filepath.Join(t.TempDir(), "s.json")
	in := "Hello\n/system Be brief.\nline one \\\nline two\n\"\"\"\npasted\ntext\n\"\"\"\n/save " + save + "\n/bogus\n"
	out, errOut, code := runPiped(t, in, chatArgs(model, "-i")...)
	require.Equal(t, 0, code, "end of input exits cleanly: %s", errOut)
	assert.Equal(t, 7, strings.Count(out, "> "), "one prompt per message or command, and one at EOF: %q", out)
	assert.Contains(t, out, ". ", "continuation prompt")
	assert.Contains(t, errOut, "[system prompt set]")
	assert.Contains(t, errOut, "unknown command /bogus")
	b, err := os.ReadFile(save)
	require.NoError(t, err)
	saved := string(b)
	assert.Contains(t, saved, `"Be brief."`)
	assert.Contains(t, saved, `"line one \nline two"`)
	assert.Contains(t, saved, `"pasted\ntext"`)

	// /load restores it, KV cache included, in a new process and the chat goes on from the cache.
	out, errOut, code = runPiped(t, "/load "+save+"\nAgain\n", chatArgs(model, "-i")...)
	require.Equal(t, 0, code, errOut)
	assert.NotEmpty(t, out, "the reply after /load")
	assert.Contains(t, errOut, "[loaded "+save+": 7 messages]")
	assert.Regexp(t, `prompt \d+ tokens, [1-9]\d* reused`, errOut, "the conversation came from the saved cache")
	_, errOut, _ = runPiped(t, "/load "+filepath.Join(t.TempDir(), "missing.json")+"\n", chatArgs(model, "-i")...)
	assert.Contains(t, errOut, "/load:")
}

// ollama's commands: /set parameter, /show, /set think, /regen, /clear, /bye.
func TestCommands(t *testing.T) {
	_, model := setup(t)
	save := filepath.Join(t.TempDir(), "s.json")
	in := strings.Join([]string{"/set parameter top_k 7", "/show parameters", "/set parameter nope 1", "/set parameter temperature hot",
		"/set parameter num_predict 4", "Hi", "/regen", "/save " + save, "/show info", "/show system", "/set system Be kind.", "/show system",
		"/set nothink", "/set quiet", "/clear", "/?", "/bye", "never sent"}, "\n") + "\n"
	out, errOut, code := runPiped(t, in, chatArgs(model, "-i")...)
	require.Equal(t, 0, code, errOut)
	for _, want := range []string{"[set top_k to 7]", "top_k             7", `unknown parameter "nope"`, "/set parameter: strconv.ParseFloat",
		"[set num_predict to 4]", "architecture    qwen2", "[no system prompt]", "[system prompt set]", "Be kind.", "[thinking off]",
		"[statistics off]", "[conversation cleared]", "/set parameter NAME VALUE"} {
		assert.Contains(t, errOut, want)
	}
	assert.Equal(t, 2, strings.Count(errOut, " t/s; "), "statistics for the reply and the regenerated one, none after /set quiet")
	assert.Equal(t, 17, strings.Count(out, ">>> "), "nothing read after /bye")
	b, err := os.ReadFile(save)
	require.NoError(t, err)
	var saved struct{ Messages []llama.Message }
	require.NoError(t, json.NewDecoder(bytes.NewReader(b)).Decode(&saved), "the conversation (the KV cache follows it)")
	require.Len(t, saved.Messages, 2, "/regen replaced the reply: %s", b)
	assert.Equal(t, llama.RoleAssistant, saved.Messages[1].Role)
}

// terminal runs the chat in a pseudo-terminal made by script(1) and collects its output.
type terminal struct {
	t     *testing.T
	cmd   *exec.Cmd
	stdin io.WriteCloser
	mu    sync.Mutex
	out   bytes.Buffer
	done  chan struct{}
}

func startTerminal(t *testing.T, args ...string) *terminal {
	t.Helper()
	bin, _ := setup(t)
	script, err := exec.LookPath("script")
	require.NoError(t, err, "the terminal test needs script(1) from util-linux (apt-get install bsdutils)")
	line := bin
	for _, a := range args {
		line += " '" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	cmd := exec.Command(script, "-q", "-e", "-c", line, "/dev/null")
	term := &terminal{t: t, cmd: cmd, done: make(chan struct{})}
	term.stdin, err = cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = cmd.Stdout
	require.NoError(t, cmd.Start())
	go func() {
		defer close(term.done)
		buf := make([]byte, 4096)
		for {
			n, err := stdout.Read(buf)
			term.mu.Lock()
			term.out.Write(buf[:n])
			term.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-term.done
		cmd.Wait()
	})
	return term
}

func (term *terminal) output() string {
	term.mu.Lock()
	defer term.mu.Unlock()
	return term.out.String()
}

// waitFor waits until the output holds n occurrences of s.
func (term *terminal) waitFor(s string, n int) {
	term.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for strings.Count(term.output(), s) < n {
		if time.Now().After(deadline) {
			term.t.Fatalf("timed out waiting for %d× %q; output:\n%s", n, s, term.output())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (term *terminal) send(s string) {
	term.t.Helper()
	_, err := io.WriteString(term.stdin, s)
	require.NoError(term.t, err)
}

func (term *terminal) exitCode() int {
	term.t.Helper()
	select {
	case <-term.done:
	case <-time.After(time.Minute):
		term.t.Fatalf("the chat did not exit; output:\n%s", term.output())
	}
	term.cmd.Wait()
	return term.cmd.ProcessState.ExitCode()
}

func TestTerminal(t *testing.T) {
	_, model := setup(t)
	term := startTerminal(t, chatArgs(model, "-sys", "You are a test.")...)
	term.waitFor("> ", 1)
	assert.Contains(t, term.output(), "Chat away.")
	term.send("Hello\r")
	term.waitFor("tokens, ", 1) // the reply streamed, then its statistics
	term.waitFor("> ", 2)
	assert.Contains(t, term.output(), "0 reused")
	term.send("And again\r")
	term.waitFor("> ", 3)
	assert.Regexp(t, `[1-9][0-9]* reused`, term.output(), "the second turn reuses the cache")
	// Line editing and history: up recalls the last message, backspace and left arrow edit.
	term.send("\x1b[A\r")
	term.waitFor(" t/s; ", 3)
	term.waitFor("> ", 4)
	assert.Equal(t, 2, strings.Count(term.output(), "And again"), "the recalled line is shown and sent")
	term.send("/show templatx\x7fe\r")
	term.waitFor("im_start", 1)
	term.send("/reset\r")
	term.waitFor("[conversation cleared]", 1)
	term.waitFor("> ", 6)
	term.send("/bye\r")
	assert.Equal(t, 0, term.exitCode(), term.output())
}

func TestTerminalInterrupt(t *testing.T) {
	_, model := setup(t)
	term := startTerminal(t, chatArgs(model)...)
	term.waitFor("> ", 1)
	// Ctrl-C at the prompt exits.
	term.send("\x03")
	assert.Equal(t, 130, term.exitCode(), term.output())

	// Ctrl-D (end of input) exits cleanly.
	term = startTerminal(t, chatArgs(model)...)
	term.waitFor("> ", 1)
	term.send("\x04")
	assert.Equal(t, 0, term.exitCode(), term.output())
}

// Images with --mmproj: --image for the first message, /image for the next; without a
// projector, or with a file that is no image, a clear message and the chat goes on.
func TestImages(t *testing.T) {
	model, projector := testmodel.ProjectorPair(t, synth.ProjectorMLP, 1)
	image := testmodel.MediaFile(t, "test-1.jpeg")
	notImage := filepath.Join(t.TempDir(), "notes.txt")
	require.NoError(t, os.WriteFile(notImage, []byte("no pixels here"), 0o644))

	out, errOut, code := runPiped(t, "", chatArgs(model, "--mmproj", projector, "--image", image, "-p", "What is this?")...)
	require.Equal(t, 0, code, errOut)
	assert.NotEmpty(t, strings.TrimSpace(out))

	in := "/image " + notImage + "\n/image " + image + "\nDescribe it.\nAnd now?\n"
	out, errOut, code = runPiped(t, in, chatArgs(model, "--mmproj", projector, "-i")...)
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, errOut, "/image: "+notImage+": llama: media")
	assert.Contains(t, errOut, "["+image+" attached to the next message]")
	assert.Equal(t, 2, strings.Count(errOut, " t/s; "), "two replies: %s", errOut)

	_, errOut, _ = runPiped(t, "/image "+image+"\n", chatArgs(model, "-i")...)
	assert.Contains(t, errOut, "needs a projector: start the chat with --mmproj FILE")
}

// Audio with an audio projector: --audio for the first message, /audio for the next; an
// image to it is refused and the chat goes on.
func TestAudio(t *testing.T) {
	model, projector := testmodel.ProjectorPair(t, synth.ProjectorQwen2A, 1)
	clip, image := testmodel.MediaFile(t, "test-2.mp3"), testmodel.MediaFile(t, "test-1.jpeg")

	out, errOut, code := runPiped(t, "", chatArgs(model, "--mmproj", projector, "-c", "2048", "--audio", clip, "-p", "What is said?")...)
	require.Equal(t, 0, code, errOut)
	assert.NotEmpty(t, strings.TrimSpace(out))

	in := "/image " + image + "\n/audio " + clip + "\nWhat is said?\n"
	_, errOut, code = runPiped(t, in, chatArgs(model, "--mmproj", projector, "-c", "2048", "-i")...)
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, errOut, "/image: "+image+": llama: media")
	assert.Contains(t, errOut, "["+clip+" attached to the next message]")
	assert.Equal(t, 1, strings.Count(errOut, " t/s; "), "one reply: %s", errOut)
}

// -hf brings the repository's projector along, as llama-server -hf does: the one that
// goes with the model (F16 for an F16 model, not the Q8_0 listed first), downloaded
// beside it and loaded, so --image works; --no-mmproj fetches the model alone.
func TestImagesFromHub(t *testing.T) {
	model, projector := testmodel.ProjectorPair(t, synth.ProjectorMLP, 1)
	image := testmodel.MediaFile(t, "test-1.jpeg")

	h := hubtest.New(t)
	h.Add("test/vlm-GGUF", "mmproj-vlm-Q8_0.gguf", []byte("not a projector: loading it would fail"))
	h.AddFile(t, "test/vlm-GGUF", "mmproj-vlm-F16.gguf", projector)
	h.AddFile(t, "test/vlm-GGUF", "vlm-F16.gguf", model)
	cache := t.TempDir()
	h.Setenv(t, cache)
	args := []string{"-hf", "test/vlm-GGUF", "-c", "512", "-n", "8", "-temp", "0", "-t", "1"}

	out, errOut, code := runPiped(t, "", append(args, "--image", image, "-p", "What is this?")...)
	require.Equal(t, 0, code, errOut)
	assert.NotEmpty(t, strings.TrimSpace(out))
	snapshot := filepath.Join(cache, "models--test--vlm-GGUF", "snapshots", hubtest.Commit)
	assert.Contains(t, errOut, "mmproj-vlm-F16.gguf: downloaded")
	assert.Contains(t, errOut, filepath.Join(snapshot, "mmproj-vlm-F16.gguf")+": multimodal projector loaded (vision true, audio false)")
	assert.Equal(t, []string{"test/vlm-GGUF/vlm-F16.gguf", "test/vlm-GGUF/mmproj-vlm-F16.gguf"}, h.Downloads())

	// the next run finds both in the cache
	_, errOut, code = runPiped(t, "", append(args, "--image", image, "-p", "And now?")...)
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, errOut, "mmproj-vlm-F16.gguf: cached")
	assert.Len(t, h.Downloads(), 2)

	// --no-mmproj, with an empty cache: the model alone, and images are refused
	h.Setenv(t, t.TempDir())
	_, errOut, code = runPiped(t, "", append(args, "--no-mmproj", "-p", "Hello")...)
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, errOut, "vlm-F16.gguf: downloaded")
	assert.NotContains(t, errOut, "mmproj")
	assert.NotContains(t, errOut, "multimodal projector loaded")
	_, errOut, code = runPiped(t, "", append(args, "--no-mmproj", "--image", image, "-p", "What is this?")...)
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "needs a projector")
	assert.Equal(t, []string{"test/vlm-GGUF/vlm-F16.gguf", "test/vlm-GGUF/mmproj-vlm-F16.gguf", "test/vlm-GGUF/vlm-F16.gguf"}, h.Downloads(),
		"the model once more, its projector not")
}
