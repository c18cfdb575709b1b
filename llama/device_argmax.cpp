// Greedy sampling on the device for every sequence of a context with one reduction.
//
// llama.cpp's own on-device greedy stage adds one argmax node per sequence, each over
// one row of logits (a single GPU block per launch, launched one after another). Here
// every sequence of a context gets a stage that shares one argmax over the whole
// output matrix (device_group.h): every stage takes its row's element as the sampled
// token.
#include "native.h"
#include "shim.h"

#include "barrier.h"
#include "device_group.h"
#include "ggml-backend.h"
#include "ggml.h"

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

void argmax_free(llama_sampler *) {}  // the group is the context's, see lgo_device_group_free

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

void argmax_backend_reset(llama_sampler * smpl) { ((lgo_device_group *) smpl->ctx)->reset(); }

void argmax_backend_apply(llama_sampler * smpl, ggml_context * ctx, ggml_cgraph *, llama_sampler_data * data) {
    auto *        g   = (lgo_device_group *) smpl->ctx;
    ggml_tensor * row = data->logits;
    const int64_t r   = lgo_matrix_row(row);
    // The token is decided on the device: the row's logits need not leave it.
    data->logits = nullptr;
    if (r < 0) {
        data->sampled = ggml_argmax(ctx, ggml_reshape_1d(ctx, row, ggml_nelements(row)));
        return;
    }
    g->on(row->view_src);
    if (g->argmax == nullptr) {
        g->argmax = ggml_argmax(ctx, row->view_src);
        ggml_set_name(g->argmax, "lgo_grouped_argmax");
        ggml_set_output(g->argmax);
    }
    data->sampled = ggml_view_1d(ctx, g->argmax, 1, r * ggml_element_size(g->argmax));
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

lgo_device_group * lgo_device_group_new(void) {
    return lgo::catch_all(nullptr, (lgo_device_group *) nullptr, [] { return new lgo_device_group(); });
}

// noexcept: frees a struct and its vector.
void lgo_device_group_free(lgo_device_group * g) noexcept { delete g; }

struct llama_sampler * lgo_argmax_chain_new(lgo_device_group * g) {
    return lgo::catch_all(nullptr, (llama_sampler *) nullptr,
                          [&] { return lgo_chain_of(llama_sampler_init(&argmax_iface, g)); });
}

}  // extern "C"
