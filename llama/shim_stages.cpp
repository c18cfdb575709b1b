// Building sampler chains: llama.cpp's llama_sampler_init_* and chain functions are C++
// that allocates (and, for DRY, tokenizes), so Go reaches them only through here.
#include "shim.h"

#include <memory>

#include "barrier.h"

namespace {

// sampler_ptr frees a sampler that nothing took over yet.
using sampler_ptr = std::unique_ptr<llama_sampler, decltype(&llama_sampler_free)>;

// init_stage is llama_sampler_init_<kind> of s, as listed at lgo_stage_kind.
llama_sampler * init_stage(const lgo_stage & s) {
    switch (s.kind) {
        case LGO_STAGE_GREEDY:      return llama_sampler_init_greedy();
        case LGO_STAGE_DIST:        return llama_sampler_init_dist(s.seed);
        case LGO_STAGE_TOP_K:       return llama_sampler_init_top_k(s.i[0]);
        case LGO_STAGE_TOP_P:       return llama_sampler_init_top_p(s.f[0], s.min_keep);
        case LGO_STAGE_MIN_P:       return llama_sampler_init_min_p(s.f[0], s.min_keep);
        case LGO_STAGE_TYPICAL:     return llama_sampler_init_typical(s.f[0], s.min_keep);
        case LGO_STAGE_TEMP:        return llama_sampler_init_temp(s.f[0]);
        case LGO_STAGE_TEMP_EXT:    return llama_sampler_init_temp_ext(s.f[0], s.f[1], s.f[2]);
        case LGO_STAGE_XTC:         return llama_sampler_init_xtc(s.f[0], s.f[1], s.min_keep, s.seed);
        case LGO_STAGE_TOP_N_SIGMA: return llama_sampler_init_top_n_sigma(s.f[0]);
        case LGO_STAGE_MIROSTAT:    return llama_sampler_init_mirostat(s.n_vocab, s.seed, s.f[0], s.f[1], s.i[0]);
        case LGO_STAGE_MIROSTAT_V2: return llama_sampler_init_mirostat_v2(s.seed, s.f[0], s.f[1]);
        case LGO_STAGE_ADAPTIVE_P:  return llama_sampler_init_adaptive_p(s.f[0], s.f[1], s.seed);
        case LGO_STAGE_PENALTIES:   return llama_sampler_init_penalties(s.n_vocab, s.i[0], s.f[0], s.f[1], s.f[2]);
        case LGO_STAGE_DRY:
            return llama_sampler_init_dry(s.vocab, s.f[0], s.f[1], s.i[0], s.i[1], s.strs, s.n_strs);
        case LGO_STAGE_LOGIT_BIAS:  return llama_sampler_init_logit_bias(s.n_vocab, s.n_bias, s.bias);
        case LGO_STAGE_INFILL:      return llama_sampler_init_infill(s.vocab);
    }
    return nullptr;
}

llama_sampler * new_chain(bool timings) {
    llama_sampler_chain_params params = llama_sampler_chain_default_params();
    params.no_perf                    = !timings;
    return llama_sampler_chain_init(params);
}

}  // namespace

extern "C" {

struct llama_sampler * lgo_chain_new(bool timings, char ** err) {
    return lgo::catch_all(err, (llama_sampler *) nullptr, [&] { return new_chain(timings); });
}

int lgo_chain_add(struct llama_sampler * chain, const lgo_stage * stage, char ** err) {
    return lgo::catch_all(err, -1, [&] {
        sampler_ptr s(init_stage(*stage), llama_sampler_free);
        if (!s) {
            lgo::set_err(err, "llama.cpp made no sampler for this stage");
            return -1;
        }
        llama_sampler_chain_add(chain, s.get());  // adds it, or throws and leaves it to s
        s.release();
        return 0;
    });
}

struct llama_sampler * lgo_chain_of(struct llama_sampler * stage) {
    return lgo::catch_all(nullptr, (llama_sampler *) nullptr, [&]() -> llama_sampler * {
        sampler_ptr s(stage, llama_sampler_free);
        if (!s) {
            return nullptr;
        }
        sampler_ptr chain(new_chain(false), llama_sampler_free);
        if (!chain) {
            return nullptr;
        }
        llama_sampler_chain_add(chain.get(), s.get());
        s.release();
        return chain.release();
    });
}

struct llama_sampler * lgo_grammar_init(const struct llama_vocab * vocab, const char * grammar, const char * root,
                                        const char ** patterns, size_t n_patterns,
                                        const llama_token * tokens, size_t n_tokens, char ** err) {
    return lgo::catch_all(err, (llama_sampler *) nullptr, [&]() -> llama_sampler * {
        llama_sampler * s = (n_patterns == 0 && n_tokens == 0)
            ? llama_sampler_init_grammar(vocab, grammar, root)
            : llama_sampler_init_grammar_lazy_patterns(vocab, grammar, root, patterns, n_patterns, tokens, n_tokens);
        if (s == nullptr) {
            lgo::set_err(err, "invalid grammar");
        }
        return s;
    });
}

int lgo_sampler_reset(struct llama_sampler * s, char ** err) {
    return lgo::catch_all(err, -1, [&] {
        llama_sampler_reset(s);
        return 0;
    });
}

int lgo_set_sampler(struct llama_context * ctx, llama_seq_id seq, struct llama_sampler * chain, char ** err) {
    return lgo::catch_all(err, -1, [&] { return llama_set_sampler(ctx, seq, chain) ? 1 : 0; });
}

}  // extern "C"
