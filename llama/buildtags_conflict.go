//go:build (cuda && metal) || (cuda && vulkan) || (metal && vulkan)

package llama

// One GPU backend per binary: the build tags cuda, metal and vulkan exclude each other.
var _ = build_tags_cuda_metal_vulkan_are_mutually_exclusive
