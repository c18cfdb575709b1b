#include "shim.h"
#include "_cgo_export.h"
#include "mtmd-helper.h"

bool lgo_abort_callback(void * data) {
    lgo_abort * a = (lgo_abort *) data;
    int32_t aborted = __atomic_load_n(&a->aborted, __ATOMIC_RELAXED);
    return aborted == -1 || aborted == __atomic_load_n(&a->current, __ATOMIC_RELAXED);
}

void lgo_context_params_set_abort(struct llama_context_params * p, lgo_abort * a) {
    p->abort_callback = lgo_abort_callback;
    p->abort_callback_data = a;
}

static bool lgo_progress(float progress, void * user_data) {
    return goLoadProgress(progress, (uintptr_t) user_data);
}

void lgo_model_params_set_progress(struct llama_model_params * p, uintptr_t handle) {
    p->progress_callback = lgo_progress;
    p->progress_callback_user_data = (void *) handle;
}

static int lgo_log_enabled = 0;
static _Thread_local int lgo_log_last_level = GGML_LOG_LEVEL_NONE;
static _Thread_local char lgo_thread_marker;

// The address of a thread-local variable tells threads apart while they live.
uintptr_t lgo_thread_key(void) { return (uintptr_t) &lgo_thread_marker; }

// Error lines always reach Go (they become the detail of load errors); the rest only
// when a logger is set, so a silent process never pays for the callback.
static void lgo_log(enum ggml_log_level level, const char * text, void * user_data) {
    (void) user_data;
    if (level != GGML_LOG_LEVEL_CONT) {
        lgo_log_last_level = level;
    }
    if (text == NULL) {
        return;
    }
    if (lgo_log_last_level != GGML_LOG_LEVEL_ERROR && !__atomic_load_n(&lgo_log_enabled, __ATOMIC_RELAXED)) {
        return;
    }
    goLog((int) level, lgo_thread_key(), (char *) text);
}

void lgo_log_install(void) {
    llama_log_set(lgo_log, NULL);
    mtmd_helper_log_set(lgo_log, NULL); // libmtmd (projectors) logs apart, to stderr by default
}

void lgo_log_enable(bool enabled) { __atomic_store_n(&lgo_log_enabled, enabled ? 1 : 0, __ATOMIC_RELAXED); }
