// Top-k narrowing on the device for a chain that starts with top-k: the CPU receives a
// few thousand candidates instead of every logit.
//
// Reading a 128k-token row of logits that the GPU just wrote costs the CPU ~80 µs per
// token (the memory is cold), more than the rest of sampling; llama.cpp's own on-device
// top-k sorts the whole row (no CUB top-k with CUDA 13.0), which costs more again. Here
// the row is cut into G groups of S consecutive tokens (G <= 1024, the tail past G*S
// kept whole); the device finds each group's largest logit (one argmax over a [S, G]
// matrix, then a batched get_rows for the values), the K groups with the largest of
// those (top-k over G values: one shared-memory sort), and gathers their S*K logits.
// The top K tokens of the row lie in those groups or the tail: a group holding one of
// them has a maximum at least as large as it, and only groups whose maximum is larger --
// each such maximum is itself one of the top K -- can rank above it. The CPU then runs
// the whole chain, top-k included, on S*K + tail candidates (lgo_sample_row): the same
// tokens as from all logits, with the same random draws. The sequences of a context
// that narrow to the same K share these nodes over the whole output matrix
// (device_group.h): a handful of kernels per step however many sequences sample.
#include "native.h"

#include <memory>

#include "barrier.h"
#include "device_group.h"
#include "ggml-backend.h"
#include "ggml.h"
#include "shim.h"

namespace {

struct topk_stage {
    int32_t            k;
    int32_t            n_vocab;
    lgo_device_group * group;  // the context's
};

const char * topk_name(const llama_sampler *) { return "lgo-topk-groups"; }

// apply: the candidates are narrowed on the device only; on the CPU keep them all.
void topk_apply(llama_sampler *, llama_token_data_array *) {}

void topk_free(llama_sampler * smpl) { delete (topk_stage *) smpl->ctx; }

// topk_graph adds the narrowing of logits ([n_vocab, rows]) to ctx; groups gets the K
// chosen group indices of each row ([K, rows]), the result is their S*K logits
// followed by the tail's ([S*K + tail, rows]).
ggml_tensor * topk_graph(ggml_context * ctx, ggml_tensor * logits, int32_t k, int32_t n_vocab, ggml_tensor ** groups_out) {
    int32_t groups, size;
    lgo_topk_geometry(n_vocab, &groups, &size);
    const int64_t tail = n_vocab - (int64_t) groups * size;
    const int64_t rows = ggml_nelements(logits) / n_vocab;
    const size_t  nb1  = (size_t) n_vocab * sizeof(float);
    ggml_tensor * main = ggml_view_3d(ctx, logits, size, groups, rows, size * sizeof(float), nb1, 0);
    if (tail > 0 && rows > 1) {
        main = ggml_cont(ctx, main);  // argmax takes a matrix: rows of groups, end to end
    }
    const int64_t n   = (int64_t) groups * rows;
    ggml_tensor * at  = ggml_argmax(ctx, ggml_reshape_2d(ctx, main, size, n));  // where each group peaks
    ggml_tensor * max = ggml_get_rows(ctx, ggml_reshape_3d(ctx, main, 1, size, n), ggml_reshape_2d(ctx, at, 1, n));
    ggml_tensor * best = ggml_top_k(ctx, ggml_reshape_2d(ctx, max, groups, rows), k);
    ggml_set_name(best, "lgo_topk_groups");
    ggml_tensor * out = ggml_reshape_2d(ctx, ggml_get_rows(ctx, ggml_reshape_3d(ctx, main, size, groups, rows), best),
                                        (int64_t) size * k, rows);
    if (tail > 0) {
        out = ggml_concat(ctx, out, ggml_view_2d(ctx, logits, tail, rows, nb1, (size_t) groups * size * sizeof(float)), 0);
    }
    ggml_set_name(out, "lgo_topk_logits");
    *groups_out = best;
    return out;
}

bool topk_backend_init(llama_sampler * smpl, ggml_backend_buffer_type_t buft, uint32_t) {
    ggml_backend_dev_t dev = ggml_backend_buft_get_device(buft);
    if (dev == nullptr) {
        return true;  // the CPU
    }
    auto *           st     = (topk_stage *) smpl->ctx;
    constexpr size_t nodes  = 64;
    ggml_init_params params = {nodes * ggml_tensor_overhead() + ggml_graph_overhead_custom(nodes, false), nullptr, true};
    ggml_context *   ctx    = ggml_init(params);
    if (ctx == nullptr) {
        return false;
    }
    ggml_tensor * logits = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, st->n_vocab, 2);
    ggml_tensor * groups;
    ggml_tensor * out = topk_graph(ctx, logits, st->k, st->n_vocab, &groups);
    ggml_cgraph * gf  = ggml_new_graph_custom(ctx, nodes, false);
    ggml_build_forward_expand(gf, out);
    bool ok = true;
    for (int i = 0; i < ggml_graph_n_nodes(gf) && ok; i++) {
        ggml_tensor * node = ggml_graph_node(gf, i);
        const bool view = node->op == GGML_OP_NONE || node->op == GGML_OP_VIEW || node->op == GGML_OP_RESHAPE;
        ok              = view || ggml_backend_dev_supports_op(dev, node);
    }
    ggml_free(ctx);
    return ok;
}

void topk_backend_reset(llama_sampler * smpl) { ((topk_stage *) smpl->ctx)->group->reset(); }

void topk_backend_apply(llama_sampler * smpl, ggml_context * ctx, ggml_cgraph *, llama_sampler_data * data) {
    auto *        st  = (topk_stage *) smpl->ctx;
    ggml_tensor * row = data->logits;
    const int64_t r   = lgo_matrix_row(row);
    if (r < 0) {
        data->logits = topk_graph(ctx, row, st->k, st->n_vocab, &data->candidates);
        return;
    }
    lgo_device_group * g = st->group;
    g->on(row->view_src);
    auto it = g->narrowed.begin();
    while (it != g->narrowed.end() && it->k != st->k) {
        ++it;
    }
    if (it == g->narrowed.end()) {
        lgo_device_group::narrowing n{st->k, nullptr, nullptr};
        n.logits = topk_graph(ctx, row->view_src, st->k, st->n_vocab, &n.groups);
        ggml_set_output(n.logits);
        ggml_set_output(n.groups);
        it = g->narrowed.insert(g->narrowed.end(), n);
    }
    data->logits     = ggml_view_1d(ctx, it->logits, it->logits->ne[0], r * it->logits->nb[1]);
    data->candidates = ggml_view_1d(ctx, it->groups, it->groups->ne[0], r * it->groups->nb[1]);
}

llama_sampler_i topk_iface = {
    /* .name              = */ topk_name,
    /* .accept            = */ nullptr,
    /* .apply             = */ topk_apply,
    /* .reset             = */ nullptr,
    /* .clone             = */ nullptr,
    /* .free              = */ topk_free,
    /* .backend_init      = */ topk_backend_init,
    /* .backend_accept    = */ nullptr,
    /* .backend_apply     = */ topk_backend_apply,
    /* .backend_set_input = */ nullptr,
    /* .backend_reset     = */ topk_backend_reset,
    /* .copy_state        = */ nullptr,
};

}  // namespace

extern "C" {

// noexcept: integer arithmetic.
void lgo_topk_geometry(int32_t n_vocab, int32_t * groups, int32_t * size) noexcept {
    *groups = n_vocab >= 8 * 1024 ? 1024 : n_vocab / 8;
    *size   = *groups > 0 ? n_vocab / *groups : 0;
}

struct llama_sampler * lgo_topk_chain_new(lgo_device_group * g, int32_t k, int32_t n_vocab) {
    int32_t groups, size;
    lgo_topk_geometry(n_vocab, &groups, &size);
    if (k < 1 || groups < 8 || k > groups / 4) {
        return nullptr;  // narrowing would keep most of the row
    }
    return lgo::catch_all(nullptr, (llama_sampler *) nullptr, [&]() -> llama_sampler * {
        auto            st    = std::make_unique<topk_stage>(topk_stage{k, n_vocab, g});
        llama_sampler * stage = llama_sampler_init(&topk_iface, st.get());
        if (stage == nullptr) {
            return nullptr;
        }
        st.release();  // the stage's now: topk_free deletes it
        return lgo_chain_of(stage);
    });
}

}  // extern "C"
