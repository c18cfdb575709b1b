// Sampling a row with a chain (and a grammar kept outside it): the candidates a chain
// starting with top-k keeps are found in one pass over the logits, or expanded from the
// groups device_topk.cpp left.
#include "shim.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "barrier.h"

using lgo::set_err;

namespace {

void fill_candidates(const float * logits, llama_token_data * cur, int32_t n_vocab) {
    for (llama_token id = 0; id < n_vocab; id++) {
        cur[id] = llama_token_data{id, logits[id], 0.0f};
    }
}

// top_k_candidates writes the k (<= n_vocab) largest logits to cur, sorted by logit
// descending, and returns k. It is what llama.cpp's top-k stage leaves, found in one
// pass over the logits instead of building and partially sorting all n_vocab
// candidates (3-4x faster for a 128k vocabulary): a min-heap holds the best k so far, and
// blocks of 32 logits none of which beats the heap's smallest are skipped with vector
// compares.
size_t top_k_candidates(const float * logits, int32_t n_vocab, int32_t k, llama_token_data * cur) {
    const auto by_logit = [](const llama_token_data & a, const llama_token_data & b) { return a.logit > b.logit; };
    k = std::min(k, n_vocab);
    for (llama_token id = 0; id < k; id++) {
        cur[id] = llama_token_data{id, logits[id], 0.0f};
    }
    std::make_heap(cur, cur + k, by_logit); // cur[0]: the smallest kept logit
    float      floor = cur[0].logit;
    const auto offer = [&](llama_token id) {
        if (logits[id] > floor) {
            std::pop_heap(cur, cur + k, by_logit);
            cur[k - 1] = llama_token_data{id, logits[id], 0.0f};
            std::push_heap(cur, cur + k, by_logit);
            floor = cur[0].logit;
        }
    };
    // GCC/Clang vector extensions: 4-wide compares, SSE2/NEON without extra flags.
    typedef float   f32x4 __attribute__((vector_size(16)));
    typedef int32_t i32x4 __attribute__((vector_size(16)));
    constexpr int32_t block = 32;
    int32_t           id    = k;
    for (; id + block <= n_vocab; id += block) {
        i32x4 above = {0, 0, 0, 0};
        for (int32_t j = 0; j < block; j += 4) {
            f32x4 v;
            std::memcpy(&v, logits + id + j, sizeof v);
            above |= v > floor;
        }
        if (above[0] | above[1] | above[2] | above[3]) {
            for (int32_t j = 0; j < block; j++) {
                offer(id + j);
            }
        }
    }
    for (; id < n_vocab; id++) {
        offer(id);
    }
    std::sort_heap(cur, cur + k, by_logit);
    return (size_t) k;
}

// expand_groups turns a row narrowed on the device (device_topk.cpp) into its top_k
// candidates in cur, sorted by logit descending, and returns how many; 0 when the row
// does not have the shape that narrowing gives.
size_t expand_groups(const lgo_row * row, int32_t n_vocab, int32_t top_k, llama_token_data * cur) {
    int32_t groups, size;
    lgo_topk_geometry(n_vocab, &groups, &size);
    const size_t in_groups = row->n_ids * size;
    if (top_k < 1 || row->cand_logits == nullptr || in_groups + n_vocab - (size_t) groups * size != row->n_cand) {
        return 0;
    }
    for (size_t i = 0; i < row->n_ids; i++) {
        if (row->ids[i] < 0 || row->ids[i] >= groups) {
            return 0;
        }
    }
    // The best top_k of the narrowed logits, then their token ids: the j-th logit of the
    // i-th group is token ids[i]*size + j; the tail's follow the groups.
    const size_t k = top_k_candidates(row->cand_logits, (int32_t) row->n_cand, top_k, cur);
    for (size_t i = 0; i < k; i++) {
        const size_t at = (size_t) cur[i].id;
        cur[i].id = at < in_groups ? row->ids[at / size] * size + (llama_token) (at % size)
                                   : groups * size + (llama_token) (at - in_groups);
    }
    return k;
}

bool grammar_allows(struct llama_sampler * grammar, llama_token token) {
    llama_token_data       one = {token, 1.0f, 0.0f};
    llama_token_data_array arr = {&one, 1, -1, false};
    llama_sampler_apply(grammar, &arr);
    return arr.data[0].logit != -INFINITY;
}

}  // namespace

extern "C" {

llama_token lgo_sample_row(struct llama_sampler * chain, struct llama_sampler * grammar, const lgo_row * row,
                           llama_token_data * cur, int32_t n_vocab, int32_t top_k, char ** err) {
    return lgo::catch_all(err, (llama_token) -1, [&]() -> llama_token {
        if (row->token != LLAMA_TOKEN_NULL) {
            llama_sampler_accept(chain, row->token);
            return row->token;
        }
        const float * logits = row->logits;
        size_t        n      = (size_t) n_vocab;
        if (logits == nullptr && row->n_ids != row->n_cand) {
            n = expand_groups(row, n_vocab, top_k, cur);
            if (n == 0) {
                set_err(err, "the row's candidates do not match the device's top-k narrowing");
                return -1;
            }
        } else if (logits == nullptr) {
            n = std::min(row->n_cand, n);
            for (size_t i = 0; i < n; i++) {
                cur[i] = llama_token_data{row->ids[i], row->cand_logits ? row->cand_logits[i] : 0.0f,
                                          row->probs ? row->probs[i] : 0.0f};
            }
        } else if (top_k > 0) {
            // The chain starts with top-k (or greedy): hand it the candidates that stage keeps.
            n = top_k_candidates(logits, n_vocab, top_k, cur);
        } else {
            fill_candidates(logits, cur, n_vocab);
        }
        llama_token_data_array arr = {cur, n, -1, top_k > 0 && (logits != nullptr || row->n_ids != row->n_cand)};
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
    return lgo::catch_all(err, -1, [&]() -> int {
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
    return lgo::catch_all(err, -1, [&]() -> int {
        if (grammar != nullptr) {
            llama_sampler_apply(grammar, arr);
        }
        llama_sampler_apply(chain, arr);
        return 0;
    });
}

}  // extern "C"
