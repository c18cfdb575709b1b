// Glue that Go cannot express: callback trampolines and the abort flag.
// Everything here is C; llama.h's C API never throws (upstream catches internally),
// and entry points into upstream C++ (common/) get their own exception barrier.
#ifndef LLAMAGO_SHIM_H
#define LLAMAGO_SHIM_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include "llama.h"

// Abort flag of one context, in C memory so ggml threads read it without touching Go.
// Go sets it with sync/atomic; the callback reads it with an atomic load.
typedef struct lgo_abort {
    int32_t flag;
} lgo_abort;

bool lgo_abort_callback(void * data);
void lgo_context_params_set_abort(struct llama_context_params * p, lgo_abort * a);

// Model load progress: forwards to Go (handle is a cgo.Handle).
void lgo_model_params_set_progress(struct llama_model_params * p, uintptr_t handle);

// Logging: installs the trampoline; enabled=false drops messages in C without calling Go.
void lgo_log_install(void);
void lgo_log_enable(bool enabled);

#endif
