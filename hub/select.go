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

// isProjectorFile reports whether p is a multimodal projector: a GGUF file whose base
// name contains "mmproj", in any case (llama.cpp looks for "mmproj" as written).
func isProjectorFile(p string) bool {
	return strings.HasSuffix(p, ".gguf") && strings.Contains(strings.ToLower(path.Base(p)), "mmproj")
}

// quantBits is the first number of a GGUF file's quant tag: 4 for Q4_K_M, 8 for Q8_0,
// 16 for F16 and BF16, 32 for F32; 0 without a tag or a number in it (download.cpp
// extract_quant_bits).
func quantBits(p string) int {
	s, _ := ggufSplitInfo(p)
	i := strings.IndexAny(s.tag, "0123456789")
	if i < 0 {
		return 0
	}
	j := i
	for j < len(s.tag) && j-i < 6 && s.tag[j] >= '0' && s.tag[j] <= '9' {
		j++
	}
	n, _ := strconv.Atoi(s.tag[i:j])
	return n
}

// dirDepth returns how many directories of p's path lie on the path of model's
// directory (0: the repository root), and false when p is not in model's directory or
// one above it.
func dirDepth(p, model string) (int, bool) {
	pd, md := strings.Split(path.Dir(p), "/"), strings.Split(path.Dir(model), "/")
	if pd[0] == "." {
		return 0, true
	}
	if len(pd) > len(md) || !slices.Equal(pd, md[:len(pd)]) {
		return 0, false
	}
	return len(pd), true
}

// pickProjector chooses the multimodal projector for model, a model file of files, the
// way llama.cpp's -hf does (download.cpp find_best_mmproj, its find_best_sibling rule),
// so that both tools fetch, and share in the cache, the same file:
//
//  1. only projectors in model's directory or a directory above it count, and the
//     nearest (deepest) directory wins;
//  2. then, where quant (the reference's tag) is given, a projector tagged exactly so;
//  3. then the projector whose quant bits are nearest the model's: for a Q4_K_M model a
//     Q8_0 projector before an F16 one, for an F16 model F16 or BF16 before F32;
//  4. then listing order (the hub lists by name: mmproj-BF16 before mmproj-F16).
//
// Step 2 is ours: llama.cpp applies it to its speculative-decoding sidecars but not to
// projectors, so for "repo:F16" with mmproj-BF16 and mmproj-F16 it takes BF16 (the
// first of equal bits) where this takes F16. Everywhere else the choice is llama.cpp's.
func pickProjector(files []File, model File, quant string) (File, bool) {
	var best File
	var bestDepth, bestDiff int
	var bestExact, found bool
	modelBits := quantBits(model.Path)
	for _, f := range files {
		if !isProjectorFile(f.Path) || f.Path == model.Path {
			continue
		}
		depth, ok := dirDepth(f.Path, model.Path)
		if !ok {
			continue
		}
		s, _ := ggufSplitInfo(f.Path)
		exact := quant != "" && s.tag == strings.ToUpper(quant)
		diff := quantBits(f.Path) - modelBits
		if diff < 0 {
			diff = -diff
		}
		better := !found || depth > bestDepth ||
			depth == bestDepth && exact && !bestExact ||
			depth == bestDepth && exact == bestExact && diff < bestDiff
		if better {
			best, bestDepth, bestDiff, bestExact, found = f, depth, diff, exact, true
		}
	}
	return best, found
}
