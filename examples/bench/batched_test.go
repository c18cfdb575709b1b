package main

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/llamago/llamago/internal/llamacpp"
	"github.com/llamago/llamago/llama"
)

func runBatchedOurs(t *testing.T, args ...string) []byte {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(t.Context(), append([]string{"batched", "-m", tinyModel}, args...), &out, &errOut)
	require.NoError(t, err, "stderr: %s", errOut.String())
	return out.Bytes()
}

func TestBatched(t *testing.T) {
	// 16 tokens: a reader starved for the whole generation (all tokens in one delta,
	// nothing to time) is then unlikely even on a loaded machine.
	out := runBatchedOurs(t, "-npp", "16", "-ntg", "16", "-npl", "1,3", "-t", "1", "-o", "jsonl")
	var rows []batchedResult
	for line := range strings.Lines(string(out)) {
		var r batchedResult
		require.NoError(t, json.Unmarshal([]byte(line), &r), line)
		rows = append(rows, r)
	}
	require.Len(t, rows, 2)
	for i, pl := range []int{1, 3} {
		r := rows[i]
		assert.Equal(t, 16, r.PP)
		assert.Equal(t, 16, r.TG)
		assert.Equal(t, pl, r.PL)
		assert.Equal(t, pl*32, r.NKV)
		assert.Positive(t, r.SpeedPP)
		assert.Positive(t, r.SpeedTG)
		assert.InDelta(t, r.T, r.TPP+r.TTG, 1e-6)
	}

	// -raw adds the binding-only loop; -cpuprofile writes a profile.
	var stdout, stderr bytes.Buffer
	prof := filepath.Join(t.TempDir(), "cpu.prof")
	require.NoError(t, run(t.Context(), []string{"batched", "-m", tinyModel, "-npp", "8", "-ntg", "16", "-npl", "2", "-t", "1", "-raw", "-cpuprofile", prof}, &stdout, &stderr))
	for _, mode := range []string{"none", "cpu", "device"} {
		assert.Regexp(t, `raw loop pp=8 tg=16 pl=2 sampling=`+mode+`: S_TG [0-9.]+ t/s; per step [0-9.]+ ms`, stderr.String())
	}
	assert.Regexp(t, `engine pp=8 tg=16 pl=2: [0-9]+ steps`, stderr.String())
	assert.FileExists(t, prof)

	_, err := parseBatched([]string{"-sampling", "nucleus"})
	assert.ErrorContains(t, err, "greedy or default")
	_, err = parseBatched([]string{"-npl", "x"})
	assert.Error(t, err)
}

// With llama-batched-bench of this build, -upstream prints both side by side.
func TestBatchedUpstream(t *testing.T) {
	bin, err := llamacpp.Tool(llama.Backend, "llama-batched-bench")
	require.NoError(t, err)
	out := runBatchedOurs(t, "-npp", "16", "-ntg", "16", "-npl", "2", "-t", "1", "-upstream", bin)
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	require.GreaterOrEqual(t, len(lines), 4, "%s", out)
	row := strings.Fields(strings.ReplaceAll(lines[len(lines)-1], "|", " "))
	require.Len(t, row, 9, lines[len(lines)-1])
	assert.Equal(t, []string{"16", "16", "2"}, row[:3])
	assert.True(t, bytes.Contains(out, []byte("S_TG llama-batched-bench")))
}
