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
 * transform takes in w->cols for an input H × W; out (OC, H, W) = bias
 * + the convolution of inp (C, H, W), on w->tiles and w->products. */
float *cnn_winograd4_weights(struct amil_cnn_work *w, const float *weight, int C, int OC);
size_t cnn_winograd4_scratch(int H, int W);
void cnn_winograd4_conv(struct amil_cnn_work *w, const float *U, const float *bias,
                        float *out, const float *inp, int C, int H, int W, int OC);
/* Layer i's transformed weights in w, made if they are not (or were made
 * from other weights). */
const float *cnn_winograd_prepare(const struct amil_cnn *m, struct amil_cnn_work *w, int i);
/* out (OC, H, W) = convolution i of one image inp (C, H, W), on the
 * transformed weights of w (or of its owner, a worker's), made from
 * cnn_conv_params's. */
void cnn_winograd_conv(const struct amil_cnn *m, struct amil_cnn_work *w, int i, float *out,
                       const float *inp);

/* A transformer's layer i (not a linear one) over the B images of w, each
 * alone; threads split the images (cnn_tokens.c). */
void cnn_token_images(const struct amil_cnn *m, struct amil_cnn_work *w, int i, int B);
/* out (rows, OC) = inp (rows, C) · weight (OC, C)ᵀ + bias of token linear
 * i, frozen, its outputs a multiple of the lanes, on the product kernel;
 * threads split the panels of outputs (cnn_tokens.c). */
void cnn_token_linear(const struct amil_cnn *m, struct amil_cnn_work *w, int i, float *out,
                      const float *inp, int rows);

#endif
