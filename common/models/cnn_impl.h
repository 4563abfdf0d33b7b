/* cnn_impl.h: what cnn_pass.c and cnn_tokens.c share, private to them. */
#ifndef AMIL_CNN_IMPL_H
#define AMIL_CNN_IMPL_H

#include <stddef.h>

#include "compute/kernels.h"
#include "compute/parallel.h"
#include "models/cnn.h"

#define PANEL 64   /* a token linear's outputs packed at a time: a multiple
                      of every set's lanes */

/* Layer k's parameter k of layer l (weight 0, bias 1, ...). */
#define PARAM(m, l, k) ((m)->params.at[(l)->param + (k)].data)

static inline size_t layer_size(const struct amil_layer *l)
{
    return (size_t)l->c * l->h * l->w;
}

/* amil_parallel, or every task in this thread when w is a worker's own
 * (featurize's tiles split over the threads: one pool, one caller) */
static inline void cnn_run(const struct amil_cnn_work *w, int tasks, amil_task_fn *fn,
                           void *ctx)
{
    if (w->serial)
        fn(ctx, 0, tasks, 0);
    else
        amil_parallel(tasks, fn, ctx);
}

/* w->fold_to (cnn.h) for a forward-only work (cnn_fold.c): each
 * convolution below the features followed by a batch norm that alone
 * reads it (and that by a ReLU that alone reads the batch norm) writes
 * the last of them; a CNN's residual sum followed by a ReLU that alone
 * reads it writes the ReLU's output.  cnn_folded_size: the floats a folded
 * convolution's weights and bias take in w->fold_arena. */
void cnn_plan_folds(const struct amil_cnn *m, struct amil_cnn_work *w);
size_t cnn_folded_size(const struct amil_layer *l, const struct amil_layer *in);
/* Convolution i's weights and bias (NULL: none) as w's forward reads
 * them: with the batch norm after it folded in where w->fold_to says
 * (made at first use, or by amil_cnn_prepare for the workers), else the
 * model's. */
void cnn_conv_params(const struct amil_cnn *m, struct amil_cnn_work *w, int i,
                     const float **weight, const float **bias);

/* Whether convolution l (reading in) runs as Winograd's F(2×2, 3×3) or
 * F(4×4, 3×3) (cnn_winograd.c): 3×3, stride 1, padding 1, frozen, output
 * channels a multiple of the lanes; F(4×4) at most 128 input channels and
 * sides of 28 and more.  Returns a tile's values (16 or 36; 0: neither)
 * and sets the count of output tiles. */
int cnn_winograd_fits(const struct amil_cnn *m, const struct amil_kernels *k,
                      const struct amil_layer *l, const struct amil_layer *in, size_t *n_tiles);
/* F(4×4, 3×3) (cnn_winograd4.c): U (36, C, OC) of weight (OC, C, 3, 3),
 * threads splitting the input channels; the scratch (floats) its input
 * transform takes in w->cols for an input H × W; w->tiles (36, C, N) =
 * the transform of inp (C, H, W)'s N tiles; out (OC, H, W) = bias + the
 * output transform of w->products (36, N, OC), with relu max(that, 0). */
float *cnn_winograd4_weights(struct amil_cnn_work *w, const float *weight, int C, int OC);
size_t cnn_winograd4_scratch(int H, int W);
void cnn_winograd4_input(struct amil_cnn_work *w, const float *inp, int C, int H, int W);
void cnn_winograd4_output(struct amil_cnn_work *w, float *out, const float *bias, int relu,
                          int OC, int H, int W);
/* Layer i's transformed weights in w, made if they are not (or were made
 * from other weights): (values, C, OC) floats, or in bfloat16 where
 * cnn_winograd_bf16 says, pairs of input channels (values, C/2, OC, 2). */
const void *cnn_winograd_prepare(const struct amil_cnn *m, struct amil_cnn_work *w, int i);
/* Whether a Winograd layer reading in, of `values` a tile, multiplies in
 * bfloat16: the model's precision says so, its input channels pair up,
 * and it is F(2×2); where it would, F(4×4) is not taken.  F(4×4)'s
 * transforms (points ±2, A's 8) make a rounded input count for more: on
 * ResNet50 with batch-norm statistics of real patches, its layers in
 * bfloat16 took the features' cosine to float32's from 0.9974 to 0.9891
 * (bench/bf16.sh); as F(2×2) in bfloat16, to 0.9968, and 1.3 ms a tile
 * faster than F(4×4) in float. */
int cnn_winograd_bf16(const struct amil_cnn *m, const struct amil_kernels *k,
                      const struct amil_layer *in, int values);
/* F(2×2) runs a block of cnn_winograd_block_rows(W) tile rows at a time,
 * one thread a block, each with V (16, C, tiles), M (16, tiles, OC) and in
 * bfloat16 V's pairs (C, tiles) of its own in w->tiles, w->products and
 * w->bf16_rows: at most cnn_winograd_block_tiles(H, W) tiles a block. */
int cnn_winograd_block_rows(int W);
size_t cnn_winograd_block_tiles(int H, int W);
/* out (OC, H, W) = convolution i of one image inp (C, H, W), then the
 * ReLU with relu, on the transformed weights of w (or of its owner, a
 * worker's), made from cnn_conv_params's. */
void cnn_winograd_conv(const struct amil_cnn *m, struct amil_cnn_work *w, int i, float *out,
                       const float *inp, int relu);

/* A transformer's layer i (not a linear one) over the B images of w, each
 * alone; threads split the images (cnn_tokens.c). */
void cnn_token_images(const struct amil_cnn *m, struct amil_cnn_work *w, int i, int B);
/* out (rows, OC) = inp (rows, C) · weight (OC, C)ᵀ + bias of token linear
 * i, frozen, its outputs a multiple of the lanes, on the product kernel;
 * threads split the panels of outputs (cnn_tokens.c). */
void cnn_token_linear(const struct amil_cnn *m, struct amil_cnn_work *w, int i, float *out,
                      const float *inp, int rows);

#endif
