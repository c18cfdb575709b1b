package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// scripts/soak-server.sh runs TestSoak for minutes; make test runs it for seconds.
var soakFor = flag.Duration("soak", 20*time.Second, "how long TestSoak drives the server")

// rssBound is how much the server's resident memory may grow over a soak, from its
// size after serving each soak prompt once: allocator caches and HTTP buffers, not a
// per-request leak (which shows after minutes of scripts/soak-server.sh).
const rssBound = 64 << 20

// 64 streaming clients for -soak: a third complete their requests, a third disconnect
// mid-stream, a third cancel; the small queue overflows into 429s. Every completed
// stream equals the same request served alone, and afterwards the server is back where
// it started: slots free, KV cells accounted for and erasable to 0, goroutines and
// memory back. Then a shutdown with streams in flight ends each one cleanly.
func TestSoak(t *testing.T) {
	s := startServer(t, "-np", "4", "-queue", "8", "-slot-save-path", t.TempDir(), "-shutdown-grace", "3s")

	var alone struct{ Texts []string }
	s.client(t, "soakAlone", &alone)
	require.NotEmpty(t, alone.Texts)
	base := s.metrics(t)
	expect, err := json.Marshal(alone.Texts)
	require.NoError(t, err)

	var r struct {
		Completed, Disconnected, Cancelled, CancelledAfterEnd, Rejected, Torn int
		Mismatches                                                            []struct {
			Prompt    int
			Got, Want string
		}
		Errors []apiErr
	}
	start := time.Now()
	s.client(t, "soak", &r, "CLIENTS=64", fmt.Sprintf("SECONDS=%g", soakFor.Seconds()), "EXPECT="+string(expect))
	t.Logf("soak %s: %d completed (each equal to its request alone), %d disconnected mid-stream, %d cancelled (%d ended before the cancel), %d refused with 429",
		time.Since(start).Round(time.Second), r.Completed, r.Disconnected, r.Cancelled, r.CancelledAfterEnd, r.Rejected)
	assert.Empty(t, r.Errors)
	assert.Empty(t, r.Mismatches, "greedy output under load equals the request alone")
	assert.Zero(t, r.Torn, "no stream ended without a finish reason or an error")
	assert.Positive(t, r.Completed)
	assert.Positive(t, r.Disconnected)
	assert.Positive(t, r.Cancelled)
	assert.Positive(t, r.Rejected, "the queue overflowed")

	// The engine notices dropped connections at its next step.
	require.Eventually(t, func() bool {
		m := s.metrics(t)
		return m["llamago_slots_active"] == 0 && m["llamago_queue_depth"] == 0
	}, 30*time.Second, 100*time.Millisecond, "every slot free")
	slots := s.slots(t)
	for _, sl := range slots {
		assert.False(t, sl.IsProcessing)
		assert.Equal(t, sl.KVTokens, sl.CachedTokens, "slot %d: the engine's count is llama.cpp's", sl.ID)
	}
	for _, sl := range slots {
		status, _ := s.post(t, fmt.Sprintf("/slots/%d?action=erase", sl.ID), nil)
		assert.Equal(t, http.StatusOK, status)
	}
	for _, sl := range s.slots(t) {
		assert.Zero(t, sl.KVTokens, "slot %d erased", sl.ID)
	}
	var end map[string]float64
	require.Eventually(t, func() bool {
		end = s.metrics(t)
		return end["go_goroutines"] <= base["go_goroutines"]
	}, 30*time.Second, 100*time.Millisecond, "goroutines back to %v (now %v)", base["go_goroutines"], end["go_goroutines"])
	assert.Zero(t, end["llamago_kv_cache_cells_used"])
	rss0, rss1 := base["process_resident_memory_bytes"], end["process_resident_memory_bytes"]
	t.Logf("after the soak: goroutines %v (before %v), RSS %.1f MiB (before %.1f MiB), requests %v, 429s %v",
		end["go_goroutines"], base["go_goroutines"], rss1/(1<<20), rss0/(1<<20), end["llamago_requests_total"], end["llamago_requests_rejected_total"])
	assert.LessOrEqual(t, rss1, rss0+rssBound, "RSS grew by %.1f MiB", (rss1-rss0)/(1<<20))

	// Shutdown with 4 streams generating and 4 queued: within the grace period the short
	// ones finish, the rest end with an error event; none is cut off mid-stream.
	out := s.terminateDuring(t, "inflight", "STREAMS=8", "SLOTS=4")
	var in struct {
		Streams []struct {
			Finish *string
			Error  *apiErr
		}
	}
	require.NoError(t, json.Unmarshal(out, &in), string(out))
	finished, ended := 0, 0
	for i, st := range in.Streams {
		switch {
		case st.Finish != nil && st.Error == nil:
			finished++
		case st.Error != nil && st.Finish == nil:
			ended++
			assert.Contains(t, st.Error.Message, "shutting down", "stream %d", i)
		default:
			t.Errorf("stream %d ended with finish %v and error %v", i, st.Finish, st.Error)
		}
	}
	t.Logf("shutdown with 8 streams: %d finished within the grace period, %d ended with an error event", finished, ended)
	assert.Positive(t, finished)
	assert.Positive(t, ended)
}

// metrics reads the server's Prometheus metrics: name (without labels) -> value.
func (s *runningServer) metrics(t *testing.T) map[string]float64 {
	t.Helper()
	req, err := http.NewRequest("GET", s.url+"/metrics", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+testKey)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") || strings.Contains(name, "{") {
			continue
		}
		if v, err := strconv.ParseFloat(value, 64); err == nil {
			out[name] = v
		}
	}
	require.NoError(t, sc.Err())
	return out
}

type slotJSON struct {
	ID           int  `json:"id"`
	IsProcessing bool `json:"is_processing"`
	CachedTokens int  `json:"n_cached_tokens"`
	KVTokens     int  `json:"n_kv_tokens"`
}

// slots reads GET /slots.
func (s *runningServer) slots(t *testing.T) []slotJSON {
	t.Helper()
	var out []slotJSON
	require.Equal(t, http.StatusOK, s.call(t, http.MethodGet, "/slots", nil, &out))
	require.NotEmpty(t, out)
	return out
}
