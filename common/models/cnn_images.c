/* cnn_images.c: how the CNN baselines of cnn.h see an image: as square
 * tiles of their input size, each classified or featurized on its own;
 * and the samples train draws from images (net's random crops, the
 * backbones' tiles). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <gsl/gsl_rng.h>

#include "base/base.h"
#include "compute/parallel.h"
#include "models/cnn.h"
#include "record/record.h"

int amil_cnn_tiles(int length, int tile, int *starts)
{
    if (length < tile || tile < 1)
        return 0;
    int n = (length + tile - 1) / tile;
    for (int i = 0; starts && i < n; i++)
        starts[i] = n == 1 ? 0 : (int)((long)i * (length - tile) / (n - 1));
    return n;
}

void amil_cnn_cut(uint8_t *tile, const uint8_t *image, int width, int y, int x, int T)
{
    for (int row = 0; row < T; row++)
        memcpy(tile + (size_t)row * T * 3, image + ((size_t)(y + row) * width + x) * 3,
               (size_t)T * 3);
}

const struct amil_tensor *amil_cnn_image(const struct amil_cnn *m, const struct amil_record *r)
{
    const struct amil_tensor *t = amil_record_expect(r, "image", AMIL_U8, 3);
    if (!t)
        return NULL;
    if (t->shape[2] != 3) {
        amil_fail("an image of %lld channels; %s takes RGB", (long long)t->shape[2],
                  amil_cnn_arch_name(m->arch));
        return NULL;
    }
    if (t->shape[0] < m->size || t->shape[1] < m->size || t->shape[0] > INT32_MAX / 4 ||
        t->shape[1] > INT32_MAX / 4) {
        amil_fail("an image of %lld×%lld, smaller than %s's %d×%d input",
                  (long long)t->shape[1], (long long)t->shape[0], amil_cnn_arch_name(m->arch),
                  m->size, m->size);
        return NULL;
    }
    return t;
}

const struct amil_tensor *amil_cnn_cached(const struct amil_cnn *m, const struct amil_record *r)
{
    const struct amil_tensor *t = amil_record_expect(r, "features", AMIL_F32, 2);
    if (!t)
        return NULL;
    if (t->shape[0] < 1 || t->shape[0] > INT32_MAX / 4 ||
        t->shape[1] != amil_cnn_feature_size(m)) {
        amil_fail("features of [%lld, %lld]; %s's last layer reads %d per tile",
                  (long long)t->shape[0], (long long)t->shape[1], amil_cnn_arch_name(m->arch),
                  amil_cnn_feature_size(m));
        return NULL;
    }
    return amil_tensor_finite("features", t->data, 2, t->shape, 0) < 0 ? NULL : t;
}

int32_t *amil_cnn_tile_coords(const struct amil_cnn *m, int H, int W, int *n)
{
    int ny = amil_cnn_tiles(H, m->size, NULL), nx = amil_cnn_tiles(W, m->size, NULL);
    int *ys = amil_xmalloc(sizeof *ys * (ny + 1)), *xs = amil_xmalloc(sizeof *xs * (nx + 1));
    amil_cnn_tiles(H, m->size, ys);
    amil_cnn_tiles(W, m->size, xs);
    int32_t *coords = amil_xmalloc(sizeof *coords * 2 * ((size_t)ny * nx + 1));
    for (int i = 0; i < ny; i++)
        for (int j = 0; j < nx; j++)
            coords[2 * (i * nx + j)] = ys[i], coords[2 * (i * nx + j) + 1] = xs[j];
    *n = ny * nx;
    free(ys), free(xs);
    return coords;
}

/* Tiles first .. end-1 of a featurize, one at a time, on the work of the
 * thread (the first's is the caller's), run in that thread alone. */
struct tiles_pass {
    const struct amil_cnn *m;
    struct amil_cnn_work *w;
    const uint8_t *image, *tiles;
    int W;
    const int32_t *coords;
    float *features;
};

static void featurize_tiles(void *ctx, int first, int end, int thread)
{
    const struct tiles_pass *p = ctx;
    const struct amil_cnn *m = p->m;
    struct amil_cnn_work *w = thread ? &p->w->workers[thread - 1] : p->w;
    int T = m->size, F = amil_cnn_feature_size(m);
    size_t side = (size_t)T * T * 3;
    uint8_t *cut = p->image ? amil_xmalloc(side) : NULL;
    w->serial = 1;
    for (int i = first; i < end; i++) {
        if (p->image)
            amil_cnn_cut(cut, p->image, p->W, p->coords[2 * i], p->coords[2 * i + 1], T);
        amil_cnn_forward(m, w, p->image ? cut : p->tiles + i * side, 1, NULL);
        memcpy(p->features + (size_t)i * F, w->out[m->features], sizeof(float) * F);
    }
    w->serial = 0;
    free(cut);
}

void amil_cnn_featurize(const struct amil_cnn *m, struct amil_cnn_work *w,
                        const uint8_t *image, int W, const int32_t *coords, int n,
                        const uint8_t *tiles, float *features)
{
    int T = m->size, F = amil_cnn_feature_size(m), B = m->tiles_at_once;
    int threads = amil_thread_count();
    w->forward_only = 1;   /* features: nothing below them is read again */
    if (B == 1 && threads > 1 && n > 1) {
        /* a CNN's tiles split over the threads, each tile alone through the
         * whole network in one thread: the bytes of one thread, and no
         * thread waits on another inside a layer */
        if (w->nworkers < threads - 1) {
            w->workers = amil_xrealloc(w->workers, sizeof *w->workers * (threads - 1));
            memset(w->workers + w->nworkers, 0,
                   sizeof *w->workers * (threads - 1 - w->nworkers));
            w->nworkers = threads - 1;
        }
        amil_threads_to_lanes();   /* OpenBLAS (a last linear layer) on one */
        amil_cnn_prepare(m, w);    /* the workers read its Winograd weights */
        for (int t = 0; t < w->nworkers; t++)
            w->workers[t].owner = w, w->workers[t].forward_only = 1;
        struct tiles_pass pass = {m, w, image, tiles, W, coords, features};
        amil_parallel(n, featurize_tiles, &pass);
        return;
    }
    size_t side = (size_t)T * T * 3;
    uint8_t *cut = image ? amil_xmalloc(side * B) : NULL;
    for (int i = 0; i < n; i += B) {
        int b = n - i < B ? n - i : B;
        for (int j = 0; image && j < b; j++)
            amil_cnn_cut(cut + j * side, image, W, coords[2 * (i + j)], coords[2 * (i + j) + 1],
                         T);
        amil_cnn_forward(m, w, image ? cut : tiles + i * side, b, NULL);
        memcpy(features + (size_t)i * F, w->out[m->features], sizeof *features * F * b);
    }
    free(cut);
}

void amil_cnn_classify(const struct amil_cnn *m, struct amil_cnn_work *w,
                       const uint8_t *image, int H, int W, const float *features, int n,
                       float *prob)
{
    int T = m->size, F = amil_cnn_feature_size(m);
    int32_t *coords = image ? amil_cnn_tile_coords(m, H, W, &n) : NULL;
    uint8_t *tile = amil_xmalloc((size_t)T * T * 3);
    double sum[AMIL_CNN_MAX_CLASSES] = {0};
    float p[AMIL_CNN_MAX_CLASSES];
    /* forward only, as featurize runs it, so that an image's tiles give the
     * bytes of their cached features (the batch norms folded alike); the
     * caller's setting is restored for what it runs next (gradcam's
     * backward) */
    int forward_only = w->forward_only;
    w->forward_only = forward_only || image;
    for (int i = 0; i < n; i++) {
        if (image) {
            amil_cnn_cut(tile, image, W, coords[2 * i], coords[2 * i + 1], T);
            amil_cnn_forward(m, w, tile, 1, NULL);
        } else
            amil_cnn_forward_head(m, w, features + (size_t)i * F, 1, NULL);
        amil_cnn_softmax(m, w->out[m->nlayers - 1], p);
        for (int c = 0; c < m->classes; c++)
            sum[c] += p[c];
    }
    for (int c = 0; c < m->classes; c++)
        prob[c] = (float)(sum[c] / n);
    w->forward_only = forward_only;
    free(tile);
    free(coords);
}

int amil_cnn_judge(const struct amil_cnn *m, struct amil_cnn_work *w,
                   const struct amil_record *r, int cached, struct amil_verdict *v)
{
    float prob[AMIL_CNN_MAX_CLASSES];
    const struct amil_tensor *t = cached ? amil_cnn_cached(m, r) : amil_cnn_image(m, r);
    if (!t)
        return -1;
    if (amil_record_meta_long(r, "label", 0, m->classes - 1, &v->label) != 1)
        return amil_fail("no label of the model's classes");
    if (cached)
        amil_cnn_classify(m, w, NULL, 0, 0, t->data, (int)t->shape[0], prob);
    else
        amil_cnn_classify(m, w, t->data, (int)t->shape[0], (int)t->shape[1], NULL, 0, prob);
    v->loss = -log(fmax(prob[v->label], 1e-30));
    v->predicted = amil_cnn_predict(m, prob);
    v->score = prob[1];
    return 0;
}

int amil_cnn_predict(const struct amil_cnn *m, const float *prob)
{
    return amil_most_probable(prob, m->classes);
}

/* ---- training samples ----------------------------------------------------- */

long amil_cnn_samples(const struct amil_cnn *m, const struct amil_record *r, int *cached)
{
    long label;
    int has = amil_record_meta_long(r, "label", 0, m->classes - 1, &label);
    if (has < 0)
        return amil_fail("label '%s' is not a class of the model (0 to %d)",
                         amil_record_meta(r, "label"), m->classes - 1);
    if (!has)
        return amil_fail("no label (bagify -l or -L gives one)");
    /* a frozen backbone reads cached features when a record has them, as
     * classify does; net always the image */
    int features = amil_record_find(r, "features") &&
                   (m->trained || !amil_record_find(r, "image"));
    if (features && !m->trained)
        return amil_fail("net trains on images (bagify -w), not cached features");
    if (*cached >= 0 && features != *cached)
        return amil_fail("%s, but the records before it hold %s",
                         features ? "cached features" : "an image",
                         features ? "images" : "features");
    *cached = features;
    const struct amil_tensor *t = features ? amil_cnn_cached(m, r) : amil_cnn_image(m, r);
    if (!t)
        return -1;
    if (features)
        return (long)t->shape[0];
    int tiles;
    free(amil_cnn_tile_coords(m, (int)t->shape[0], (int)t->shape[1], &tiles));
    return m->trained ? tiles : 1;
}

int amil_cnn_take(const struct amil_cnn *m, struct amil_cnn_work *backbone,
                  const struct amil_record *r, long tile, int cached, void *rng,
                  struct amil_cnn_batch *batch, int k)
{
    int T = m->size, F = amil_cnn_feature_size(m), n = 0;
    const struct amil_tensor *t = cached ? amil_cnn_cached(m, r) : amil_cnn_image(m, r);
    int32_t *coords = NULL;
    if (t && !cached && m->trained)
        coords = amil_cnn_tile_coords(m, (int)t->shape[0], (int)t->shape[1], &n);
    if (!t || amil_record_meta_long(r, "label", 0, m->classes - 1, &batch->labels[k]) != 1 ||
        tile >= (cached ? t->shape[0] : m->trained ? n : 1)) {
        free(coords);
        return -1;
    }
    int H = (int)t->shape[0], W = (int)t->shape[1];
    if (cached) {
        memcpy(batch->features + (size_t)k * F, (const float *)t->data + (size_t)tile * F,
               sizeof(float) * F);
    } else if (!m->trained) {   /* net: a random crop */
        int y = (int)gsl_rng_uniform_int(rng, (unsigned long)(H - T + 1));
        int x = (int)gsl_rng_uniform_int(rng, (unsigned long)(W - T + 1));
        amil_cnn_cut(batch->crops + (size_t)k * T * T * 3, t->data, W, y, x, T);
    } else {   /* through the frozen backbone, in evaluation mode */
        amil_cnn_featurize(m, backbone, t->data, W, coords + 2 * tile, 1, NULL,
                           batch->features + (size_t)k * F);
    }
    free(coords);
    return 0;
}
