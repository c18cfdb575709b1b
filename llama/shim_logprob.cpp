// Probabilities read off a row of logits, for Go's logprobs and speculative drafts. Plain
// arithmetic over the row: only lgo_top_logprobs allocates, behind the barrier.
#include "shim.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "barrier.h"

namespace {

float log_sum_exp(const float * logits, int32_t n_vocab) noexcept {
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

// noexcept: arithmetic over the row, nothing allocated or called that throws.
float lgo_logprob(const float * logits, int32_t n_vocab, llama_token token) noexcept {
    return logits[token] - log_sum_exp(logits, n_vocab);
}

// noexcept: the index it sorts is allocated behind the barrier (without it, it selects in
// place); the rest is arithmetic.
void lgo_top_logprobs(const float * logits, int32_t n_vocab, int32_t n, llama_token * ids, float * logprobs) noexcept {
    const float lse = log_sum_exp(logits, n_vocab);
    n               = std::min(n, n_vocab);
    const bool sorted = lgo::catch_all(nullptr, [&] {
        std::vector<llama_token> order(n_vocab);
        for (llama_token i = 0; i < n_vocab; i++) {
            order[i] = i;
        }
        std::partial_sort(order.begin(), order.begin() + n, order.end(),
                          [&](llama_token a, llama_token b) { return logits[a] > logits[b]; });
        for (int32_t i = 0; i < n; i++) {
            ids[i]      = order[i];
            logprobs[i] = logits[order[i]] - lse;
        }
    });
    if (sorted) {
        return;
    }
    // No memory for the index: select the top n in place, n passes over the logits.
    for (int32_t i = 0; i < n; i++) {
        llama_token best = -1;
        for (llama_token t = 0; t < n_vocab; t++) {
            const bool taken = std::find(ids, ids + i, t) != ids + i;
            if (!taken && (best < 0 || logits[t] > logits[best])) {
                best = t;
            }
        }
        ids[i]      = best;
        logprobs[i] = logits[best] - lse;
    }
}

// noexcept: two passes of arithmetic over the row, nothing allocated.
llama_token lgo_draft_pick(const float * logits, int32_t n_vocab, float min_p, bool * sure) noexcept {
    llama_token best = 0;
    for (llama_token t = 1; t < n_vocab; t++) {
        if (logits[t] > logits[best]) {
            best = t;
        }
    }
    *sure = true;
    if (min_p > 0) {
        // p(best) >= min_p  <=>  sum of exp(l - l_best) <= 1 / min_p: stop once it is exceeded.
        const float limit = 1.0f / min_p;
        float sum = 0;
        for (int32_t t = 0; t < n_vocab && *sure; t++) {
            sum += expf(logits[t] - logits[best]);
            *sure = sum <= limit;
        }
    }
    return best;
}

}  // extern "C"
