// C++ glue: exception barriers around llama.cpp calls that can throw, and the one place
// that touches upstream's unstable common/ C++ API (JSON in, text out).
#include "shim.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "common/json-schema-to-grammar.h"

namespace {

void set_err(char ** err, const char * msg) {
    if (err != nullptr) {
        *err = strdup(msg);
    }
}

// catch_all runs f, turning any exception into an error message and the code fail.
template <typename F, typename R>
R catch_all(char ** err, R fail, F && f) {
    try {
        return f();
    } catch (const std::exception & e) {
        set_err(err, e.what());
    } catch (...) {
        set_err(err, "unknown C++ exception");
    }
    return fail;
}

void fill_candidates(const float * logits, llama_token_data * cur, int32_t n_vocab) {
    for (llama_token id = 0; id < n_vocab; id++) {
        cur[id] = llama_token_data{id, logits[id], 0.0f};
    }
}

bool grammar_allows(struct llama_sampler * grammar, llama_token token) {
    llama_token_data       one = {token, 1.0f, 0.0f};
    llama_token_data_array arr = {&one, 1, -1, false};
    llama_sampler_apply(grammar, &arr);
    return arr.data[0].logit != -INFINITY;
}

float log_sum_exp(const float * logits, int32_t n_vocab) {
    float max = -INFINITY;
    for (int32_t i = 0; i < n_vocab; i++) {
        max = std::max(max, logits[i]);
    }
    double sum = 0;
    for (int32_t i = 0; i < n_vocab; i++) {
        sum += std::exp((double) (logits[i] - max));
    }
    return max + (float) std::log(sum);
}

}  // namespace

extern "C" {

llama_token lgo_sample(struct llama_sampler * chain, struct llama_sampler * grammar, struct llama_context * ctx,
                       int32_t idx, llama_token_data * cur, int32_t n_vocab, char ** err) {
    return catch_all(err, (llama_token) -1, [&]() -> llama_token {
        // A backend (on-device) sampler may already have picked the token.
        const llama_token backend = llama_get_sampled_token_ith(ctx, idx);
        if (backend != LLAMA_TOKEN_NULL) {
            llama_sampler_accept(chain, backend);
            return backend;
        }
        // A chain whose leading stages ran on the device leaves their candidates (with
        // probabilities or logits); the chain then skips those stages on the CPU.
        const float *       dev_probs  = llama_get_sampled_probs_ith(ctx, idx);
        const float *       dev_logits = llama_get_sampled_logits_ith(ctx, idx);
        const llama_token * dev_ids    = llama_get_sampled_candidates_ith(ctx, idx);
        const float *       logits     = nullptr;
        size_t              n          = (size_t) n_vocab;
        if (dev_ids != nullptr && (dev_probs != nullptr || dev_logits != nullptr)) {
            n = dev_probs ? llama_get_sampled_probs_count_ith(ctx, idx) : llama_get_sampled_logits_count_ith(ctx, idx);
            n = std::min(n, (size_t) n_vocab);
            for (size_t i = 0; i < n; i++) {
                cur[i] = llama_token_data{dev_ids[i], dev_logits ? dev_logits[i] : 0.0f, dev_probs ? dev_probs[i] : 0.0f};
            }
        } else {
            logits = llama_get_logits_ith(ctx, idx);
            if (logits == nullptr) {
                set_err(err, "no logits for this batch index");
                return -1;
            }
            fill_candidates(logits, cur, n_vocab);
        }
        llama_token_data_array arr = {cur, n, -1, false};
        llama_sampler_apply(chain, &arr);
        if (grammar != nullptr && logits != nullptr &&
            (arr.selected < 0 || !grammar_allows(grammar, arr.data[arr.selected].id))) {
            fill_candidates(logits, cur, n_vocab);
            arr = {cur, (size_t) n_vocab, -1, false};
            llama_sampler_apply(grammar, &arr);
            llama_sampler_apply(chain, &arr);
            if (arr.selected >= 0 && arr.data[arr.selected].logit == -INFINITY) {
                set_err(err, "the grammar allows no token here");
                return -1;
            }
        }
        if (arr.selected < 0 || (size_t) arr.selected >= arr.size) {
            set_err(err, "the sampler chain selected no token (add a final stage such as Greedy or Dist)");
            return -1;
        }
        const llama_token token = arr.data[arr.selected].id;
        if (grammar != nullptr) {
            llama_sampler_accept(grammar, token);
        }
        llama_sampler_accept(chain, token);
        return token;
    });
}

int lgo_accept(struct llama_sampler * chain, struct llama_sampler * grammar, llama_token token, char ** err) {
    return catch_all(err, -1, [&]() -> int {
        if (grammar != nullptr) {
            if (!grammar_allows(grammar, token)) {
                set_err(err, "the grammar forbids this token here");
                return 1;
            }
            llama_sampler_accept(grammar, token);
        }
        llama_sampler_accept(chain, token);
        return 0;
    });
}

int lgo_apply(struct llama_sampler * chain, struct llama_sampler * grammar, llama_token_data_array * arr, char ** err) {
    return catch_all(err, -1, [&]() -> int {
        if (grammar != nullptr) {
            llama_sampler_apply(grammar, arr);
        }
        llama_sampler_apply(chain, arr);
        return 0;
    });
}

struct llama_sampler * lgo_grammar_init(const struct llama_vocab * vocab, const char * grammar, const char * root,
                                        const char ** patterns, size_t n_patterns,
                                        const llama_token * tokens, size_t n_tokens, char ** err) {
    return catch_all(err, (struct llama_sampler *) nullptr, [&]() -> struct llama_sampler * {
        struct llama_sampler * s = (n_patterns == 0 && n_tokens == 0)
            ? llama_sampler_init_grammar(vocab, grammar, root)
            : llama_sampler_init_grammar_lazy_patterns(vocab, grammar, root, patterns, n_patterns, tokens, n_tokens);
        if (s == nullptr) {
            set_err(err, "invalid grammar");
        }
        return s;
    });
}

float lgo_logprob(const float * logits, int32_t n_vocab, llama_token token) {
    return logits[token] - log_sum_exp(logits, n_vocab);
}

void lgo_top_logprobs(const float * logits, int32_t n_vocab, int32_t n, llama_token * ids, float * logprobs) {
    const float lse = log_sum_exp(logits, n_vocab);
    std::vector<llama_token> order(n_vocab);
    for (llama_token i = 0; i < n_vocab; i++) {
        order[i] = i;
    }
    n = std::min(n, n_vocab);
    std::partial_sort(order.begin(), order.begin() + n, order.end(),
                      [&](llama_token a, llama_token b) { return logits[a] > logits[b]; });
    for (int32_t i = 0; i < n; i++) {
        ids[i]      = order[i];
        logprobs[i] = logits[order[i]] - lse;
    }
}

char * lgo_json_schema_to_grammar(const char * schema, char ** err) {
    return catch_all(err, (char *) nullptr, [&]() -> char * {
        const std::string grammar = json_schema_to_grammar(common_json::parse(schema));
        return strdup(grammar.c_str());
    });
}

}  // extern "C"
