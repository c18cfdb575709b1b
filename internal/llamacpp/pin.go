package llamacpp

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// LockFile is the pin's path inside the repository (or a copy of the module).
const LockFile = "third_party/llama.cpp.lock"

// Pin is the llama.cpp release llamago builds against, as third_party/llama.cpp.lock
// states it (KEY=VALUE lines that scripts/fetch-llama.sh sources).
type Pin struct {
	Release string // LLAMA_CPP_RELEASE, e.g. v0.4.0
	Commit  string // LLAMA_CPP_COMMIT
	Tree    string // LLAMA_CPP_TREE: what the fetched checkout is verified against
}

// Key names builds of this pin in caches and install paths: the release and the first
// eight hex digits of the tree (llama/cgo*.go spell it out in their search paths).
func (p Pin) Key() string { return p.Release + "-" + p.Tree[:8] }

// ReadPin reads the lock file of the module rooted at dir.
func ReadPin(dir string) (Pin, error) {
	path := filepath.Join(dir, filepath.FromSlash(LockFile))
	f, err := os.Open(path)
	if err != nil {
		return Pin{}, err
	}
	defer f.Close()
	vals := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			vals[k] = v
		}
	}
	if err := sc.Err(); err != nil {
		return Pin{}, err
	}
	p := Pin{Release: vals["LLAMA_CPP_RELEASE"], Commit: vals["LLAMA_CPP_COMMIT"], Tree: vals["LLAMA_CPP_TREE"]}
	if p.Release == "" || len(p.Tree) != 40 || len(p.Commit) != 40 {
		return Pin{}, fmt.Errorf("%s: want LLAMA_CPP_RELEASE, LLAMA_CPP_COMMIT and LLAMA_CPP_TREE (40 hex digits)", path)
	}
	return p, nil
}
