/* cnn_winograd.c: a frozen 3×3 convolution of cnn.h as Winograd's
 * F(2×2, 3×3) on the lane kernels: the weights transformed once and kept,
 * each image's input transformed, 16 products, the output transform; or
 * as F(4×4, 3×3) (cnn_winograd4.c) where that fits. */
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "compute/kernels.h"
#include "models/cnn.h"
#include "models/cnn_impl.h"

/* Whether a convolution runs as Winograd's F(2×2, 3×3) or F(4×4, 3×3):
 * 3×3, stride 1, padding 1, frozen (its transformed weights are made once
 * and kept), output channels a multiple of the lanes.  F(4×4) where its
 * weights (36·C·OC floats, 2.4 MB at 128 channels) stay in cache and its
 * tiles cover the image well: at most 128 input channels, sides of 28 and
 * more.  Returns the values of a tile (16 or 36, 0: neither) and sets its
 * count of output tiles. */
int cnn_winograd_fits(const struct amil_cnn *m, const struct amil_kernels *k,
                      const struct amil_layer *l, const struct amil_layer *in, size_t *n_tiles)
{
    if (l->op != AMIL_OP_CONV || l->kernel != 3 || l->stride != 1 || l->pad != 1 || !k ||
        l->param >= m->trained || l->c % k->lanes != 0)
        return 0;
    if (in->c <= 128 && in->h >= 28 && in->w >= 28) {
        *n_tiles = (size_t)((in->h + 3) / 4) * ((in->w + 3) / 4);
        return 36;
    }
    *n_tiles = (size_t)((in->h + 1) / 2) * ((in->w + 1) / 2);
    return 16;
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

/* input channels c_first .. c_end-1 of U: threads split them.  Sixteen
 * output channels at a time, gathered into columns, so that the arithmetic
 * runs along them and each of U's rows is stored sixteen floats at once
 * (one at a time, resnet18's took 50 ms a process). */
static void winograd_weights(void *ctx, int c_first, int c_end, int thread)
{
    (void)thread;
    enum { BLOCK = 16 };
    const struct winograd_pass *p = ctx;
    float *U = p->U;
    const float *weight = p->weight;
    int OC = p->OC, C = p->C;
    size_t plane = (size_t)OC * C;
    for (int c = c_first; c < c_end; c++)
        for (int o0 = 0; o0 < OC; o0 += BLOCK) {
            int n = OC - o0 < BLOCK ? OC - o0 : BLOCK;
            float g[9][BLOCK] = {{0}};   /* float sums into double, as one at a time */
            double t[4][3][BLOCK];
            for (int o = 0; o < n; o++)
                for (int j = 0; j < 9; j++)
                    g[j][o] = weight[((size_t)(o0 + o) * C + c) * 9 + j];
            for (int j = 0; j < 3; j++)   /* t = G g */
                for (int o = 0; o < BLOCK; o++) {
                    t[0][j][o] = g[j][o];
                    t[1][j][o] = 0.5 * (g[j][o] + g[3 + j][o] + g[6 + j][o]);
                    t[2][j][o] = 0.5 * (g[j][o] - g[3 + j][o] + g[6 + j][o]);
                    t[3][j][o] = g[6 + j][o];
                }
            for (int i = 0; i < 4; i++) {   /* u = t Gᵀ, row i */
                float u[4][BLOCK];
                for (int o = 0; o < BLOCK; o++) {
                    u[0][o] = (float)t[i][0][o];
                    u[1][o] = (float)(0.5 * (t[i][0][o] + t[i][1][o] + t[i][2][o]));
                    u[2][o] = (float)(0.5 * (t[i][0][o] - t[i][1][o] + t[i][2][o]));
                    u[3][o] = (float)t[i][2][o];
                }
                for (int j = 0; j < 4; j++)
                    memcpy(U + (size_t)(4 * i + j) * plane + (size_t)c * OC + o0, u[j],
                           sizeof(float) * n);
            }
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
const float *cnn_winograd_prepare(const struct amil_cnn *m, struct amil_cnn_work *w, int i)
{
    const struct amil_layer *l = &m->layers[i];
    const float *weight, *bias;
    cnn_conv_params(m, w, i, &weight, &bias);
    if (!w->prepared[i] || w->prepared_of[i] != weight) {
        int C = m->layers[l->input].c, OC = l->c;
        size_t n_tiles;
        free(w->prepared[i]);
        if (cnn_winograd_fits(m, w->kernels, l, &m->layers[l->input], &n_tiles) == 36) {
            w->prepared[i] = cnn_winograd4_weights(w, weight, C, OC);
        } else {
            w->prepared[i] = amil_xaligned(sizeof(float) * 16 * OC * C);
            struct winograd_pass pass = {w->prepared[i], weight, OC, C};
            cnn_run(w, C, winograd_weights, &pass);
        }
        w->prepared_of[i] = weight;
    }
    return w->prepared[i];
}

void cnn_winograd_conv(const struct amil_cnn *m, struct amil_cnn_work *w, int i,
                          float *out, const float *inp)
{
    const struct amil_layer *l = &m->layers[i], *in = &m->layers[l->input];
    int C = in->c, OC = l->c;
    size_t N = (size_t)((in->h + 1) / 2) * ((in->w + 1) / 2), plane = (size_t)OC * C;
    const float *U = cnn_winograd_prepare(m, w->owner ? w->owner : w, i);
    const float *weight, *bias;
    cnn_conv_params(m, w->owner ? w->owner : w, i, &weight, &bias);
    if (cnn_winograd_fits(m, w->kernels, l, in, &N) == 36) {
        cnn_winograd4_conv(w, U, bias, out, inp, C, in->h, in->w, OC);
        return;
    }
    winograd_input(w->kernels, w->tiles, inp, C, in->h, in->w);
    for (int x = 0; x < 16; x++) {
        struct product_pass pass = {w->kernels, w->products + x * N * OC, w->tiles + x * C * N,
                                    N, U + x * plane, C, OC};
        cnn_run(w, (int)N, product_of_rows, &pass);
    }
    w->kernels->winograd_output(out, w->products, bias, OC, l->h, l->w);
}

