/* cnn_model.c: the CNN baselines and frozen backbones (cnn.h) as a model
 * family (model.h): an image's tiles (or a bag's patches of the input's
 * side) to features, and images or their cached features to classes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "models/cnn.h"
#include "models/model.h"
#include "record/record.h"

static int from_record(struct amil_model *m, struct amil_record *r)
{
    struct amil_cnn *cnn = m->impl = amil_xcalloc(1, sizeof *cnn);
    m->work = amil_xcalloc(1, sizeof(struct amil_cnn_work));
    if (amil_cnn_from_record(cnn, r) < 0)
        return -1;
    m->features_by = amil_cnn_features_fingerprint(cnn);
    m->knows_features = cnn->trained > 0;
    return 0;
}

static void free_model(struct amil_model *m)
{
    if (m->impl)
        amil_cnn_free(m->impl);
    if (m->work)
        amil_cnn_work_free(m->work);
    free(m->impl);
    free(m->work);
}

static int classes(const struct amil_model *m)
{
    return ((const struct amil_cnn *)m->impl)->classes;
}

static const char *lacks(const struct amil_model *m, enum amil_stage stage)
{
    const struct amil_cnn *cnn = m->impl;
    static char why[128];
    if (stage == AMIL_STAGE_FEATURES && !cnn->trained)
        return "net is trained whole, not on cached features; only a frozen "
               "backbone (vgg19, resnet18) has features to cache";
    if (stage == AMIL_STAGE_ATTENTION) {
        snprintf(why, sizeof why,
                 "arch '%s' is not an attention-MIL model (amil or gated) or a CLAM head",
                 amil_cnn_arch_name(cnn->arch));
        return why;
    }
    return NULL;
}

/* The tiles of a record's image through the backbone. */
static int featurize_image(const struct amil_cnn *m, struct amil_cnn_work *w,
                           struct amil_record *r)
{
    const struct amil_tensor *image = amil_cnn_image(m, r);
    if (!image)
        return -1;
    /* the pixels' buffer, not the tensor: amil_record_put may move the tensors */
    const uint8_t *pixels = image->data;
    int n, H = (int)image->shape[0], W = (int)image->shape[1];
    int F = amil_cnn_feature_size(m);
    int32_t *coords = amil_cnn_tile_coords(m, H, W, &n);
    int64_t shape[2] = {n, F}, coord_shape[2] = {n, 2};
    float *features = amil_record_put(r, "features", AMIL_F32, 2, shape)->data;
    amil_cnn_featurize(m, w, pixels, W, coords, n, features);
    memcpy(amil_record_put(r, "coords", AMIL_I32, 2, coord_shape)->data, coords,
           sizeof *coords * 2 * n);
    amil_record_set_metaf(r, "patch", "%d", m->size);
    free(coords);
    return 0;
}

/* A bag's patches (N, S, S, 3), S the backbone's input side, each a tile:
 * features (N, F), in the order of patches; coords stay as they are. */
static int featurize_patches(const struct amil_cnn *m, struct amil_cnn_work *w,
                             struct amil_record *r)
{
    const struct amil_tensor *p = amil_record_expect(r, "patches", AMIL_U8, 4);
    if (!p)
        return -1;
    if (p->shape[0] < 1 || p->shape[0] > INT32_MAX / 4096 || p->shape[1] != m->size ||
        p->shape[2] != m->size || p->shape[3] != 3)
        return amil_fail("patches are [%lld, %lld, %lld, %lld]; %s takes RGB patches of "
                         "%d×%d (bagify -p %d)", (long long)p->shape[0], (long long)p->shape[1],
                         (long long)p->shape[2], (long long)p->shape[3],
                         amil_cnn_arch_name(m->arch), m->size, m->size, m->size);
    const uint8_t *pixels = p->data;   /* amil_record_put may move the tensors */
    int n = (int)p->shape[0], F = amil_cnn_feature_size(m);
    size_t patch = (size_t)m->size * m->size * 3;
    int64_t shape[2] = {n, F};
    float *features = amil_record_put(r, "features", AMIL_F32, 2, shape)->data;
    static const int32_t corner[2] = {0, 0};
    for (int i = 0; i < n; i++)
        amil_cnn_featurize(m, w, pixels + i * patch, m->size, corner, 1,
                           features + (size_t)i * F);
    return n;
}

/* A bag's patches when the record has no image, else the image's tiles. */
static long featurize(struct amil_model *m, struct amil_record *r, const char **consumed)
{
    if (!amil_record_find(r, "image") && amil_record_find(r, "patches")) {
        *consumed = "patches";
        return featurize_patches(m->impl, m->work, r);
    }
    if (featurize_image(m->impl, m->work, r) < 0)
        return -1;
    *consumed = "image";
    return 1;
}

/* From the tiles' cached features if a frozen backbone's record has them,
 * else from the image. */
static const char *classify(struct amil_model *m, const struct amil_record *r, float *prob)
{
    const struct amil_cnn *cnn = m->impl;
    if (cnn->trained && amil_record_find(r, "features")) {
        const struct amil_tensor *f = amil_cnn_cached(cnn, r);
        if (!f)
            return NULL;
        amil_cnn_classify(cnn, m->work, NULL, 0, 0, f->data, (int)f->shape[0], prob);
        return "features";
    }
    const struct amil_tensor *image = amil_cnn_image(cnn, r);
    if (!image)
        return NULL;
    amil_cnn_classify(cnn, m->work, image->data, (int)image->shape[0], (int)image->shape[1],
                      NULL, 0, prob);
    return "image";
}

static int predict(const struct amil_model *m, const float *prob)
{
    return amil_cnn_predict(m->impl, prob);
}

const struct amil_model_ops amil_cnn_model = {
    .input = AMIL_INPUT_IMAGE,
    .units = "images",
    .recognise = amil_cnn_is_model,
    .from_record = from_record,
    .free = free_model,
    .classes = classes,
    .lacks = lacks,
    .featurize = featurize,
    .classify = classify,
    .predict = predict,
};
