// The OS thread a context computes on the CPU: a thread outside the Go runtime (see
// compute_thread.go for why), which takes one job at a time and writes a byte to a pipe
// when it is done.
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "_cgo_export.h"
#include "shim.h"

struct lgo_compute_thread {
    pthread_t       thread;
    pthread_mutex_t mu;
    pthread_cond_t  cv;
    int             done_fd;  // the pipe's write end: a byte per finished job
    int             pending;  // guarded by mu: a job waits
    int             stop;     // guarded by mu: end once no job waits
    // The job: set by lgo_compute_submit while the thread waits, read by it after.
    int                    kind;
    struct llama_context * ctx;
    struct llama_batch     batch;
    uintptr_t              fn;
    int32_t                rc;  // written before the byte, read after it
};

static void * lgo_compute_loop(void * arg) {
    lgo_compute_thread * t = (lgo_compute_thread *) arg;
    for (;;) {
        pthread_mutex_lock(&t->mu);
        while (!t->pending && !t->stop) {
            pthread_cond_wait(&t->cv, &t->mu);
        }
        if (!t->pending) {
            pthread_mutex_unlock(&t->mu);
            return NULL;
        }
        t->pending = 0;
        pthread_mutex_unlock(&t->mu);
        int32_t rc = 0;
        switch (t->kind) {
            case LGO_COMPUTE_DECODE:
                rc = llama_decode(t->ctx, t->batch);
                break;
            case LGO_COMPUTE_ENCODE:
                rc = llama_encode(t->ctx, t->batch);
                break;
            default:
                goComputeRun(t->fn);
        }
        __atomic_store_n(&t->rc, rc, __ATOMIC_RELEASE);
        const char done = 1;
        while (write(t->done_fd, &done, 1) < 0 && errno == EINTR) {
        }
    }
}

lgo_compute_thread * lgo_compute_start(int done_fd) {
    lgo_compute_thread * t = (lgo_compute_thread *) calloc(1, sizeof(lgo_compute_thread));
    if (t == NULL) {
        return NULL;
    }
    t->done_fd = done_fd;
    pthread_attr_t attr;
    int            err = pthread_attr_init(&attr);
    if (err == 0) {
        // The stack of Go's own threads where the platform's default is smaller (macOS).
        size_t size = 0;
        const size_t want = 8u << 20;
        if (pthread_attr_getstacksize(&attr, &size) == 0 && size < want) {
            pthread_attr_setstacksize(&attr, want);
        }
        pthread_mutex_init(&t->mu, NULL);
        pthread_cond_init(&t->cv, NULL);
        err = pthread_create(&t->thread, &attr, lgo_compute_loop, t);
        pthread_attr_destroy(&attr);
        if (err != 0) {
            pthread_cond_destroy(&t->cv);
            pthread_mutex_destroy(&t->mu);
        }
    }
    if (err != 0) {
        free(t);
        return NULL;
    }
    return t;
}

void lgo_compute_submit(lgo_compute_thread * t, int kind, struct llama_context * ctx, struct llama_batch batch,
                        uintptr_t fn) {
    pthread_mutex_lock(&t->mu);
    t->kind    = kind;
    t->ctx     = ctx;
    t->batch   = batch;
    t->fn      = fn;
    t->pending = 1;
    pthread_cond_signal(&t->cv);
    pthread_mutex_unlock(&t->mu);
}

int32_t lgo_compute_rc(lgo_compute_thread * t) { return __atomic_load_n(&t->rc, __ATOMIC_ACQUIRE); }

void lgo_compute_stop(lgo_compute_thread * t) {
    pthread_mutex_lock(&t->mu);
    t->stop = 1;
    pthread_cond_signal(&t->cv);
    pthread_mutex_unlock(&t->mu);
    pthread_join(t->thread, NULL);
    pthread_cond_destroy(&t->cv);
    pthread_mutex_destroy(&t->mu);
    free(t);
}
