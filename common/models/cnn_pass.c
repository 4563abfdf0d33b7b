/* cnn_pass.c: the CNN baselines of cnn.h forward and backward over a
 * batch: work buffers, the convolutions' fast forward paths (shifted rows
 * on the lane kernels; Winograd F(2×2, 3×3) for a frozen 3×3), each layer
 * through nn.h, Grad-CAM and the loss. */
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

#define LEAKY_SLOPE 0.01f
#define DROPOUT_P 0.5f

/* ---- work buffers ------------------------------------------------------- */

#define PANEL 64   /* a token linear's outputs packed at a time: a multiple
                      of every set's lanes */

static size_t layer_size(const struct amil_layer *l) { return (size_t)l->c * l->h * l->w; }

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

/* Whether a convolution runs as Winograd's F(2×2, 3×3) (winograd_conv):
 * 3×3, stride 1, padding 1, frozen (its transformed weights are made once
 * and kept), output channels a multiple of the lanes; if so, its count of
 * 2×2 output tiles. */
static int winograd_fits(const struct amil_cnn *m, const struct amil_kernels *k,
                         const struct amil_layer *l, const struct amil_layer *in,
                         size_t *n_tiles)
{
    if (l->op != AMIL_OP_CONV || l->kernel != 3 || l->stride != 1 || l->pad != 1 || !k ||
        l->param >= m->trained || l->c % k->lanes != 0)
        return 0;
    *n_tiles = (size_t)((in->h + 1) / 2) * ((in->w + 1) / 2);
    return 1;
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
        last[l->input] = i;
        if (l->input2 >= 0)
            last[l->input2] = i;
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
    if (w->out && w->capacity >= B && w->nlayers == m->nlayers && w->from <= from &&
        w->fit_forward_only == w->forward_only)
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
            size_t c = (size_t)m->layers[l->input].w * PANEL * amil_thread_count();
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
            if (winograd_fits(m, w->kernels, l, in, &n_tiles)) {
                tiles = 16 * in->c * n_tiles > tiles ? 16 * in->c * n_tiles : tiles;
                products = 16 * l->c * n_tiles > products ? 16 * l->c * n_tiles : products;
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
    w->cols = amil_xaligned(sizeof(float) * cols * (m->cam_layer < 0 ? amil_thread_count() : 1));
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

/* amil_parallel, or every task in this thread when w is a worker's own
 * (featurize's tiles split over the threads: one pool, one caller) */
static void run(const struct amil_cnn_work *w, int tasks, amil_task_fn *fn, void *ctx)
{
    if (w->serial)
        fn(ctx, 0, tasks, 0);
    else
        amil_parallel(tasks, fn, ctx);
}

#define PARAM(m, l, k) ((m)->params.at[(l)->param + (k)].data)

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
static void conv_shifted(const struct amil_cnn *m, struct amil_cnn_work *w,
                         const struct amil_layer *l, const struct amil_layer *in,
                         const struct shifted *z, float *out, const float *inp)
{
    int K = l->kernel, S = l->stride, pad = l->pad, C = in->c;
    const float *weight = PARAM(m, l, 0);
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
                                  z->in_stride, phase_weight,
                                  l->has_bias ? PARAM(m, l, 1) : NULL, off, T, C, l->c,
                                  phase > 0};
        run(w, (int)(z->positions / pass.k->shift_block), shift_of_blocks, &pass);
    }
    for (int oc = 0; oc < l->c; oc++)
        for (int y = 0; y < l->h; y++)
            memcpy(out + ((size_t)oc * l->h + y) * l->w,
                   w->shifted + oc * z->positions + (size_t)y * z->Wq, sizeof(float) * l->w);
}

/* ---- Winograd F(2×2, 3×3) ------------------------------------------------
 *
 * Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks"
 * (CVPR 2016): each 2×2 block of outputs of a 3×3 convolution is
 * Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A, d the 4×4 input around it, g a 3×3 kernel;
 * summed over the input channels, the ⊙ becomes 16 matrix products
 * (tiles, C) × (C, OC), 16 multiplies per 4 outputs instead of 36.  The
 * products run on the kernels' product (output channels in lanes); the
 * weights are transformed once per frozen layer and kept. */

/* U (16, C, OC) = G g Gᵀ of every kernel g (OC, C, 3, 3), transposed so
 * that the output channels are consecutive */
struct winograd_pass {
    float *U;
    const float *weight;
    int OC, C;
};

/* input channels c_first .. c_end-1 of U: threads split them */
static void winograd_weights(void *ctx, int c_first, int c_end, int thread)
{
    (void)thread;
    const struct winograd_pass *p = ctx;
    float *U = p->U;
    const float *weight = p->weight;
    int OC = p->OC, C = p->C;
    size_t plane = (size_t)OC * C;
    for (int c = c_first; c < c_end; c++)   /* along U's rows, so that its stores stream */
        for (int oc = 0; oc < OC; oc++) {
            const float *g = weight + ((size_t)oc * C + c) * 9;
            double t[4][3], u[4][4];
            for (int j = 0; j < 3; j++) {   /* t = G g */
                t[0][j] = g[j];
                t[1][j] = 0.5 * (g[j] + g[3 + j] + g[6 + j]);
                t[2][j] = 0.5 * (g[j] - g[3 + j] + g[6 + j]);
                t[3][j] = g[6 + j];
            }
            for (int i = 0; i < 4; i++) {   /* u = t Gᵀ */
                u[i][0] = t[i][0];
                u[i][1] = 0.5 * (t[i][0] + t[i][1] + t[i][2]);
                u[i][2] = 0.5 * (t[i][0] - t[i][1] + t[i][2]);
                u[i][3] = t[i][2];
            }
            for (int x = 0; x < 16; x++)
                U[x * plane + (size_t)c * OC + oc] = (float)u[x / 4][x % 4];
        }
}

/* V (16, C, N) = Bᵀ d B of every 4×4 input block d of inp (C, H, W) (rows
 * 2ty-1 .. 2ty+2, columns 2tx-1 .. 2tx+2, zero outside), N = the tiles.
 * Each input row is split once into its odd and even columns, so that the
 * kernel's loop over blocks runs along consecutive floats. */
static void winograd_input(const struct amil_kernels *k, float *V, const float *inp, int C,
                           int H, int W)
{
    int th = (H + 1) / 2, tw = (W + 1) / 2;
    size_t N = (size_t)th * tw, plane = (size_t)C * N, stride = (size_t)tw + 1;
    /* one channel's rows -1 .. 2·th, each split in two arrays of stride
     * floats: columns 2j-1 at j, then columns 2j at j (zero outside) */
    size_t rows = 2 * (size_t)th + 2;
    float *split = amil_xcalloc(rows * 2 * stride + 2 * (size_t)k->lanes, sizeof(float));
    for (int c = 0; c < C; c++) {
        for (size_t r = 0; r < rows; r++) {
            int y = (int)r - 1;
            float *odd = split + r * 2 * stride, *even = odd + stride;
            const float *row = inp + ((size_t)c * H + (y >= 0 ? y : 0)) * W;
            int inside = y >= 0 && y < H;
            for (size_t j = 0; j < stride; j++) {
                long x = 2 * (long)j - 1;
                odd[j] = inside && x >= 0 && x < W ? row[x] : 0;
                even[j] = inside && x + 1 < W ? row[x + 1] : 0;
            }
        }
        for (int ty = 0; ty < th; ty++)
            k->winograd_input_row(V + (size_t)c * N + (size_t)ty * tw, plane,
                                  split + 2 * (size_t)ty * 2 * stride, 2 * stride, tw);
    }
    free(split);
}

struct product_pass {
    const struct amil_kernels *k;
    float *out;
    const float *x;
    size_t x_stride;
    const float *a;
    int C, OC;
};

static void product_of_rows(void *ctx, int first, int end, int thread)
{
    (void)thread;
    const struct product_pass *p = ctx;
    p->k->product(p->out, p->OC, p->x, p->x_stride, 1, p->a, NULL, p->C, p->OC, first, end);
}

/* Layer i's Winograd weights in w, made if they are not (or were made from
 * other weights). */
static const float *prepare_winograd(const struct amil_cnn *m, struct amil_cnn_work *w, int i)
{
    const struct amil_layer *l = &m->layers[i];
    const float *weight = PARAM(m, l, 0);
    if (!w->prepared[i] || w->prepared_of[i] != weight) {
        int C = m->layers[l->input].c, OC = l->c;
        free(w->prepared[i]);
        w->prepared[i] = amil_xaligned(sizeof(float) * 16 * OC * C);
        struct winograd_pass pass = {w->prepared[i], weight, OC, C};
        run(w, C, winograd_weights, &pass);
        w->prepared_of[i] = weight;
    }
    return w->prepared[i];
}

void amil_cnn_prepare(const struct amil_cnn *m, struct amil_cnn_work *w)
{
    fit(m, w, 1, 0);
    size_t n_tiles;
    for (int i = 1; i < m->nlayers; i++)
        if (winograd_fits(m, w->kernels, &m->layers[i], &m->layers[m->layers[i].input],
                          &n_tiles))
            prepare_winograd(m, w, i);
}

static void winograd_conv(const struct amil_cnn *m, struct amil_cnn_work *w, int i,
                          float *out, const float *inp)
{
    const struct amil_layer *l = &m->layers[i], *in = &m->layers[l->input];
    int C = in->c, OC = l->c;
    size_t N = (size_t)((in->h + 1) / 2) * ((in->w + 1) / 2), plane = (size_t)OC * C;
    const float *U = prepare_winograd(m, w->owner ? w->owner : w, i);
    winograd_input(w->kernels, w->tiles, inp, C, in->h, in->w);
    for (int x = 0; x < 16; x++) {
        struct product_pass pass = {w->kernels, w->products + x * N * OC, w->tiles + x * C * N,
                                    N, U + x * plane, C, OC};
        run(w, (int)N, product_of_rows, &pass);
    }
    w->kernels->winograd_output(out, w->products, l->has_bias ? PARAM(m, l, 1) : NULL, OC,
                                l->h, l->w);
}

/* ---- tokens ---------------------------------------------------------------- */

#define LAYERNORM_EPS 1e-6f   /* torchvision's and timm's ViTs' */

/* tokens (T, D) of one image inp (C, H, W): the class token, then each
 * P×P patch (row by row, into rows: scratch of C·H·W) times the weights
 * (D, C·P·P) plus bias; then plus the positions (T, D) */
static void embed(const struct amil_cnn *m, float *rows, const struct amil_layer *l,
                  const struct amil_layer *in, float *tokens, const float *inp)
{
    int P = l->kernel, T = l->h, D = l->w;
    amil_patchify(rows, inp, in->c, in->h, in->w, P);
    memcpy(tokens, PARAM(m, l, 2), sizeof *tokens * D);
    amil_linear_forward(tokens + D, rows, PARAM(m, l, 0), PARAM(m, l, 1), T - 1,
                        in->c * P * P, D);
    const float *position = PARAM(m, l, 3);
    for (size_t j = 0; j < (size_t)T * D; j++)
        tokens[j] += position[j];
}

/* A token linear's outputs go a panel at a time: its weights' rows
 * transposed into the thread's pack (C, PANEL), in cache, then every row
 * through the product kernel; threads split the panels.  Weights read as
 * the file has them: no copy of them kept, nothing made at first use. */

struct linear_pass {
    const struct amil_kernels *k;
    float *out;             /* (rows, OC) */
    const float *inp;       /* (rows, C) */
    const float *weight, *bias;   /* (OC, C), (OC) */
    float *packs;           /* per thread, (C, PANEL) */
    int rows, C, OC;
};

static void linear_of_panels(void *ctx, int first, int end, int thread)
{
    const struct linear_pass *p = ctx;
    float *pack = p->packs + (size_t)thread * p->C * PANEL;
    for (int panel = first; panel < end; panel++) {
        int o0 = panel * PANEL, P = p->OC - o0 < PANEL ? p->OC - o0 : PANEL;
        /* pack (C, P) = rows o0 .. o0+P-1 of the weights transposed, in
         * blocks of 16 × 16 */
        for (int c0 = 0; c0 < p->C; c0 += 16)
            for (int o = 0; o < P; o++)
                for (int c = c0; c < p->C && c < c0 + 16; c++)
                    pack[(size_t)c * P + o] = p->weight[(size_t)(o0 + o) * p->C + c];
        p->k->product(p->out + o0, (size_t)p->OC, p->inp, 1, (size_t)p->C, pack, p->bias + o0,
                      p->C, P, 0, p->rows);
    }
}

/* out (rows, OC) = inp (rows, C) · weight (OC, C)ᵀ + bias on the product
 * kernel.  At 197 × 768 × 2304 (a ViT-B/16 block's qkv) the kernel ran at
 * 210 GFLOP/s on one core of a measured 231 peak, OpenBLAS's SGEMM
 * (forced to Haswell) at 103. */
/* The bfloat16 path: the weights rounded once (w->prepared[i], pairs of
 * input channels, (C/2, OC, 2)), the input each time (w->bf16_rows);
 * threads split the panels as in f32, with nothing to pack. */
struct bf16_pass {
    const struct amil_kernels *k;
    float *out;
    const uint16_t *x, *a;
    const float *bias;
    int rows, C, OC;
};

static void bf16_of_panels(void *ctx, int first, int end, int thread)
{
    (void)thread;
    const struct bf16_pass *p = ctx;
    for (int panel = first; panel < end; panel++) {
        int o0 = panel * PANEL, P = p->OC - o0 < PANEL ? p->OC - o0 : PANEL;
        p->k->product_bf16(p->out + o0, (size_t)p->OC, p->x, (size_t)p->C, p->a + 2 * o0,
                           2 * (size_t)p->OC, p->bias + o0, p->C / 2, P, 0, p->rows);
    }
}

static void token_linear_bf16(const struct amil_cnn *m, struct amil_cnn_work *w, int i,
                              float *out, const float *inp, int rows)
{
    const struct amil_layer *l = &m->layers[i];
    int C = m->layers[l->input].w, OC = l->w;
    const float *weight = PARAM(m, l, 0);
    if (!w->prepared[i] || w->prepared_of[i] != weight) {
        free(w->prepared[i]);
        float *row = amil_xmalloc(sizeof *row * OC * 2);
        uint16_t *a = (uint16_t *)(w->prepared[i] = amil_xaligned(sizeof(uint16_t) * C * OC));
        for (int p = 0; p < C / 2; p++) {   /* a[p][o][k] = weight[o][2p + k] */
            for (int o = 0; o < OC; o++)
                row[2 * o] = weight[(size_t)o * C + 2 * p],
                row[2 * o + 1] = weight[(size_t)o * C + 2 * p + 1];
            w->kernels->to_bf16(a + (size_t)p * OC * 2, row, (size_t)OC * 2);
        }
        free(row);
        w->prepared_of[i] = weight;
    }
    w->kernels->to_bf16(w->bf16_rows, inp, (size_t)rows * C);
    struct bf16_pass pass = {w->kernels, out, w->bf16_rows, (const uint16_t *)w->prepared[i],
                             PARAM(m, l, 1), rows, C, OC};
    run(w, (OC + PANEL - 1) / PANEL, bf16_of_panels, &pass);
}

static void token_linear(const struct amil_cnn *m, struct amil_cnn_work *w, int i, float *out,
                         const float *inp, int rows)
{
    if (m->form.bf16) {
        token_linear_bf16(m, w, i, out, inp, rows);
        return;
    }
    const struct amil_layer *l = &m->layers[i];
    int C = m->layers[l->input].w, OC = l->w;
    struct linear_pass pass = {w->kernels, out, inp, PARAM(m, l, 0), PARAM(m, l, 1), w->packs,
                               rows, C, OC};
    run(w, (OC + PANEL - 1) / PANEL, linear_of_panels, &pass);
}

/* out (D) = the class token of tokens (T, D), or the mean of the others */
static void pool_tokens(float *out, const float *tokens, int T, int D, int pool)
{
    if (pool == AMIL_POOL_TOKEN) {
        memcpy(out, tokens, sizeof *out * D);
        return;
    }
    for (int d = 0; d < D; d++) {
        double sum = 0;
        for (int t = 1; t < T; t++)
            sum += tokens[(size_t)t * D + d];
        out[d] = (float)(sum / (T - 1));
    }
}

/* Layer i (a transformer's, but for its linears) over images first ..
 * end-1, each alone, thread's scratch its part of w->cols: threads split
 * the images. */
struct image_pass {
    const struct amil_cnn *m;
    struct amil_cnn_work *w;
    int i;
};

static void token_images(void *ctx, int first, int end, int thread)
{
    const struct image_pass *p = ctx;
    const struct amil_cnn *m = p->m;
    const struct amil_layer *l = &m->layers[p->i], *in = &m->layers[l->input];
    float *scratch = p->w->cols + (size_t)thread * p->w->cols_size;
    size_t per_in = layer_size(in), per_out = layer_size(l);
    for (int b = first; b < end; b++) {
        float *out = p->w->out[p->i] + b * per_out;
        const float *inp = p->w->out[l->input] + b * per_in;
        switch (l->op) {
        case AMIL_OP_EMBED:
            embed(m, scratch, l, in, out, inp);
            break;
        case AMIL_OP_LAYERNORM:
            amil_layernorm_forward(out, inp, PARAM(m, l, 0), PARAM(m, l, 1), (size_t)l->h,
                                   l->w, LAYERNORM_EPS);
            break;
        case AMIL_OP_SELF_ATTENTION:
            amil_self_attention_forward(out, scratch, inp, l->h, l->w, l->kernel);
            break;
        case AMIL_OP_GELU:
            memcpy(out, inp, sizeof *out * per_out);
            amil_gelu_forward(out, per_out);
            break;
        case AMIL_OP_SCALE:
            for (size_t j = 0; j < per_out; j++)
                out[j] = inp[j] * PARAM(m, l, 0)[j % l->w];
            break;
        case AMIL_OP_POOL_TOKENS:
            pool_tokens(out, inp, in->h, l->w, l->kernel);
            break;
        case AMIL_OP_ADD:
            amil_add_forward(out, inp, p->w->out[l->input2] + b * per_out, per_out);
            break;
        default:
            break;
        }
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
        size_t n_tiles;
        if (winograd_fits(m, w->kernels, l, in, &n_tiles)) {
            for (int b = 0; b < B; b++)
                winograd_conv(m, w, i, out + b * per_out, inp + b * per_in);
            break;
        }
        struct shifted z;
        if (shifted_sizes(w->kernels, l, in, &z)) {
            for (int b = 0; b < B; b++)
                conv_shifted(m, w, l, in, &z, out + b * per_out, inp + b * per_in);
            break;
        }
        for (int b = 0; b < B; b++)
            amil_conv2d_forward(out + b * per_out, w->cols, inp + b * per_in, PARAM(m, l, 0),
                                l->has_bias ? PARAM(m, l, 1) : NULL, 1, in->c, in->h, in->w,
                                l->c, l->kernel, l->stride, l->pad);
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
        amil_maxpool_forward(out, w->argmax[i], inp, (size_t)B * l->c, in->h, in->w,
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
            struct image_pass pass = {m, w, i};
            run(w, B, token_images, &pass);
        } else
            amil_add_forward(out, inp, w->out[l->input2], n);
        break;
    case AMIL_OP_EMBED:
    case AMIL_OP_LAYERNORM:
    case AMIL_OP_SELF_ATTENTION:
    case AMIL_OP_GELU:
    case AMIL_OP_SCALE:
    case AMIL_OP_POOL_TOKENS: {
        struct image_pass pass = {m, w, i};
        run(w, B, token_images, &pass);
        break;
    }
    case AMIL_OP_TOKEN_LINEAR:
        if (product_fits(m, w->kernels, l))
            token_linear(m, w, i, out, inp, B * l->h);
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
