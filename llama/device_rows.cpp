// Reading what a decode left for its output rows: the logits, or what on-device
// samplers made of them.
//
// llama.cpp's public getters (llama_get_sampled_token_ith and friends) each wait for the
// device: a stream synchronize per call. A row narrowed on the device takes six of them
// to read, and 64 sequences picking on the GPU take 64. These functions call
// llama_context's own members instead (llama.cpp's internal header, pinned with the rest
// of llama.cpp; scripts/build-llama.sh copies it): the same lookups after one wait.
#include "native.h"

#include "barrier.h"
#include "llama-context.h"
#include "shim.h"

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
