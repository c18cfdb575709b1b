package cli

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// PromptFlags are llama.cpp's prompt flags.
type PromptFlags struct {
	Prompt           string // -p
	File             string // -f: the prompt from a file
	SystemPrompt     string // -sys
	SystemPromptFile string // -sysf
	NPredict         int    // -n: tokens to predict; -1: until the end
}

func (p *PromptFlags) defaults() { p.NPredict = -1 }

// Prompt registers -p, -f, -sys, -sysf, -n.
func Prompt(f *Flags) {
	p := &f.PromptFlags
	g := f.Group("prompt")
	g.String(&p.Prompt, "-p, --prompt", "PROMPT", "prompt to start generation with")
	g.String(&p.File, "-f, --file", "FNAME", "a file containing the prompt")
	g.String(&p.SystemPrompt, "-sys, --system-prompt", "PROMPT", "system prompt to use with the model (if it has a chat template)")
	g.String(&p.SystemPromptFile, "-sysf, --system-prompt-file", "FNAME", "a file containing the system prompt")
	g.Int(&p.NPredict, "-n, --predict, --n-predict", "number of tokens to predict (-1: until the end of generation or a full context)")
}

// Text returns the prompt: -p, or the contents of -f (not both).
func (p *PromptFlags) Text() (string, error) {
	return oneOf("-p", p.Prompt, "-f", p.File)
}

// System returns the system prompt: -sys, or the contents of -sysf (not both).
func (p *PromptFlags) System() (string, error) {
	return oneOf("-sys", p.SystemPrompt, "-sysf", p.SystemPromptFile)
}

// MaxTokens is -n as the library counts it: 0 for no limit.
func (p *PromptFlags) MaxTokens() int { return max(p.NPredict, 0) }

func oneOf(textFlag, text, fileFlag, file string) (string, error) {
	if file == "" {
		return text, nil
	}
	if text != "" {
		return "", fmt.Errorf("%s and %s: give one", textFlag, fileFlag)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("%s: %w", fileFlag, err)
	}
	if len(b) == 0 {
		return "", errors.New(fileFlag + " " + file + ": empty file")
	}
	return strings.TrimSuffix(string(b), "\n"), nil
}
