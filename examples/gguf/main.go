// Command gguf inspects GGUF files and writes synthetic models.
//
//	gguf inspect [-json] [-full] FILE
//	gguf synth -shape llama-tiny [-vocab PATH] [-type f16] [-seed 1] -o out.gguf
//	gguf synth -list
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

const usage = `usage:
  gguf inspect [-json] [-full] FILE     print header, metadata and tensors
  gguf synth -shape NAME -o FILE [...]  write a random-weight model
  gguf synth -list                      list the synthetic shapes

Run "gguf inspect -h" or "gguf synth -h" for the flags.
`

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			msg := err.Error()
			if !strings.HasPrefix(msg, "gguf: ") { // package errors carry it already
				msg = "gguf: " + msg
			}
			fmt.Fprintln(os.Stderr, msg)
		}
		os.Exit(2 - boolInt(errors.Is(err, errRuntime)))
	}
}

// errRuntime marks failures that are not usage errors (exit status 1
// instead of 2).
var errRuntime = errors.New("")

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("missing command")
	}
	switch args[0] {
	case "inspect":
		return inspectCmd(args[1:], stdout, stderr)
	case "synth":
		return synthCmd(args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}

// parseInterspersed parses flags that may come before or after positional
// arguments ("inspect FILE -json" works as well as "inspect -json FILE").
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// runtimeErr wraps err so main exits with status 1.
func runtimeErr(err error) error { return fmt.Errorf("%w%w", errRuntime, err) }
