/* mil_impl.h: what the attention-MIL network's files share (mil.c and
 * its stages: mil_features.c, mil_head.c, mil_gradcam.c) and no one else
 * sees: the network's fixed sizes, the parameter indices, the work
 * buffers' stages and the parallel passes over a bag.  (Private: include
 * mil.h, not this, outside those files.) */
#ifndef AMIL_MIL_IMPL_H
#define AMIL_MIL_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "compute/attention.h"
#include "compute/kernels.h"
#include "models/mil.h"

#define CONV1 20        /* the paper's channels: conv 5×5 C→20, 20→50 */
#define CONV2 50
#define KERNEL 5

/* The sides after conv1, pool1, conv2 and pool2 for a patch of side P. */
struct sides {
    int conv1, pool1, conv2, pool2;
};

static inline struct sides sides_of(int patch)
{
    struct sides s;
    s.conv1 = patch - KERNEL + 1;
    s.pool1 = s.conv1 / 2;
    s.conv2 = s.pool1 - KERNEL + 1;
    s.pool2 = s.conv2 / 2;
    return s;
}

/* Weight and bias of the layer that starts at parameter i. */
#define W(m, i) ((m)->params.at[i].data)
enum { CONV1_W, CONV1_B, CONV2_W, CONV2_B, FC_W, FC_B, ATT_FIRST };

/* The buffers of each stage: featurize's, attend's and classify's, and the
 * gradients only backward needs: those of the scores and the classifier,
 * (K, N) at most, and those of each patch's rows and lanes; each stage
 * grows on its own, so that attend does not hold the convolutions' memory,
 * nor featurize the gradients', and Grad-CAM can hold a chunk's rows while
 * the scores' gradients span the bag.  The feature extractor's activations are in the lane layout
 * of kernels.h, a group of `lanes` patches at a time; what backward needs
 * is kept for the whole bag, one group's convolution outputs are scratch. */
enum { STAGE_FEATURES, STAGE_ATTENTION, STAGE_SCORES_BACKWARD, STAGE_BACKWARD, STAGES };

/* Makes room in one stage's buffers for a bag of n patches. */
void mil_fit(const struct amil_mil *m, struct amil_mil_work *w, int n, int stage);
/* The convolutions' parameters: the first four, at the buffer's start. */
size_t mil_conv_params(const struct amil_mil *m);

/* The second convolution image by image (mil_features.c says how). */
struct shift_sizes {
    size_t plane;     /* floats of a patch's plane: P1's or C2's, the larger */
    size_t planes;    /* a thread's planes: lanes of them */
    size_t channel;   /* floats of one input channel's five copies */
    size_t shifted;   /* a thread's copies: lanes patches */
};

/* A group's patches image by image, on this thread's scratch. */
struct shifted_group {
    const struct amil_kernels *k;
    struct shift_sizes z;
    size_t lanes, positions;   /* positions: of C2's map, S·S */
    int count;                 /* the group's patches */
    int off[KERNEL * KERNEL];
    float *planes, *shifted;
};

int mil_shift_pays(const struct amil_mil *m, int lanes, int n, int g);
struct shifted_group mil_shift_group(const struct amil_mil *m, struct amil_mil_work *w,
                                     const float *p1, int n, int g, int thread);
void mil_planes_to_lanes(const struct shifted_group *sg, float *to, size_t rows,
                         size_t stride, int accumulate);
void mil_conv2_forward(const struct amil_mil *m, struct amil_mil_work *w, float *c2,
                       const float *p1, int n, int g, int thread);

/* floats of a thread's products scratch (kernels.h's winograd5_output) */
#define WINOGRAD_SCRATCH(lanes) ((size_t)64 * 4 * 6 * (lanes))

/* What the parallel loops of featurize and backward share. */
struct bag_pass {
    const struct amil_mil *m;
    struct amil_mil_work *w;
    const uint8_t *patches;
    int n;
    float *grads, *cam;
};

/* A task over a bag's groups (or blocks) first .. end-1 on thread, and
 * the loop that splits [0, count) of them over the threads for it. */
typedef void mil_groups_task(const struct amil_mil *m, struct amil_mil_work *w,
                             const struct bag_pass *pass, int first, int end, int thread);
void mil_run_groups(const struct bag_pass *pass, int count, mil_groups_task *task);

/* Sizes of one group's buffers, in floats (bytes for arg1, arg2). */
struct group_sizes {
    size_t x, c1, p1, c2, p2;
};
struct group_sizes mil_group_sizes(const struct amil_mil *m, int lanes);
int mil_linear_by_rows(const struct amil_mil *m, int lanes, int n, int g);

/* The attention pool's sizes and weights (by role), and the work's
 * buffers it runs in. */
struct amil_attention mil_attention(const struct amil_mil *m);
struct amil_attention_buffers mil_attention_buffers(struct amil_mil_work *w);

/* ---- the stages' backward, between their files ---------------------------
 *
 * mil_head.c: w->dlogits set to the gradient of class target's score (its
 * logit); from w->dlogits through the classifier (grads, or NULL, += its
 * gradients) and the pool's softmax to w->dscores, over the bag attend
 * ran on h (N, L); the rows base .. base+count-1 of a bag of n (the
 * chunk's h (count, L)) back through the pool into w->dh and the lanes. */
void mil_score_of(const struct amil_mil *m, struct amil_mil_work *w, int target);
void mil_scores_backward(const struct amil_mil *m, struct amil_mil_work *w, const float *h,
                         int n, float *grads);
void mil_rows_backward(const struct amil_mil *m, struct amil_mil_work *w, const float *h,
                       int base, int count, int n);
/* mil_features.c: w->dh of count rows (their features h) through the
 * linear layer's ReLU, masked in place and into the lanes of w->dhl (the
 * last group's empty lanes zero); from there the feature extractor's
 * weights' gradients (grads +=) over a bag of n; and dP2 of the groups of
 * a bag_pass (first .. end-1) += the linear layer's input gradient. */
void mil_relu_to_lanes(const struct amil_mil *m, struct amil_mil_work *w, const float *h,
                       int count);
void mil_features_backward(const struct amil_mil *m, struct amil_mil_work *w, int n,
                           float *grads);
void mil_linear_back_of_groups(const struct amil_mil *m, struct amil_mil_work *w,
                               const struct bag_pass *pass, int first, int end, int thread);
/* From dP2 back through both convolutions (grads += their gradients), or
 * with the pass's cam, to dC2 and the groups' Grad-CAM maps. */
void mil_conv_back_of_groups(const struct amil_mil *m, struct amil_mil_work *w,
                             const struct bag_pass *pass, int first, int end, int thread);

/* What the attention's loops over a bag's rows share: H (N, L) and, in
 * backward, the gradients. */
struct rows_pass {
    const struct amil_mil *m;
    struct amil_mil_work *w;
    const float *h;
    int n;
    float *grads;
    /* backward over a chunk: row r of the pass is the bag's row base + r in
     * the bag's buffers (a, v, u, dscores); the rows' own gradients (dh,
     * dv ...) and h are the chunk's */
    int base;
};

#endif
