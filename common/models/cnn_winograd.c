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
 * more; never in bfloat16 (cnn_winograd_bf16).  Returns the values of a
 * tile (16 or 36, 0: neither) and sets its count of output tiles. */
int cnn_winograd_fits(const struct amil_cnn *m, const struct amil_kernels *k,
                      const struct amil_layer *l, const struct amil_layer *in, size_t *n_tiles)
{
    if (l->op != AMIL_OP_CONV || l->kernel != 3 || l->stride != 1 || l->pad != 1 || !k ||
        l->param >= m->trained || l->c % k->lanes != 0)
        return 0;
    if (in->c <= 128 && in->h >= 28 && in->w >= 28 &&
        !cnn_winograd_bf16(m, k, in, 16)) {
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

/* V (16, C, nb) = Bᵀ d B of every 4×4 input block d of inp (C, H, W) in
 * block rows ty0 .. ty1-1 (rows 2ty-1 .. 2ty+2, columns 2tx-1 .. 2tx+2,
 * zero outside), nb = their tiles.  Each input row is split once into its
 * odd and even columns, so that the kernel's loop over blocks runs along
 * consecutive floats. */
static void winograd_input(const struct amil_kernels *k, float *V, const float *inp, int C,
                           int H, int W, int ty0, int ty1)
{
    int tw = (W + 1) / 2;
    size_t nb = (size_t)(ty1 - ty0) * tw, plane = (size_t)C * nb, stride = (size_t)tw + 1;
    /* one channel's rows 2·ty0-1 .. 2·ty1, each split in two arrays of
     * stride floats: columns 2j-1 at j, then columns 2j at j (zero outside) */
    size_t rows = 2 * (size_t)(ty1 - ty0) + 2;
    float *split = amil_xcalloc(rows * 2 * stride + 2 * (size_t)k->lanes, sizeof(float));
    for (int c = 0; c < C; c++) {
        for (size_t r = 0; r < rows; r++) {
            int y = 2 * ty0 + (int)r - 1;
            float *odd = split + r * 2 * stride, *even = odd + stride;
            const float *row = inp + ((size_t)c * H + (y >= 0 ? y : 0)) * W;
            int inside = y >= 0 && y < H;
            for (size_t j = 0; j < stride; j++) {
                long x = 2 * (long)j - 1;
                odd[j] = inside && x >= 0 && x < W ? row[x] : 0;
                even[j] = inside && x + 1 < W ? row[x + 1] : 0;
            }
        }
        for (int ty = ty0; ty < ty1; ty++)
            k->winograd_input_row(V + (size_t)c * nb + (size_t)(ty - ty0) * tw, plane,
                                  split + 2 * (size_t)(ty - ty0) * 2 * stride, 2 * stride, tw);
    }
    free(split);
}

int cnn_winograd_bf16(const struct amil_cnn *m, const struct amil_kernels *k,
                      const struct amil_layer *in, int values)
{
    return m->form.bf16 && k->product_bf16 && in->c % 2 == 0 && values == 16;
}

/* F(4×4)'s M (36, N, OC) = each of the tile's values' V (C, N) times its
 * U (C, OC): threads split the tiles. */
struct product_pass {
    const struct amil_kernels *k;
    float *out;             /* (N, OC) */
    const float *V, *U;
    size_t N;
    int C, OC;
};

static void product_of_rows(void *ctx, int first, int end, int thread)
{
    (void)thread;
    const struct product_pass *p = ctx;
    p->k->product(p->out, p->OC, p->V, p->N, 1, p->U, NULL, p->C, p->OC, first, end);
}

/* F(2×2) a block of tile rows at a time, each block's input transform,
 * products and output transform one after the other in one thread, so
 * that its V (16, C, nb) and M (16, nb, OC) stay in cache: about 64 tiles
 * a block.  Whole, ResNet50's first stage in bfloat16 (56×56, 64
 * channels) wrote and read 6 MB of them a layer; blocked, its 3×3 layers
 * and the next stage's took 8.1 → 7.5 ms a tile (bench/cnn). */
int cnn_winograd_block_rows(int W) { return (64 + (W + 1) / 2 - 1) / ((W + 1) / 2); }

size_t cnn_winograd_block_tiles(int H, int W)
{
    int th = (H + 1) / 2, rows = cnn_winograd_block_rows(W);
    return (size_t)(rows < th ? rows : th) * ((W + 1) / 2);
}

struct f2_pass {
    const struct amil_cnn_work *w;
    float *out;
    const float *inp, *bias;
    const void *U;          /* (16, C, OC), or (16, C/2, OC, 2) in bfloat16 */
    int C, H, W, OC, relu, bf16;
};

static void f2_blocks(void *ctx, int first, int end, int thread)
{
    const struct f2_pass *p = ctx;
    const struct amil_kernels *k = p->w->kernels;
    int tw = (p->W + 1) / 2, th = (p->H + 1) / 2, block_rows = cnn_winograd_block_rows(p->W);
    size_t most = cnn_winograd_block_tiles(p->H, p->W), plane = (size_t)p->C * p->OC;
    float *V = p->w->tiles + thread * 16 * most * p->C;
    float *M = p->w->products + thread * 16 * most * p->OC;
    uint16_t *pairs = p->bf16 ? p->w->bf16_rows + thread * most * p->C : NULL;
    for (int b = first; b < end; b++) {
        int ty0 = b * block_rows, ty1 = ty0 + block_rows < th ? ty0 + block_rows : th;
        size_t nb = (size_t)(ty1 - ty0) * tw;
        winograd_input(k, V, p->inp, p->C, p->H, p->W, ty0, ty1);
        for (int x = 0; x < 16; x++) {
            const float *Vx = V + x * nb * p->C;
            if (!p->bf16) {
                k->product(M + x * nb * p->OC, p->OC, Vx, nb, 1, (const float *)p->U + x * plane,
                           NULL, p->C, p->OC, 0, (int)nb);
                continue;
            }
            for (int c = 0; c < p->C; c += 2)   /* pair row c/2 at c·nb, tile n at 2n */
                k->pairs_bf16(pairs + (size_t)c * nb, Vx + (size_t)c * nb,
                              Vx + (size_t)(c + 1) * nb, nb);
            k->product_bf16(M + x * nb * p->OC, p->OC, pairs, 2 * nb, 2,
                            (const uint16_t *)p->U + x * plane, 2 * (size_t)p->OC, NULL,
                            p->C / 2, p->OC, 0, (int)nb);
        }
        k->winograd_output(p->out, M, p->bias, p->relu, p->OC, p->H, p->W, ty0, ty1);
    }
}

/* U (values, C, OC) in float made pairs of input channels in bfloat16,
 * (values, C/2, OC, 2); U freed */
static uint16_t *weights_bf16(const struct amil_kernels *k, float *U, int values, int C, int OC)
{
    uint16_t *pairs = amil_xaligned(sizeof *pairs * values * C * OC);
    for (size_t row = 0; row < (size_t)values * C; row += 2)   /* pair row row/2 */
        k->pairs_bf16(pairs + row * OC, U + row * OC, U + (row + 1) * OC, (size_t)OC);
    free(U);
    return pairs;
}

/* Layer i's Winograd weights in w, made if they are not (or were made
 * from other weights). */
const void *cnn_winograd_prepare(const struct amil_cnn *m, struct amil_cnn_work *w, int i)
{
    const struct amil_layer *l = &m->layers[i], *in = &m->layers[l->input];
    const float *weight, *bias;
    cnn_conv_params(m, w, i, &weight, &bias);
    if (!w->prepared[i] || w->prepared_of[i] != weight) {
        int C = in->c, OC = l->c;
        size_t n_tiles;
        int values = cnn_winograd_fits(m, w->kernels, l, in, &n_tiles);
        float *U;
        free(w->prepared[i]);
        if (values == 36) {
            U = cnn_winograd4_weights(w, weight, C, OC);
        } else {
            U = amil_xaligned(sizeof(float) * 16 * OC * C);
            struct winograd_pass pass = {U, weight, OC, C};
            cnn_run(w, C, winograd_weights, &pass);
        }
        if (cnn_winograd_bf16(m, w->kernels, in, values))
            w->prepared[i] = (float *)weights_bf16(w->kernels, U, values, C, OC);
        else
            w->prepared[i] = U;
        w->prepared_of[i] = weight;
    }
    return w->prepared[i];
}

void cnn_winograd_conv(const struct amil_cnn *m, struct amil_cnn_work *w, int i, float *out,
                       const float *inp, int relu)
{
    const struct amil_layer *l = &m->layers[i], *in = &m->layers[l->input];
    int C = in->c, OC = l->c;
    const void *U = cnn_winograd_prepare(m, w->owner ? w->owner : w, i);
    const float *weight, *bias;
    cnn_conv_params(m, w->owner ? w->owner : w, i, &weight, &bias);
    size_t N;
    if (cnn_winograd_fits(m, w->kernels, l, in, &N) == 16) {
        int th = (in->h + 1) / 2, rows = cnn_winograd_block_rows(in->w);
        struct f2_pass pass = {w, out, inp, bias, U, C, in->h, in->w, OC, relu,
                               cnn_winograd_bf16(m, w->kernels, in, 16)};
        cnn_run(w, (th + rows - 1) / rows, f2_blocks, &pass);
        return;
    }
    cnn_winograd4_input(w, inp, C, in->h, in->w);
    size_t plane = (size_t)OC * C;
    for (int x = 0; x < 36; x++) {
        struct product_pass pass = {w->kernels, w->products + x * N * OC, w->tiles + x * C * N,
                                    (const float *)U + x * plane, N, C, OC};
        cnn_run(w, (int)N, product_of_rows, &pass);
    }
    cnn_winograd4_output(w, out, bias, relu, OC, l->h, l->w);
}
