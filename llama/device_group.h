// What the device stages of a context (device_argmax.cpp, device_topk.cpp) share while
// llama.cpp builds a graph: it applies each sequence's stage to a view of that
// sequence's row of one output matrix, and the first stage of a kind adds one node
// over the whole matrix (one kernel for all rows instead of one per sequence), which
// every stage of that kind then takes its row of. A group per context outlives its
// chains.
#ifndef LLAMAGO_DEVICE_GROUP_H
#define LLAMAGO_DEVICE_GROUP_H

#include <vector>

#include "ggml.h"

struct lgo_device_group {
    const ggml_tensor * logits = nullptr;  // the output matrix of the graph being built
    ggml_tensor *       argmax = nullptr;  // its argmax per row (device_argmax.cpp)

    // The matrix narrowed to the top k groups of each row (device_topk.cpp), per k.
    struct narrowing {
        int32_t       k;
        ggml_tensor * logits;  // [kept logits, rows]
        ggml_tensor * groups;  // [k, rows]: the group indices
    };
    std::vector<narrowing> narrowed;

    // on starts the nodes of the graph whose output matrix is full, forgetting those
    // of any other graph.
    void on(const ggml_tensor * full) {
        if (logits != full) {
            logits = full;
            argmax = nullptr;
            narrowed.clear();
        }
    }

    void reset() { on(nullptr); }
};

// lgo_matrix_row is the index of row in the output matrix it views, or -1 when row is
// not one whole row of a contiguous F32 matrix (llama.cpp's probe graph, a future
// layout): the stage then works on the row alone -- slower, never wrong.
inline int64_t lgo_matrix_row(const ggml_tensor * row) {
    const ggml_tensor * full = row->view_src;
    const bool view_of_matrix = full != nullptr && full->type == GGML_TYPE_F32 && ggml_is_contiguous(full) &&
                                ggml_n_dims(full) <= 2 && row->ne[0] == full->ne[0] &&
                                ggml_nelements(row) == row->ne[0] && row->view_offs % full->nb[1] == 0;
    return view_of_matrix ? (int64_t) (row->view_offs / full->nb[1]) : -1;
}

#endif
