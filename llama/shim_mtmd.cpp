// Multimodal input through llama.cpp's libmtmd (tools/mtmd): a projector (mmproj) beside the
// model, media decoded from file bytes, prompts with media markers split into chunks, and
// the chunks evaluated into a context, all behind the exception barrier.
#include "shim.h"

#include <cstring>

#include "barrier.h"
#include "mtmd-helper.h"
#include "mtmd.h"

extern "C" {

struct mtmd_context * lgo_mtmd_init(const char * path, const struct llama_model * model, bool use_gpu, int n_threads,
                                    char ** err) {
    return lgo::catch_all(err, (mtmd_context *) nullptr, [&]() -> mtmd_context * {
        mtmd_context_params p = mtmd_context_params_default();
        p.use_gpu       = use_gpu;
        p.n_threads     = n_threads;
        p.print_timings = false;
        p.warmup        = false;
        mtmd_context * ctx = mtmd_init_from_file(path, model, p);
        if (ctx == nullptr) {
            lgo::set_err(err, "cannot load the projector");
        }
        return ctx;
    });
}

void lgo_mtmd_free(struct mtmd_context * ctx) {
    lgo::catch_all(nullptr, [&] { mtmd_free(ctx); });
}

int lgo_mtmd_info(const struct mtmd_context * ctx, lgo_mtmd_caps * caps, char ** err) {
    return lgo::catch_all(err, -1, [&] {
        caps->vision      = mtmd_support_vision(ctx);
        caps->audio       = mtmd_support_audio(ctx);
        caps->sample_rate = mtmd_get_audio_sample_rate(ctx);
        caps->mrope       = mtmd_decode_use_mrope(ctx);
        caps->marker      = mtmd_get_marker(ctx);
        return 0;
    });
}

struct mtmd_bitmap * lgo_mtmd_bitmap_from_buf(const struct mtmd_context * ctx, const unsigned char * buf, size_t len,
                                              char ** err) {
    return lgo::catch_all(err, (mtmd_bitmap *) nullptr, [&]() -> mtmd_bitmap * {
        mtmd_helper_bitmap_wrapper w = mtmd_helper_bitmap_init_from_buf(ctx, buf, len, false, mtmd_helper_init_opt_default());
        if (w.video_ctx != nullptr) {
            mtmd_helper_video_free(w.video_ctx);
            if (w.bitmap != nullptr) {
                mtmd_bitmap_free(w.bitmap);
            }
            lgo::set_err(err, "video is not supported");
            return nullptr;
        }
        if (w.bitmap == nullptr) {
            lgo::set_err(err, "not an image or audio file this build decodes (JPEG, PNG, BMP, GIF, TGA, PSD, HDR, PNM; WAV, MP3, FLAC)");
        }
        return w.bitmap;
    });
}

struct mtmd_bitmap * lgo_mtmd_bitmap_from_rgb(uint32_t nx, uint32_t ny, const unsigned char * rgb, char ** err) {
    return lgo::catch_all(err, (mtmd_bitmap *) nullptr, [&] { return mtmd_bitmap_init(nx, ny, rgb); });
}

int lgo_mtmd_bitmap_info(const struct mtmd_bitmap * b, uint32_t * nx, uint32_t * ny, bool * audio) {
    return lgo::catch_all(nullptr, -1, [&] {
        *nx    = mtmd_bitmap_get_nx(b);
        *ny    = mtmd_bitmap_get_ny(b);
        *audio = mtmd_bitmap_is_audio(b);
        return 0;
    });
}

void lgo_mtmd_bitmap_free(struct mtmd_bitmap * b) {
    lgo::catch_all(nullptr, [&] { mtmd_bitmap_free(b); });
}

struct mtmd_input_chunks * lgo_mtmd_tokenize(const struct mtmd_context * ctx, const char * text, bool add_special,
                                             const struct mtmd_bitmap ** bitmaps, size_t n_bitmaps, char ** err) {
    return lgo::catch_all(err, (mtmd_input_chunks *) nullptr, [&]() -> mtmd_input_chunks * {
        mtmd_input_chunks * chunks = mtmd_input_chunks_init();
        mtmd_input_text     in     = {};
        in.text                    = text;
        in.text_len                = strlen(text);
        in.add_special             = add_special;
        in.parse_special           = true;
        int32_t             rc     = mtmd_tokenize(ctx, chunks, &in, bitmaps, n_bitmaps);
        if (rc != 0) {
            mtmd_input_chunks_free(chunks);
            lgo::set_err(err, rc == 1 ? "the number of media markers in the prompt is not the number of media"
                                      : "the media could not be preprocessed for this projector");
            return nullptr;
        }
        return chunks;
    });
}

int lgo_mtmd_chunks_info(const struct mtmd_input_chunks * chunks, size_t * n_chunks, size_t * n_tokens, size_t * n_media) {
    return lgo::catch_all(nullptr, -1, [&] {
        *n_chunks = mtmd_input_chunks_size(chunks);
        *n_tokens = mtmd_helper_get_n_tokens(chunks);
        *n_media  = 0;
        for (size_t i = 0; i < *n_chunks; i++) {
            const mtmd_input_chunk * c = mtmd_input_chunks_get(chunks, i);
            if (mtmd_input_chunk_get_type(c) != MTMD_INPUT_CHUNK_TYPE_TEXT) {
                *n_media += mtmd_input_chunk_get_n_tokens(c);
            }
        }
        return 0;
    });
}

const llama_token * lgo_mtmd_last_text(const struct mtmd_input_chunks * chunks, size_t * n) {
    return lgo::catch_all(nullptr, (const llama_token *) nullptr, [&]() -> const llama_token * {
        size_t size = mtmd_input_chunks_size(chunks);
        *n          = 0;
        if (size == 0) {
            return nullptr;
        }
        const mtmd_input_chunk * last = mtmd_input_chunks_get(chunks, size - 1);
        if (mtmd_input_chunk_get_type(last) != MTMD_INPUT_CHUNK_TYPE_TEXT) {
            return nullptr;
        }
        return mtmd_input_chunk_get_tokens_text(last, n);
    });
}

int lgo_mtmd_eval(struct mtmd_context * ctx, struct llama_context * lctx, const struct mtmd_input_chunks * chunks,
                  size_t n_chunks, llama_pos n_past, llama_seq_id seq, int32_t n_batch, llama_pos * new_n_past,
                  char ** err) {
    return lgo::catch_all(err, -1, [&] {
        for (size_t i = 0; i < n_chunks; i++) {
            int32_t rc = mtmd_helper_eval_chunk_single(ctx, lctx, mtmd_input_chunks_get(chunks, i), n_past, seq,
                                                        n_batch, false, &n_past);
            if (rc != 0) {
                lgo::set_err(err, "evaluating the media chunk failed (encode or decode)");
                return (int) rc;
            }
        }
        *new_n_past = n_past;
        return 0;
    });
}

void lgo_mtmd_chunks_free(struct mtmd_input_chunks * chunks) {
    lgo::catch_all(nullptr, [&] { mtmd_input_chunks_free(chunks); });
}

}  // extern "C"
