// The exception barrier of the shim (C++ only): every extern "C" function of llama/*.cpp
// runs its body through lgo::catch_all, so no C++ exception crosses into Go (DESIGN.md,
// section 4). A function that cannot throw is marked noexcept instead, with the reason.
#ifndef LLAMAGO_BARRIER_H
#define LLAMAGO_BARRIER_H

#ifndef __cplusplus
#error "barrier.h is C++ only: Go includes shim.h"
#endif

#include <cstdlib>
#include <cstring>
#include <exception>

namespace lgo {

// set_err stores a malloc'ed copy of msg in *err for Go to free; nothing when err is NULL.
// Out of memory for the copy, *err stays NULL: the caller's error code still tells.
inline void set_err(char ** err, const char * msg) noexcept {
    if (err != nullptr) {
        *err = strdup(msg != nullptr ? msg : "");
    }
}

// catch_all runs f and returns what it returns; an exception makes it return fail instead,
// with the exception's message in *err (e.what(), or "unknown C++ exception" for anything
// that is not a std::exception). f may set *err itself when it returns fail.
template <typename R, typename F>
R catch_all(char ** err, R fail, F && f) noexcept {
    try {
        return f();
    } catch (const std::exception & e) {
        set_err(err, e.what());
    } catch (...) {
        set_err(err, "unknown C++ exception");
    }
    return fail;
}

// catch_all without a result: reports whether f returned (true) or threw (false, with the
// message in *err as above).
template <typename F>
bool catch_all(char ** err, F && f) noexcept {
    return catch_all(err, false, [&] {
        f();
        return true;
    });
}

}  // namespace lgo

#endif
