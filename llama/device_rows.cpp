// Reading what a decode left for its output rows: the logits, or what on-device
// samplers made of them.
//
// llama.cpp's public getters (llama_get_sampled_token_ith and friends) each wait for the
// device: a stream synchronize per call. A row narrowed on the device takes six of them
// to read, and 64 sequences picking on the GPU take 64. These functions call
// llama_context's own members instead (llama.cpp's internal header, pinned with the rest
// of llama.cpp; scripts/build-llama.sh copies it): the same lookups after one wait.
//
// This is the only file that includes a header of llama.cpp's src/. Internal members change
// without notice, so what it relies on is checked when it compiles (below the includes):
// the internal headers it was written against, and the type of every member it calls.
#include "native.h"

#include <type_traits>

#include "barrier.h"
#include "llama-context.h"
#include "shim.h"

// --- The pin check. scripts/build-llama.sh writes the sha256 of the internal headers it
// copied (llama.cpp's src/*.h) into llamago-internal-tree.h, next to them: the same for a git
// checkout and an archive of the pinned tree. After a pin bump, re-check the functions of
// this file against the new tree's llama-context.h and llama-context.cpp (what each member
// returns when nothing was sampled on the device, which of them wait), then set this to the
// hash `bash scripts/build-llama.sh internal-tree` prints for the new tree.
// A tree of your own that you checked yourself builds with CGO_CXXFLAGS=-DLLAMAGO_SKIP_TREE_CHECK
// (the member types below are checked all the same).
#define LGO_CHECKED_HEADERS "68c1976c5692bd4ac1ac5a639a9984125d633c13d06cb48bd6dcd35badd5f3e8" // tree 0424752f

#if __has_include("llamago-internal-tree.h")
#include "llamago-internal-tree.h"
#else
#error "llamago: llama-internal/llamago-internal-tree.h is missing (a llama.cpp build from before it): run `bash scripts/build-llama.sh internal-tree` in the llamago checkout (seconds; `go run github.com/llamago/llamago/cmd/llamago install` does it for its builds), or build llama.cpp again"
#endif
#ifndef LLAMAGO_INTERNAL_HEADERS
#error "llamago: llama-internal/llamago-internal-tree.h is from an older llamago: run `bash scripts/build-llama.sh internal-tree`"
#endif

namespace {

constexpr bool same_string(const char * a, const char * b) {
    for (; *a != '\0' && *a == *b; a++, b++) {
    }
    return *a == *b;
}

}  // namespace

#ifndef LLAMAGO_SKIP_TREE_CHECK
static_assert(same_string(LLAMAGO_INTERNAL_HEADERS, LGO_CHECKED_HEADERS),
              "llama.cpp's internal headers are not those device_rows.cpp was checked against "
              "(LGO_CHECKED_HEADERS): llama.cpp's llama_context may have changed: re-check device_rows.cpp "
              "against the new pin");
#endif

// --- The members called, with the types they had in the checked headers.
#define LGO_CHECK_MEMBER(name, type)                                                       \
    static_assert(std::is_same_v<decltype(&llama_context::name), type>,                    \
                  "llama.cpp's llama_context changed (llama_context::" #name " is no longer " \
                  #type "): re-check device_rows.cpp against the new pin")
LGO_CHECK_MEMBER(synchronize, void (llama_context::*)());
LGO_CHECK_MEMBER(get_logits_ith, float * (llama_context::*)(int32_t));
LGO_CHECK_MEMBER(get_sampled_token_ith, llama_token (llama_context::*)(int32_t));
LGO_CHECK_MEMBER(get_sampled_logits_ith, float * (llama_context::*)(int32_t));
LGO_CHECK_MEMBER(get_sampled_logits_count, size_t (llama_context::*)(int32_t));
LGO_CHECK_MEMBER(get_sampled_probs_ith, float * (llama_context::*)(int32_t));
LGO_CHECK_MEMBER(get_sampled_probs_count, size_t (llama_context::*)(int32_t));
LGO_CHECK_MEMBER(get_sampled_candidates_ith, const llama_token * (llama_context::*)(int32_t));
LGO_CHECK_MEMBER(get_sampled_candidates_count, size_t (llama_context::*)(int32_t));
#undef LGO_CHECK_MEMBER

extern "C" {

int lgo_sampled_tokens(struct llama_context * ctx, const int32_t * idx, int32_t n, llama_token * out) {
    return lgo::catch_all(nullptr, -1, [&] {
        ctx->synchronize();
        for (int32_t i = 0; i < n; i++) {
            out[i] = ctx->get_sampled_token_ith(idx[i]);
        }
        return 0;
    });
}

int lgo_row_get(struct llama_context * ctx, int32_t idx, bool device, bool wait, lgo_row * row, char ** err) {
    return lgo::catch_all(err, -1, [&] {
        *row       = lgo_row{};
        row->token = LLAMA_TOKEN_NULL;
        if (wait) {
            ctx->synchronize();
        }
        if (device) {
            // A backend (on-device) sampler may already have picked the token.
            row->token = ctx->get_sampled_token_ith(idx);
            if (row->token != LLAMA_TOKEN_NULL) {
                return 0;
            }
            // A chain whose leading stages ran on the device leaves their candidates (with
            // probabilities or logits); the chain then skips those stages on the CPU.
            row->ids         = ctx->get_sampled_candidates_ith(idx);
            row->probs       = ctx->get_sampled_probs_ith(idx);
            row->cand_logits = ctx->get_sampled_logits_ith(idx);
            if (row->ids != nullptr && (row->probs != nullptr || row->cand_logits != nullptr)) {
                row->n_cand = row->probs ? ctx->get_sampled_probs_count(idx) : ctx->get_sampled_logits_count(idx);
                row->n_ids  = ctx->get_sampled_candidates_count(idx);
                return 0;
            }
            // A device chain that only rescaled the logits leaves all of them, rescaled
            // (what llama_get_logits_ith returns then).
            row->logits = row->cand_logits;
        }
        if (row->logits == nullptr) {
            row->logits = ctx->get_logits_ith(idx);
        }
        row->ids = nullptr;
        row->probs = nullptr;
        row->cand_logits = nullptr;
        if (row->logits == nullptr) {
            lgo::set_err(err, "no logits for this batch index");
            return -1;
        }
        return 0;
    });
}

const float * lgo_logits_ith(struct llama_context * ctx, int32_t idx, bool device) {
    return lgo::catch_all(nullptr, (const float *) nullptr, [&]() -> const float * {
        ctx->synchronize();
        if (device) {
            const uint32_t n_vocab = (uint32_t) llama_vocab_n_tokens(llama_model_get_vocab(llama_get_model(ctx)));
            if (ctx->get_sampled_token_ith(idx) != LLAMA_TOKEN_NULL) {
                return nullptr;
            }
            const size_t n = ctx->get_sampled_logits_count(idx);
            if (n > 0 && n < n_vocab) {
                return nullptr;
            }
            if (float * rescaled = ctx->get_sampled_logits_ith(idx)) {
                return rescaled;  // as llama_get_logits_ith
            }
        }
        return ctx->get_logits_ith(idx);
    });
}

}  // extern "C"
