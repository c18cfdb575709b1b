package hub

import (
	"fmt"
	"strings"
)

// Ref names a model the way llama.cpp's -hf flag does: "<user>/<repo>[:quant]".
type Ref struct {
	Repo  string // "user/repo"
	Quant string // e.g. "Q4_K_M", matched case-insensitively; empty: llama.cpp's default choice
}

// String returns the reference in "<user>/<repo>[:quant]" form.
func (r Ref) String() string {
	if r.Quant == "" {
		return r.Repo
	}
	return r.Repo + ":" + r.Quant
}

const refSyntax = "want <user>/<repo>[:quant], e.g. ggml-org/gemma-3-1b-it-GGUF:Q4_K_M"

// ParseRef parses and validates "<user>/<repo>[:quant]". Repository names follow the
// hub's (and llama.cpp's) rule: letters, digits and '_', with '-' and '.' only between
// them, exactly one '/', at most 256 characters.
func ParseRef(s string) (Ref, error) {
	bad := func(format string, args ...any) (Ref, error) {
		return Ref{}, newError(ErrInvalidRef, nil, "invalid model reference %q: %s (%s)", s, fmt.Sprintf(format, args...), refSyntax)
	}
	if s == "" {
		return bad("empty")
	}
	repo, quant, hasQuant := strings.Cut(s, ":")
	if strings.Contains(quant, ":") {
		return bad("more than one ':'")
	}
	if hasQuant && quant == "" {
		return bad("empty quant after ':'")
	}
	if msg := checkRepo(repo); msg != "" {
		return bad("%s", msg)
	}
	for _, c := range quant {
		if !isNameChar(c) && c != '-' && c != '.' {
			return bad("character %q is not allowed in a quant tag", c)
		}
	}
	if len(quant) > 64 {
		return bad("quant tag longer than 64 characters")
	}
	return Ref{Repo: repo, Quant: quant}, nil
}

func isNameChar(c rune) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_'
}

// checkRepo returns why repo is not a valid "user/repo" id, or "" when it is
// (llama.cpp: hf-cache.cpp is_valid_repo_id).
func checkRepo(repo string) string {
	user, name, ok := strings.Cut(repo, "/")
	switch {
	case repo == "":
		return "empty repository"
	case !ok:
		return "missing '/' between user and repository"
	case strings.Contains(name, "/"):
		return "more than one '/'"
	case user == "":
		return "empty user"
	case name == "":
		return "empty repository name"
	case len(repo) > 256:
		return "repository id longer than 256 characters"
	case strings.Contains(repo, ".."):
		return "'..' is not allowed"
	}
	for _, part := range []string{user, name} {
		special := true // at the start, a special character is not allowed
		for _, c := range part {
			switch {
			case isNameChar(c):
				special = false
			case c == '-' || c == '.':
				if special {
					return fmt.Sprintf("%q: '-' and '.' must sit between letters, digits or '_'", part)
				}
				special = true
			default:
				return fmt.Sprintf("character %q is not allowed (use letters, digits, '_', '-', '.')", c)
			}
		}
		if special {
			return fmt.Sprintf("%q: '-' and '.' must sit between letters, digits or '_'", part)
		}
	}
	return ""
}
