package llama

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/llamago/llamago/llama/gguf"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// FitToMemory runs llama.cpp's fitting: without GPUs it fits the context to the host
// memory (the trained context when it fits; the smallest allowed, reported as not
// fitting, when nothing does), and what it returns loads and runs.
func TestFitToMemory(t *testing.T) {
	path := synthModel(t, "llama-tiny", gguf.TypeF16)
	m0 := loadTiny(t)
	trained := m0.Info().NCtxTrain
	require.Positive(t, trained)

	res, err := FitToMemory(t.Context(), path, nil, nil, nil)
	require.NoError(t, err)
	t.Logf("fit: %s", res)
	assert.True(t, res.Fitted)
	assert.Equal(t, trained, res.Context.NCtx, "an unset context becomes the trained one when it fits")
	assert.Zero(t, res.HostTensors)
	assert.Equal(t, -1, res.Model.GPULayers, "nil parameters are llama.cpp's defaults, which the fit may change")

	m, err := LoadModel(t.Context(), path, &res.Model)
	require.NoError(t, err)
	defer m.Close()
	c, err := m.NewContext(&res.Context)
	require.NoError(t, err)
	defer c.Close()
	assert.Equal(t, trained, c.NCtx())

	// A context that is set stays as it is, and so do layers set to another than the default.
	res, err = FitToMemory(t.Context(), path, &ModelParams{GPULayers: 0}, &ContextParams{NCtx: 256}, nil)
	require.NoError(t, err)
	assert.Equal(t, 256, res.Context.NCtx)
	assert.Equal(t, 0, res.Model.GPULayers)

	// Nothing fits a margin larger than any machine's memory: the smallest context is
	// tried and the result says it does not fit.
	res, err = FitToMemory(t.Context(), path, nil, nil, &FitParams{MarginMiB: 1 << 40, MinNCtx: 64})
	require.NoError(t, err)
	assert.False(t, res.Fitted)
	assert.Contains(t, res.String(), "projected not to fit")

	_, err = FitToMemory(t.Context(), filepath.Join(t.TempDir(), "missing.gguf"), nil, nil, nil)
	var le *LoadError
	assert.ErrorAs(t, err, &le)
	_, err = FitToMemory(t.Context(), path, nil, nil, &FitParams{MarginMiB: -1})
	assert.ErrorIs(t, err, ErrInvalidParams)
	_, err = FitToMemory(t.Context(), path, &ModelParams{SplitMode: SplitTensor}, nil, nil)
	assert.ErrorIs(t, err, ErrInvalidParams)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err = FitToMemory(ctx, path, nil, nil, nil)
	assert.ErrorIs(t, err, ErrAborted)
}
