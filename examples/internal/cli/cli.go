// Package cli is the command line the examples share, named as llama.cpp's tools name it
// (common/arg.cpp of the pinned tree): every flag has llama.cpp's short and long forms
// (-m, --model; -c, --ctx-size; -ngl, --n-gpu-layers; ...), so a llama-cli or llama-server
// command line works here, and -h prints the flags grouped as llama.cpp groups them.
//
// Go's flag package reads "-x" and "--x" alike, so the long forms also work with one dash.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// Flags is one program's command line: the shared groups it registered (Model, Context,
// Prompt, Sampling) and flags of its own (Group).
type Flags struct {
	name, about string
	fs          *flag.FlagSet
	groups      []*Group

	ModelFlags
	ContextFlags
	PromptFlags
	SamplingFlags
	Verbose bool
}

// New starts the command line of the program name; about is the first line of its help.
// Set the fields of the groups before Register to change their defaults.
func New(name, about string) *Flags {
	f := &Flags{name: name, about: about, fs: flag.NewFlagSet(name, flag.ContinueOnError)}
	f.ModelFlags.defaults()
	f.ContextFlags.defaults()
	f.PromptFlags.defaults()
	f.SamplingFlags.defaults()
	f.fs.Usage = func() { f.PrintHelp(f.fs.Output()) }
	return f
}

// A Registrar adds one shared group of flags.
type Registrar func(*Flags)

// Register adds the shared groups, in the order given, and -v/--verbose.
func (f *Flags) Register(groups ...Registrar) {
	for _, r := range groups {
		r(f)
	}
	f.Group("logging").Bool(&f.Verbose, "-v, --verbose", "show llama.cpp's log")
}

// ErrUsage wraps command-line errors, which Parse has already printed with the usage.
var ErrUsage = errors.New("usage")

// Parse parses args (without the program name). -h and --help print the help and return
// flag.ErrHelp; other errors wrap ErrUsage.
func (f *Flags) Parse(args []string) error {
	err := f.fs.Parse(args)
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		return fmt.Errorf("%w: %w", ErrUsage, err)
	}
	return err
}

// Args are the arguments after the flags.
func (f *Flags) Args() []string { return f.fs.Args() }

// SetOutput sets where help and parse errors go (default: standard error).
func (f *Flags) SetOutput(w io.Writer) { f.fs.SetOutput(w) }

// Group returns the group of flags titled title, made on first use; the help lists groups
// in the order they were made.
func (f *Flags) Group(title string) *Group {
	for _, g := range f.groups {
		if g.title == title {
			return g
		}
	}
	g := &Group{f: f, title: title}
	f.groups = append(f.groups, g)
	return g
}

// Group is a titled set of flags in the help.
type Group struct {
	f       *Flags
	title   string
	entries []entry
}

type entry struct {
	spec  string // "-m, --model FNAME"
	usage string
	value flag.Value
	bool  bool
}

// Var adds a flag under every name of names ("-m, --model"); arg names its value in the
// help ("FNAME"; empty for booleans).
func (g *Group) Var(v flag.Value, names, arg, usage string) {
	e := entry{spec: names, usage: usage, value: v}
	if bf, ok := v.(interface{ IsBoolFlag() bool }); ok && bf.IsBoolFlag() {
		e.bool = true
	}
	if arg != "" {
		e.spec += " " + arg
	}
	for n := range strings.SplitSeq(names, ",") {
		n = strings.TrimLeft(strings.TrimSpace(n), "-")
		g.f.fs.Var(v, n, usage)
	}
	g.entries = append(g.entries, e)
}

// String adds a string flag.
func (g *Group) String(p *string, names, arg, usage string) {
	g.Var((*stringValue)(p), names, arg, usage)
}

// Int adds an integer flag.
func (g *Group) Int(p *int, names, usage string) { g.Var((*intValue)(p), names, "N", usage) }

// Bool adds a boolean flag.
func (g *Group) Bool(p *bool, names, usage string) { g.Var((*boolValue)(p), names, "", usage) }

// Float adds a float32 flag.
func (g *Group) Float(p *float32, names, usage string) { g.Var((*float32Value)(p), names, "N", usage) }

// Func adds a flag whose values fn parses; def is the default shown in the help.
func (g *Group) Func(names, arg, usage, def string, fn func(string) error) {
	g.Var(&funcValue{fn: fn, def: def}, names, arg, usage)
}

// PrintHelp writes the grouped help.
func (f *Flags) PrintHelp(w io.Writer) {
	fmt.Fprintf(w, "%s\n\nusage: %s [flags]\n", f.about, f.name)
	width := 0
	for _, g := range f.groups {
		for _, e := range g.entries {
			width = max(width, len(e.spec))
		}
	}
	width = min(width, 40)
	for _, g := range f.groups {
		fmt.Fprintf(w, "\n%s:\n", g.title)
		for _, e := range g.entries {
			usage := e.usage
			if d := e.value.String(); d != "" && !e.bool && !strings.Contains(usage, "(default") {
				usage += " (default: " + d + ")"
			}
			if len(e.spec) > width {
				fmt.Fprintf(w, "  %s\n  %-*s  %s\n", e.spec, width, "", usage)
			} else {
				fmt.Fprintf(w, "  %-*s  %s\n", width, e.spec, usage)
			}
		}
	}
}
