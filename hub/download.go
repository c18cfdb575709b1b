package hub

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// transfer is one file to fetch into dst through the partial file tmp.
type transfer struct {
	name         string // for progress and errors
	url          string
	dst, tmp     string
	size         int64  // expected size; -1 when unknown
	sha256       string // expected content sha256 (lowercase hex); "" when unknown
	gitOID       string // expected git blob id, sha1("blob <size>\x00" + content); needs size
	noResume     bool   // the server said Accept-Ranges: none
	headerDigest bool   // take the sha256 from response headers when none is given
	hubHost      bool   // the URL is on the hub: a 401/403 gets the HF_TOKEN hint

	etag string // set from the GET response
}

// retryable marks an error worth another attempt (network failure, 5xx, 429).
type retryable struct{ error }

func (e retryable) Unwrap() error { return e.error }

// fileLocks serialises work on one destination path within the process, so two
// goroutines never append to the same partial file.
var fileLocks sync.Map // path -> *sync.Mutex

func lockPath(p string) func() {
	m, _ := fileLocks.LoadOrStore(p, new(sync.Mutex))
	mu := m.(*sync.Mutex)
	mu.Lock()
	return mu.Unlock
}

// fetch downloads t, retrying network failures; each attempt continues the partial file.
func (c *Client) fetch(ctx context.Context, t *transfer) error {
	r := c.reporter(t.name, t.size)
	delay := c.retryDelay
	if delay <= 0 {
		delay = 2 * time.Second
	}
	for attempt := 1; ; attempt++ {
		err := c.fetchOnce(ctx, t, r)
		if err == nil {
			r.finish()
			return nil
		}
		var re retryable
		if !errors.As(err, &re) || attempt >= c.attempts() || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return newError(nil, ctx.Err(), "downloading %s (partial file kept for resuming)", t.name)
		case <-time.After(delay):
		}
		delay *= 2
	}
}

// fetchOnce makes one attempt: continue tmp with a Range request (or start over when
// the server ignores it), hash everything, check size and digest, rename tmp to dst.
func (c *Client) fetchOnce(ctx context.Context, t *transfer, r *reporter) error {
	if err := os.MkdirAll(filepath.Dir(t.tmp), 0o755); err != nil {
		return newError(nil, err, "creating the cache directory")
	}
	if t.noResume {
		if err := removeIfExists(t.tmp); err != nil {
			return newError(nil, err, "removing a partial download the server cannot resume")
		}
	}
	f, err := os.OpenFile(t.tmp, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return newError(nil, err, "opening the partial download")
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return newError(nil, err, "opening the partial download")
	}
	have := st.Size()
	if t.size >= 0 && have > t.size {
		if have, err = 0, f.Truncate(0); err != nil {
			return newError(nil, err, "resetting the partial download %s", t.tmp)
		}
	}

	var resp *http.Response
	if t.size < 0 || have < t.size { // else the partial file is complete: just verify it
		if resp, have, err = c.request(ctx, t, f, have); err != nil {
			return err
		}
		if resp != nil {
			defer resp.Body.Close()
		}
	}
	if t.size < 0 && resp != nil && resp.ContentLength >= 0 {
		r.p.Total = have + resp.ContentLength
	}

	h, want, alg := t.hasher(resp)
	if h != nil && have > 0 {
		if _, err := io.Copy(h, io.NewSectionReader(f, 0, have)); err != nil {
			return newError(nil, err, "reading the partial download %s", t.tmp)
		}
	}
	if _, err := f.Seek(have, io.SeekStart); err != nil {
		return newError(nil, err, "seeking in the partial download %s", t.tmp)
	}
	r.begin(have)
	got := have
	if resp != nil {
		body := io.Reader(resp.Body)
		if t.size >= 0 {
			body = io.LimitReader(body, t.size-have+1) // one byte too many shows an oversized body
		}
		dw := &diskWriter{f: f}
		var w io.Writer = dw
		if h != nil {
			w = io.MultiWriter(dw, h)
		}
		n, err := io.CopyBuffer(&progressWriter{w: w, r: r, n: have}, body, make([]byte, 1<<20))
		got += n
		switch {
		case err == nil:
		case dw.err != nil:
			return newError(nil, dw.err, "writing %s", t.tmp)
		case ctx.Err() != nil:
			return newError(nil, ctx.Err(), "downloading %s (partial file kept for resuming)", t.name)
		default:
			return retryable{newError(nil, err, "downloading %s: the transfer broke off at %d bytes", t.name, got)}
		}
	}
	if t.size >= 0 && got > t.size {
		f.Close()
		removeIfExists(t.tmp)
		return newError(ErrChecksum, nil, "%s: the server sent more than the expected %d bytes; the partial download was deleted", t.name, t.size)
	}
	if t.size >= 0 && got < t.size {
		return retryable{newError(nil, io.ErrUnexpectedEOF, "downloading %s: the transfer ended at %d of %d bytes", t.name, got, t.size)}
	}
	if err := f.Sync(); err != nil {
		return newError(nil, err, "writing %s", t.tmp)
	}
	if err := f.Close(); err != nil {
		return newError(nil, err, "writing %s", t.tmp)
	}
	if h != nil {
		if sum := hex.EncodeToString(h.Sum(nil)); sum != want {
			removeIfExists(t.tmp)
			return newError(ErrChecksum, nil, "%s: %s mismatch: got %s, want %s; the download was deleted", t.name, alg, sum, want)
		}
	}
	if err := os.Rename(t.tmp, t.dst); err != nil {
		return newError(nil, err, "moving the download into place")
	}
	return nil
}

// request GETs t from offset have. It returns the response to read the body from and
// the offset the body starts at: have for a 206 that continues the partial file, 0 after
// the file was truncated because the server ignored the Range or answered it badly. A
// nil response means the partial file is already complete (416 with a matching size).
func (c *Client) request(ctx context.Context, t *transfer, f *os.File, have int64) (*http.Response, int64, error) {
	u, err := url.Parse(t.url)
	if err != nil {
		return nil, 0, newError(nil, err, "bad download URL")
	}
	for try := 0; try < 2; try++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.url, nil)
		if err != nil {
			return nil, 0, newError(nil, err, "bad download request")
		}
		req.Header.Set("User-Agent", userAgent)
		if c.sendsTokenTo(u) {
			req.Header.Set("Authorization", "Bearer "+c.Token)
		}
		if have > 0 {
			req.Header.Set("Range", "bytes="+strconv.FormatInt(have, 10)+"-")
		}
		resp, err := c.httpClient().Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return nil, 0, newError(nil, ctx.Err(), "downloading %s (partial file kept for resuming)", t.name)
			}
			return nil, 0, retryable{newError(nil, err, "downloading %s", t.name)}
		}
		t.etag = resp.Header.Get("ETag")
		switch {
		case resp.StatusCode == http.StatusOK:
			if have > 0 { // the server ignored the Range: start over
				if err := f.Truncate(0); err != nil {
					resp.Body.Close()
					return nil, 0, newError(nil, err, "resetting the partial download %s", t.tmp)
				}
			}
			return resp, 0, nil
		case resp.StatusCode == http.StatusPartialContent && have > 0:
			start, total, ok := parseContentRange(resp.Header.Get("Content-Range"))
			if ok && start == have && (t.size < 0 || total < 0 || total == t.size) {
				return resp, have, nil
			}
		case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable && have > 0:
			if _, total, ok := parseContentRange(resp.Header.Get("Content-Range")); ok && total == have {
				resp.Body.Close()
				return nil, have, nil
			}
		default:
			defer resp.Body.Close()
			return nil, 0, t.statusError(resp)
		}
		// a Range answer that does not continue the file: start over without one
		resp.Body.Close()
		if err := f.Truncate(0); err != nil {
			return nil, 0, newError(nil, err, "resetting the partial download %s", t.tmp)
		}
		have = 0
	}
	return nil, 0, newError(nil, nil, "downloading %s: unusable answers to a Range request", t.name)
}

func (t *transfer) statusError(resp *http.Response) error {
	serr := statusError(resp)
	switch {
	case statusKind(resp.StatusCode) == ErrUnauthorized && t.hubHost:
		return newError(ErrUnauthorized, serr, "downloading %s: access denied: %s", t.name, tokenHint)
	case statusKind(resp.StatusCode) == ErrUnauthorized:
		return newError(ErrUnauthorized, serr, "downloading %s: access denied", t.name)
	case resp.StatusCode == http.StatusNotFound:
		return newError(ErrNotFound, serr, "downloading %s: not found", t.name)
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		return retryable{newError(nil, serr, "downloading %s", t.name)}
	}
	return newError(nil, serr, "downloading %s", t.name)
}

// hasher returns the hash to check the file with, the expected hex digest and the
// algorithm's name; nil when nothing is known to check against.
func (t *transfer) hasher(resp *http.Response) (hash.Hash, string, string) {
	if t.sha256 == "" && t.headerDigest && resp != nil {
		t.sha256 = digestFromHeader(resp.Header)
	}
	switch {
	case t.sha256 != "":
		return sha256.New(), t.sha256, "sha256"
	case t.gitOID != "" && t.size >= 0:
		h := sha1.New()
		fmt.Fprintf(h, "blob %d\x00", t.size)
		return h, t.gitOID, "git object id"
	}
	return nil, "", ""
}

// digestFromHeader returns the sha256 a server states for the whole file, as lowercase
// hex: Repr-Digest (RFC 9530), Digest (RFC 3230), or the hub's X-Linked-Etag for LFS
// files; "" when none does.
func digestFromHeader(h http.Header) string {
	fromB64 := func(s string) string {
		b, err := base64.StdEncoding.DecodeString(strings.Trim(strings.TrimSpace(s), ":"))
		if err != nil || len(b) != sha256.Size {
			return ""
		}
		return hex.EncodeToString(b)
	}
	for _, name := range []string{"Repr-Digest", "Digest"} {
		for _, v := range h.Values(name) {
			for item := range strings.SplitSeq(v, ",") {
				alg, val, ok := strings.Cut(strings.TrimSpace(item), "=")
				if ok && strings.EqualFold(alg, "sha-256") {
					if d := fromB64(val); d != "" {
						return d
					}
				}
			}
		}
	}
	if e := strings.ToLower(strings.Trim(h.Get("X-Linked-Etag"), `"`)); isHex(e, 64) {
		return e
	}
	return ""
}

// parseContentRange parses "bytes START-END/TOTAL" or "bytes */TOTAL"; start and
// total are -1 where not given.
func parseContentRange(s string) (start, total int64, ok bool) {
	rest, found := strings.CutPrefix(strings.TrimSpace(s), "bytes ")
	if !found {
		return 0, 0, false
	}
	rng, tot, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, false
	}
	start, total = -1, -1
	var err error
	if tot != "*" {
		if total, err = strconv.ParseInt(tot, 10, 64); err != nil {
			return 0, 0, false
		}
	}
	if rng != "*" {
		first, _, found := strings.Cut(rng, "-")
		if !found {
			return 0, 0, false
		}
		if start, err = strconv.ParseInt(first, 10, 64); err != nil {
			return 0, 0, false
		}
	}
	return start, total, true
}

// diskWriter remembers a write error so it is not mistaken for a network failure.
type diskWriter struct {
	f   *os.File
	err error
}

func (w *diskWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	if err != nil {
		w.err = err
	}
	return n, err
}

// progressWriter counts bytes into a reporter.
type progressWriter struct {
	w io.Writer
	r *reporter
	n int64
}

func (w *progressWriter) Write(p []byte) (int, error) {
	n, err := w.w.Write(p)
	w.n += int64(n)
	w.r.update(w.n)
	return n, err
}

const progressInterval = 100 * time.Millisecond

// reporter throttles Progress calls for one file.
type reporter struct {
	fn   func(Progress)
	p    Progress
	last time.Time
}

func (c *Client) reporter(name string, size int64) *reporter {
	r := &reporter{fn: c.Progress, p: Progress{Name: name}}
	if size > 0 {
		r.p.Total = size
	}
	return r
}

func (r *reporter) begin(n int64) {
	r.p.Downloaded = n
	if r.fn != nil {
		r.last = time.Now()
		r.fn(r.p)
	}
}

func (r *reporter) update(n int64) {
	r.p.Downloaded = n
	if r.fn != nil && time.Since(r.last) >= progressInterval {
		r.last = time.Now()
		r.fn(r.p)
	}
}

func (r *reporter) finish() {
	if r.p.Total == 0 {
		r.p.Total = r.p.Downloaded
	}
	r.p.Done = true
	if r.fn != nil {
		r.fn(r.p)
	}
}

// reportCached tells the callback a file came from the cache.
func (c *Client) reportCached(name string, size int64) {
	if c.Progress != nil {
		c.Progress(Progress{Name: name, Downloaded: size, Total: size, Cached: true, Done: true})
	}
}
