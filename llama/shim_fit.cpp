// llama.cpp's fitting of model and context parameters to the free device memory
// (common/fit.h), behind the exception barrier.
#include "shim.h"

#include "barrier.h"
#include "common/fit.h"
#include "common/log.h"

extern "C" {

int lgo_fit(const char * path, struct llama_model_params * mp, struct llama_context_params * cp, float * tensor_split,
            struct llama_model_tensor_buft_override * overrides, size_t * margins, uint32_t n_ctx_min, char ** err) {
    return lgo::catch_all(err, -1, [&] {
        // common/'s log writes to stderr, past SetLogger; the result says what it would.
        common_log_set_verbosity_thold(-1);
        return (int) common_fit_params(path, mp, cp, tensor_split, overrides, margins, n_ctx_min, nullptr,
                                       GGML_LOG_LEVEL_ERROR);
    });
}

}  // extern "C"
