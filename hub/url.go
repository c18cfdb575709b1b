package hub

import (
	"context"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// DownloadURL fetches a file by URL, as llama.cpp's -mu does, and returns its path. With
// dst empty the file goes into the file cache (Client.FileCacheDir) under the URL's last
// path element, query and fragment removed; otherwise to dst. A URL naming the first part
// of a split model ("-00001-of-00003.gguf") brings all parts, into the same directory.
//
// A file already there is kept unless the server's ETag differs from the one saved in
// "<path>.etag" when it was fetched; offline it is always kept. Partial downloads
// resume. The content is checked only when the server states a sha256 (Repr-Digest,
// Digest or X-Linked-Etag). The token is sent only to the hub endpoint's host.
func (c *Client) DownloadURL(ctx context.Context, rawURL, dst string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", newError(ErrInvalidRef, err, "invalid model URL %q: want an http:// or https:// URL", maskURL(rawURL))
	}
	urls := urlParts(rawURL)
	paths := make([]string, len(urls))
	for i, pu := range urls {
		name := urlFileName(pu)
		if dst != "" && len(urls) == 1 {
			paths[i] = dst
			continue
		}
		if !filepath.IsLocal(name) || strings.ContainsAny(name, `/\`) {
			return "", newError(ErrInvalidRef, nil, "cannot name a file after the URL %s: pass a destination path", maskURL(pu))
		}
		if dst != "" {
			paths[i] = filepath.Join(filepath.Dir(dst), name)
			continue
		}
		dir, err := c.fileCacheDir()
		if err != nil {
			return "", err
		}
		paths[i] = filepath.Join(dir, name)
	}
	for i := range urls {
		if err := c.fetchURL(ctx, urls[i], paths[i]); err != nil {
			return "", err
		}
	}
	return paths[0], nil
}

// urlParts lists all parts when raw names a part of a split GGUF, else raw alone
// (download.cpp common_download_get_all_parts).
func urlParts(raw string) []string {
	s, ok := ggufSplitInfo(raw)
	if !ok || s.count <= 1 {
		return []string{raw}
	}
	parts := make([]string, s.count)
	for i := range parts {
		parts[i] = s.partName(i + 1)
	}
	return parts
}

// urlFileName is the last path element of a URL without query or fragment (arg.cpp
// get_default_local_path).
func urlFileName(raw string) string {
	raw, _, _ = strings.Cut(raw, "#")
	raw, _, _ = strings.Cut(raw, "?")
	return raw[strings.LastIndex(raw, "/")+1:]
}

// headInfo is what a HEAD request says about a URL.
type headInfo struct {
	etag     string
	size     int64 // -1 when unknown
	sha256   string
	noRanges bool
}

func (c *Client) fetchURL(ctx context.Context, raw, path string) error {
	defer lockPath(path)()
	name := filepath.Base(path)
	st, statErr := os.Stat(path)
	if c.Offline {
		if statErr == nil {
			c.reportCached(name, st.Size())
			return nil
		}
		return newError(ErrNotCached, nil, "offline: %s is not in the cache (%s)", name, path)
	}
	u, _ := url.Parse(raw)
	hd, headErr := c.head(ctx, u)
	if headErr != nil && ctx.Err() != nil {
		return newError(nil, ctx.Err(), "downloading %s", name)
	}
	if statErr == nil {
		if headErr != nil || hd.etag == "" || hd.etag == readETag(path) {
			c.reportCached(name, st.Size())
			return nil
		}
		if err := os.Remove(path); err != nil { // changed on the server
			return newError(nil, err, "removing the outdated %s", path)
		}
	}
	t := &transfer{name: name, url: raw, dst: path, tmp: path + inProgressSuffix, size: -1, headerDigest: true}
	t.hubHost = c.onHub(u)
	if headErr == nil {
		t.size, t.sha256, t.noResume = hd.size, hd.sha256, hd.noRanges
	}
	if err := c.fetch(ctx, t); err != nil {
		return err
	}
	etag := hd.etag
	if etag == "" {
		etag = t.etag
	}
	if etag != "" {
		if err := writeFileAtomic(path+".etag", etag); err != nil {
			return newError(nil, err, "saving the ETag of %s", name)
		}
	}
	return nil
}

// head asks the server about u. Any failure only means less is known: the GET that
// follows reports errors.
func (c *Client) head(ctx context.Context, u *url.URL) (headInfo, error) {
	hd := headInfo{size: -1}
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, u.String(), nil)
	if err != nil {
		return hd, err
	}
	req.Header.Set("User-Agent", userAgent)
	if c.sendsTokenTo(u) {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return hd, err
	}
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode >= 300 {
		return hd, statusError(resp)
	}
	hd.etag = resp.Header.Get("ETag")
	hd.size = resp.ContentLength
	hd.sha256 = digestFromHeader(resp.Header)
	hd.noRanges = strings.EqualFold(resp.Header.Get("Accept-Ranges"), "none")
	return hd, nil
}

// onHub reports whether u is on the hub endpoint's host.
func (c *Client) onHub(u *url.URL) bool {
	ep, err := url.Parse(c.endpoint())
	return err == nil && strings.EqualFold(ep.Host, u.Host)
}

func readETag(path string) string {
	b, err := os.ReadFile(path + ".etag")
	if err != nil {
		return ""
	}
	s, _, _ := strings.Cut(string(b), "\n")
	return s
}
