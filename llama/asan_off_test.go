//go:build !asan

package llama

const asanBuild = false
