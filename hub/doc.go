// Package hub fetches GGUF models by name from the Hugging Face hub (or any server that
// speaks its API), the way llama.cpp's -hf, -hff, -mu and --offline flags do, with the
// multimodal projector -hf brings along for vision and audio models.
//
//	c := hub.NewClient() // HF_TOKEN, MODEL_ENDPOINT/HF_ENDPOINT, LLAMA_CACHE/HF_HOME/..., LLAMA_ARG_OFFLINE
//	path, err := c.Download(ctx, "ggml-org/gemma-3-4b-it-GGUF:Q4_K_M")
//	mmproj, err := c.DownloadProjector(ctx, "ggml-org/gemma-3-4b-it-GGUF:Q4_K_M", "") // errors.Is(err, hub.ErrNoProjector): text only
//
// # Choosing files
//
// A reference is "<user>/<repo>[:quant]". The quant tag is matched case-insensitively
// against the repository's file paths (followed by '.' or '-'); without one, Q4_K_M is
// tried, then Q8_0, then the first GGUF model file. Projector (mmproj), imatrix and
// speculative-decoding sidecars (mtp-, eagle3-, dflash-, dspark-) are never chosen as
// the model. A split model ("name-00001-of-00003.gguf") brings all its parts; the first
// part's path is returned, which is what llama.cpp loads.
//
// # Multimodal projectors
//
// A vision or audio model needs its projector, a GGUF file of the same repository whose
// name contains "mmproj" (any case). DownloadProjector fetches the one that goes with the
// model a reference chooses, as llama-server -hf does unless given --mmproj or
// --no-mmproj, and ResolveProjector names it. The choice is llama.cpp's: a projector in
// the model's directory or above, the nearest directory first; then, with a quant in the
// reference, one tagged exactly so (our addition: llama.cpp takes the first of equal bits
// here, mmproj-BF16 before mmproj-F16 for "repo:F16"); then the one whose quant bits are
// nearest the model's (Q8_0 before F16 for a Q4_K_M model); then the first listed. A
// repository without a projector gives an error matching ErrNoProjector, which callers
// take as "text only".
//
// # Cache layout
//
// Downloads from the hub go into llama.cpp's cache, which is also huggingface_hub's, so
// llama-cli, llama-server, the Python tools and this package share files:
//
//	<cache>/models--<user>--<repo>/
//	    refs/main                       commit id of the branch the files came from
//	    blobs/<oid>                     file content, named by its LFS sha256 (git oid otherwise)
//	    blobs/<oid>.downloadInProgress  a partial download, resumed by the next attempt
//	    snapshots/<commit>/<path>       relative symlink to ../../blobs/<oid>
//
// <cache> is $LLAMA_CACHE, else $HF_HUB_CACHE, $HUGGINGFACE_HUB_CACHE, $HF_HOME/hub,
// $XDG_CACHE_HOME/huggingface/hub, ~/.cache/huggingface/hub. Files fetched by URL
// (DownloadURL, llama.cpp's -mu) go into llama.cpp's plain cache directory instead
// ($LLAMA_CACHE, else $XDG_CACHE_HOME/llama.cpp or ~/.cache/llama.cpp on Linux,
// ~/Library/Caches/llama.cpp on macOS, %LOCALAPPDATA%\llama.cpp on Windows), named by
// the URL's last path element, with the server's ETag in "<name>.etag".
//
// # Integrity, resumption, offline use
//
// Every hub file is checked against the sha256 the hub lists for it (llama.cpp itself
// does not check) before it is moved into place; a mismatch deletes the partial file. An
// interrupted download leaves its partial file and continues with an HTTP Range request
// next time (or on an automatic retry). With Offline set, or when the hub cannot be
// reached, files come from the cache only; a projector that was never fetched is then
// ErrNoProjector (and ErrNotCached). Projectors take the same path as model files:
// checked, resumed, cached, shared with llama.cpp.
package hub
