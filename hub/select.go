package hub

import (
	"fmt"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// defaultQuants are tried in order when a reference names no quant (download.cpp
// find_best_model).
var defaultQuants = []string{"Q4_K_M", "Q8_0"}

// splitInfo describes a GGUF file name (download.cpp get_gguf_split_info).
type splitInfo struct {
	prefix string // path without ".gguf" and without "-0000i-of-0000n"
	tag    string // upper-case quant tag after the last '-' or '.', e.g. "Q4_K_M"
	index  int    // 1-based part number; 1 for unsplit files
	count  int    // number of parts; 1 for unsplit files
}

var (
	reSplit = regexp.MustCompile(`(?i)^(.+)-([0-9]{5})-of-([0-9]{5})$`)
	reTag   = regexp.MustCompile(`(?i)[-.]([A-Z0-9_]+)$`)
)

func ggufSplitInfo(p string) (splitInfo, bool) {
	prefix, ok := strings.CutSuffix(p, ".gguf")
	if !ok {
		return splitInfo{}, false
	}
	info := splitInfo{index: 1, count: 1}
	if m := reSplit.FindStringSubmatch(prefix); m != nil {
		info.index, _ = strconv.Atoi(m[2])
		info.count, _ = strconv.Atoi(m[3])
		prefix = m[1]
	}
	info.prefix = prefix
	if m := reTag.FindStringSubmatch(prefix); m != nil {
		info.tag = strings.ToUpper(m[1])
	}
	return info, true
}

// partName is the file name of part i of a split model (download.cpp
// common_download_get_all_parts).
func (s splitInfo) partName(i int) string {
	return fmt.Sprintf("%s-%05d-of-%05d.gguf", s.prefix, i, s.count)
}

// isModelFile reports whether p is a GGUF model, not a projector, an importance matrix
// or a speculative-decoding sidecar (download.cpp gguf_filename_is_model).
func isModelFile(p string) bool {
	if !strings.HasSuffix(p, ".gguf") {
		return false
	}
	base := path.Base(p)
	for _, s := range []string{"mmproj", "imatrix", "mtp-", "eagle3-", "dflash-", "dspark-"} {
		if strings.Contains(base, s) {
			return false
		}
	}
	return true
}

// isFirstPart reports whether p is an unsplit file or the first part of a split one.
func isFirstPart(p string) bool {
	s, ok := ggufSplitInfo(p)
	return ok && (s.count <= 1 || s.index == 1)
}

// pickModel chooses the model file for quant from a repository listing, in listing
// order: the first model file whose path contains the tag followed by '.' or '-'
// (case-insensitive); without a quant, Q4_K_M, then Q8_0, then the first model file
// (download.cpp find_best_model).
func pickModel(files []File, quant string) (File, bool) {
	tags := defaultQuants
	if quant != "" {
		tags = []string{quant}
	}
	for _, t := range tags {
		re := regexp.MustCompile(`(?i)` + regexp.QuoteMeta(t) + `[.-]`)
		for _, f := range files {
			if isModelFile(f.Path) && isFirstPart(f.Path) && re.MatchString(f.Path) {
				return f, true
			}
		}
	}
	if quant == "" {
		for _, f := range files {
			if isModelFile(f.Path) && isFirstPart(f.Path) {
				return f, true
			}
		}
	}
	return File{}, false
}

// splitParts returns all parts of primary's model in order (download.cpp
// get_split_files), or the name of the first part missing from files.
func splitParts(files []File, primary File) ([]File, string) {
	s, _ := ggufSplitInfo(primary.Path)
	if s.count <= 1 {
		return []File{primary}, ""
	}
	parts := make([]File, s.count)
	for _, f := range files {
		fs, ok := ggufSplitInfo(f.Path)
		if ok && fs.count == s.count && fs.prefix == s.prefix && fs.index >= 1 && fs.index <= s.count {
			parts[fs.index-1] = f
		}
	}
	for i, f := range parts {
		if f.Path == "" {
			return nil, s.partName(i + 1)
		}
	}
	return parts, ""
}

// availableQuants lists the quant tags of the model files in files, sorted.
func availableQuants(files []File) []string {
	var tags []string
	for _, f := range files {
		if !isModelFile(f.Path) || !isFirstPart(f.Path) {
			continue
		}
		if s, _ := ggufSplitInfo(f.Path); s.tag != "" && !slices.Contains(tags, s.tag) {
			tags = append(tags, s.tag)
		}
	}
	slices.Sort(tags)
	return tags
}

// ggufPaths lists the GGUF files in files, for errors naming a missing file.
func ggufPaths(files []File) []string {
	var out []string
	for _, f := range files {
		if strings.HasSuffix(f.Path, ".gguf") {
			out = append(out, f.Path)
		}
	}
	return out
}

// chooseFiles picks the model for ref (or the file named by file, which overrides the
// quant as -hff does) and all its parts. kind tags the error when nothing fits; where
// says what was searched ("test/x" or "the cache of test/x").
func chooseFiles(ref Ref, file string, all []File, kind error, where string) ([]File, error) {
	var primary File
	found := false
	if file != "" {
		for _, f := range all {
			if f.Path == file {
				primary, found = f, true
				break
			}
		}
		if !found {
			return nil, newError(kind, nil, "file %q not found in %s (GGUF files: %s)", file, where, listOrNone(ggufPaths(all)))
		}
	} else {
		primary, found = pickModel(all, ref.Quant)
		if !found && ref.Quant != "" {
			return nil, newError(kind, nil, "quant %q not found in %s (available quants: %s)", ref.Quant, where, listOrNone(availableQuants(all)))
		}
		if !found {
			return nil, newError(kind, nil, "no GGUF model file in %s", where)
		}
	}
	parts, missing := splitParts(all, primary)
	if missing != "" {
		return nil, newError(kind, nil, "split model %s: part %q not found in %s", primary.Path, missing, where)
	}
	return parts, nil
}

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}
