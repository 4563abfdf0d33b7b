/* model.c: the attention-MIL network of model.h, forward and backward over
 * one bag, and its parameters as a safetensors record. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <gsl/gsl_rng.h>

#include "kernels.h"
#include "model.h"
#include "nn.h"
#include "parallel.h"

#define CONV1 20        /* the paper's channels: conv 5×5 C→20, 20→50 */
#define CONV2 50
#define KERNEL 5

static const char *const arch_names[] = {"amil", "gated"};

const char *amil_arch_name(enum amil_arch arch) { return arch_names[arch]; }

int amil_arch_parse(const char *name)
{
    return amil_name_index(arch_names, 2, name);
}

int amil_model_outputs(const struct amil_model *m) { return m->classes == 2 ? 1 : m->classes; }

/* The sides after conv1, pool1, conv2 and pool2 for a patch of side P. */
struct sides {
    int conv1, pool1, conv2, pool2;
};

static struct sides sides_of(int patch)
{
    struct sides s;
    s.conv1 = patch - KERNEL + 1;
    s.pool1 = s.conv1 / 2;
    s.conv2 = s.pool1 - KERNEL + 1;
    s.pool2 = s.conv2 / 2;
    return s;
}

/* A layer's weight and bias, PyTorch's Linear or Conv2d. */
static int add_layer(struct amil_model *m, const char *prefix, int ndim, int64_t out,
                     int64_t in, int64_t k)
{
    char name[64];
    size_t fan_in = (size_t)(in * (ndim == 4 ? k * k : 1));
    int64_t shape[4] = {out, in, k, k};
    snprintf(name, sizeof name, "%s.weight", prefix);
    if (amil_params_add(&m->params, name, ndim, shape, fan_in) < 0)
        return -1;
    snprintf(name, sizeof name, "%s.bias", prefix);
    return amil_params_add(&m->params, name, 1, shape, fan_in);
}

/* The parameter table of the network, without its buffer: 0, or -1 with a
 * message when the sizes are out of range or their products too large. */
static int model_layout(struct amil_model *m, enum amil_arch arch, int channels, int patch,
                        int classes, int hidden, int attention, int branches)
{
    memset(m, 0, sizeof *m);
    struct sides s = sides_of(patch);
    if (channels != 1 && channels != 3)
        return amil_fail("%d channels: the model takes 1 or 3", channels);
    if (s.pool2 < 1 || patch > 4096)
        return amil_fail("a %d×%d patch is too small for the network (at least 16)",
                         patch, patch);
    if (classes < 2 || hidden < 1 || attention < 1 || branches < 1)
        return amil_fail("classes, hidden, attention and branches must be positive "
                         "(classes at least 2)");
    if (classes > AMIL_MODEL_MAX_WIDTH || hidden > AMIL_MODEL_MAX_WIDTH ||
        attention > AMIL_MODEL_MAX_WIDTH || branches > AMIL_MODEL_MAX_WIDTH)
        return amil_fail("classes %d, hidden %d, attention %d, branches %d: each must be "
                         "at most %d", classes, hidden, attention, branches,
                         AMIL_MODEL_MAX_WIDTH);
    /* the classifier reads K·L numbers, counted in int by the layers */
    if ((int64_t)hidden * branches > INT32_MAX)
        return amil_fail("hidden %d × branches %d is too large", hidden, branches);
    m->arch = arch;
    m->channels = channels;
    m->patch = patch;
    m->classes = classes;
    m->hidden = hidden;
    m->attention = attention;
    m->branches = branches;
    m->flat = CONV2 * s.pool2 * s.pool2;
    int failed = add_layer(m, "feature_extractor_part1.0", 4, CONV1, channels, KERNEL) < 0 ||
                 add_layer(m, "feature_extractor_part1.3", 4, CONV2, CONV1, KERNEL) < 0 ||
                 add_layer(m, "feature_extractor_part2.0", 2, hidden, m->flat, 0) < 0;
    if (arch == AMIL_ARCH_AMIL)
        failed = failed || add_layer(m, "attention.0", 2, attention, hidden, 0) < 0 ||
                 add_layer(m, "attention.2", 2, branches, attention, 0) < 0;
    else
        failed = failed || add_layer(m, "attention_V.0", 2, attention, hidden, 0) < 0 ||
                 add_layer(m, "attention_U.0", 2, attention, hidden, 0) < 0 ||
                 add_layer(m, "attention_weights", 2, branches, attention, 0) < 0;
    failed = failed || add_layer(m, "classifier.0", 2, amil_model_outputs(m),
                                 (int64_t)hidden * branches, 0) < 0;
    if (failed) {
        memset(m, 0, sizeof *m);
        return amil_fail("the model's %d classes, %d hidden, %d attention and %d branches "
                         "need more than %zu parameters", classes, hidden, attention,
                         branches, (size_t)AMIL_PARAMS_MAX_WEIGHTS);
    }
    return 0;
}

int amil_model_init(struct amil_model *m, enum amil_arch arch, int channels, int patch,
                    int classes, int hidden, int attention, int branches)
{
    if (!amil_kernels())   /* AMIL_ISA names a set this CPU cannot run */
        return -1;
    if (model_layout(m, arch, channels, patch, classes, hidden, attention, branches) < 0)
        return -1;
    amil_params_alloc(&m->params);
    return 0;
}

void amil_model_free(struct amil_model *m)
{
    amil_params_free(&m->params);
    memset(m, 0, sizeof *m);
}

void amil_model_randomize(struct amil_model *m, unsigned long seed)
{
    amil_params_randomize(&m->params, seed);
}

/* Weight and bias of the layer that starts at parameter i. */
#define W(m, i) ((m)->params.at[i].data)
enum { CONV1_W, CONV1_B, CONV2_W, CONV2_B, FC_W, FC_B, ATT_FIRST };

/* ---- records ------------------------------------------------------------ */

void amil_model_to_record(const struct amil_model *m, struct amil_record *r)
{
    amil_record_init(r);
    amil_meta_set(r, "kind", "model");
    amil_meta_set(r, "arch", amil_arch_name(m->arch));
    amil_meta_setf(r, "classes", "%d", m->classes);
    amil_meta_setf(r, "channels", "%d", m->channels);
    amil_meta_setf(r, "patch", "%d", m->patch);
    amil_meta_setf(r, "hidden", "%d", m->hidden);
    amil_meta_setf(r, "attention", "%d", m->attention);
    amil_meta_setf(r, "branches", "%d", m->branches);
    amil_meta_set(r, "normalization", amil_norm_name(m->norm));
    amil_params_to_record(&m->params, r);
}

/* A size read off a tensor's shape: any int64 in the file, so ranged
 * before it becomes a long, and later an int. */
static int shape_size(const char *what, int64_t size, long *out)
{
    if (size < 1 || size > AMIL_MODEL_MAX_WIDTH)
        return amil_fail("the tensors give %s %lld, outside 1..%d", what, (long long)size,
                         AMIL_MODEL_MAX_WIDTH);
    *out = (long)size;
    return 0;
}

/* An integer of the metadata, or the fallback read off a tensor's shape. */
static int meta_or(const struct amil_record *r, const char *key, int64_t fallback, long *out)
{
    if (shape_size(key, fallback, out) < 0)
        return -1;
    return amil_meta_long(r, key, 1, AMIL_MODEL_MAX_WIDTH, out) < 0 ? -1 : 0;
}

int amil_model_from_record(struct amil_model *m, const struct amil_record *r)
{
    memset(m, 0, sizeof *m);
    if (!amil_kernels())
        return -1;
    const char *arch_text = amil_meta_get(r, "arch");
    int arch = arch_text ? amil_arch_parse(arch_text)
             : amil_find(r, "attention_V.0.weight") ? AMIL_ARCH_GATED : AMIL_ARCH_AMIL;
    if (arch < 0)
        return amil_fail("arch '%s' is not an attention-MIL model (amil or gated)",
                         arch_text);
    const char *kind = amil_meta_get(r, "kind");
    if (kind && strcmp(kind, "model") != 0 && strcmp(kind, "checkpoint") != 0)
        return amil_fail("a record of kind '%s', not a model", kind);
    /* A bare state_dict says nothing but its shapes: read them off. */
    const struct amil_tensor *conv1 = amil_find(r, "feature_extractor_part1.0.weight");
    const struct amil_tensor *fc = amil_find(r, "feature_extractor_part2.0.weight");
    const struct amil_tensor *att = amil_find(r, arch == AMIL_ARCH_AMIL ? "attention.0.weight"
                                                                        : "attention_V.0.weight");
    const struct amil_tensor *branch = amil_find(r, arch == AMIL_ARCH_AMIL ? "attention.2.weight"
                                                                           : "attention_weights.weight");
    const struct amil_tensor *head = amil_find(r, "classifier.0.weight");
    if (!conv1 || !fc || !att || !branch || !head || conv1->ndim != 4 || fc->ndim != 2 ||
        att->ndim != 2 || branch->ndim != 2 || head->ndim != 2)
        return amil_fail("not an attention-MIL model: its tensors are not the %s "
                         "network's", arch_names[arch]);
    long channels, patch, classes, hidden, attention, branches, outputs = 0;
    /* The patch side whose flattened features match the linear's input. */
    int64_t guess = 28;
    for (int p = 16; p <= 512; p++)
        if (CONV2 * sides_of(p).pool2 * sides_of(p).pool2 == fc->shape[1]) {
            guess = p;
            break;
        }
    if (shape_size("outputs", head->shape[0], &outputs) < 0 ||
        meta_or(r, "channels", conv1->shape[1], &channels) < 0 ||
        meta_or(r, "patch", guess, &patch) < 0 ||
        meta_or(r, "classes", outputs == 1 ? 2 : outputs, &classes) < 0 ||
        meta_or(r, "hidden", fc->shape[0], &hidden) < 0 ||
        meta_or(r, "attention", att->shape[0], &attention) < 0 ||
        meta_or(r, "branches", branch->shape[0], &branches) < 0)
        return -1;
    /* The metadata must say what the tensors' shapes say.  All are at most
     * AMIL_MODEL_MAX_WIDTH here, so hidden × branches cannot overflow. */
    if (channels != conv1->shape[1] || hidden != fc->shape[0] ||
        attention != att->shape[0] || branches != branch->shape[0] ||
        (classes == 2 ? 1 : classes) != outputs || head->shape[1] != hidden * branches)
        return amil_fail("the metadata (channels %ld, hidden %ld, attention %ld, "
                         "branches %ld, classes %ld) disagrees with the tensors' shapes",
                         channels, hidden, attention, branches, classes);
    enum amil_norm norm;
    if (amil_norm_of_record(r, &norm) < 0)
        return -1;
    if (norm == AMIL_NORM_IMAGENET && channels != 3)
        return amil_fail("ImageNet normalization needs 3 channels, not %ld", channels);
    /* Every tensor is checked against the table before the buffer is
     * allocated, so its size is bounded by the data really present. */
    if (model_layout(m, arch, (int)channels, (int)patch, (int)classes, (int)hidden,
                     (int)attention, (int)branches) < 0 ||
        amil_params_check(&m->params, r) < 0)
        return -1;
    m->norm = norm;
    amil_params_alloc(&m->params);
    amil_params_copy(&m->params, r);
    return 0;
}

int amil_model_load(struct amil_model *m, const char *path)
{
    struct amil_record r;
    if (amil_record_load(path, &r) < 0)
        return -1;
    int status = amil_model_from_record(m, &r);
    amil_record_free(&r);
    return status < 0 ? amil_fail_in(path) : 0;
}

int amil_model_predict(const struct amil_model *m, const float *prob)
{
    if (m->classes == 2)
        return prob[1] >= 0.5f;
    int best = 0;
    for (int c = 1; c < m->classes; c++)
        if (prob[c] > prob[best])
            best = c;
    return best;
}

const struct amil_tensor *amil_bag_patches(const struct amil_model *m,
                                           const struct amil_record *r)
{
    const struct amil_tensor *t = amil_expect(r, "patches", AMIL_U8, 4);
    if (!t)
        return NULL;
    /* the convolutions count N × conv1² columns in int */
    int64_t side = m->patch - KERNEL + 1;
    if (t->shape[0] < 1 || t->shape[0] > INT32_MAX / (side * side > 1024 ? side * side : 1024)) {
        amil_fail("a bag of %lld patches", (long long)t->shape[0]);
        return NULL;
    }
    if (t->shape[1] != m->patch || t->shape[2] != m->patch || t->shape[3] != m->channels) {
        amil_fail("patches of %lld×%lld×%lld do not fit the model, which takes "
                  "%d×%d×%d", (long long)t->shape[1], (long long)t->shape[2],
                  (long long)t->shape[3], m->patch, m->patch, m->channels);
        return NULL;
    }
    return t;
}

int amil_bag_label(const struct amil_model *m, const struct amil_record *r, long *label)
{
    int has = amil_meta_long(r, "label", 0, m->classes - 1, label);
    if (has < 0) {
        const char *v = amil_meta_get(r, "label");
        return amil_fail("label '%s' is not a class of the model (0 to %d)", v,
                         m->classes - 1);
    }
    return has;
}

/* ---- activations -------------------------------------------------------- */

/* The buffers of each stage: featurize's, attend's and classify's, and the
 * gradients only a training step needs; each stage grows on its own, so
 * that attend does not hold the convolutions' memory, nor featurize the
 * gradients'.  The feature extractor's activations are in the lane layout
 * of kernels.h, a group of `lanes` patches at a time; what backward needs
 * is kept for the whole bag, one group's convolution outputs are scratch. */
enum { STAGE_FEATURES, STAGE_ATTENTION, STAGE_BACKWARD, STAGES };

static void free_stage(struct amil_work *w, int stage)
{
    void **features[] = {(void **)&w->x, (void **)&w->p1, (void **)&w->arg1,
                         (void **)&w->p2, (void **)&w->arg2, (void **)&w->hl,
                         (void **)&w->h, (void **)&w->c1, (void **)&w->c2,
                         (void **)&w->planes, (void **)&w->shifted,
                         (void **)&w->wino_u, (void **)&w->wino_seen, (void **)&w->wino_gt,
                         (void **)&w->wino_v, (void **)&w->wino_m};
    void **attention[] = {(void **)&w->v, (void **)&w->u, (void **)&w->gate,
                          (void **)&w->scores, (void **)&w->a, (void **)&w->m,
                          (void **)&w->logits, (void **)&w->prob};
    void **backward[] = {(void **)&w->dhl, (void **)&w->dp2, (void **)&w->pk,
                         (void **)&w->dwk, (void **)&w->dc2,
                         (void **)&w->dp1, (void **)&w->dc1, (void **)&w->dconv, (void **)&w->dh,
                         (void **)&w->dv, (void **)&w->du, (void **)&w->dvt, (void **)&w->dut,
                         (void **)&w->dgate, (void **)&w->dscores, (void **)&w->da,
                         (void **)&w->dsoft,
                         (void **)&w->dm, (void **)&w->dlogits};
    void ***lists[STAGES] = {features, attention, backward};
    size_t sizes[STAGES] = {sizeof features / sizeof *features,
                            sizeof attention / sizeof *attention,
                            sizeof backward / sizeof *backward};
    for (size_t i = 0; i < sizes[stage]; i++) {
        free(*lists[stage][i]);
        *lists[stage][i] = NULL;
    }
    w->capacity[stage] = 0;
}

void amil_work_free(struct amil_work *w)
{
    for (int stage = 0; stage < STAGES; stage++)
        free_stage(w, stage);
    memset(w, 0, sizeof *w);
}

/* The convolutions' parameters: the first four, at the buffer's start. */
static size_t conv_params(const struct amil_model *m)
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
struct shift_sizes {
    size_t plane;     /* floats of a patch's plane: P1's or C2's, the larger */
    size_t planes;    /* a thread's planes: lanes of them */
    size_t channel;   /* floats of one input channel's five copies */
    size_t shifted;   /* a thread's copies: lanes patches */
};

static struct shift_sizes shift_sizes(const struct amil_model *m, int lanes)
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
static int shift_pays(const struct amil_model *m, int lanes, int n, int g)
{
    struct sides s = sides_of(m->patch);
    size_t positions = (size_t)s.conv2 * s.conv2;
    return n - g * lanes < lanes && positions % lanes == 0 &&
           (size_t)CONV1 * s.pool1 * s.pool1 % lanes == 0;
}

/* A group's patches image by image, on this thread's scratch. */
struct shifted_group {
    const struct amil_kernels *k;
    struct shift_sizes z;
    size_t lanes, positions;   /* positions: of C2's map, S·S */
    int count;                 /* the group's patches */
    int off[KERNEL * KERNEL];
    float *planes, *shifted;
};

/* Group g's first count patches of P1 (20, S1, S1, lanes), aligned, to
 * their shifted copies at sg->shifted (count, 20, 5, S1, S); leaves P1's
 * planes in sg->planes. */
static struct shifted_group shift_group(const struct amil_model *m, struct amil_work *w,
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
                    in / sg.lanes);
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
 * lanes), the lanes past count zero; rows a multiple of lanes */
static void planes_to_lanes(const struct shifted_group *sg, float *to, size_t rows,
                            size_t stride)
{
    memset(sg->planes + sg->count * stride, 0,
           sizeof *sg->planes * (sg->lanes - sg->count) * stride);
    sg->k->transpose(to, sg->lanes, sg->lanes * sg->lanes, sg->planes, stride, sg->lanes,
                     rows / sg->lanes);
}

/* Whether the second convolution runs as Winograd's F(4×4, 5×5)
 * (kernels.h): when its output side is a multiple of 8, whole 4×4 tiles
 * four at a time (8 for 28×28 patches).  In lanes, it costs a full or a
 * partial group less than the direct sum of conv5 or conv_shift does. */
/* floats of a thread's products scratch (kernels.h's winograd5_output) */
#define WINOGRAD_SCRATCH(lanes) ((size_t)64 * 4 * 6 * (lanes))

static int winograd_fits(const struct amil_model *m)
{
    return sides_of(m->patch).conv2 % 8 == 0;
}

/* U of the second convolution's weights, made again only when they are
 * not the ones it was made from (an optimizer's step, a test's nudge). */
static void winograd_weights(const struct amil_model *m, struct amil_work *w)
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
static void conv2_forward(const struct amil_model *m, struct amil_work *w, float *c2,
                          const float *p1, int n, int g, int thread)
{
    struct sides s = sides_of(m->patch);
    if (winograd_fits(m)) {
        size_t lanes = (size_t)w->kernels->lanes, tiles = (size_t)s.conv2 / 4;
        float *v = w->wino_v + thread * 64 * CONV1 * tiles * tiles * lanes;
        w->kernels->winograd5_input(v, p1, CONV1, s.pool1);
        w->kernels->winograd5_output(c2, w->wino_m + thread * WINOGRAD_SCRATCH(lanes), w->wino_u, v,
                                     CONV1, CONV2, s.conv2);
        return;
    }
    if (!shift_pays(m, w->kernels->lanes, n, g)) {
        w->kernels->conv5(c2, p1, W(m, CONV2_W), CONV1, s.pool1, s.pool1, CONV2);
        return;
    }
    struct shifted_group sg = shift_group(m, w, p1, n, g, thread);
    for (int i = 0; i < sg.count; i++)
        sg.k->conv_shift(sg.planes + i * sg.z.plane, sg.positions,
                         sg.shifted + (size_t)i * CONV1 * sg.z.channel, sg.z.channel,
                         W(m, CONV2_W), NULL, sg.off, KERNEL * KERNEL, CONV1, CONV2, 0, 0,
                         sg.positions);
    planes_to_lanes(&sg, c2, CONV2 * sg.positions, sg.z.plane);
}

/* Its weight gradient: grads += Σ over the group's patches of dC2 (50, S,
 * S, lanes) ⋆ P1, image by image (conv2_forward's layout). */
static void conv2_dweight_shifted(const struct amil_model *m, struct amil_work *w,
                                  float *dweight, const float *dc2, const float *p1, int n,
                                  int g, int thread)
{
    struct shifted_group sg = shift_group(m, w, p1, n, g, thread);
    sg.k->transpose(sg.planes, sg.z.plane, sg.lanes, dc2, sg.lanes, sg.lanes * sg.lanes,
                    CONV2 * sg.positions / sg.lanes);
    sg.k->conv_shift_dweight(dweight, sg.planes, sg.positions, sg.z.plane, sg.shifted,
                             sg.z.channel, CONV1 * sg.z.channel, sg.off, KERNEL * KERNEL,
                             CONV1, CONV2, sg.positions, sg.count);
}

/* Makes room in one stage's buffers for a bag of n patches. */
static void fit(const struct amil_model *m, struct amil_work *w, int n, int stage)
{
    if (!w->kernels)
        w->kernels = amil_kernels();
    /* The threads work on the lane kernels; OpenBLAS (the attention's small
     * products) stays on one, or its spinning workers take a core from them
     * (measured: 2 threads 38 ms a step with OpenBLAS on two, 26 ms on one) */
    openblas_set_num_threads(1);
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
    /* lane buffers: per group, times the groups of a bag of N */
    size_t G = (N + lanes - 1) / lanes, V = (size_t)lanes;
    size_t c1 = CONV1 * V * s.conv1 * s.conv1, p1 = CONV1 * V * s.pool1 * s.pool1;
    size_t c2 = CONV2 * V * s.conv2 * s.conv2, p2 = (size_t)m->flat * V;
#define ALLOC(field, count) (w->field = amil_xaligned(sizeof *w->field * (count)))
    if (stage == STAGE_FEATURES) {
        ALLOC(x, G * C * P * P * V);
        ALLOC(p1, G * p1);
        ALLOC(arg1, G * p1);
        ALLOC(p2, G * p2);
        ALLOC(arg2, G * p2);
        ALLOC(hl, G * L * V);
        ALLOC(h, N * L);
        ALLOC(c1, c1 * threads);
        ALLOC(c2, c2 * threads);
        ALLOC(planes, shift_sizes(m, lanes).planes * threads);
        ALLOC(shifted, shift_sizes(m, lanes).shifted * threads);
        size_t taps = (size_t)CONV2 * CONV1 * KERNEL * KERNEL;
        ALLOC(wino_u, 64 * CONV2 * CONV1);
        ALLOC(wino_seen, taps);
        ALLOC(wino_gt, taps);
        ALLOC(wino_v, 64 * CONV1 * (s.conv2 / 4) * (s.conv2 / 4) * V * threads);
        ALLOC(wino_m, WINOGRAD_SCRATCH(V) * threads);
        w->wino_ready = 0;
    } else if (stage == STAGE_ATTENTION) {
        ALLOC(v, N * D);
        ALLOC(u, N * D);
        ALLOC(gate, N * D);
        ALLOC(scores, N * K);
        ALLOC(a, K * N);
        ALLOC(m, K * L);
        ALLOC(logits, m->classes);
        ALLOC(prob, m->classes);
    } else {
        size_t blocks = ((size_t)m->flat + V - 1) / V;
        ALLOC(dhl, G * L * V);
        ALLOC(dp2, G * p2);
        ALLOC(pk, blocks * N * V);
        ALLOC(dwk, blocks * L * V);
        ALLOC(dc2, c2 * threads);
        ALLOC(dp1, p1 * threads);
        ALLOC(dc1, c1 * threads);
        ALLOC(dconv, (size_t)(threads - 1) * conv_params(m) + 1);
        ALLOC(dh, N * L);
        ALLOC(dv, N * D);
        ALLOC(du, N * D);
        ALLOC(dvt, N * D);
        ALLOC(dut, N * D);
        ALLOC(dgate, N * D);
        ALLOC(dscores, N * K);
        ALLOC(da, K * N);
        ALLOC(dsoft, K * N);
        ALLOC(dm, K * L);
        ALLOC(dlogits, m->classes);
    }
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

/* What the parallel loops of featurize and backward share. */
struct bag_pass {
    const struct amil_model *m;
    struct amil_work *w;
    const uint8_t *patches;
    int n;
    float *grads, *cam;
};

/* Sizes of one group's buffers, in floats (bytes for arg1, arg2). */
struct group_sizes {
    size_t x, c1, p1, c2, p2;
};

static struct group_sizes group_sizes(const struct amil_model *m, int lanes)
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
    const struct amil_model *m = pass->m;
    struct amil_work *w = pass->w;
    const struct amil_kernels *k = w->kernels;
    struct sides s = sides_of(m->patch);
    struct group_sizes z = group_sizes(m, k->lanes);
    float *c1 = w->c1 + thread * z.c1, *c2 = w->c2 + thread * z.c2;
    float table[3][256];
    amil_norm_table(m->norm, table);
    for (int g = first; g < end; g++) {
        float *x = w->x + g * z.x, *p1 = w->p1 + g * z.p1, *p2 = w->p2 + g * z.p2;
        patches_to_lanes(x, pass->patches, pass->n, g, k->lanes, m->channels, m->patch,
                         table);
        k->conv5(c1, x, W(m, CONV1_W), m->channels, m->patch, m->patch, CONV1);
        k->pool_bias_relu(p1, w->arg1 + g * z.p1, c1, W(m, CONV1_B), CONV1, s.conv1, s.conv1);
        conv2_forward(m, w, c2, p1, pass->n, g, thread);
        k->pool_bias_relu(p2, w->arg2 + g * z.p2, c2, W(m, CONV2_B), CONV2, s.conv2, s.conv2);
    }
}

/* Whether group g of a bag of n runs the linear layer patch by patch:
 * when its lanes are not all patches and the features are whole vectors
 * (800 for 28×28 patches). */
static int linear_by_rows(const struct amil_model *m, int lanes, int n, int g)
{
    return n - g * lanes < lanes && m->flat % lanes == 0;
}

/* The linear layer and its ReLU for group g's patches, as rows of H:
 * P2's planes, then each row of H the dot products of one with the
 * weight's rows (kernels.h's conv_shift_dweight with one tap). */
static void linear_of_rows(const struct amil_model *m, struct amil_work *w, int n, int g,
                           int thread)
{
    struct shifted_group sg = shift_group(m, w, NULL, n, g, thread);
    size_t flat = (size_t)m->flat, L = (size_t)m->hidden;
    float *h = w->h + (size_t)g * sg.lanes * L;
    const float *bias = W(m, FC_B);
    int tap = 0;
    sg.k->transpose(sg.planes, flat, sg.lanes, w->p2 + g * flat * sg.lanes, sg.lanes,
                    sg.lanes * sg.lanes, flat / sg.lanes);
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
    const struct amil_model *m = pass->m;
    struct amil_work *w = pass->w;
    size_t lanes = (size_t)w->kernels->lanes, L = (size_t)m->hidden;
    if (linear_by_rows(m, w->kernels->lanes, pass->n, end - 1))
        linear_of_rows(m, w, pass->n, --end, thread);
    w->kernels->dense(w->hl + first * L * lanes, w->p2 + first * m->flat * lanes,
                      W(m, FC_W), (size_t)m->flat, 1, W(m, FC_B), 1, end - first, m->hidden,
                      m->flat);
    size_t last = (size_t)end * lanes < (size_t)pass->n ? (size_t)end * lanes : (size_t)pass->n;
    for (size_t i = (size_t)first * lanes; i < last; i++) {
        const float *hl = w->hl + i / lanes * L * lanes + i % lanes;
        for (size_t j = 0; j < L; j++)
            w->h[i * L + j] = hl[j * lanes];
    }
}

void amil_featurize(const struct amil_model *m, struct amil_work *w,
                    const uint8_t *patches, int n)
{
    fit(m, w, n, STAGE_FEATURES);
    w->n = n;
    if (winograd_fits(m))
        winograd_weights(m, w);
    int lanes = w->kernels->lanes;
    int groups = (n + lanes - 1) / lanes;
    struct bag_pass pass = {m, w, patches, n, NULL, NULL};
    amil_parallel(groups, features_of_groups, &pass);
    amil_parallel(groups, linear_of_groups, &pass);
}

/* What the attention's loops over a bag's rows share: H (N, L) and, in
 * backward, the gradients. */
struct rows_pass {
    const struct amil_model *m;
    struct amil_work *w;
    const float *h;
    int n;
    float *grads;
};

/* The attention network's scores of rows first .. end-1 (one BLAS call per
 * layer over those rows; each thread a range of patches). */
static void attention_of_rows(void *ctx, int first, int end, int thread)
{
    (void)thread;
    const struct rows_pass *pass = ctx;
    const struct amil_model *m = pass->m;
    struct amil_work *w = pass->w;
    int L = m->hidden, D = m->attention, K = m->branches, rows = end - first;
    const float *h = pass->h + (size_t)first * L;
    float *v = w->v + (size_t)first * D, *scores = w->scores + (size_t)first * K;
    size_t nd = (size_t)rows * D;
    amil_linear_forward(v, h, W(m, ATT_FIRST), W(m, ATT_FIRST + 1), rows, L, D);
    amil_tanh_forward(v, nd);
    if (m->arch == AMIL_ARCH_AMIL) {
        amil_linear_forward(scores, v, W(m, ATT_FIRST + 2), W(m, ATT_FIRST + 3), rows, D, K);
        return;
    }
    float *u = w->u + (size_t)first * D, *gate = w->gate + (size_t)first * D;
    amil_linear_forward(u, h, W(m, ATT_FIRST + 2), W(m, ATT_FIRST + 3), rows, L, D);
    amil_sigmoid_forward(u, nd);
    for (size_t i = 0; i < nd; i++)
        gate[i] = v[i] * u[i];
    amil_linear_forward(scores, gate, W(m, ATT_FIRST + 4), W(m, ATT_FIRST + 5), rows, D, K);
}

void amil_attend(const struct amil_model *m, struct amil_work *w, const float *h, int n)
{
    fit(m, w, n, STAGE_ATTENTION);
    w->n = n;
    int L = m->hidden, K = m->branches;
    struct rows_pass pass = {m, w, h, n, NULL};
    amil_parallel(n, attention_of_rows, &pass);
    for (int k = 0; k < K; k++)   /* (N, K) -> (K, N), then softmax over N */
        for (int i = 0; i < n; i++)
            w->a[(size_t)k * n + i] = w->scores[(size_t)i * K + k];
    amil_softmax_forward(w->a, K, n);
    /* M (K, L) = A (K, N) · H (N, L) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, K, L, n, 1.0f, w->a, n, h, L,
                0.0f, w->m, L);
}

void amil_classify(const struct amil_model *m, struct amil_work *w, const float *em)
{
    int head = m->params.n - 2, outputs = amil_model_outputs(m);
    fit(m, w, 1, STAGE_ATTENTION);   /* logits and prob; a no-op after attend */
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

/* ---- backward ----------------------------------------------------------- */

/* Grad-CAM of group g's patches (amil_model_gradcam): A = conv2's output
 * with its bias (conv2 is run again: the forward kept only the pooled
 * maps), dA = w->dc2 as backward left it; per patch and channel alpha = the
 * mean of dA over the map, cam (N, S, S) = ReLU(Σ alpha A). */
static void gradcam_group(const struct amil_model *m, struct amil_work *w, float *cam, int n,
                          int g, float *c2, const float *dc2, int thread)
{
    struct sides s = sides_of(m->patch);
    int lanes = w->kernels->lanes;
    size_t map = (size_t)s.conv2 * s.conv2;
    conv2_forward(m, w, c2, w->p1 + (size_t)g * CONV1 * s.pool1 * s.pool1 * lanes, n, g,
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
    const struct amil_model *m = pass->m;
    struct amil_work *w = pass->w;
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
                      w->dh, 1, (size_t)L, NULL, 0, end - first, L, n);
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
static void fc_dweight(const struct amil_model *m, struct amil_work *w, int n, float *grads)
{
    int lanes = w->kernels->lanes, blocks = (m->flat + lanes - 1) / lanes;
    struct bag_pass pass = {m, w, NULL, n, grads, NULL};
    amil_parallel(blocks, fc_dweight_of_blocks, &pass);
}

/* dP2 of groups first .. end-1: the linear layer's input gradient. */
static void linear_back_of_groups(void *ctx, int first, int end, int thread)
{
    const struct bag_pass *pass = ctx;
    const struct amil_model *m = pass->m;
    struct amil_work *w = pass->w;
    size_t lanes = (size_t)w->kernels->lanes, flat = (size_t)m->flat;
    if (linear_by_rows(m, w->kernels->lanes, pass->n, end - 1)) {
        /* the last group's patches as rows: dP2 (count, flat) = dH (count,
         * L) · W (L, flat), the outputs in lanes, W read once */
        struct shifted_group sg = shift_group(m, w, NULL, pass->n, --end, thread);
        sg.k->product(sg.planes, w->dhl + end * m->hidden * lanes, lanes, W(m, FC_W),
                      m->hidden, m->flat, 0, sg.count);
        planes_to_lanes(&sg, w->dp2 + end * flat * lanes, flat, flat);
    }
    w->kernels->dense(w->dp2 + first * flat * lanes, w->dhl + first * m->hidden * lanes,
                      W(m, FC_W), 1, flat, NULL, 0, end - first, m->flat, m->hidden);
}

/* From dP2 back through both convolutions for groups first .. end-1:
 * thread 0 adds to the gradients, the others to their part of w->dconv. */
static void conv_back_of_groups(void *ctx, int first, int end, int thread)
{
    const struct bag_pass *pass = ctx;
    const struct amil_model *m = pass->m;
    struct amil_work *w = pass->w;
    const struct amil_kernels *k = w->kernels;
    struct sides s = sides_of(m->patch);
    struct group_sizes z = group_sizes(m, k->lanes);
    float *grads = thread == 0 ? pass->grads : w->dconv + (thread - 1) * conv_params(m);
    float *dc2 = w->dc2 + thread * z.c2, *dp1 = w->dp1 + thread * z.p1;
    float *dc1 = w->dc1 + thread * z.c1;
#define G(i) (grads + m->params.at[i].offset)
    for (int g = first; g < end; g++) {
        const float *p1 = w->p1 + g * z.p1;
        k->unpool_relu(dc2, G(CONV2_B), w->dp2 + g * z.p2, w->p2 + g * z.p2,
                       w->arg2 + g * z.p2, CONV2, s.conv2, s.conv2);
        if (pass->cam)
            gradcam_group(m, w, pass->cam, pass->n, g, w->c2 + thread * z.c2, dc2, thread);
        if (shift_pays(m, k->lanes, pass->n, g))
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

/* Backward from w->dlogits (the gradient of whatever scalar is being
 * differentiated with respect to the logits) through the whole network of
 * the bag amil_model_step or amil_model_gradcam has just run forward:
 * grads (nweights) += its parameters' gradients; with cam, also the
 * Grad-CAM maps (N, S, S) of the second convolution. */
/* sums (C) += the columns of x (N, C), row after row. */
static void column_sums(float *sums, const float *x, int N, int C)
{
    for (int i = 0; i < N; i++)
        for (int c = 0; c < C; c++)
            sums[c] += x[(size_t)i * C + c];
}

/* Rows first .. end-1 back through the attention network from dscores: its
 * input gradient added to dH; then dH through the linear layer's ReLU (dH
 * keeps the masked gradient) into the lanes of dhl.  The rows' gradients of
 * tanh's and σ's outputs and inputs are zeroed here, as nn.h's layers add
 * to them. */
static void attention_back_of_rows(void *ctx, int first, int end, int thread)
{
    (void)thread;
    const struct rows_pass *pass = ctx;
    const struct amil_model *m = pass->m;
    struct amil_work *w = pass->w;
    int L = m->hidden, D = m->attention, K = m->branches, rows = end - first;
    size_t nd = (size_t)rows * D, at = (size_t)first * D;
    const float *dscores = w->dscores + (size_t)first * K, *h = pass->h + (size_t)first * L;
    float *dv = w->dv + at, *dvt = w->dvt + at, *dh = w->dh + (size_t)first * L;
    memset(dv, 0, sizeof *dv * nd);
    if (m->arch == AMIL_ARCH_AMIL) {
        /* tanh's output: dVt (rows, D) = dscores (rows, K) · W (K, D) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, D, K, 1.0f, dscores, K,
                    W(m, ATT_FIRST + 2), D, 0.0f, dvt, D);
        amil_tanh_backward(dv, dvt, w->v + at, nd);
    } else {
        float *dgate = w->dgate + at, *du = w->du + at, *dut = w->dut + at;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, D, K, 1.0f, dscores, K,
                    W(m, ATT_FIRST + 4), D, 0.0f, dgate, D);
        /* the product tanh(V H) ⊙ σ(U H): each factor's gradient */
        for (size_t i = 0; i < nd; i++) {
            dvt[i] = dgate[i] * w->u[at + i];
            dut[i] = dgate[i] * w->v[at + i];
        }
        memset(du, 0, sizeof *du * nd);
        amil_tanh_backward(dv, dvt, w->v + at, nd);
        amil_sigmoid_backward(du, dut, w->u + at, nd);
        /* dH (rows, L) += dU (rows, D) · U's weight (D, L) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, L, D, 1.0f, du, D,
                    W(m, ATT_FIRST + 2), L, 1.0f, dh, L);
    }
    /* dH (rows, L) += dV (rows, D) · V's weight (D, L) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, L, D, 1.0f, dv, D,
                W(m, ATT_FIRST), L, 1.0f, dh, L);
    size_t lanes = (size_t)w->kernels->lanes;
    for (int r = 0; r < rows; r++) {
        size_t i = (size_t)first + r;
        float *dhl = w->dhl + i / lanes * L * lanes + i % lanes;
        for (int j = 0; j < L; j++) {
            float *d = &dh[(size_t)r * L + j];
            *d = h[(size_t)r * L + j] > 0 ? *d : 0;
            dhl[(size_t)j * lanes] = *d;
        }
    }
}

/* Units first .. end-1 of the attention's first layer: their rows of its
 * weight's gradient (D, L) += dVᵀ (D, N) · H (N, L) (gated: U's too). */
static void attention_dweight_of_units(void *ctx, int first, int end, int thread)
{
    (void)thread;
    const struct rows_pass *pass = ctx;
    const struct amil_model *m = pass->m;
    struct amil_work *w = pass->w;
    int L = m->hidden, D = m->attention, n = pass->n;
    const float *grad_of[2] = {w->dv, w->du};
    int params[2] = {ATT_FIRST, ATT_FIRST + 2};
    for (int k = 0; k < (m->arch == AMIL_ARCH_GATED ? 2 : 1); k++)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, end - first, L, n, 1.0f,
                    grad_of[k] + first, D, pass->h, L, 1.0f,
                    pass->grads + m->params.at[params[k]].offset + (size_t)first * L, L);
}

static void backward(const struct amil_model *m, struct amil_work *w, int n, float *grads,
                     float *cam)
{
    int L = m->hidden, D = m->attention, K = m->branches;
    int head = m->params.n - 2, outputs = amil_model_outputs(m);
#define G(i) (grads + m->params.at[i].offset)
    /* classifier: dM (1, K·L) */
    memset(w->dm, 0, sizeof *w->dm * L * K);
    amil_linear_backward(w->dm, G(head), G(head + 1), w->dlogits, w->m, W(m, head), 1,
                         L * K, outputs);
    /* M = A H: dA (K, N) = dM (K, L) · Hᵀ; dH (N, L) = Aᵀ · dM (the first
     * of dH's two terms: written, not added) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, K, n, L, 1.0f, w->dm, L, w->h, L,
                0.0f, w->da, n);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, L, K, 1.0f, w->a, n, w->dm, L,
                0.0f, w->dh, L);
    memset(w->dsoft, 0, sizeof *w->dsoft * K * n);
    amil_softmax_backward(w->dsoft, w->da, w->a, K, n);
    for (int k = 0; k < K; k++)
        for (int i = 0; i < n; i++)
            w->dscores[(size_t)i * K + k] = w->dsoft[(size_t)k * n + i];
    /* the attention network, rows split among threads, then its weights'
     * gradients, units split among threads */
    struct rows_pass rows = {m, w, w->h, n, grads};
    amil_parallel(n, attention_back_of_rows, &rows);
    const struct amil_kernels *kern = w->kernels;
    int lanes = kern->lanes, groups = (n + lanes - 1) / lanes;
    for (int i = n; i < groups * lanes; i++)   /* the last group's empty lanes */
        for (int j = 0; j < L; j++)
            w->dhl[(size_t)(i / lanes) * L * lanes + (size_t)j * lanes + i % lanes] = 0;
    amil_parallel(D, attention_dweight_of_units, &rows);
    int last = m->arch == AMIL_ARCH_AMIL ? ATT_FIRST + 2 : ATT_FIRST + 4;
    const float *before_last = m->arch == AMIL_ARCH_AMIL ? w->v : w->gate;
    /* the scoring layer's weight (K, D) += dscoresᵀ (K, N) · its input (N, D) */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, D, n, 1.0f, w->dscores, K,
                before_last, D, 1.0f, G(last), D);
    column_sums(G(last + 1), w->dscores, n, K);
    column_sums(G(ATT_FIRST + 1), w->dv, n, D);
    if (m->arch == AMIL_ARCH_GATED)
        column_sums(G(ATT_FIRST + 3), w->du, n, D);
    /* the feature extractor: dH (masked by its ReLU) in lanes, then the
     * linear layer over all groups, then group by group back to conv1 */
    column_sums(G(FC_B), w->dh, n, L);
    fc_dweight(m, w, n, grads);
    struct bag_pass pass = {m, w, NULL, n, grads, cam};
    amil_parallel(groups, linear_back_of_groups, &pass);
    /* the convolutions group by group, each thread adding its parameters'
     * gradients into a buffer of its own, summed in thread order after */
    size_t conv = conv_params(m);
    memset(w->dconv, 0, sizeof *w->dconv * (size_t)(w->threads - 1) * conv);
    amil_parallel(groups, conv_back_of_groups, &pass);
    for (int t = 1; t < w->threads; t++)
        for (size_t i = 0; i < conv; i++)
            grads[i] += w->dconv[(t - 1) * conv + i];
#undef G
}

double amil_model_step(const struct amil_model *m, struct amil_work *w,
                       const uint8_t *patches, int n, int y, float *grads)
{
    amil_featurize(m, w, patches, n);
    amil_attend(m, w, w->h, n);
    amil_classify(m, w, w->m);
    int outputs = amil_model_outputs(m);
    if (!grads)   /* the loss alone */
        return m->classes == 2 ? amil_bernoulli_nll(w->prob[1], y, NULL)
                               : amil_cross_entropy(w->logits, outputs, y, NULL);
    fit(m, w, n, STAGE_BACKWARD);
    double loss;
    if (m->classes == 2) {
        float p = w->prob[1], dp;
        loss = amil_bernoulli_nll(p, y, &dp);
        w->dlogits[0] = dp * p * (1 - p);   /* through the sigmoid */
    } else {
        loss = amil_cross_entropy(w->logits, outputs, y, w->dlogits);
    }
    backward(m, w, n, grads, NULL);
    return loss;
}

int amil_model_gradcam_side(const struct amil_model *m) { return sides_of(m->patch).conv2; }

void amil_model_gradcam(const struct amil_model *m, struct amil_work *w,
                        const uint8_t *patches, int n, int target, float *cam)
{
    amil_featurize(m, w, patches, n);
    amil_attend(m, w, w->h, n);
    amil_classify(m, w, w->m);
    fit(m, w, n, STAGE_BACKWARD);
    /* the score of the target class: the logit; with the sigmoid head, class
     * 1's is z and class 0's is -z */
    int outputs = amil_model_outputs(m);
    for (int c = 0; c < outputs; c++)
        w->dlogits[c] = m->classes == 2 ? (target == 1 ? 1.0f : -1.0f) : (c == target);
    float *grads = amil_xcalloc(m->params.nweights, sizeof *grads);   /* not wanted */
    backward(m, w, n, grads, cam);
    free(grads);
}
