/* mil_forward.c: the attention-MIL network of mil.h forward over a
 * bag: its work buffers, the feature extractor in lanes (kernels.h), the
 * attention and the classifier (featurize, attend, classify). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

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

/* The second convolution of a group that is not full runs image by image
 * (kernels.h's conv_shift) rather than in lanes, where the empty lanes
 * would cost as much as full ones: the group is transposed to planes, one
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

/* Whether the second convolution runs as Winograd's F(4×4, 5×5)
 * (kernels.h): when its output side is a multiple of 8, whole 4×4 tiles
 * four at a time (8 for 28×28 patches).  In lanes, it costs a full or a
 * partial group less than the direct sum of conv5 or conv_shift does. */
static int winograd_fits(const struct amil_mil *m)
{
    return sides_of(m->patch).conv2 % 8 == 0;
}

/* U of the second convolution's weights, made again only when they are
 * not the ones it was made from (an optimizer's step, a test's nudge). */
static void winograd_weights(const struct amil_mil *m, struct amil_mil_work *w)
{
    const float *weight = W(m, CONV2_W);
    size_t pairs = (size_t)CONV2 * CONV1, taps = KERNEL * KERNEL;
    if (w->wino_ready && memcmp(w->wino_seen, weight, sizeof *weight * pairs * taps) == 0)
        return;
    memcpy(w->wino_seen, weight, sizeof *weight * pairs * taps);
    for (size_t q = 0; q < pairs; q++)   /* (50·20, 25) to (25, 50·20) */
        for (size_t t = 0; t < taps; t++)
            w->wino_gt[t * pairs + q] = weight[q * taps + t];
    w->kernels->winograd5_weights(w->wino_u, w->wino_gt, pairs);
    w->wino_ready = 1;
}

/* C2 (50, S, S, lanes) of group g, its first count lanes patches (the rest
 * zero), without bias, from P1 (20, S1, S1, lanes): as Winograd's, in
 * lanes, or image by image, whichever fits and pays. */
void mil_conv2_forward(const struct amil_mil *m, struct amil_mil_work *w, float *c2,
                          const float *p1, int n, int g, int thread)
{
    struct sides s = sides_of(m->patch);
    if (winograd_fits(m)) {
        size_t lanes = (size_t)w->kernels->lanes, tiles = (size_t)s.conv2 / 4;
        float *v = w->wino_v + thread * 64 * CONV1 * tiles * tiles * lanes;
        w->kernels->winograd5_input(v, p1, CONV1, s.pool1);
        float *products = w->wino_m + thread * WINOGRAD_SCRATCH(lanes);
        w->kernels->winograd5_output(c2, products, w->wino_u, v, CONV1, CONV2, s.conv2);
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
static void features_of_groups(void *ctx, int first, int end, int thread)
{
    const struct bag_pass *pass = ctx;
    const struct amil_mil *m = pass->m;
    struct amil_mil_work *w = pass->w;
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
        k->conv5(c1, x, W(m, CONV1_W), m->channels, m->patch, m->patch, CONV1);
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
static void linear_of_groups(void *ctx, int first, int end, int thread)
{
    const struct bag_pass *pass = ctx;
    const struct amil_mil *m = pass->m;
    struct amil_mil_work *w = pass->w;
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
    if (winograd_fits(m))
        winograd_weights(m, w);
    int lanes = w->kernels->lanes;
    int groups = (n + lanes - 1) / lanes;
    struct bag_pass pass = {m, w, patches, n, NULL, NULL};
    amil_parallel(groups, features_of_groups, &pass);
    amil_parallel(groups, linear_of_groups, &pass);
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

struct amil_attention mil_attention(const struct amil_mil *m)
{
    int gated = m->arch == AMIL_MIL_GATED;
    return (struct amil_attention){m->hidden, m->attention, m->branches, gated,
                                   amil_attention_params_at(NULL, &m->params.at[ATT_FIRST],
                                                            gated)};
}

struct amil_attention_buffers mil_attention_buffers(struct amil_mil_work *w)
{
    return (struct amil_attention_buffers){w->v, w->u, w->gate, w->scores, w->a, w->m,
                                           w->dm, w->da, w->dsoft, w->dscores, w->dvt,
                                           w->dut, w->dv, w->du, w->dgate};
}

void amil_mil_attend(const struct amil_mil *m, struct amil_mil_work *w, const float *h, int n)
{
    mil_fit(m, w, n, STAGE_ATTENTION);
    w->n = n;
    struct amil_attention attention = mil_attention(m);
    struct amil_attention_buffers b = mil_attention_buffers(w);
    amil_attention_forward(&attention, &b, h, n);
}

void amil_mil_classify(const struct amil_mil *m, struct amil_mil_work *w, const float *em)
{
    int head = m->params.n - 2, outputs = amil_mil_outputs(m);
    mil_fit(m, w, 1, STAGE_ATTENTION);   /* logits and prob; a no-op after attend */
    amil_linear_forward(w->logits, em, W(m, head), W(m, head + 1), 1,
                        m->hidden * m->branches, outputs);
    if (m->classes == 2) {
        float p = 1 / (1 + expf(-w->logits[0]));
        w->prob[0] = 1 - p;
        w->prob[1] = p;
    } else {
        memcpy(w->prob, w->logits, sizeof *w->prob * outputs);
        amil_softmax_forward(w->prob, 1, outputs);
    }
}

