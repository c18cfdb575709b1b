// The tokens on-device samplers picked for many rows of a decode, read after one wait.
//
// llama.cpp's public getter (llama_get_sampled_token_ith) waits for the device on every
// call: a stream synchronize per row, 64 per step when 64 sequences pick on the GPU.
// This calls llama_context's own members (llama.cpp's internal header, pinned with the
// rest of llama.cpp; scripts/build-llama.sh copies it): the same lookup, one wait.
#include "llama-context.h"
#include "shim.h"

extern "C" int lgo_sampled_tokens(struct llama_context * ctx, const int32_t * idx, int32_t n, llama_token * out) {
    try {
        ctx->synchronize();
        for (int32_t i = 0; i < n; i++) {
            out[i] = ctx->get_sampled_token_ith(idx[i]);
        }
        return 0;
    } catch (...) {
        return -1;
    }
}
