/* cnn_pass.c: the CNN baselines of cnn.h forward and backward over a
 * batch: work buffers, the convolutions' fast forward paths (shifted rows
 * on the lane kernels; Winograd F(2×2, 3×3) for a frozen 3×3), each layer
 * through nn.h (a transformer's through cnn_tokens.c), Grad-CAM and the
 * loss. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <gsl/gsl_rng.h>

#include "base/base.h"
#include "compute/kernels.h"
#include "compute/nn.h"
#include "compute/parallel.h"
#include "models/cnn.h"
#include "models/cnn_impl.h"

#define LEAKY_SLOPE 0.01f
#define DROPOUT_P 0.5f

/* ---- work buffers ------------------------------------------------------- */


/* Whether a convolution runs on the kernels' shifted products (stride 1 or
 * 2, at most 7×7), and if so its sizes.  The input is zero-padded, and with
 * stride 2 split into its four phases (even or odd rows × even or odd
 * columns), each a plane of its own over which the stride-2 convolution is
 * a stride-1 one with the taps of that phase; a phase plane is Wq wide, the
 * outputs are computed at every column of that width (positions, rounded up
 * to the kernels' block), and each plane's channel is in_stride long (the
 * positions plus the largest tap offset). */
struct shifted {
    int Wq, Hq;
    size_t positions, in_stride;
};
static int shifted_sizes(const struct amil_kernels *k, const struct amil_layer *l,
                         const struct amil_layer *in, struct shifted *z)
{
    if (l->op != AMIL_OP_CONV || l->stride > 2 || l->kernel > 7 || !k)
        return 0;
    size_t block = (size_t)k->shift_block, S = (size_t)l->stride;
    size_t Hp = (size_t)in->h + 2 * l->pad, Wp = (size_t)in->w + 2 * l->pad;
    z->Hq = (int)((Hp + S - 1) / S);
    z->Wq = (int)((Wp + S - 1) / S);
    z->positions = ((size_t)l->h * z->Wq + block - 1) / block * block;
    z->in_stride = z->positions + (size_t)(l->kernel - 1) / S * ((size_t)z->Wq + 1);
    if (z->in_stride < (size_t)z->Hq * z->Wq)
        z->in_stride = (size_t)z->Hq * z->Wq;
    return 1;
}

/* Whether a convolution runs as products on packed panels
 * (amil_conv2d_panels): a 1×1. */
static int panels_fit(const struct amil_kernels *k, const struct amil_layer *l)
{
    return l->op == AMIL_OP_CONV && k && (l->kernel == 1 || (l->kernel == 3 && l->stride == 2));
}

/* Whether a token linear runs on the kernels' product (outputs in lanes):
 * frozen, its outputs a multiple of the lanes. */
static int product_fits(const struct amil_cnn *m, const struct amil_kernels *k,
                        const struct amil_layer *l)
{
    return l->op == AMIL_OP_TOKEN_LINEAR && k && l->param < m->trained && l->w % k->lanes == 0;
}

/* Whether layer i's output is needed only until its last reader has run:
 * a layer below the features of a network without maps (a ViT), which no
 * backward reaches, or of any network whose work only runs forward
 * (featurize's).  Such outputs take turns in a few shared slots (ViT-B/16
 * at 8 tiles: 5 slots of 19 MB, not buffers of 580 MB). */
static int transient(const struct amil_cnn *m, const struct amil_cnn_work *w, int i)
{
    return (m->cam_layer < 0 || w->forward_only) && i > 0 && i < m->features;
}

/* Each transient layer from `from` on gets a slot of w->slots (slot_of),
 * one no layer still to be read holds; the slots are made here. */
static void share_slots(const struct amil_cnn *m, struct amil_cnn_work *w, int B, int from)
{
    int *last = amil_xcalloc(m->nlayers, sizeof *last), *busy = NULL;
    size_t size = 0;
    for (int i = from; i < m->nlayers; i++) {
        const struct amil_layer *l = &m->layers[i];
        /* a folded convolution's input is read until its output is
           written, at the last layer folded */
        int at = w->fold_to[i] > i ? w->fold_to[i] : i;
        if (l->input >= 0)   /* the input layer reads none */
            last[l->input] = at;
        if (l->input2 >= 0)
            last[l->input2] = at;
        if (transient(m, w, i) && layer_size(l) * B > size)
            size = layer_size(l) * B;
    }
    busy = amil_xcalloc(m->nlayers, sizeof *busy);
    for (int i = 0; i < m->nlayers; i++)
        w->slot_of[i] = -1;
    for (int i = from; i < m->nlayers; i++) {
        if (!transient(m, w, i))
            continue;
        int s = 0;
        while (s < w->nslots && busy[s] >= i)   /* a reader of its layer yet to run */
            s++;
        if (s == w->nslots)
            w->slots[w->nslots++] = amil_xaligned(sizeof(float) * size);
        busy[s] = last[i] > i ? last[i] : i;
        w->slot_of[i] = s;
        w->out[i] = w->slots[s];
    }
    free(last), free(busy);
}

/* Grows the buffers to B images, for the layers from `from` on (the head
 * alone needs no backbone's); im2col's buffers to the largest
 * convolution's one image. */
static void fit(const struct amil_cnn *m, struct amil_cnn_work *w, int B, int from)
{
    int threads = w->serial ? 1 : amil_thread_count();
    if (w->out && w->capacity >= B && w->nlayers == m->nlayers && w->from <= from &&
        w->fit_forward_only == w->forward_only && w->fit_threads >= threads)
        return;
    const struct amil_kernels *k = w->kernels ? w->kernels : amil_kernels();
    /* what the buffers are not: whose thread runs them, and the workers' */
    int serial = w->serial, nworkers = w->nworkers, forward_only = w->forward_only;
    struct amil_cnn_work *workers = w->workers, *owner = w->owner;
    w->workers = NULL, w->nworkers = 0;
    amil_cnn_work_free(w);
    w->serial = serial, w->workers = workers, w->nworkers = nworkers, w->owner = owner;
    w->forward_only = forward_only;
    w->kernels = k;
    w->capacity = B, w->nlayers = m->nlayers, w->from = from;
    w->fit_forward_only = w->forward_only;
    w->fit_threads = threads;
    if (m->cam_layer < 0)   /* a transformer's threads split its images: the
                               attention's small products stay on one */
        amil_threads_to_lanes();
    w->out = amil_xcalloc(m->nlayers, sizeof *w->out);
    w->grad = amil_xcalloc(m->nlayers, sizeof *w->grad);
    w->argmax = amil_xcalloc(m->nlayers, sizeof *w->argmax);
    w->mask = amil_xcalloc(m->nlayers, sizeof *w->mask);
    size_t cols = 1, padded = 1, shifted = 1, taps = 1, tiles = 1, products = 1, packs = 1;
    size_t bf16_rows = 1;
    w->prepared = amil_xcalloc(m->nlayers, sizeof *w->prepared);
    w->prepared_of = amil_xcalloc(m->nlayers, sizeof *w->prepared_of);
    w->slots = amil_xcalloc(m->nlayers, sizeof *w->slots);
    w->slot_of = amil_xcalloc(m->nlayers, sizeof *w->slot_of);
    w->fold_to = amil_xcalloc(m->nlayers, sizeof *w->fold_to);
    w->folded = amil_xcalloc(m->nlayers, sizeof *w->folded);
    cnn_plan_folds(m, w);
    size_t fold_floats = 0;   /* a worker reads its owner's */
    for (int i = 1; !w->owner && i < m->nlayers; i++)
        if (m->layers[i].op == AMIL_OP_CONV && w->fold_to[i] != i)
            fold_floats += cnn_folded_size(&m->layers[i], &m->layers[m->layers[i].input]);
    w->fold_arena = fold_floats ? amil_xaligned(sizeof(float) * fold_floats) : NULL;
    share_slots(m, w, B, from);
    for (int i = from; i < m->nlayers; i++) {
        const struct amil_layer *l = &m->layers[i];
        size_t n = layer_size(l) * B;
        if (w->slot_of[i] < 0) {
            w->out[i] = amil_xaligned(sizeof(float) * n);
            w->grad[i] = amil_xmalloc(sizeof(float) * n);
        }
        if (l->op == AMIL_OP_MAXPOOL)
            w->argmax[i] = amil_xmalloc(sizeof(int32_t) * n);
        if (l->op == AMIL_OP_DROPOUT)
            w->mask[i] = amil_xmalloc(sizeof(float) * n);
        if (product_fits(m, k, l)) {
            size_t c = (size_t)m->layers[l->input].w * PANEL * threads;
            packs = c > packs ? c : packs;
            c = layer_size(&m->layers[l->input]) * B;   /* its input in bfloat16 */
            bf16_rows = c > bf16_rows ? c : bf16_rows;
        }
        if (l->op == AMIL_OP_EMBED || l->op == AMIL_OP_SELF_ATTENTION) {
            /* one image's patches as rows, or one head's scores and more */
            size_t c = l->op == AMIL_OP_EMBED ? layer_size(&m->layers[l->input])
                                              : amil_self_attention_scratch(l->h, l->w,
                                                                            l->kernel);
            cols = c > cols ? c : cols;
        }
        if (l->op == AMIL_OP_CONV) {
            const struct amil_layer *in = &m->layers[l->input];
            size_t c = (size_t)in->c * l->kernel * l->kernel * l->h * l->w;
            cols = c > cols ? c : cols;
            size_t n_tiles;
            size_t values = (size_t)cnn_winograd_fits(m, w->kernels, l, in, &n_tiles);
            if (values == 16)   /* F(2×2): a block of tiles per thread */
                n_tiles = cnn_winograd_block_tiles(in->h, in->w) * threads;
            if (values && cnn_winograd_bf16(m, k, in, (int)values)) {   /* V's pairs */
                c = in->c * n_tiles;
                bf16_rows = c > bf16_rows ? c : bf16_rows;
            }
            if (values) {
                tiles = values * in->c * n_tiles > tiles ? values * in->c * n_tiles : tiles;
                products = values * l->c * n_tiles > products ? values * l->c * n_tiles
                                                              : products;
                c = cnn_winograd4_scratch(in->h, in->w);   /* F(4×4)'s input rows, in cols */
                cols = c > cols ? c : cols;
            }
            if (panels_fit(w->kernels, l)) {
                size_t c = amil_conv2d_panel_scratch(in->c, l->kernel, l->c) * threads;
                packs = c > packs ? c : packs;
            }
            struct shifted z;
            if (shifted_sizes(w->kernels, l, in, &z)) {
                padded = in->c * z.in_stride > padded ? in->c * z.in_stride : padded;
                shifted = l->c * z.positions > shifted ? l->c * z.positions : shifted;
                if (l->stride > 1) {   /* a phase's weights: at most ⌈K/2⌉² taps */
                    size_t t = (size_t)(l->kernel + 1) / 2;
                    t = (size_t)l->c * in->c * t * t;
                    taps = t > taps ? t : taps;
                }
            }
        }
    }
    w->padded = amil_xmalloc(sizeof(float) * padded);
    w->shifted = amil_xmalloc(sizeof(float) * shifted);
    w->phase_weights = amil_xmalloc(sizeof(float) * taps);
    w->tiles = amil_xmalloc(sizeof(float) * tiles);
    w->products = amil_xaligned(sizeof(float) * products);
    /* a transformer's layers split images over the threads, each with its
     * own scratch */
    w->cols_size = cols = (cols + 15) / 16 * 16;   /* each thread's part aligned */
    w->cols = amil_xaligned(sizeof(float) * cols * (m->cam_layer < 0 ? threads : 1));
    w->packs = amil_xaligned(sizeof(float) * packs);
    w->bf16_rows = m->form.bf16 ? amil_xaligned(sizeof(uint16_t) * bf16_rows) : NULL;
    w->dcols = amil_xmalloc(sizeof(float) * cols);
}

void amil_cnn_work_free(struct amil_cnn_work *w)
{
    for (int i = 0; w->out && i < w->nlayers; i++) {
        if (w->slot_of[i] < 0)
            free(w->out[i]);
        free(w->grad[i]);
        free(w->argmax[i]);
        free(w->mask[i]);
    }
    free(w->out), free(w->grad), free(w->argmax), free(w->mask);
    for (int i = 0; i < w->nslots; i++)
        free(w->slots[i]);
    free(w->slots), free(w->slot_of);
    free(w->fold_to), free(w->folded), free(w->fold_arena);
    free(w->cols), free(w->dcols);
    free(w->padded), free(w->shifted), free(w->phase_weights);
    for (int i = 0; w->prepared && i < w->nlayers; i++)
        free(w->prepared[i]);
    free(w->prepared), free(w->prepared_of), free(w->tiles), free(w->products), free(w->packs);
    free(w->bf16_rows);
    for (int i = 0; i < w->nworkers; i++)
        amil_cnn_work_free(&w->workers[i]);
    free(w->workers);
    memset(w, 0, sizeof *w);
}

/* ---- forward ------------------------------------------------------------ */


/* The first layer whose parameters are trained: dropout runs from there on
 * in training; frozen layers are always in evaluation mode. */
static int first_trained(const struct amil_cnn *m)
{
    for (int i = 0; i < m->nlayers; i++)
        if (m->layers[i].param >= m->trained)
            return i;
    return m->nlayers;
}

struct shift_pass {
    const struct amil_kernels *k;
    float *out;
    size_t out_stride;
    const float *in;
    size_t in_stride;
    const float *weight, *bias;
    const int *off;
    int T, C, OC, accumulate;
};

static void shift_of_blocks(void *ctx, int first, int end, int thread)
{
    (void)thread;
    const struct shift_pass *s = ctx;
    size_t block = (size_t)s->k->shift_block;
    s->k->conv_shift(s->out, s->out_stride, s->in, s->in_stride, s->weight, s->bias, s->off,
                     s->T, s->C, s->OC, s->accumulate, first * block, end * block);
}

/* out (OC, OH, OW) = the convolution of one image inp (C, H, W) by the
 * layer's weights and bias, on the kernels: for each phase of the input
 * (one with stride 1), its plane zero-padded and its taps' weights
 * gathered, the output computed at every column of the plane's width
 * (threads split the positions) and summed over the phases; then its valid
 * columns copied out. */
static void conv_shifted(struct amil_cnn_work *w,
                         const struct amil_layer *l, const struct amil_layer *in,
                         const struct shifted *z, float *out, const float *inp,
                         const float *weight, const float *bias)
{
    int K = l->kernel, S = l->stride, pad = l->pad, C = in->c;
    for (int phase = 0; phase < S * S; phase++) {
        int a = phase / S, b = phase % S;   /* the phase's first row and column */
        int off[49], T = 0;
        size_t taps[49];
        for (int ki = a; ki < K; ki += S)
            for (int kj = b; kj < K; kj += S) {
                off[T] = (ki / S) * z->Wq + kj / S;
                taps[T++] = (size_t)ki * K + kj;
            }
        if (T == 0)
            continue;
        /* the plane: padded[c][i·Wq + j] = the padded input at (S·i + a, S·j + b) */
        memset(w->padded, 0, sizeof(float) * C * z->in_stride);
        for (int c = 0; c < C; c++)
            for (int i = 0; i < z->Hq; i++) {
                int y = S * i + a - pad;
                if (y < 0 || y >= in->h)
                    continue;
                float *to = w->padded + c * z->in_stride + (size_t)i * z->Wq;
                const float *from = inp + ((size_t)c * in->h + y) * in->w;
                for (int j = 0; j < z->Wq; j++) {
                    int x = S * j + b - pad;
                    if (x >= 0 && x < in->w)
                        to[j] = from[x];
                }
            }
        const float *phase_weight = weight;
        if (S > 1) {   /* weights (OC, C, T) of this phase's taps */
            for (size_t oc_c = 0; oc_c < (size_t)l->c * C; oc_c++)
                for (int t = 0; t < T; t++)
                    w->phase_weights[oc_c * T + t] = weight[oc_c * K * K + taps[t]];
            phase_weight = w->phase_weights;
        }
        struct shift_pass pass = {w->kernels, w->shifted, z->positions, w->padded,
                                  z->in_stride, phase_weight, bias, off, T, C, l->c,
                                  phase > 0};
        cnn_run(w, (int)(z->positions / pass.k->shift_block), shift_of_blocks, &pass);
    }
    for (int oc = 0; oc < l->c; oc++)
        for (int y = 0; y < l->h; y++)
            memcpy(out + ((size_t)oc * l->h + y) * l->w,
                   w->shifted + oc * z->positions + (size_t)y * z->Wq, sizeof(float) * l->w);
}

/* Whether convolution l on panels runs in bfloat16: the model's precision
 * says so, the layer is frozen (its rounded weights are made once and
 * kept) and its pack's rows pair up (C·K·K even). */
static int panels_bf16(const struct amil_cnn *m, const struct amil_kernels *k,
                       const struct amil_layer *l, const struct amil_layer *in)
{
    return m->form.bf16 && k->product_bf16 && l->param < m->trained &&
           in->c * l->kernel * l->kernel % 2 == 0;
}

/* Layer i's folded weights rounded to bfloat16, (OC, C·K·K), in w, made
 * if they are not (or were made from other weights) */
static const uint16_t *panels_weights_bf16(const struct amil_cnn *m, struct amil_cnn_work *w,
                                           int i)
{
    const struct amil_layer *l = &m->layers[i], *in = &m->layers[l->input];
    const float *weight, *bias;
    cnn_conv_params(m, w, i, &weight, &bias);
    if (!w->prepared[i] || w->prepared_of[i] != weight) {
        size_t n = (size_t)l->c * in->c * l->kernel * l->kernel;
        free(w->prepared[i]);
        w->prepared[i] = amil_xaligned(sizeof(uint16_t) * n);
        w->kernels->to_bf16((uint16_t *)w->prepared[i], weight, n);
        w->prepared_of[i] = weight;
    }
    return (const uint16_t *)w->prepared[i];
}

struct panels_pass {
    const struct amil_kernels *k;
    const struct amil_layer *l, *in;
    float *out, *scratch;     /* scratch per thread */
    const float *inp, *weight, *bias;
    const uint16_t *weight16;   /* the weights in bfloat16, or NULL: in float */
    int relu;                   /* a ReLU folded */
};

static void panels_of(void *ctx, int first, int end, int thread)
{
    const struct panels_pass *p = ctx;
    const struct amil_layer *l = p->l, *in = p->in;
    float *scratch = p->scratch + thread * amil_conv2d_panel_scratch(in->c, l->kernel, l->c);
    if (p->weight16)
        amil_conv2d_panels_bf16(p->k, p->out, scratch, p->inp, p->weight16, p->bias, p->relu,
                                in->c, in->h, in->w, l->c, l->kernel, l->stride, l->pad, first,
                                end);
    else
        amil_conv2d_panels(p->k, p->out, scratch, p->inp, p->weight, p->bias, p->relu, in->c,
                           in->h, in->w, l->c, l->kernel, l->stride, l->pad, first, end);
}

/* out (OC, OH, OW) = convolution i of one image inp (C, H, W) (then the
 * ReLU, with relu), threads splitting its panels of positions, each with
 * its scratch in w->packs */
static void conv_panels(const struct amil_cnn *m, struct amil_cnn_work *w, int i, float *out,
                        const float *inp, const float *weight, const float *bias, int relu)
{
    const struct amil_layer *l = &m->layers[i], *in = &m->layers[l->input];
    const uint16_t *weight16 = panels_bf16(m, w->kernels, l, in)
                                   ? panels_weights_bf16(m, w->owner ? w->owner : w, i)
                                   : NULL;
    struct panels_pass pass = {w->kernels, l, in, out, w->packs, inp, weight, bias, weight16,
                               relu};
    cnn_run(w, amil_conv2d_panel_count(l->h, l->w), panels_of, &pass);
}

void amil_cnn_prepare(const struct amil_cnn *m, struct amil_cnn_work *w)
{
    fit(m, w, 1, 0);
    size_t n_tiles;
    for (int i = 1; i < m->nlayers; i++) {
        const float *weight, *bias;
        if (m->layers[i].op == AMIL_OP_CONV)   /* folded weights */
            cnn_conv_params(m, w, i, &weight, &bias);
        const struct amil_layer *l = &m->layers[i], *in = &m->layers[l->input];
        if (cnn_winograd_fits(m, w->kernels, l, in, &n_tiles))
            cnn_winograd_prepare(m, w, i);
        else if (panels_fit(w->kernels, l) && panels_bf16(m, w->kernels, l, in))
            panels_weights_bf16(m, w, i);
    }
}

static void forward_layer(const struct amil_cnn *m, struct amil_cnn_work *w, int i, int B,
                          gsl_rng *rng)
{
    const struct amil_layer *l = &m->layers[i], *in = &m->layers[l->input];
    float *out = w->out[i];
    const float *inp = w->out[l->input];
    size_t n = layer_size(l) * B, per_in = layer_size(in), per_out = layer_size(l);
    switch (l->op) {
    case AMIL_OP_INPUT:
        break;
    case AMIL_OP_CONV: {
        /* with the layers folded into it, it writes the last one's output */
        const float *weight, *bias;
        cnn_conv_params(m, w->owner ? w->owner : w, i, &weight, &bias);
        out = w->out[w->fold_to[i]];
        size_t n_tiles;
        struct shifted z;
        int relu = w->fold_to[i] == i + 2;   /* a ReLU folded */
        if (cnn_winograd_fits(m, w->kernels, l, in, &n_tiles)) {
            for (int b = 0; b < B; b++)
                cnn_winograd_conv(m, w, i, out + b * per_out, inp + b * per_in, relu);
            relu = 0;   /* done */
        } else if (panels_fit(w->kernels, l)) {
            for (int b = 0; b < B; b++)
                conv_panels(m, w, i, out + b * per_out, inp + b * per_in, weight, bias, relu);
            relu = 0;   /* done */
        } else if (shifted_sizes(w->kernels, l, in, &z))
            for (int b = 0; b < B; b++)
                conv_shifted(w, l, in, &z, out + b * per_out, inp + b * per_in, weight,
                             bias);
        else
            for (int b = 0; b < B; b++)
                amil_conv2d_forward(out + b * per_out, w->cols, inp + b * per_in, weight, bias,
                                    1, in->c, in->h, in->w, l->c, l->kernel, l->stride,
                                    l->pad);
        if (relu)
            amil_relu_forward(out, n);
        break;
    }
    case AMIL_OP_BATCHNORM:
        amil_batchnorm_forward(out, inp, PARAM(m, l, 0), PARAM(m, l, 1), PARAM(m, l, 2),
                               PARAM(m, l, 3), B, l->c, (size_t)l->h * l->w);
        break;
    case AMIL_OP_RELU:
        memcpy(out, inp, sizeof *out * n);
        amil_relu_forward(out, n);
        break;
    case AMIL_OP_LEAKY_RELU:
        memcpy(out, inp, sizeof *out * n);
        amil_leaky_relu_forward(out, n, LEAKY_SLOPE);
        break;
    case AMIL_OP_MAXPOOL:
        amil_maxpool_forward(out, w->forward_only ? NULL : w->argmax[i], inp, (size_t)B * l->c, in->h, in->w,
                             l->kernel, l->stride, l->pad);
        break;
    case AMIL_OP_AVGPOOL:
        amil_avgpool_forward(out, inp, (size_t)B * l->c, in->h, in->w, l->h, l->w);
        break;
    case AMIL_OP_LINEAR:
        amil_linear_forward(out, inp, PARAM(m, l, 0), PARAM(m, l, 1), B, (int)per_in, l->c);
        break;
    case AMIL_OP_DROPOUT:
        memcpy(out, inp, sizeof *out * n);
        if (rng && i > first_trained(m)) {
            double *uniform = amil_xmalloc(sizeof *uniform * n);
            for (size_t j = 0; j < n; j++)
                uniform[j] = gsl_rng_uniform(rng);
            amil_dropout_forward(out, w->mask[i], uniform, n, DROPOUT_P);
            free(uniform);
        } else
            for (size_t j = 0; j < n; j++)
                w->mask[i][j] = 1;
        break;
    case AMIL_OP_ADD:
        if (m->cam_layer < 0 && i < m->features) {   /* a transformer's: by image, as
                                                        its other layers */
            cnn_token_images(m, w, i, B);
        } else {
            out = w->out[w->fold_to[i]];
            if (w->fold_to[i] == i + 1)   /* a ReLU folded */
                amil_add_relu_forward(out, inp, w->out[l->input2], n);
            else
                amil_add_forward(out, inp, w->out[l->input2], n);
        }
        break;
    case AMIL_OP_EMBED:
    case AMIL_OP_LAYERNORM:
    case AMIL_OP_SELF_ATTENTION:
    case AMIL_OP_GELU:
    case AMIL_OP_SCALE:
    case AMIL_OP_POOL_TOKENS:
        cnn_token_images(m, w, i, B);
        break;
    case AMIL_OP_TOKEN_LINEAR:
        if (product_fits(m, w->kernels, l))
            cnn_token_linear(m, w, i, out, inp, B * l->h);
        else
            amil_linear_forward(out, inp, PARAM(m, l, 0), PARAM(m, l, 1), B * l->h, in->w,
                                l->w);
        break;
    }
}

void amil_cnn_forward(const struct amil_cnn *m, struct amil_cnn_work *w,
                      const uint8_t *images, int B, void *rng)
{
    fit(m, w, B, 0);
    const struct amil_layer *in = &m->layers[0];
    float table[3][256];
    amil_norm_table(m->norm, table);
    size_t hw = (size_t)in->h * in->w;
    /* (B, H, W, C) bytes -> (B, C, H, W) floats */
    for (int b = 0; b < B; b++)
        for (int c = 0; c < 3; c++) {
            float *plane = w->out[0] + ((size_t)b * 3 + c) * hw;
            const uint8_t *px = images + (size_t)b * hw * 3 + c;
            for (size_t j = 0; j < hw; j++)
                plane[j] = table[c][px[3 * j]];
        }
    for (int i = 1; i < m->nlayers; i++) {
        if (w->fold_to[i] < 0)   /* folded into the convolution before it */
            continue;
        double start = w->seconds ? amil_seconds() : 0;
        forward_layer(m, w, i, B, rng);
        if (w->seconds)
            w->seconds[i] += amil_seconds() - start;
    }
}

void amil_cnn_forward_head(const struct amil_cnn *m, struct amil_cnn_work *w,
                           const float *features, int B, void *rng)
{
    fit(m, w, B, m->features);
    memcpy(w->out[m->features], features,
           sizeof *features * layer_size(&m->layers[m->features]) * B);
    for (int i = m->features + 1; i < m->nlayers; i++)
        forward_layer(m, w, i, B, rng);
}

/* ---- backward ----------------------------------------------------------- */

static void backward_layer(const struct amil_cnn *m, struct amil_cnn_work *w, int i, int B,
                           int stop, enum amil_backward how, float *grads)
{
    const struct amil_layer *l = &m->layers[i], *in = &m->layers[l->input];
    const float *g = w->grad[i], *out = w->out[i], *inp = w->out[l->input];
    float *gin = l->input >= stop ? w->grad[l->input] : NULL;
    int learn = grads && l->param >= m->trained;
    size_t n = layer_size(l) * B, per_in = layer_size(in), per_out = layer_size(l);
    switch (l->op) {
    case AMIL_OP_INPUT:
        break;
    case AMIL_OP_CONV:
        if (!gin && !learn)
            break;
        for (int b = 0; b < B; b++) {
            if (learn)
                amil_im2col(w->cols, inp + b * per_in, 1, in->c, in->h, in->w, l->kernel,
                            l->stride, l->pad);
            amil_conv2d_backward(gin ? gin + b * per_in : NULL,
                                 learn ? grads + m->params.at[l->param].offset : NULL,
                                 learn && l->has_bias ? grads + m->params.at[l->param + 1].offset
                                                      : NULL,
                                 w->dcols, g + b * per_out, w->cols, PARAM(m, l, 0), 1, in->c,
                                 in->h, in->w, l->c, l->kernel, l->stride, l->pad);
        }
        break;
    case AMIL_OP_BATCHNORM:
        if (gin)
            amil_batchnorm_backward(gin, g, PARAM(m, l, 0), PARAM(m, l, 1), PARAM(m, l, 2),
                                    PARAM(m, l, 3), B, l->c, (size_t)l->h * l->w);
        break;
    case AMIL_OP_RELU:
    case AMIL_OP_LEAKY_RELU: {
        float slope = l->op == AMIL_OP_RELU ? 0 : LEAKY_SLOPE;
        if (gin && how == AMIL_BACKWARD_GUIDED)
            amil_guided_relu_backward(gin, g, out, n, slope);
        else if (gin)
            amil_leaky_relu_backward(gin, g, out, n, slope);
        break;
    }
    case AMIL_OP_MAXPOOL:
        if (gin)
            amil_maxpool_backward(gin, g, w->argmax[i], (size_t)B * l->c, in->h, in->w, l->h,
                                  l->w);
        break;
    case AMIL_OP_AVGPOOL:
        if (gin)
            amil_avgpool_backward(gin, g, (size_t)B * l->c, in->h, in->w, l->h, l->w);
        break;
    case AMIL_OP_LINEAR:
        amil_linear_backward(gin, learn ? grads + m->params.at[l->param].offset : NULL,
                             learn ? grads + m->params.at[l->param + 1].offset : NULL, g, inp,
                             PARAM(m, l, 0), B, (int)per_in, l->c);
        break;
    case AMIL_OP_DROPOUT:
        if (gin)
            amil_dropout_backward(gin, g, w->mask[i], n);
        break;
    case AMIL_OP_ADD:
        amil_add_backward(gin, l->input2 >= stop ? w->grad[l->input2] : NULL, g, n);
        break;
    case AMIL_OP_EMBED:
    case AMIL_OP_LAYERNORM:
    case AMIL_OP_TOKEN_LINEAR:
    case AMIL_OP_SELF_ATTENTION:
    case AMIL_OP_GELU:
    case AMIL_OP_SCALE:
    case AMIL_OP_POOL_TOKENS:
        break;   /* a frozen encoder's, below every map and the features:
                    backward stops above them */
    }
}

void amil_cnn_backward(const struct amil_cnn *m, struct amil_cnn_work *w,
                       const float *dscores, int B, int stop, enum amil_backward how,
                       float *grads)
{
    int last = m->nlayers - 1;
    for (int i = stop; i < last; i++)
        memset(w->grad[i], 0, sizeof(float) * layer_size(&m->layers[i]) * B);
    memcpy(w->grad[last], dscores, sizeof *dscores * m->classes * B);
    for (int i = last; i > stop; i--)
        backward_layer(m, w, i, B, stop, how, grads);
}

void amil_cnn_gradcam(const struct amil_cnn *m, const struct amil_cnn_work *w, int layer,
                      int b, float *cam)
{
    const struct amil_layer *l = &m->layers[layer];
    size_t hw = (size_t)l->h * l->w;
    const float *A = w->out[layer] + (size_t)b * l->c * hw;
    const float *dA = w->grad[layer] + (size_t)b * l->c * hw;
    double *sum = amil_xcalloc(hw, sizeof *sum);
    for (int k = 0; k < l->c; k++) {
        double alpha = 0;
        for (size_t j = 0; j < hw; j++)
            alpha += dA[k * hw + j];
        alpha /= (double)hw;
        for (size_t j = 0; j < hw; j++)
            sum[j] += alpha * A[k * hw + j];
    }
    for (size_t j = 0; j < hw; j++)
        cam[j] = sum[j] > 0 ? (float)sum[j] : 0;
    free(sum);
}

void amil_cnn_softmax(const struct amil_cnn *m, const float *scores, float *prob)
{
    memcpy(prob, scores, sizeof *prob * m->classes);
    amil_softmax_forward(prob, 1, m->classes);
}

double amil_cnn_loss(const struct amil_cnn *m, const float *scores, const long *labels,
                     int B, float *dscores)
{
    double sum = 0;
    for (int b = 0; b < B; b++) {
        float *d = dscores ? dscores + (size_t)b * m->classes : NULL;
        sum += amil_cross_entropy(scores + (size_t)b * m->classes, m->classes,
                                  (int)labels[b], d);
        for (int c = 0; d && c < m->classes; c++)
            d[c] /= (float)B;
    }
    return sum / B;
}

/* ---- images and their tiles ---------------------------------------------- */

int amil_cnn_feature_size(const struct amil_cnn *m)
{
    return (int)layer_size(&m->layers[m->features]);
}
