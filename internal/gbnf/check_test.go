package gbnf

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/llamago/llamago/internal/llamacpp"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func nest(n int) string {
	return "root ::= " + strings.Repeat("(", n) + `"a"` + strings.Repeat(")", n)
}

// TestCheckRefuses: each grammar llama.cpp cannot survive is refused with a message that
// says why.
func TestCheckRefuses(t *testing.T) {
	for g, want := range map[string]string{
		"":                                    "empty grammar",
		"\x00root ::= \"a\"":                  "empty grammar",
		"root ::= \"\xff\"":                   "not valid UTF-8",
		nest(MaxNesting + 1):                  "nested deeper than 256 levels",
		nest(100000):                          "nested deeper",
		`root ::= "a"{3,1}`:                   "repetition {3,1} has its maximum below its minimum",
		"root ::= (\"a\"{ 3 # three\n , 1 })": "repetition {3,1}",
		"root ::= ws root \"b\" | \"c\"\nws ::= [ \\t]*": `rule "root" is left-recursive`,
		"root ::= (expr \"=\" ws term \"\\n\")+\nexpr ::= term ([-+*/] term)*\n" +
			"term ::= ident | num | ws expr \")\" ws\nident ::= [a-z] [a-z0-9_]* ws\nnum ::= [0-9]+ ws\nws ::= [ \\t\\n]*": "left-recursive",
		`root ::= [ ]+++`:                                           "3 repetitions applied directly to each other (at most 2)",
		`root ::= ((([ ])+)*)+`:                                     "3 repetitions",
		"root ::= a+\na ::= b*\nb ::= [ ]+":                         "3 repetitions",
		`root ::= [ ]{0,10}{0,10}{0,10}`:                            "3 repetitions",
		"root ::= ws root \"b\" | \"c\"\nws ::= [] [^]":             "left-recursive",
		"root ::= ws root \"b\" | \"c\"\nws ::= [ ]*\x00junk":       "left-recursive",
		`root ::= "b" | ` + nest(MaxNesting + 1)[len("root ::= "):]: "nested deeper",
	} {
		err := Check(g)
		if assert.Error(t, err, "%.60q", g) {
			assert.Contains(t, err.Error(), want, "%.60q", g)
		}
	}
}

// TestCheckAccepts: what llama.cpp handles passes, syntax errors included (llama.cpp's
// parser reports those itself): every grammar llama.cpp ships, repetitions of what can
// match nothing, right recursion, nesting at the limit.
func TestCheckAccepts(t *testing.T) {
	dir, err := llamacpp.Dir()
	require.NoError(t, err)
	files, err := filepath.Glob(filepath.Join(dir, "grammars", "*.gbnf"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	grammars := []string{
		"root ::= (ws)* \"a\"\nws ::= [ ]*", `root ::= ("a"?)*`, `root ::= "a" root | "b"`,
		"root ::= \"a\"\x00 ws root \"b\"", // llama.cpp reads up to the NUL
		`root ::= [ ]++`, `root ::= ([0-9]{1,3})+`, `root ::= (("a" [ ]+)+ "b")+`,
		"root ::= ws \"a\"\nws ::= [ ]*", `root ::= x{0} "a"` + "\nx ::= root",
		nest(MaxNesting),
		`root ::= "a" )`, `root ::= "a`, `root ::= other`, // syntax errors: llama.cpp's to report
	}
	for _, f := range files {
		g, err := os.ReadFile(f)
		require.NoError(t, err)
		grammars = append(grammars, string(g))
	}
	for _, g := range grammars {
		assert.NoError(t, Check(g), "%.60q", g)
	}
}

// FuzzCheck: no input panics or hangs the checker.
func FuzzCheck(f *testing.F) {
	for _, g := range []string{`root ::= [ ]+++`, "root ::= ws root \"b\"\nws ::= [ ]*", nest(3), `root ::= "a"{2,1}`} {
		f.Add(g)
	}
	f.Fuzz(func(t *testing.T, g string) {
		err := Check(g)
		if err != nil {
			assert.NotEmpty(t, err.Error())
		}
	})
}
