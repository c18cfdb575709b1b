//go:build asan

package llama

// asanBuild: the tests run with go test -asan (AddressSanitizer).
const asanBuild = true
