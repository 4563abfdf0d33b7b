/* mil.c: the attention-MIL network of mil.h: its parameter table and
 * its records (model files), and the checks of a bag it reads.
 * Its stages run it over a bag: mil_features.c, mil_head.c, mil_gradcam.c. */
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "models/mil_impl.h"
#include "record/record.h"
#include "record/stream.h"

static const char *const arch_names[] = {"amil", "gated"};

const char *amil_mil_arch_name(enum amil_mil_arch arch) { return arch_names[arch]; }

int amil_mil_arch_parse(const char *name)
{
    return amil_name_index(arch_names, 2, name);
}

int amil_mil_outputs(const struct amil_mil *m) { return m->classes == 2 ? 1 : m->classes; }

/* A layer's weight and bias, PyTorch's Linear or Conv2d. */
static int add_layer(struct amil_mil *m, const char *prefix, int ndim, int64_t out,
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
static int model_layout(struct amil_mil *m, enum amil_mil_arch arch, int channels, int patch,
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
    if (classes > AMIL_MIL_MAX_WIDTH || hidden > AMIL_MIL_MAX_WIDTH ||
        attention > AMIL_MIL_MAX_WIDTH || branches > AMIL_MIL_MAX_WIDTH)
        return amil_fail("classes %d, hidden %d, attention %d, branches %d: each must be "
                         "at most %d", classes, hidden, attention, branches,
                         AMIL_MIL_MAX_WIDTH);
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
    if (arch == AMIL_MIL_PLAIN)
        failed = failed || add_layer(m, "attention.0", 2, attention, hidden, 0) < 0 ||
                 add_layer(m, "attention.2", 2, branches, attention, 0) < 0;
    else
        failed = failed || add_layer(m, "attention_V.0", 2, attention, hidden, 0) < 0 ||
                 add_layer(m, "attention_U.0", 2, attention, hidden, 0) < 0 ||
                 add_layer(m, "attention_weights", 2, branches, attention, 0) < 0;
    failed = failed || add_layer(m, "classifier.0", 2, amil_mil_outputs(m),
                                 (int64_t)hidden * branches, 0) < 0;
    if (failed) {
        memset(m, 0, sizeof *m);
        return amil_fail("the model's %d classes, %d hidden, %d attention and %d branches "
                         "need more than %zu parameters", classes, hidden, attention,
                         branches, (size_t)AMIL_PARAMS_MAX_WEIGHTS);
    }
    return 0;
}

int amil_mil_init(struct amil_mil *m, enum amil_mil_arch arch, int channels, int patch,
                  int classes, int hidden, int attention, int branches)
{
    if (!amil_kernels())   /* AMIL_ISA names a set this CPU cannot run */
        return -1;
    if (model_layout(m, arch, channels, patch, classes, hidden, attention, branches) < 0)
        return -1;
    amil_params_alloc(&m->params);
    return 0;
}

void amil_mil_free(struct amil_mil *m)
{
    amil_params_free(&m->params);
    memset(m, 0, sizeof *m);
}

/* ---- records ------------------------------------------------------------ */

void amil_mil_to_record(const struct amil_mil *m, struct amil_record *r)
{
    amil_record_init(r);
    amil_record_set_meta(r, "kind", "model");
    amil_record_set_meta(r, "arch", amil_mil_arch_name(m->arch));
    amil_record_set_metaf(r, "classes", "%d", m->classes);
    amil_record_set_metaf(r, "channels", "%d", m->channels);
    amil_record_set_metaf(r, "patch", "%d", m->patch);
    amil_record_set_metaf(r, "hidden", "%d", m->hidden);
    amil_record_set_metaf(r, "attention", "%d", m->attention);
    amil_record_set_metaf(r, "branches", "%d", m->branches);
    amil_record_set_meta(r, "normalization", amil_norm_name(m->norm));
    amil_params_to_record(&m->params, r);
}

/* A size read off a tensor's shape: any int64 in the file, so ranged
 * before it becomes a long, and later an int. */
static int shape_size(const char *what, int64_t size, long *out)
{
    if (size < 1 || size > AMIL_MIL_MAX_WIDTH)
        return amil_fail("the tensors give %s %lld, outside 1..%d", what, (long long)size,
                         AMIL_MIL_MAX_WIDTH);
    *out = (long)size;
    return 0;
}

/* An integer of the metadata, or the fallback read off a tensor's shape. */
static int meta_or(const struct amil_record *r, const char *key, int64_t fallback, long *out)
{
    if (shape_size(key, fallback, out) < 0)
        return -1;
    return amil_record_meta_long(r, key, 1, AMIL_MIL_MAX_WIDTH, out) < 0 ? -1 : 0;
}

int amil_mil_from_record(struct amil_mil *m, const struct amil_record *r)
{
    memset(m, 0, sizeof *m);
    if (!amil_kernels())
        return -1;
    const char *arch_text = amil_record_meta(r, "arch");
    int arch = arch_text ? amil_mil_arch_parse(arch_text)
             : amil_record_find(r, "attention_V.0.weight") ? AMIL_MIL_GATED : AMIL_MIL_PLAIN;
    if (arch < 0)
        return amil_fail("arch '%s' is not an attention-MIL model (amil or gated)",
                         arch_text);
    const char *kind = amil_record_meta(r, "kind");
    if (kind && strcmp(kind, "model") != 0 && strcmp(kind, "checkpoint") != 0)
        return amil_fail("a record of kind '%s', not a model", kind);
    /* A bare state_dict says nothing but its shapes: read them off. */
    const struct amil_tensor *conv1 = amil_record_find(r, "feature_extractor_part1.0.weight");
    const struct amil_tensor *fc = amil_record_find(r, "feature_extractor_part2.0.weight");
    int plain = arch == AMIL_MIL_PLAIN;
    const struct amil_tensor *att =
        amil_record_find(r, plain ? "attention.0.weight" : "attention_V.0.weight");
    const struct amil_tensor *branch =
        amil_record_find(r, plain ? "attention.2.weight" : "attention_weights.weight");
    const struct amil_tensor *head = amil_record_find(r, "classifier.0.weight");
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
     * AMIL_MIL_MAX_WIDTH here, so hidden × branches cannot overflow. */
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

int amil_mil_load(struct amil_mil *m, const char *path)
{
    struct amil_record r;
    if (amil_record_load(path, &r) < 0)
        return -1;
    int status = amil_mil_from_record(m, &r);
    amil_record_free(&r);
    return status < 0 ? amil_fail_in(path) : 0;
}

void amil_mil_fingerprints(const struct amil_mil *m, uint64_t *features, uint64_t *embedding)
{
    int classifier = m->params.n - 2;   /* classifier.0's weight and bias come last */
    /* the pixels' normalization makes the features too */
    *features = amil_params_fingerprint(&m->params, 0, ATT_FIRST, (uint64_t)m->norm);
    *embedding = amil_params_fingerprint(&m->params, ATT_FIRST, classifier, *features);
}

int amil_mil_predict(const struct amil_mil *m, const float *prob)
{
    return m->classes == 2 ? prob[1] >= 0.5f : amil_most_probable(prob, m->classes);
}

const struct amil_tensor *amil_mil_bag_patches(const struct amil_mil *m,
                                               const struct amil_record *r)
{
    const struct amil_tensor *t = amil_record_expect(r, "patches", AMIL_U8, 4);
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

int amil_mil_bag_label(const struct amil_mil *m, const struct amil_record *r, long *label)
{
    return amil_label_of(r, m->classes, label);
}

