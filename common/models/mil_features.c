/* mil_features.c: the attention-MIL network's feature extractor (mil.h):
 * its work buffers, and the convolutions and the linear layer over a
 * bag's patches in lanes (kernels.h), forward (featurize) and backward. */
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "compute/kernels.h"
#include "compute/nn.h"
#include "compute/parallel.h"
#include "models/mil_impl.h"

/* ---- activations -------------------------------------------------------- */

static void free_stage(struct amil_mil_work *w, int stage)
{
#define FREE(st, type, name, count) \
    if (STAGE_##st == stage)        \
        free(w->name), w->name = NULL;
    AMIL_MIL_BUFFERS(FREE)
#undef FREE
    w->capacity[stage] = 0;
}

void amil_mil_work_free(struct amil_mil_work *w)
{
    for (int stage = 0; stage < STAGES; stage++)
        free_stage(w, stage);
    memset(w, 0, sizeof *w);
}

/* The convolutions' parameters: the first four, at the buffer's start. */
size_t mil_conv_params(const struct amil_mil *m)
{
    return m->params.at[CONV2_B].offset + m->params.at[CONV2_B].count;
}

/* Where it does not run as Winograd's (a patch side whose conv 2 output is
 * not a multiple of 8), the second convolution of a group that is not full
 * runs image by image (kernels.h's conv_shift) rather than in lanes, where
 * the empty lanes would cost as much as full ones: the group is transposed to planes, one
 * per patch (P1's and C2's, in turn, at w->planes); each patch's input is
 * laid out as five copies shifted by one column (w->shifted: channel c,
 * column shift kj, row, column x), so that output position p = y·S + x
 * (S = the output's side) reads position p + ki·S of copy kj under tap
 * (ki, kj), with no position wasted. */
static struct shift_sizes shift_sizes(const struct amil_mil *m, int lanes)
{
    struct sides s = sides_of(m->patch);
    size_t in = (size_t)CONV1 * s.pool1 * s.pool1, out = (size_t)CONV2 * s.conv2 * s.conv2;
    struct shift_sizes z;
    z.plane = in > out ? in : out;
    z.planes = z.plane * lanes;
    z.channel = (size_t)KERNEL * s.pool1 * s.conv2;
    z.shifted = z.channel * CONV1 * lanes;
    return z;
}

/* Whether group g of a bag of n runs the second convolution image by
 * image: when its lanes are not all patches, and the planes are whole
 * vectors (28×28 patches: 20·12·12 and 50·8·8 floats, 64 positions). */
int mil_shift_pays(const struct amil_mil *m, int lanes, int n, int g)
{
    struct sides s = sides_of(m->patch);
    size_t positions = (size_t)s.conv2 * s.conv2;
    return n - g * lanes < lanes && positions % lanes == 0 &&
           (size_t)CONV1 * s.pool1 * s.pool1 % lanes == 0;
}

/* Group g's first count patches of P1 (20, S1, S1, lanes), aligned, to
 * their shifted copies at sg->shifted (count, 20, 5, S1, S); leaves P1's
 * planes in sg->planes. */
struct shifted_group mil_shift_group(const struct amil_mil *m, struct amil_mil_work *w,
                                        const float *p1, int n, int g, int thread)
{
    struct sides s = sides_of(m->patch);
    struct shifted_group sg = {.k = w->kernels, .z = shift_sizes(m, w->kernels->lanes)};
    struct shift_sizes z = sg.z;
    sg.lanes = (size_t)sg.k->lanes;
    sg.positions = (size_t)s.conv2 * s.conv2;
    sg.count = n - g * sg.k->lanes < sg.k->lanes ? n - g * sg.k->lanes : sg.k->lanes;
    for (int ki = 0; ki < KERNEL; ki++)   /* tap (ki, kj) at kj·S1·S + ki·S */
        for (int kj = 0; kj < KERNEL; kj++)
            sg.off[ki * KERNEL + kj] = (kj * s.pool1 + ki) * s.conv2;
    sg.planes = w->planes + thread * z.planes;
    sg.shifted = w->shifted + thread * z.shifted;
    if (!p1)
        return sg;
    size_t in = (size_t)CONV1 * s.pool1 * s.pool1;
    sg.k->transpose(sg.planes, z.plane, sg.lanes, p1, sg.lanes, sg.lanes * sg.lanes,
                    in / sg.lanes, 0);
    for (int i = 0; i < sg.count; i++)
        for (int c = 0; c < CONV1; c++)
            for (int kj = 0; kj < KERNEL; kj++) {
                float *to = sg.shifted + ((size_t)i * CONV1 + c) * z.channel +
                            (size_t)kj * s.pool1 * s.conv2;
                const float *from = sg.planes + i * z.plane + (size_t)c * s.pool1 * s.pool1 + kj;
                for (int y = 0; y < s.pool1; y++)   /* rows of 8 floats: no memcpy call */
                    for (int x = 0; x < s.conv2; x++)
                        to[y * s.conv2 + x] = from[y * s.pool1 + x];
            }
    return sg;
}

/* sg's planes (count, rows; stride floats apart) to lanes at to (rows,
 * lanes), the lanes past count zero (with accumulate, added to to and
 * the lanes past count unchanged); rows a multiple of lanes */
void mil_planes_to_lanes(const struct shifted_group *sg, float *to, size_t rows,
                         size_t stride, int accumulate)
{
    memset(sg->planes + sg->count * stride, 0,
           sizeof *sg->planes * (sg->lanes - sg->count) * stride);
    sg->k->transpose(to, sg->lanes, sg->lanes * sg->lanes, sg->planes, stride, sg->lanes,
                     rows / sg->lanes, accumulate);
}

/* Whether convolution `layer` (1 or 2) runs as Winograd's F(4×4, 5×5)
 * (kernels.h): when its output side is a multiple of 8, whole 4×4 tiles
 * four at a time (24 and 8 for 28×28 patches).  In lanes, conv 2 costs a
 * full or a partial group less than the direct sum of conv5 or conv_shift
 * does.  Conv 1 of one channel does not pay (the transforms cost what
 * the direct sum does): RGB patches only. */
static int winograd_fits(const struct amil_mil *m, int layer)
{
    struct sides s = sides_of(m->patch);
    return layer == 1 ? s.conv1 % 8 == 0 && m->channels == 3 : s.conv2 % 8 == 0;
}

/* U (64, pairs) of a convolution's weight (pairs = OC·C, 5, 5), made
 * again only when it is not the one at seen, which U was made from (an
 * optimizer's step, a test's nudge); returns whether it was. */
static int winograd_remake(struct amil_mil_work *w, const float *weight, size_t pairs,
                           float *seen, float *U)
{
    size_t taps = KERNEL * KERNEL;
    if (w->wino_ready && memcmp(seen, weight, sizeof *weight * pairs * taps) == 0)
        return 0;
    memcpy(seen, weight, sizeof *weight * pairs * taps);
    for (size_t q = 0; q < pairs; q++)   /* (pairs, 25) to (25, pairs) */
        for (size_t t = 0; t < taps; t++)
            w->wino_gt[t * pairs + q] = weight[q * taps + t];
    w->kernels->winograd5_weights(U, w->wino_gt, pairs);
    return 1;
}

/* U of the convolutions that run as Winograd's, and conv 2's Uᵀ. */
static void winograd_weights(const struct amil_mil *m, struct amil_mil_work *w)
{
    if (winograd_fits(m, 1))
        winograd_remake(w, W(m, CONV1_W), (size_t)CONV1 * m->channels, w->wino1_seen,
                        w->wino1_u);
    if (winograd_fits(m, 2) &&
        winograd_remake(w, W(m, CONV2_W), (size_t)CONV2 * CONV1, w->wino2_seen, w->wino2_u))
        for (int p = 0; p < 64; p++)   /* the backward's (64, 20, 50) */
            for (int o = 0; o < CONV2; o++)
                for (int c = 0; c < CONV1; c++)
                    w->wino2_ut[(p * CONV1 + c) * CONV2 + o] =
                        w->wino2_u[(p * CONV2 + o) * CONV1 + c];
    w->wino_ready = 1;
}

/* C2 (50, S, S, lanes) of group g, its first count lanes patches (the rest
 * zero), without bias, from P1 (20, S1, S1, lanes): as Winograd's, in
 * lanes, or image by image, whichever fits and pays. */
void mil_conv2_forward(const struct amil_mil *m, struct amil_mil_work *w, float *c2,
                          const float *p1, int n, int g, int thread)
{
    struct sides s = sides_of(m->patch);
    if (winograd_fits(m, 2)) {
        size_t lanes = (size_t)w->kernels->lanes, tiles = (size_t)s.conv2 / 4;
        float *v = w->wino2_v + thread * 64 * CONV1 * tiles * tiles * lanes;
        w->kernels->winograd5_input(v, p1, CONV1, s.pool1);
        float *products = w->wino_m + thread * WINOGRAD_SCRATCH(lanes);
        w->kernels->winograd5_output(c2, products, w->wino2_u, v, CONV1, CONV2, s.conv2);
        return;
    }
    if (!mil_shift_pays(m, w->kernels->lanes, n, g)) {
        w->kernels->conv5(c2, p1, W(m, CONV2_W), CONV1, s.pool1, s.pool1, CONV2);
        return;
    }
    struct shifted_group sg = mil_shift_group(m, w, p1, n, g, thread);
    for (int i = 0; i < sg.count; i++)
        sg.k->conv_shift(sg.planes + i * sg.z.plane, sg.positions,
                         sg.shifted + (size_t)i * CONV1 * sg.z.channel, sg.z.channel,
                         W(m, CONV2_W), NULL, sg.off, KERNEL * KERNEL, CONV1, CONV2, 0, 0,
                         sg.positions);
    mil_planes_to_lanes(&sg, c2, CONV2 * sg.positions, sg.z.plane, 0);
}

/* Makes room in one stage's buffers for a bag of n patches. */
void mil_fit(const struct amil_mil *m, struct amil_mil_work *w, int n, int stage)
{
    if (!w->kernels)
        w->kernels = amil_kernels();
    amil_threads_to_lanes();   /* the threads work on the lane kernels */
    int threads = amil_thread_count();
    if (threads != w->threads)   /* scratch is per thread: start again */
        for (int st = 0; st < STAGES; st++)
            free_stage(w, st);
    w->threads = threads;
    if (n <= w->capacity[stage])
        return;
    free_stage(w, stage);
    struct sides s = sides_of(m->patch);
    int lanes = w->kernels->lanes;
    size_t N = (size_t)(n > 0 ? n : 1), C = (size_t)m->channels, P = (size_t)m->patch;
    size_t L = (size_t)m->hidden, D = (size_t)m->attention, K = (size_t)m->branches;
    /* lane buffers: per group, times the groups of a bag of N (the names
     * AMIL_MIL_BUFFERS's counts are in) */
    size_t G = (N + lanes - 1) / lanes, V = (size_t)lanes, T = (size_t)threads;
    size_t c1 = CONV1 * V * s.conv1 * s.conv1, p1 = CONV1 * V * s.pool1 * s.pool1;
    size_t c2 = CONV2 * V * s.conv2 * s.conv2, p2 = (size_t)m->flat * V;
    size_t classes = (size_t)m->classes, blocks = ((size_t)m->flat + V - 1) / V;
    size_t taps = (size_t)CONV2 * CONV1 * KERNEL * KERNEL, conv_params = mil_conv_params(m);
    size_t wino_tiles = 64 * CONV1 * (s.conv2 / 4) * (s.conv2 / 4);
    size_t wino1_tiles = 64 * C * (s.conv1 / 4) * (s.conv1 / 4), taps1 = CONV1 * C * 25;
    size_t wino2_dm = 64 * CONV2 * (s.conv2 / 4) * (s.conv2 / 4) * V;
    size_t wino1_dm = 64 * 4 * (s.conv1 / 4) * (s.conv1 / 4) * V;
    size_t wino_scratch = WINOGRAD_SCRATCH(V);
    struct shift_sizes shift = shift_sizes(m, lanes);
#define ALLOC(st, type, name, count) \
    if (STAGE_##st == stage)         \
        w->name = amil_xaligned(sizeof(type) * (count));
    AMIL_MIL_BUFFERS(ALLOC)
    if (stage == STAGE_FEATURES)
        w->wino_ready = 0;
#undef ALLOC
    w->capacity[stage] = (int)N;
}

/* ---- forward ------------------------------------------------------------ */

struct groups_run {
    const struct bag_pass *pass;
    mil_groups_task *task;
};

static void run_task(void *ctx, int first, int end, int thread)
{
    const struct groups_run *run = ctx;
    run->task(run->pass->m, run->pass->w, run->pass, first, end, thread);
}

void mil_run_groups(const struct bag_pass *pass, int count, mil_groups_task *task)
{
    amil_parallel(count, run_task, &(struct groups_run){pass, task});
}

/* Group g's input: patches (N, P, P, C) bytes -> x (C, P, P, lanes) floats,
 * normalized; lanes past the bag's end are zero. */
static void patches_to_lanes(float *x, const uint8_t *patches, int n, int g, int lanes,
                             int C, int P, const float table[3][256])
{
    size_t pixels = (size_t)P * P;
    for (int l = 0; l < lanes; l++) {
        int i = g * lanes + l;
        for (int c = 0; c < C; c++)
            for (size_t j = 0; j < pixels; j++)
                x[((size_t)c * pixels + j) * lanes + l] =
                    i < n ? table[c][patches[((size_t)i * pixels + j) * C + c]] : 0;
    }
}

struct group_sizes mil_group_sizes(const struct amil_mil *m, int lanes)
{
    struct sides s = sides_of(m->patch);
    return (struct group_sizes){
        .x = (size_t)m->channels * m->patch * m->patch * lanes,
        .c1 = (size_t)CONV1 * s.conv1 * s.conv1 * lanes,
        .p1 = (size_t)CONV1 * s.pool1 * s.pool1 * lanes,
        .c2 = (size_t)CONV2 * s.conv2 * s.conv2 * lanes,
        .p2 = (size_t)m->flat * lanes,
    };
}

/* Groups first .. end-1 through both convolutions, on thread's scratch. */
static void features_of_groups(const struct amil_mil *m, struct amil_mil_work *w,
                               const struct bag_pass *pass, int first, int end, int thread)
{
    const struct amil_kernels *k = w->kernels;
    struct sides s = sides_of(m->patch);
    struct group_sizes z = mil_group_sizes(m, k->lanes);
    float *c1 = w->c1 + thread * z.c1, *c2 = w->c2 + thread * z.c2;
    float table[3][256];
    amil_norm_table(m->norm, table);
    for (int g = first; g < end; g++) {
        float *x = w->x + g * z.x, *p1 = w->p1 + g * z.p1, *p2 = w->p2 + g * z.p2;
        patches_to_lanes(x, pass->patches, pass->n, g, k->lanes, m->channels, m->patch,
                         table);
        if (winograd_fits(m, 1)) {
            size_t tiles = (size_t)s.conv1 / 4;
            float *v = w->wino1_v + thread * 64 * m->channels * tiles * tiles * k->lanes;
            k->winograd5_input(v, x, m->channels, m->patch);
            k->winograd5_output(c1, w->wino_m + thread * WINOGRAD_SCRATCH(k->lanes),
                                w->wino1_u, v, m->channels, CONV1, s.conv1);
        } else {
            k->conv5(c1, x, W(m, CONV1_W), m->channels, m->patch, m->patch, CONV1);
        }
        k->pool_bias_relu(p1, w->arg1 + g * z.p1, c1, W(m, CONV1_B), CONV1, s.conv1, s.conv1);
        mil_conv2_forward(m, w, c2, p1, pass->n, g, thread);
        k->pool_bias_relu(p2, w->arg2 + g * z.p2, c2, W(m, CONV2_B), CONV2, s.conv2, s.conv2);
    }
}

/* Whether group g of a bag of n runs the linear layer patch by patch:
 * when its lanes are not all patches and the features are whole vectors
 * (800 for 28×28 patches). */
int mil_linear_by_rows(const struct amil_mil *m, int lanes, int n, int g)
{
    return n - g * lanes < lanes && m->flat % lanes == 0;
}

/* The linear layer and its ReLU for group g's patches, as rows of H:
 * P2's planes, then each row of H the dot products of one with the
 * weight's rows (kernels.h's conv_shift_dweight with one tap). */
static void linear_of_rows(const struct amil_mil *m, struct amil_mil_work *w, int n, int g,
                           int thread)
{
    struct shifted_group sg = mil_shift_group(m, w, NULL, n, g, thread);
    size_t flat = (size_t)m->flat, L = (size_t)m->hidden;
    float *h = w->h + (size_t)g * sg.lanes * L;
    const float *bias = W(m, FC_B);
    int tap = 0;
    sg.k->transpose(sg.planes, flat, sg.lanes, w->p2 + g * flat * sg.lanes, sg.lanes,
                    sg.lanes * sg.lanes, flat / sg.lanes, 0);
    memset(h, 0, sizeof *h * sg.count * L);
    sg.k->conv_shift_dweight(h, sg.planes, flat, 0, W(m, FC_W), flat, 0, &tap, 1, m->hidden,
                             sg.count, flat, 1);
    for (int i = 0; i < sg.count; i++)
        for (size_t j = 0; j < L; j++) {
            float y = h[i * L + j] + bias[j];
            h[i * L + j] = y > 0 ? y : 0;
        }
}

/* The linear layer and its ReLU for groups first .. end-1, then their
 * patches' rows of H (N, L), which attend reads. */
static void linear_of_groups(const struct amil_mil *m, struct amil_mil_work *w,
                             const struct bag_pass *pass, int first, int end, int thread)
{
    size_t lanes = (size_t)w->kernels->lanes, L = (size_t)m->hidden;
    if (mil_linear_by_rows(m, w->kernels->lanes, pass->n, end - 1))
        linear_of_rows(m, w, pass->n, --end, thread);
    w->kernels->dense(w->hl + first * L * lanes, w->p2 + first * m->flat * lanes,
                      W(m, FC_W), (size_t)m->flat, 1, W(m, FC_B), 1, 0, end - first,
                      m->hidden, m->flat);
    size_t last = (size_t)end * lanes < (size_t)pass->n ? (size_t)end * lanes : (size_t)pass->n;
    for (size_t i = (size_t)first * lanes; i < last; i++) {
        const float *hl = w->hl + i / lanes * L * lanes + i % lanes;
        for (size_t j = 0; j < L; j++)
            w->h[i * L + j] = hl[j * lanes];
    }
}

void amil_mil_featurize(const struct amil_mil *m, struct amil_mil_work *w,
                        const uint8_t *patches, int n)
{
    mil_fit(m, w, n, STAGE_FEATURES);
    w->n = n;
    winograd_weights(m, w);
    int lanes = w->kernels->lanes;
    int groups = (n + lanes - 1) / lanes;
    struct bag_pass pass = {m, w, patches, n, NULL, NULL};
    mil_run_groups(&pass, groups, features_of_groups);
    mil_run_groups(&pass, groups, linear_of_groups);
}

void amil_mil_features(const struct amil_mil *m, struct amil_mil_work *w,
                       const uint8_t *patches, int n, float *features)
{
    size_t patch = (size_t)m->patch * m->patch * m->channels, L = (size_t)m->hidden;
    for (int first = 0; first < n; first += AMIL_MIL_CHUNK) {
        int count = n - first < AMIL_MIL_CHUNK ? n - first : AMIL_MIL_CHUNK;
        amil_mil_featurize(m, w, patches + first * patch, count);
        memcpy(features + first * L, w->h, sizeof *features * count * L);
    }
}

/* ---- backward ----------------------------------------------------------- */

/* The second convolution's weight gradient, image by image (a group not
 * full: conv2_forward's layout): grads += Σ over the group's patches of
 * dC2 (50, S, S, lanes) ⋆ P1. */
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

/* fc_dweight for blocks first .. end-1 of features: their regrouping,
 * product and sum into the gradient. */
static void fc_dweight_of_blocks(const struct amil_mil *m, struct amil_mil_work *w,
                                 const struct bag_pass *pass, int first, int end, int thread)
{
    (void)thread;
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

/* Rows first .. end-1 of the linear layer's weight gradient, added to it
 * by one product: dW (L, flat) += dHᵀ (L, N) · P2 (N, flat), P2's rows in
 * pk. */
static void fc_dweight_of_rows(const struct amil_mil *m, struct amil_mil_work *w,
                               const struct bag_pass *pass, int first, int end, int thread)
{
    (void)thread;
    w->kernels->product_add(pass->grads + m->params.at[FC_W].offset, (size_t)m->flat, w->dh,
                            (size_t)m->hidden, 1, w->pk, pass->n, m->flat, first, end);
}

/* The linear layer's weight gradient, dW (L, flat) += dHᵀ (L, N) · P2 (N,
 * flat), as a product with the features in lanes rather than the patches:
 * summed over the patches in registers, not across lanes.  w->dh holds dH
 * through the ReLU (rows).  When the features are whole vectors (800 for
 * 28×28 patches), P2's rows (w->p2's groups transposed into pk) and the
 * product adds straight into the gradient's rows; otherwise P2 is
 * regrouped into pk (J, N, lanes), feature j·lanes + l of patch i at
 * [j][i][l] (zero past flat), the product lands in dwk (J, L, lanes), then
 * is added to the gradient. */
static void fc_dweight(const struct amil_mil *m, struct amil_mil_work *w, int n, float *grads)
{
    int lanes = w->kernels->lanes, blocks = (m->flat + lanes - 1) / lanes;
    struct bag_pass pass = {m, w, NULL, n, grads, NULL};
    if (m->flat % lanes == 0) {
        size_t flat = (size_t)m->flat, V = (size_t)lanes;
        for (int g = 0; g < (n + lanes - 1) / lanes; g++)
            w->kernels->transpose(w->pk + g * V * flat, flat, V, w->p2 + g * flat * V, V, V * V,
                                  flat / V, 0);
        mil_run_groups(&pass, m->hidden, fc_dweight_of_rows);
        return;
    }
    mil_run_groups(&pass, blocks, fc_dweight_of_blocks);
}

/* dP2 of groups first .. end-1 += the linear layer's input gradient. */
void mil_linear_back_of_groups(const struct amil_mil *m, struct amil_mil_work *w,
                               const struct bag_pass *pass, int first, int end, int thread)
{
    size_t lanes = (size_t)w->kernels->lanes, flat = (size_t)m->flat;
    if (mil_linear_by_rows(m, w->kernels->lanes, pass->n, end - 1)) {
        /* the last group's patches as rows: dP2 (count, flat) += dH (count,
         * L) · W (L, flat), the outputs in lanes, W read once */
        struct shifted_group sg = mil_shift_group(m, w, NULL, pass->n, --end, thread);
        sg.k->product(sg.planes, m->flat, w->dhl + end * m->hidden * lanes, lanes, 1,
                      W(m, FC_W), NULL, m->hidden, m->flat, 0, sg.count);
        mil_planes_to_lanes(&sg, w->dp2 + end * flat * lanes, flat, flat, 1);
    }
    w->kernels->dense(w->dp2 + first * flat * lanes, w->dhl + first * m->hidden * lanes,
                      W(m, FC_W), 1, flat, NULL, 0, 1, end - first, m->flat, m->hidden);
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

/* Conv 2's backward for one group as the adjoint of its forward,
 * Winograd's F(4×4, 5×5) (kernels.h): dP1 (20, S1, S1, lanes) += its
 * input gradient from dC2; the thread's dU (64, 50, 20) += its weights'
 * gradient in Winograd's domain, taken back to the weights once a pass
 * (winograd_dweight).  6.25 times fewer multiplications than conv5's
 * backward. */
static void conv2_backward_winograd(const struct amil_mil *m, struct amil_mil_work *w,
                                    float *dp1, const float *dc2, const float *p1, int thread)
{
    const struct amil_kernels *k = w->kernels;
    struct sides s = sides_of(m->patch);
    size_t tiles = (size_t)s.conv2 / 4, K = tiles * tiles * k->lanes;   /* a position's */
    size_t pairs = CONV2 * CONV1;
    float *v = w->wino2_v + thread * 64 * CONV1 * K, *dm = w->wino2_dm + thread * 64 * CONV2 * K;
    float *du = w->wino2_du + thread * 64 * pairs;
    k->winograd5_input(v, p1, CONV1, s.pool1);   /* V again: the forward kept none */
    k->winograd5_doutput(dm, dc2, CONV2, s.conv2);
    /* at each of the 64 positions, dU (50, 20) += dM (50, K) · V (20, K)ᵀ */
    k->dots(du, pairs, dm, CONV2 * K, v, CONV1 * K, CONV2, CONV1, K, 64);
    k->winograd5_dinput(dp1, w->wino_m + thread * WINOGRAD_SCRATCH(k->lanes), w->wino2_ut, dm,
                        CONV1, CONV2, s.conv2);
}

/* Conv 1's weight gradient for one group, the same way (it has no input
 * gradient to give): the thread's dU (64, 20, C) += Σ over the tiles and
 * lanes of dM ⊗ V, four output channels' dM at a time, so that they stay
 * in cache (2.9 MB for all twenty). */
static void conv1_dweight_winograd(const struct amil_mil *m, struct amil_mil_work *w,
                                   const float *dc1, const float *x, int thread)
{
    const struct amil_kernels *k = w->kernels;
    struct sides s = sides_of(m->patch);
    size_t C = (size_t)m->channels, tiles = (size_t)s.conv1 / 4;
    size_t K = tiles * tiles * k->lanes, plane = (size_t)s.conv1 * s.conv1 * k->lanes;
    float *v = w->wino1_v + thread * 64 * C * K, *dm = w->wino1_dm + thread * 64 * 4 * K;
    float *du = w->wino1_du + thread * 64 * CONV1 * C;
    k->winograd5_input(v, x, (int)C, m->patch);
    for (int oc0 = 0; oc0 < CONV1; oc0 += 4) {
        k->winograd5_doutput(dm, dc1 + oc0 * plane, 4, s.conv1);
        k->dots(du + oc0 * C, CONV1 * C, dm, 4 * K, v, C * K, 4, (int)C, K, 64);
    }
}

/* The threads' dU of convolution `layer` (1 or 2) summed in thread order,
 * then taken to its weights: grads (OC, C, 5, 5) += Gᵀ dU G of each pair. */
static void winograd_dweight(const struct amil_mil *m, struct amil_mil_work *w, int layer,
                             float *grads)
{
    float *du = layer == 1 ? w->wino1_du : w->wino2_du;
    int weight = layer == 1 ? CONV1_W : CONV2_W;
    size_t pairs = m->params.at[weight].count / (KERNEL * KERNEL), taps = KERNEL * KERNEL;
    for (int t = 1; t < w->threads; t++)
        for (size_t i = 0; i < 64 * pairs; i++)
            du[i] += du[t * 64 * pairs + i];
    w->kernels->winograd5_dweights(w->wino_dgt, du, pairs);
    float *dweight = grads + m->params.at[weight].offset;
    for (size_t q = 0; q < pairs; q++)
        for (size_t t = 0; t < taps; t++)
            dweight[q * taps + t] += w->wino_dgt[t * pairs + q];
}

/* From dP2 back through both convolutions for groups first .. end-1:
 * thread 0 adds to the gradients, the others to their part of w->dconv
 * (a convolution run as Winograd's adds to the thread's dU instead, taken
 * to the gradients after the pass);
 * of the thread's input gradients, dP1 starts at zero per group (dC2 and
 * dC1 are written whole by unpool_relu).
 * With pass->cam (Grad-CAM), back to dC2 only, for the groups' maps, and
 * no weight gradients. */
void mil_conv_back_of_groups(const struct amil_mil *m, struct amil_mil_work *w,
                             const struct bag_pass *pass, int first, int end, int thread)
{
    const struct amil_kernels *k = w->kernels;
    struct sides s = sides_of(m->patch);
    struct group_sizes z = mil_group_sizes(m, k->lanes);
    float *grads = thread == 0 ? pass->grads : w->dconv + (thread - 1) * mil_conv_params(m);
    float *dc2 = w->dc2 + thread * z.c2, *dp1 = w->dp1 + thread * z.p1;
    float *dc1 = w->dc1 + thread * z.c1, unwanted[CONV2] = {0};   /* Grad-CAM: no dbias */
#define G(i) (grads + m->params.at[i].offset)
    for (int g = first; g < end; g++) {
        const float *p1 = w->p1 + g * z.p1;
        k->unpool_relu(dc2, pass->cam ? unwanted : G(CONV2_B), w->dp2 + g * z.p2,
                       w->p2 + g * z.p2, w->arg2 + g * z.p2, CONV2, s.conv2, s.conv2);
        if (pass->cam) {
            gradcam_group(m, w, pass->cam, pass->n, g, w->c2 + thread * z.c2, dc2, thread);
            continue;
        }
        memset(dp1, 0, sizeof *dp1 * z.p1);
        if (winograd_fits(m, 2)) {
            conv2_backward_winograd(m, w, dp1, dc2, p1, thread);
        } else {
            if (mil_shift_pays(m, k->lanes, pass->n, g))
                conv2_dweight_shifted(m, w, G(CONV2_W), dc2, p1, pass->n, g, thread);
            else
                k->conv5_dweight(G(CONV2_W), dc2, p1, 1, 0, 0, CONV1, s.pool1, s.pool1,
                                 CONV2);
            k->conv5_dinput(dp1, dc2, W(m, CONV2_W), CONV1, s.pool1, s.pool1, CONV2);
        }
        k->unpool_relu(dc1, G(CONV1_B), dp1, p1, w->arg1 + g * z.p1, CONV1, s.conv1, s.conv1);
        if (winograd_fits(m, 1))
            conv1_dweight_winograd(m, w, dc1, w->x + g * z.x, thread);
        else
            k->conv5_dweight(G(CONV1_W), dc1, w->x + g * z.x, 1, 0, 0, m->channels, m->patch,
                             m->patch, CONV1);
    }
#undef G
}

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

void mil_relu_to_lanes(const struct amil_mil *m, struct amil_mil_work *w, const float *h,
                       int count)
{
    int L = m->hidden, lanes = w->kernels->lanes;
    struct rows_pass rows = {m, w, h, count, NULL, 0};
    amil_parallel(count, relu_to_lanes, &rows);
    int groups = (count + lanes - 1) / lanes;
    for (int i = count; i < groups * lanes; i++)
        for (int j = 0; j < L; j++)
            w->dhl[(size_t)(i / lanes) * L * lanes + (size_t)j * lanes + i % lanes] = 0;
}

/* The feature extractor's backward from dH (masked by its ReLU) in lanes:
 * the linear layer over all groups, then group by group back to conv1. */
void mil_features_backward(const struct amil_mil *m, struct amil_mil_work *w, int n,
                           float *grads)
{
    amil_column_sums(grads + m->params.at[FC_B].offset, w->dh, n, m->hidden);
    fc_dweight(m, w, n, grads);
    int lanes = w->kernels->lanes, groups = (n + lanes - 1) / lanes;
    struct bag_pass pass = {m, w, NULL, n, grads, NULL};
    memset(w->dp2, 0, sizeof *w->dp2 * (size_t)groups * m->flat * lanes);
    mil_run_groups(&pass, groups, mil_linear_back_of_groups);
    /* the convolutions group by group, each thread adding its parameters'
     * gradients into a buffer of its own, summed in thread order after */
    size_t conv = mil_conv_params(m);
    memset(w->dconv, 0, sizeof *w->dconv * (size_t)(w->threads - 1) * conv);
    winograd_weights(m, w);   /* conv 2's Uᵀ of these weights */
    memset(w->wino1_du, 0, sizeof *w->wino1_du * 64 * CONV1 * m->channels * w->threads);
    memset(w->wino2_du, 0, sizeof *w->wino2_du * 64 * CONV2 * CONV1 * w->threads);
    mil_run_groups(&pass, groups, mil_conv_back_of_groups);
    for (int layer = 1; layer <= 2; layer++)
        if (winograd_fits(m, layer))
            winograd_dweight(m, w, layer, grads);
    for (int t = 1; t < w->threads; t++)
        for (size_t i = 0; i < conv; i++)
            grads[i] += w->dconv[(t - 1) * conv + i];
}
