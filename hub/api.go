package hub

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
)

const userAgent = "llamago-hub/1"

// The hub API calls llama.cpp makes (hf-cache.cpp get_repo_commit, get_repo_files):
//
//	GET <endpoint>api/models/<repo>/refs                        -> {"branches":[{"name","targetCommit"}]}
//	GET <endpoint>api/models/<repo>/tree/<commit>?recursive=true -> [{"type","path","size","oid","lfs":{"oid","size"}}]
//	GET <endpoint><repo>/resolve/<commit>/<path>                -> the file (Range supported)
//
// The tree listing is paged by a Link: <...>; rel="next" header on large repositories;
// unlike llama.cpp, the pages are followed.

type refsResponse struct {
	Branches []struct {
		Name         string `json:"name"`
		TargetCommit string `json:"targetCommit"`
	} `json:"branches"`
}

type treeEntry struct {
	Type string `json:"type"`
	Path string `json:"path"`
	Size *int64 `json:"size"`
	OID  string `json:"oid"`
	LFS  *struct {
		OID  string `json:"oid"`
		Size *int64 `json:"size"`
	} `json:"lfs"`
}

const maxAPIBody = 64 << 20
const maxTreePages = 1000

// listing is a repository's files at the commit of one branch.
type listing struct {
	branch, commit string
	files          []File
}

// listRepo lists repo's files through the API.
func (c *Client) listRepo(ctx context.Context, repo, cacheDir string) (*listing, error) {
	ep := c.endpoint()
	var refs refsResponse
	if _, err := c.getJSON(ctx, ep+"api/models/"+repo+"/refs", &refs, repo); err != nil {
		return nil, err
	}
	l := &listing{}
	for _, b := range refs.Branches {
		if !isLocalPath(b.Name) || !isHex(b.TargetCommit, 40) {
			continue
		}
		if b.Name == "main" {
			l.branch, l.commit = b.Name, strings.ToLower(b.TargetCommit)
			break
		}
		if l.branch == "" {
			l.branch, l.commit = b.Name, strings.ToLower(b.TargetCommit)
		}
	}
	if l.commit == "" {
		return nil, newError(ErrNotFound, nil, "repository %s has no branch with a valid commit", repo)
	}
	next := ep + "api/models/" + repo + "/tree/" + l.commit + "?recursive=true"
	for page := 0; next != ""; page++ {
		if page == maxTreePages {
			return nil, newError(nil, nil, "listing %s: more than %d pages", repo, maxTreePages)
		}
		var entries []treeEntry
		var err error
		if next, err = c.getJSON(ctx, next, &entries, repo); err != nil {
			return nil, err
		}
		for _, e := range entries {
			if f, ok := c.fileFromEntry(e, repo, l.commit, cacheDir); ok {
				l.files = append(l.files, f)
			}
		}
	}
	return l, nil
}

// fileFromEntry turns a tree entry into a File; entries that are not files, or whose
// path or oid is unsafe, are skipped (as llama.cpp does).
func (c *Client) fileFromEntry(e treeEntry, repo, commit, cacheDir string) (File, bool) {
	if e.Type != "file" || !isLocalPath(e.Path) {
		return File{}, false
	}
	f := File{Repo: repo, Commit: commit, Path: e.Path, Size: -1, OID: strings.ToLower(e.OID)}
	if e.Size != nil {
		f.Size = *e.Size
	}
	if e.LFS != nil {
		f.OID = strings.ToLower(e.LFS.OID)
		f.SHA256 = f.OID
		if e.LFS.Size != nil {
			f.Size = *e.LFS.Size
		}
	}
	if f.OID != "" && !isHex(f.OID, 40) && !isHex(f.OID, 64) {
		return File{}, false
	}
	if f.SHA256 != "" && !isHex(f.SHA256, 64) {
		return File{}, false
	}
	f.URL = c.endpoint() + repo + "/resolve/" + commit + "/" + escapePath(e.Path)
	f.CachePath = snapshotPath(cacheDir, repo, commit, e.Path)
	return f, true
}

// getJSON GETs an API URL into v and returns the next page's URL from a Link header.
func (c *Client) getJSON(ctx context.Context, rawURL string, v any, repo string) (next string, err error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", newError(nil, err, "bad API URL")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return "", newError(nil, err, "bad API request")
	}
	req.Header.Set("User-Agent", userAgent)
	req.Header.Set("Accept", "application/json")
	if c.sendsTokenTo(u) {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.httpClient().Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return "", newError(nil, ctx.Err(), "listing %s", repo)
		}
		return "", newError(nil, err, "cannot reach the hub at %s", maskURL(c.endpoint()))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		serr := statusError(resp)
		switch statusKind(resp.StatusCode) {
		case ErrUnauthorized:
			return "", newError(ErrUnauthorized, serr, "access to %s denied (or it does not exist): %s", repo, tokenHint)
		case ErrNotFound:
			return "", newError(ErrNotFound, serr, "repository %s not found", repo)
		}
		return "", newError(nil, serr, "listing %s", repo)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxAPIBody)).Decode(v); err != nil {
		if ctx.Err() != nil {
			return "", newError(nil, ctx.Err(), "listing %s", repo)
		}
		return "", newError(nil, err, "listing %s: bad JSON from %s", repo, maskURL(rawURL))
	}
	return nextLink(resp, u)
}

// nextLink returns the rel="next" target of the Link header, resolved against base; it
// must stay on base's host so the token never follows a link elsewhere.
func nextLink(resp *http.Response, base *url.URL) (string, error) {
	for _, h := range resp.Header.Values("Link") {
		for l := range strings.SplitSeq(h, ",") {
			target, params, ok := strings.Cut(l, ";")
			if !ok || !strings.Contains(strings.ReplaceAll(params, " ", ""), `rel="next"`) {
				continue
			}
			target = strings.TrimSpace(target)
			target = strings.TrimSuffix(strings.TrimPrefix(target, "<"), ">")
			u, err := base.Parse(target)
			if err != nil {
				return "", newError(nil, err, "bad Link header")
			}
			if u.Scheme != base.Scheme || u.Host != base.Host {
				return "", newError(nil, nil, "Link header points to another host: %s", maskURL(u.String()))
			}
			return u.String(), nil
		}
	}
	return "", nil
}

// statusError builds a *StatusError from a response, reading the hub's
// {"error": "..."} message (or the start of a text body).
func statusError(resp *http.Response) *StatusError {
	e := &StatusError{Method: resp.Request.Method, URL: maskURL(resp.Request.URL.String()), Code: resp.StatusCode}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	var j struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &j) == nil && j.Error != "" {
		e.Message = j.Error
	} else if s := strings.TrimSpace(string(body)); s != "" && !strings.HasPrefix(s, "<") {
		e.Message = truncate(s, 200)
	}
	return e
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// isLocalPath reports whether a slash-separated repository path stays inside the
// directory it is joined to (hf-cache.cpp is_valid_subpath).
func isLocalPath(p string) bool {
	return p != "" && !strings.Contains(p, "\\") && filepath.IsLocal(filepath.FromSlash(p))
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// escapePath escapes each segment of a slash-separated path for a URL.
func escapePath(p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}

// isStatus reports whether err carries an HTTP status error.
func isStatus(err error) bool {
	var se *StatusError
	return errors.As(err, &se)
}
