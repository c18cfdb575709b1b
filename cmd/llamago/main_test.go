package main

import (
	"bytes"
	"flag"
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Bad arguments are refused before anything is fetched or built.
func TestRunRefusesBadArguments(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"uninstall"}, `unknown command "uninstall"`},
		{[]string{"install", "-backend", "rocm"}, `-backend "rocm": want cpu, cuda, metal or vulkan`},
		{[]string{"install", "-cpu", "haswell"}, `-cpu "haswell": want native or portable`},
		{[]string{"install", "-cuda-arch", "90"}, `with -backend cuda`},
		{[]string{"install", "-backend", "cuda", "-cuda-arch", "90; rm -rf /"}, `-cuda-arch "90; rm -rf /"`},
		{[]string{"install", "extra"}, `unexpected arguments ["extra"]`},
	} {
		var out, errOut bytes.Buffer
		err := run(t.Context(), c.args, &out, &errOut)
		require.Error(t, err, "%q", c.args)
		assert.Contains(t, err.Error(), c.want, "%q", c.args)
	}
	if runtime.GOOS != "darwin" {
		err := run(t.Context(), []string{"install", "-backend", "metal"}, &bytes.Buffer{}, &bytes.Buffer{})
		assert.ErrorContains(t, err, "builds only on macOS")
	}
	var errOut bytes.Buffer
	assert.ErrorIs(t, run(t.Context(), nil, &bytes.Buffer{}, &errOut), flag.ErrHelp)
	assert.Contains(t, errOut.String(), "go run github.com/llamago/llamago/cmd/llamago install")
}

// One build per backend and option set: the names the cache keeps them under.
func TestVariantNamesEveryOption(t *testing.T) {
	assert.Equal(t, "cpu-native", installOptions{Backend: "cpu", CPU: "native"}.variant())
	assert.Equal(t, "cpu-portable", installOptions{Backend: "cpu", CPU: "portable"}.variant())
	assert.Equal(t, "cuda-native-sm80_90", installOptions{Backend: "cuda", CPU: "native", CUDAArch: "80;90"}.variant())
}
