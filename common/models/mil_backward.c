/* mil_backward.c: the attention-MIL network of mil.h backward over a
 * bag, a training step's loss and gradients, and Grad-CAM at its second
 * convolution. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "base/base.h"
#include "compute/kernels.h"
#include "compute/nn.h"
#include "compute/parallel.h"
#include "models/mil_impl.h"
#include "record/record.h"

/* ---- backward ----------------------------------------------------------- */

/* Its weight gradient: grads += Σ over the group's patches of dC2 (50, S,
 * S, lanes) ⋆ P1, image by image (conv2_forward's layout). */
static void conv2_dweight_shifted(const struct amil_mil *m, struct amil_mil_work *w,
                                  float *dweight, const float *dc2, const float *p1, int n,
                                  int g, int thread)
{
    struct shifted_group sg = mil_shift_group(m, w, p1, n, g, thread);
    sg.k->transpose(sg.planes, sg.z.plane, sg.lanes, dc2, sg.lanes, sg.lanes * sg.lanes,
                    CONV2 * sg.positions / sg.lanes, 0);
    sg.k->conv_shift_dweight(dweight, sg.planes, sg.positions, sg.z.plane, sg.shifted,
                             sg.z.channel, CONV1 * sg.z.channel, sg.off, KERNEL * KERNEL,
                             CONV1, CONV2, sg.positions, sg.count);
}


/* Grad-CAM of group g's patches (amil_mil_gradcam): A = conv2's output
 * with its bias (conv2 is run again: the forward kept only the pooled
 * maps), dA = w->dc2 as backward left it; per patch and channel alpha = the
 * mean of dA over the map, cam (N, S, S) = ReLU(Σ alpha A). */
static void gradcam_group(const struct amil_mil *m, struct amil_mil_work *w, float *cam, int n,
                          int g, float *c2, const float *dc2, int thread)
{
    struct sides s = sides_of(m->patch);
    int lanes = w->kernels->lanes;
    size_t map = (size_t)s.conv2 * s.conv2;
    mil_conv2_forward(m, w, c2, w->p1 + (size_t)g * CONV1 * s.pool1 * s.pool1 * lanes, n, g,
                  thread);
    const float *bias = W(m, CONV2_B);
    for (int l = 0; l < lanes && g * lanes + l < n; l++) {
        float *out = cam + (size_t)(g * lanes + l) * map;
        memset(out, 0, sizeof *out * map);
        for (int c = 0; c < CONV2; c++) {
            const float *a = c2 + c * map * lanes + l, *da = dc2 + c * map * lanes + l;
            double alpha = 0;
            for (size_t j = 0; j < map; j++)
                alpha += da[j * lanes];
            alpha /= (double)map;
            for (size_t j = 0; j < map; j++)
                out[j] += (float)(alpha * (a[j * lanes] + bias[c]));
        }
        for (size_t j = 0; j < map; j++)
            out[j] = out[j] > 0 ? out[j] : 0;
    }
}

/* fc_dweight for blocks first .. end-1 of features: their regrouping,
 * product and sum into the gradient. */
static void fc_dweight_of_blocks(void *ctx, int first, int end, int thread)
{
    (void)thread;
    const struct bag_pass *pass = ctx;
    const struct amil_mil *m = pass->m;
    struct amil_mil_work *w = pass->w;
    int lanes = w->kernels->lanes, L = m->hidden, flat = m->flat, n = pass->n;
    /* pk (block, N, lanes): block j's features of every patch in lanes */
    for (int j = first; j < end; j++)
        for (int i = 0; i < n; i++) {
            float *to = w->pk + ((size_t)j * n + i) * lanes;
            const float *from = w->p2 + (size_t)(i / lanes) * flat * lanes + i % lanes;
            for (int l = 0; l < lanes; l++) {
                int f = j * lanes + l;
                to[l] = f < flat ? from[(size_t)f * lanes] : 0;
            }
        }
    w->kernels->dense(w->dwk + (size_t)first * L * lanes, w->pk + (size_t)first * n * lanes,
                      w->dh, 1, (size_t)L, NULL, 0, 0, end - first, L, n);
    /* row by row of the gradient (L, flat), so that the stores run along
     * memory; only the last block of a row may be partial */
    for (int o = 0; o < L; o++) {
        float *row = pass->grads + m->params.at[FC_W].offset + (size_t)o * flat;
        for (int j = first; j < end; j++) {
            const float *from = w->dwk + ((size_t)j * L + o) * lanes;
            float *to = row + (size_t)j * lanes;
            int count = flat - j * lanes < lanes ? flat - j * lanes : lanes;
            if (count == lanes)
                for (int l = 0; l < lanes; l++)
                    to[l] += from[l];
            else
                for (int l = 0; l < count; l++)
                    to[l] += from[l];
        }
    }
}

/* The linear layer's weight gradient, dW (L, flat) += dHᵀ (L, N) · P2 (N,
 * flat), as a product with the features in lanes rather than the patches:
 * summed over the patches in registers, not across lanes.  w->dh holds dH
 * through the ReLU (rows); P2 is regrouped from w->p2 into pk (J, N,
 * lanes), feature j·lanes + l of patch i at [j][i][l] (zero past flat), the
 * product lands in dwk (J, L, lanes), then is added to the gradient. */
static void fc_dweight(const struct amil_mil *m, struct amil_mil_work *w, int n, float *grads)
{
    int lanes = w->kernels->lanes, blocks = (m->flat + lanes - 1) / lanes;
    struct bag_pass pass = {m, w, NULL, n, grads, NULL};
    amil_parallel(blocks, fc_dweight_of_blocks, &pass);
}

/* dP2 of groups first .. end-1 += the linear layer's input gradient. */
static void linear_back_of_groups(void *ctx, int first, int end, int thread)
{
    const struct bag_pass *pass = ctx;
    const struct amil_mil *m = pass->m;
    struct amil_mil_work *w = pass->w;
    size_t lanes = (size_t)w->kernels->lanes, flat = (size_t)m->flat;
    if (mil_linear_by_rows(m, w->kernels->lanes, pass->n, end - 1)) {
        /* the last group's patches as rows: dP2 (count, flat) += dH (count,
         * L) · W (L, flat), the outputs in lanes, W read once */
        struct shifted_group sg = mil_shift_group(m, w, NULL, pass->n, --end, thread);
        sg.k->product(sg.planes, w->dhl + end * m->hidden * lanes, lanes, W(m, FC_W),
                      m->hidden, m->flat, 0, sg.count);
        mil_planes_to_lanes(&sg, w->dp2 + end * flat * lanes, flat, flat, 1);
    }
    w->kernels->dense(w->dp2 + first * flat * lanes, w->dhl + first * m->hidden * lanes,
                      W(m, FC_W), 1, flat, NULL, 0, 1, end - first, m->flat, m->hidden);
}

/* From dP2 back through both convolutions for groups first .. end-1:
 * thread 0 adds to the gradients, the others to their part of w->dconv;
 * the thread's input gradients (dC2, dP1, dC1) start at zero per group. */
static void conv_back_of_groups(void *ctx, int first, int end, int thread)
{
    const struct bag_pass *pass = ctx;
    const struct amil_mil *m = pass->m;
    struct amil_mil_work *w = pass->w;
    const struct amil_kernels *k = w->kernels;
    struct sides s = sides_of(m->patch);
    struct group_sizes z = mil_group_sizes(m, k->lanes);
    float *grads = thread == 0 ? pass->grads : w->dconv + (thread - 1) * mil_conv_params(m);
    float *dc2 = w->dc2 + thread * z.c2, *dp1 = w->dp1 + thread * z.p1;
    float *dc1 = w->dc1 + thread * z.c1;
#define G(i) (grads + m->params.at[i].offset)
    for (int g = first; g < end; g++) {
        const float *p1 = w->p1 + g * z.p1;
        memset(dc2, 0, sizeof *dc2 * z.c2);
        memset(dp1, 0, sizeof *dp1 * z.p1);
        memset(dc1, 0, sizeof *dc1 * z.c1);
        k->unpool_relu(dc2, G(CONV2_B), w->dp2 + g * z.p2, w->p2 + g * z.p2,
                       w->arg2 + g * z.p2, CONV2, s.conv2, s.conv2);
        if (mil_shift_pays(m, k->lanes, pass->n, g))
            conv2_dweight_shifted(m, w, G(CONV2_W), dc2, p1, pass->n, g, thread);
        else
            k->conv5_dweight(G(CONV2_W), dc2, p1, 1, 0, 0, CONV1, s.pool1, s.pool1, CONV2);
        k->conv5_dinput(dp1, dc2, W(m, CONV2_W), CONV1, s.pool1, s.pool1, CONV2);
        k->unpool_relu(dc1, G(CONV1_B), dp1, p1, w->arg1 + g * z.p1, CONV1, s.conv1, s.conv1);
        k->conv5_dweight(G(CONV1_W), dc1, w->x + g * z.x, 1, 0, 0, m->channels, m->patch,
                         m->patch, CONV1);
    }
#undef G
}

/* sums (C) += the columns of x (N, C), row after row. */
/* Rows first .. end-1 of the pass: dH (the pool's gradient) through the
 * linear layer's ReLU (dH keeps the masked gradient) into the lanes of
 * dhl. */
static void relu_to_lanes(void *ctx, int first, int end, int thread)
{
    (void)thread;
    const struct rows_pass *pass = ctx;
    struct amil_mil_work *w = pass->w;
    int L = pass->m->hidden;
    size_t lanes = (size_t)w->kernels->lanes;
    for (int r = first; r < end; r++) {
        float *dhl = w->dhl + (size_t)r / lanes * L * lanes + (size_t)r % lanes;
        for (int j = 0; j < L; j++) {
            float *d = &w->dh[(size_t)r * L + j];
            *d = pass->h[(size_t)r * L + j] > 0 ? *d : 0;
            dhl[(size_t)j * lanes] = *d;
        }
    }
}

/* From w->dlogits (the gradient of whatever scalar is being differentiated
 * with respect to the logits) to the scores of the bag attend has just run
 * on h (N, L): dM (K, L), then through the pool to w->dscores (N, K).
 * grads (nweights, or NULL) += the classifier's gradients. */
static void scores_backward(const struct amil_mil *m, struct amil_mil_work *w, const float *h,
                            int n, float *grads)
{
    int L = m->hidden, K = m->branches, head = m->params.n - 2;
    mil_fit(m, w, n, STAGE_SCORES_BACKWARD);
    memset(w->dm, 0, sizeof *w->dm * L * K);
    amil_linear_backward(w->dm, grads ? grads + m->params.at[head].offset : NULL,
                         grads ? grads + m->params.at[head + 1].offset : NULL, w->dlogits,
                         w->m, W(m, head), 1, L * K, amil_mil_outputs(m));
    struct amil_attention attention = mil_attention(m);
    struct amil_attention_buffers b = mil_attention_buffers(w);
    amil_attention_backward_scores(&attention, &b, h, n);
}

/* dH of rows base .. base+count-1 of a bag of n (the chunk's h (count, L)):
 * the pool's, masked by the linear layer's ReLU into w->dh (count, L) and
 * the lanes of w->dhl (the last group's empty lanes zero). */
static void rows_backward(const struct amil_mil *m, struct amil_mil_work *w, const float *h,
                          int base, int count, int n)
{
    int L = m->hidden, lanes = w->kernels->lanes;
    memset(w->dh, 0, sizeof *w->dh * count * L);
    struct amil_attention attention = mil_attention(m);
    struct amil_attention_buffers b = mil_attention_buffers(w);
    amil_attention_backward_rows(&attention, &b, h, base, count, n, w->dh);
    struct rows_pass rows = {m, w, h, count, NULL, base};
    amil_parallel(count, relu_to_lanes, &rows);
    int groups = (count + lanes - 1) / lanes;
    for (int i = count; i < groups * lanes; i++)
        for (int j = 0; j < L; j++)
            w->dhl[(size_t)(i / lanes) * L * lanes + (size_t)j * lanes + i % lanes] = 0;
}

/* Backward from w->dlogits through the whole network of the bag
 * amil_mil_step has just run forward: grads (nweights) += its parameters'
 * gradients. */
static void backward(const struct amil_mil *m, struct amil_mil_work *w, int n, float *grads)
{
    int L = m->hidden;
#define G(i) (grads + m->params.at[i].offset)
    scores_backward(m, w, w->h, n, grads);
    rows_backward(m, w, w->h, 0, n, n);
    struct amil_attention attention = mil_attention(m);
    struct amil_attention_buffers b = mil_attention_buffers(w);
    struct amil_attention_params g =
        amil_attention_params_at(grads, &m->params.at[ATT_FIRST], attention.gated);
    amil_attention_backward_weights(&attention, &b, w->h, n, &g);
    /* the feature extractor: dH (masked by its ReLU) in lanes, then the
     * linear layer over all groups, then group by group back to conv1 */
    amil_column_sums(G(FC_B), w->dh, n, L);
    fc_dweight(m, w, n, grads);
    int lanes = w->kernels->lanes, groups = (n + lanes - 1) / lanes;
    struct bag_pass pass = {m, w, NULL, n, grads, NULL};
    memset(w->dp2, 0, sizeof *w->dp2 * (size_t)groups * m->flat * lanes);
    amil_parallel(groups, linear_back_of_groups, &pass);
    /* the convolutions group by group, each thread adding its parameters'
     * gradients into a buffer of its own, summed in thread order after */
    size_t conv = mil_conv_params(m);
    memset(w->dconv, 0, sizeof *w->dconv * (size_t)(w->threads - 1) * conv);
    amil_parallel(groups, conv_back_of_groups, &pass);
    for (int t = 1; t < w->threads; t++)
        for (size_t i = 0; i < conv; i++)
            grads[i] += w->dconv[(t - 1) * conv + i];
#undef G
}

/* Sets w->dlogits to the gradient of class target's score, its logit: with
 * the sigmoid head, class 1's is z and class 0's is -z. */
static void score_of(const struct amil_mil *m, struct amil_mil_work *w, int target)
{
    for (int c = 0; c < amil_mil_outputs(m); c++)
        w->dlogits[c] = m->classes == 2 ? (target == 1 ? 1.0f : -1.0f) : (c == target);
}

double amil_mil_step(const struct amil_mil *m, struct amil_mil_work *w,
                     const uint8_t *patches, int n, int y, float *grads)
{
    amil_mil_featurize(m, w, patches, n);
    amil_mil_attend(m, w, w->h, n);
    amil_mil_classify(m, w, w->m);
    int outputs = amil_mil_outputs(m);
    if (!grads)   /* the loss alone */
        return m->classes == 2 ? amil_bernoulli_nll(w->prob[1], y, NULL)
                               : amil_cross_entropy(w->logits, outputs, y, NULL);
    mil_fit(m, w, n, STAGE_SCORES_BACKWARD);
    mil_fit(m, w, n, STAGE_BACKWARD);
    double loss;
    if (m->classes == 2) {
        float p = w->prob[1], dp;
        loss = amil_bernoulli_nll(p, y, &dp);
        w->dlogits[0] = dp * p * (1 - p);   /* through the sigmoid */
    } else {
        loss = amil_cross_entropy(w->logits, outputs, y, w->dlogits);
    }
    backward(m, w, n, grads);
    return loss;
}

int amil_mil_judge(const struct amil_mil *m, struct amil_mil_work *w,
                   const struct amil_record *r, struct amil_verdict *v)
{
    const struct amil_tensor *p = amil_mil_bag_patches(m, r);
    if (!p || amil_mil_bag_label(m, r, &v->label) != 1)
        return p ? amil_fail("no label") : -1;
    v->loss = amil_mil_step(m, w, p->data, (int)p->shape[0], (int)v->label, NULL);
    v->predicted = amil_mil_predict(m, w->prob);
    v->score = w->prob[1];
    return 0;
}

int amil_mil_gradcam_side(const struct amil_mil *m) { return sides_of(m->patch).conv2; }

/* Groups first .. end-1 of a chunk from dP2 back to dC2 through the second
 * pooling and ReLU, then their Grad-CAM maps; no weight gradients. */
static void cam_of_groups(void *ctx, int first, int end, int thread)
{
    const struct bag_pass *pass = ctx;
    const struct amil_mil *m = pass->m;
    struct amil_mil_work *w = pass->w;
    const struct amil_kernels *k = w->kernels;
    struct sides s = sides_of(m->patch);
    struct group_sizes z = mil_group_sizes(m, k->lanes);
    float *dc2 = w->dc2 + thread * z.c2, dbias[CONV2] = {0};   /* dbias: not wanted */
    for (int g = first; g < end; g++) {
        memset(dc2, 0, sizeof *dc2 * z.c2);
        k->unpool_relu(dc2, dbias, w->dp2 + g * z.p2, w->p2 + g * z.p2, w->arg2 + g * z.p2,
                       CONV2, s.conv2, s.conv2);
        gradcam_group(m, w, pass->cam, pass->n, g, w->c2 + thread * z.c2, dc2, thread);
    }
}

/* Two passes over the bag, AMIL_MIL_CHUNK patches at a time: the features
 * (N, L), then attend and classify over all of them and the scores'
 * gradients; then each chunk's forward again (the same bits: the same
 * chunks), its rows' gradients, and back through the linear layer to the
 * second convolution.  The bag's buffers are its features and what attend
 * keeps; the rest is a chunk's. */
int amil_mil_gradcam(const struct amil_mil *m, struct amil_mil_work *w,
                     const uint8_t *patches, int n, int target, float *cam)
{
    size_t L = (size_t)m->hidden, patch = (size_t)m->patch * m->patch * m->channels;
    size_t map = (size_t)amil_mil_gradcam_side(m) * amil_mil_gradcam_side(m);
    float *h = amil_xmalloc(sizeof *h * n * L);   /* (N, L) */
    amil_mil_features(m, w, patches, n, h);
    amil_mil_attend(m, w, h, n);
    amil_mil_classify(m, w, w->m);
    if (target < 0)
        target = amil_mil_predict(m, w->prob);
    mil_fit(m, w, n, STAGE_SCORES_BACKWARD);
    score_of(m, w, target);
    scores_backward(m, w, h, n, NULL);
    for (int first = 0; first < n; first += AMIL_MIL_CHUNK) {
        int count = n - first < AMIL_MIL_CHUNK ? n - first : AMIL_MIL_CHUNK;
        amil_mil_featurize(m, w, patches + first * patch, count);
        mil_fit(m, w, count, STAGE_BACKWARD);
        rows_backward(m, w, h + first * L, first, count, n);
        int lanes = w->kernels->lanes, groups = (count + lanes - 1) / lanes;
        struct bag_pass pass = {m, w, NULL, count, NULL, cam + first * map};
        memset(w->dp2, 0, sizeof *w->dp2 * (size_t)groups * m->flat * lanes);
        amil_parallel(groups, linear_back_of_groups, &pass);
        amil_parallel(groups, cam_of_groups, &pass);
    }
    free(h);
    return target;
}
