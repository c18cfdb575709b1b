package hub

import (
	"context"
	"errors"
	"os"
)

// File is one file of a hub repository.
type File struct {
	Repo      string // "user/repo"
	Commit    string // commit the listing came from
	Path      string // slash-separated path inside the repository
	Size      int64  // bytes; -1 when unknown
	SHA256    string // LFS sha256, lowercase hex; empty for files not in LFS
	OID       string // the hub's object id: SHA256 for LFS files, the git blob id otherwise; names the blob in the cache
	URL       string // download URL (<endpoint><repo>/resolve/<commit>/<path>); empty for files listed from the cache
	CachePath string // where the file is, or will be, in the cache: snapshots/<commit>/<path>
}

// plan is what a reference resolves to.
type plan struct {
	ref       Ref
	cacheDir  string
	branch    string
	commit    string
	files     []File // the model's files, first part first; or the projector alone
	fromCache bool   // listed from the cache: no download needed
}

// what a plan fetches
const (
	wantModel     = false
	wantProjector = true
)

// Resolve lists the files that ref ("<user>/<repo>[:quant]") names: the GGUF model
// llama.cpp would choose, with all parts of a split model in order, their sizes and
// sha256 from the hub's LFS metadata. Offline, or when the hub cannot be reached, the
// files come from the cache (with sizes from disk, digests from blob names).
func (c *Client) Resolve(ctx context.Context, ref string) ([]File, error) {
	p, err := c.plan(ctx, ref, "", wantModel)
	if err != nil {
		return nil, err
	}
	return p.files, nil
}

// ResolveProjector names the multimodal projector (an "mmproj" GGUF) that goes with the
// model of ref: the model Download(ref) chooses, or with modelFile set the file
// DownloadFile(ref, modelFile) fetches. The choice is llama.cpp's (see the package doc).
// A repository without one is an error matching ErrNoProjector.
func (c *Client) ResolveProjector(ctx context.Context, ref, modelFile string) (File, error) {
	if err := checkFile(modelFile); err != nil {
		return File{}, err
	}
	p, err := c.plan(ctx, ref, modelFile, wantProjector)
	if err != nil {
		return File{}, err
	}
	return p.files[0], nil
}

// Download fetches the model ref names ("<user>/<repo>[:quant]", as llama.cpp's -hf)
// into the cache and returns the path of its first (or only) file. Files already cached
// with the right size are not fetched again; new ones are checked against the hub's
// sha256. An interrupted download (error, cancelled ctx) keeps its partial file, and the
// next call continues it.
func (c *Client) Download(ctx context.Context, ref string) (string, error) {
	return c.download(ctx, ref, "", wantModel)
}

// DownloadFile is Download for one named file of the repository instead of a quant
// (llama.cpp's -hff); a quant in ref is ignored. A part of a split model brings all
// parts, and the first part's path is returned.
func (c *Client) DownloadFile(ctx context.Context, ref, file string) (string, error) {
	if file == "" || !isLocalPath(file) {
		return "", newError(ErrInvalidRef, nil, "invalid file path %q: want a relative path inside the repository", file)
	}
	return c.download(ctx, ref, file, wantModel)
}

// DownloadProjector fetches the multimodal projector ResolveProjector names into the
// cache and returns its path, as llama-server -hf does for a multimodal model (unless
// given --mmproj or --no-mmproj). It goes the way of Download: cached files are reused,
// new ones checked against the hub's sha256, partial ones resumed; offline, or with the
// hub out of reach, only the cache is used.
//
// A repository without a projector (offline: a cache without one) is an error matching
// ErrNoProjector, and no download: callers go on without images and audio, as llama.cpp
// does. Offline or out of reach it also matches ErrNotCached, since the repository may
// hold a projector that was never fetched.
func (c *Client) DownloadProjector(ctx context.Context, ref, modelFile string) (string, error) {
	if err := checkFile(modelFile); err != nil {
		return "", err
	}
	return c.download(ctx, ref, modelFile, wantProjector)
}

// checkFile checks the model file named for a projector; "" (none: the quant's) passes.
func checkFile(file string) error {
	if file != "" && !isLocalPath(file) {
		return newError(ErrInvalidRef, nil, "invalid file path %q: want a relative path inside the repository", file)
	}
	return nil
}

func (c *Client) download(ctx context.Context, ref, file string, projector bool) (string, error) {
	p, err := c.plan(ctx, ref, file, projector)
	if err != nil {
		return "", err
	}
	if p.fromCache {
		for _, f := range p.files {
			c.reportCached(f.Path, f.Size)
		}
		return p.files[0].CachePath, nil
	}
	for _, f := range p.files {
		if err := c.fetchHubFile(ctx, p.cacheDir, f); err != nil {
			return "", err
		}
	}
	if err := writeRef(p.cacheDir, p.ref.Repo, p.branch, p.commit); err != nil {
		return "", err
	}
	return p.files[0].CachePath, nil
}

func (c *Client) plan(ctx context.Context, refStr, file string, projector bool) (*plan, error) {
	ref, err := ParseRef(refStr)
	if err != nil {
		return nil, err
	}
	dir, err := c.cacheDir()
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, newError(nil, err, "resolving %s", ref)
	}
	if c.Offline {
		return planCached(ref, file, dir, "offline: ", projector)
	}
	l, err := c.listRepo(ctx, ref.Repo, dir)
	if err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		// As llama.cpp does: when the hub does not answer, use what the cache holds.
		p, cerr := planCached(ref, file, dir, "", projector)
		if cerr == nil {
			return p, nil
		}
		if projector && errors.Is(cerr, ErrNoProjector) {
			// The model is cached, its projector is not: say why it cannot be fetched.
			return nil, newError(errNoCachedProjector, err, "no multimodal projector of %s in the cache", ref.Repo)
		}
		return nil, err
	}
	files, err := chooseFiles(ref, file, l.files, ErrNotFound, ref.Repo)
	if err != nil {
		return nil, err
	}
	if projector {
		f, ok := pickProjector(l.files, files[0], projectorTag(ref, file))
		if !ok {
			return nil, newError(ErrNoProjector, nil, "%s has no multimodal projector for %s (no GGUF file named *mmproj* in its directory or above)", ref.Repo, files[0].Path)
		}
		files = []File{f}
	}
	return &plan{ref: ref, cacheDir: dir, branch: l.branch, commit: l.commit, files: files}, nil
}

func planCached(ref Ref, file, dir, prefix string, projector bool) (*plan, error) {
	l := cachedListing(dir, ref.Repo)
	if l == nil {
		return nil, newError(ErrNotCached, nil, "%s%s is not in the cache (nothing under %s)", prefix, ref, repoPath(dir, ref.Repo))
	}
	files, err := chooseFiles(ref, file, l.files, ErrNotCached, "the cached snapshot of "+ref.Repo)
	if err != nil {
		return nil, newError(nil, err, "%s%s is not in the cache", prefix, ref)
	}
	if projector {
		f, ok := pickProjector(l.files, files[0], projectorTag(ref, file))
		if !ok {
			return nil, newError(errNoCachedProjector, nil, "%sno multimodal projector of %s in the cache (nothing named *mmproj* beside %s)", prefix, ref.Repo, files[0].Path)
		}
		files = []File{f}
	}
	return &plan{ref: ref, cacheDir: dir, commit: l.commit, files: files, fromCache: true}, nil
}

// projectorTag is the quant a projector may match: the reference's, unless a model file
// was named (-hff), which overrides the quant.
func projectorTag(ref Ref, file string) string {
	if file != "" {
		return ""
	}
	return ref.Quant
}

// fetchHubFile makes f present in the cache: reuse the snapshot entry or the blob when
// their size is right, else download the blob (verified) and link it into the snapshot.
func (c *Client) fetchHubFile(ctx context.Context, cacheDir string, f File) error {
	defer lockPath(f.CachePath)()
	sizeOK := func(n int64) bool { return f.Size < 0 || n == f.Size }
	if st, err := os.Stat(f.CachePath); err == nil {
		if sizeOK(st.Size()) {
			c.reportCached(f.Path, st.Size())
			return nil
		}
		if err := removeIfExists(f.CachePath); err != nil {
			return newError(nil, err, "removing a cached file of the wrong size")
		}
	}
	dst := f.CachePath
	if f.OID != "" {
		dst = blobPath(cacheDir, f.Repo, f.OID)
		if st, err := os.Stat(dst); err == nil {
			if sizeOK(st.Size()) {
				c.reportCached(f.Path, st.Size())
				return finalize(dst, f.CachePath)
			}
			if err := removeIfExists(dst); err != nil {
				return newError(nil, err, "removing a cached file of the wrong size")
			}
		}
	}
	t := &transfer{
		name:    f.Path,
		url:     f.URL,
		dst:     dst,
		tmp:     dst + inProgressSuffix,
		size:    f.Size,
		sha256:  f.SHA256,
		hubHost: true,
	}
	if f.SHA256 == "" && isHex(f.OID, 40) {
		t.gitOID = f.OID
	}
	if err := c.fetch(ctx, t); err != nil {
		return err
	}
	return finalize(dst, f.CachePath)
}
