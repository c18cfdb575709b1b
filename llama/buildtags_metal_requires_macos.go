//go:build metal && !darwin

package llama

// The metal tag builds only on macOS (darwin).
var _ = build_tag_metal_requires_darwin_macOS
