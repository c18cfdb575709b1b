package hub

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// The hub-layout cache, shared with llama.cpp and huggingface_hub (hf-cache.cpp):
//
//	<cache>/models--<user>--<repo>/refs/<branch>            commit id
//	<cache>/models--<user>--<repo>/blobs/<oid>              content
//	<cache>/models--<user>--<repo>/snapshots/<commit>/<path> -> ../../blobs/<oid>

// inProgressSuffix marks a partial download, as llama.cpp names it, so either tool
// resumes the other's.
const inProgressSuffix = ".downloadInProgress"

// repoFolder is hf-cache.cpp repo_to_folder_name: "user/repo" -> "models--user--repo".
func repoFolder(repo string) string {
	return "models--" + strings.ReplaceAll(repo, "/", "--")
}

func repoPath(cacheDir, repo string) string {
	return filepath.Join(cacheDir, repoFolder(repo))
}

func snapshotPath(cacheDir, repo, commit, p string) string {
	return filepath.Join(repoPath(cacheDir, repo), "snapshots", commit, filepath.FromSlash(p))
}

func blobPath(cacheDir, repo, oid string) string {
	return filepath.Join(repoPath(cacheDir, repo), "blobs", oid)
}

// writeRef records the commit a branch points at (refs/<branch>), atomically.
func writeRef(cacheDir, repo, branch, commit string) error {
	p := filepath.Join(repoPath(cacheDir, repo), "refs", filepath.FromSlash(branch))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return newError(nil, err, "writing the cache ref")
	}
	if err := writeFileAtomic(p, commit); err != nil {
		return newError(nil, err, "writing the cache ref")
	}
	return nil
}

// writeFileAtomic writes content to a temporary file of its own (concurrent writers
// never share one) and renames it over path.
func writeFileAtomic(path, content string) error {
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	_, err = f.WriteString(content)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// cachedRef returns the commit of refs/main, else of the first other valid ref
// (hf-cache.cpp get_cached_ref).
func cachedRef(repoDir string) string {
	refs := filepath.Join(repoDir, "refs")
	var names []string
	filepath.WalkDir(refs, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			rel, _ := filepath.Rel(refs, p)
			names = append(names, filepath.ToSlash(rel))
		}
		return nil
	})
	slices.SortStableFunc(names, func(a, b string) int { // main first
		switch {
		case a == b:
			return 0
		case a == "main":
			return -1
		case b == "main":
			return 1
		}
		return strings.Compare(a, b)
	})
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(refs, filepath.FromSlash(n)))
		if err != nil {
			continue
		}
		if commit, _, _ := strings.Cut(string(b), "\n"); isHex(strings.TrimSpace(commit), 40) {
			return strings.ToLower(strings.TrimSpace(commit))
		}
	}
	return ""
}

// cachedListing lists the files of repo's cached snapshot (hf-cache.cpp
// get_cached_files); nil when nothing is cached. Dangling links are left out. Sizes come
// from the files, and the oid from the blob a link points to.
func cachedListing(cacheDir, repo string) *listing {
	dir := repoPath(cacheDir, repo)
	commit := cachedRef(dir)
	if commit == "" {
		return nil
	}
	snap := filepath.Join(dir, "snapshots", commit)
	l := &listing{commit: commit}
	filepath.WalkDir(snap, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(p, inProgressSuffix) {
			return nil
		}
		st, err := os.Stat(p) // follows the link to the blob
		if err != nil || !st.Mode().IsRegular() {
			return nil
		}
		rel, _ := filepath.Rel(snap, p)
		f := File{Repo: repo, Commit: commit, Path: filepath.ToSlash(rel), Size: st.Size(), CachePath: p}
		if target, err := os.Readlink(p); err == nil {
			if oid := strings.ToLower(filepath.Base(target)); isHex(oid, 64) || isHex(oid, 40) {
				f.OID = oid
				if len(oid) == 64 {
					f.SHA256 = oid
				}
			}
		}
		l.files = append(l.files, f)
		return nil
	})
	if len(l.files) == 0 {
		return nil
	}
	return l
}

// finalize makes the snapshot entry for a downloaded blob: a relative symlink, or, where
// links cannot be made, the blob itself moved there (hf-cache.cpp finalize_file).
func finalize(blob, snap string) error {
	if blob == snap {
		return nil
	}
	if _, err := os.Stat(snap); err == nil {
		return nil
	}
	if _, err := os.Lstat(snap); err == nil { // a dangling link
		if err := os.Remove(snap); err != nil {
			return newError(nil, err, "replacing a broken cache link")
		}
	}
	if err := os.MkdirAll(filepath.Dir(snap), 0o755); err != nil {
		return newError(nil, err, "creating the snapshot directory")
	}
	if rel, err := filepath.Rel(filepath.Dir(snap), blob); err == nil {
		if os.Symlink(rel, snap) == nil {
			return nil
		}
	}
	if err := os.Rename(blob, snap); err != nil {
		return newError(nil, err, "moving the download into the snapshot")
	}
	return nil
}

// removeIfExists removes p, ignoring a missing file.
func removeIfExists(p string) error {
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
