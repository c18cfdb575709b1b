// Greedy sampling on the device for every sequence of a context with one reduction.
//
// llama.cpp's own on-device greedy stage adds one argmax node per sequence, each over
// one row of logits (a single GPU block per launch, launched one after another). Here
// every sequence of a context gets a stage that shares one argmax over the whole
// output matrix: the first stage applied while a graph is built adds the node, every
// stage takes its row's element as the sampled token. A graph whose logits are not a
// view of that matrix (llama.cpp's probe graph, a future layout) gets the per-row
// argmax instead: slower, never wrong.
#include "native.h"
#include "shim.h"

#include "barrier.h"
#include "ggml-backend.h"
#include "ggml.h"

struct lgo_argmax_group {
    const ggml_tensor * logits = nullptr;  // the output matrix of the graph being built
    ggml_tensor *       argmax = nullptr;  // its argmax per row
};

namespace {

const char * argmax_name(const llama_sampler *) { return "lgo-grouped-argmax"; }

// apply is the CPU fallback llama.cpp may run on candidates: pick the largest logit.
void argmax_apply(llama_sampler *, llama_token_data_array * cur) {
    if (cur->size == 0) {
        return;
    }
    size_t best = 0;
    for (size_t i = 1; i < cur->size; i++) {
        if (cur->data[i].logit > cur->data[best].logit) {
            best = i;
        }
    }
    cur->selected = (int64_t) best;
}

void argmax_free(llama_sampler *) {}  // the group is the context's, see lgo_argmax_group_free

bool argmax_backend_init(llama_sampler *, ggml_backend_buffer_type_t buft, uint32_t) {
    ggml_backend_dev_t dev = ggml_backend_buft_get_device(buft);
    if (dev == nullptr) {
        return true;  // the CPU
    }
    ggml_init_params params = {4 * ggml_tensor_overhead(), nullptr, true};
    ggml_context *   ctx    = ggml_init(params);
    if (ctx == nullptr) {
        return false;
    }
    ggml_tensor * logits = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, 1024, 2);
    bool          ok     = ggml_backend_dev_supports_op(dev, ggml_argmax(ctx, logits));
    ggml_free(ctx);
    return ok;
}

void argmax_backend_reset(llama_sampler * smpl) {
    auto * g  = (lgo_argmax_group *) smpl->ctx;
    g->logits = nullptr;
    g->argmax = nullptr;
}

void argmax_backend_apply(llama_sampler * smpl, ggml_context * ctx, ggml_cgraph *, llama_sampler_data * data) {
    auto *              g    = (lgo_argmax_group *) smpl->ctx;
    ggml_tensor *       row  = data->logits;
    const ggml_tensor * full = row->view_src;
    const bool          view_of_matrix = full != nullptr && full->type == GGML_TYPE_F32 && ggml_is_contiguous(full) &&
                                ggml_n_dims(full) <= 2 && row->ne[0] == full->ne[0] && ggml_nelements(row) == row->ne[0] &&
                                row->view_offs % full->nb[1] == 0;
    // The token is decided on the device: the row's logits need not leave it.
    data->logits = nullptr;
    if (!view_of_matrix) {
        data->sampled = ggml_argmax(ctx, ggml_reshape_1d(ctx, row, ggml_nelements(row)));
        return;
    }
    if (g->logits != full) {
        g->logits = full;
        g->argmax = ggml_argmax(ctx, const_cast<ggml_tensor *>(full));
        ggml_set_name(g->argmax, "lgo_grouped_argmax");
        ggml_set_output(g->argmax);
    }
    const size_t r = row->view_offs / full->nb[1];
    data->sampled  = ggml_view_1d(ctx, g->argmax, 1, r * ggml_element_size(g->argmax));
}

llama_sampler_i argmax_iface = {
    /* .name              = */ argmax_name,
    /* .accept            = */ nullptr,
    /* .apply             = */ argmax_apply,
    /* .reset             = */ nullptr,
    /* .clone             = */ nullptr,
    /* .free              = */ argmax_free,
    /* .backend_init      = */ argmax_backend_init,
    /* .backend_accept    = */ nullptr,
    /* .backend_apply     = */ argmax_backend_apply,
    /* .backend_set_input = */ nullptr,
    /* .backend_reset     = */ argmax_backend_reset,
    /* .copy_state        = */ nullptr,
};

}  // namespace

extern "C" {

lgo_argmax_group * lgo_argmax_group_new(void) {
    return lgo::catch_all(nullptr, (lgo_argmax_group *) nullptr, [] { return new lgo_argmax_group(); });
}

// noexcept: deletes a struct of two pointers.
void lgo_argmax_group_free(lgo_argmax_group * g) noexcept { delete g; }

struct llama_sampler * lgo_argmax_chain_new(lgo_argmax_group * g) {
    return lgo::catch_all(nullptr, (llama_sampler *) nullptr,
                          [&] { return lgo_chain_of(llama_sampler_init(&argmax_iface, g)); });
}

}  // extern "C"
