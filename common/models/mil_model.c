/* mil_model.c: the paper's attention-MIL network (mil.h) as a model
 * family (model.h): all three stages, patches to probabilities. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "models/mil.h"
#include "models/model.h"
#include "record/record.h"

/* Any model file that is not another family's: amil_mil_from_record
 * says what it lacks. */
static int recognise(const struct amil_record *r)
{
    (void)r;
    return 1;
}

static int from_record(struct amil_model *m, struct amil_record *r)
{
    struct amil_mil *mil = m->impl = amil_xcalloc(1, sizeof *mil);
    m->work = amil_xcalloc(1, sizeof(struct amil_mil_work));
    if (amil_mil_from_record(mil, r) < 0)
        return -1;
    amil_mil_fingerprints(mil, &m->features_by, &m->embedding_by);
    m->knows_features = 1;
    return 0;
}

static void free_model(struct amil_model *m)
{
    if (m->impl)
        amil_mil_free(m->impl);
    if (m->work)
        amil_mil_work_free(m->work);
    free(m->impl);
    free(m->work);
}

static int classes(const struct amil_model *m)
{
    return ((const struct amil_mil *)m->impl)->classes;
}

static const char *lacks(const struct amil_model *m, enum amil_stage stage)
{
    (void)m, (void)stage;
    return NULL;
}

static long bag(const struct amil_model *m, const struct amil_record *r)
{
    const struct amil_tensor *patches = amil_mil_bag_patches(m->impl, r);
    return patches ? (long)patches->shape[0] : -1;
}

static long featurize(struct amil_model *m, struct amil_record *r, const char **consumed)
{
    const struct amil_mil *mil = m->impl;
    const struct amil_tensor *patches = amil_mil_bag_patches(mil, r);
    if (!patches)
        return -1;
    int n = (int)patches->shape[0];
    const uint8_t *pixels = patches->data;   /* amil_record_put may move the tensors */
    int64_t shape[2] = {n, mil->hidden};
    amil_mil_features(mil, m->work, pixels, n,
                      amil_record_put(r, "features", AMIL_F32, 2, shape)->data);
    *consumed = "patches";
    return n;
}

static long attend(struct amil_model *m, struct amil_record *r, const char **consumed)
{
    const struct amil_mil *mil = m->impl;
    struct amil_mil_work *w = m->work;
    const struct amil_tensor *h = amil_model_features_in(m, r, mil->hidden);
    if (!h)
        return -1;
    int n = (int)h->shape[0];
    amil_mil_attend(mil, w, h->data, n);
    if (amil_model_put_attention(r, w->a, w->m, mil->branches, n, mil->hidden) < 0)
        return -1;
    *consumed = "features";
    return n;
}

static const char *classify(struct amil_model *m, const struct amil_record *r, float *prob)
{
    const struct amil_mil *mil = m->impl;
    struct amil_mil_work *w = m->work;
    const struct amil_tensor *em = amil_model_embedding_in(r, mil->branches, mil->hidden);
    if (!em)
        return NULL;
    amil_mil_classify(mil, w, em->data);
    memcpy(prob, w->prob, sizeof *prob * mil->classes);
    return "embedding";
}

static int predict(const struct amil_model *m, const float *prob)
{
    return amil_mil_predict(m->impl, prob);
}

/* Grad-CAM at the second convolution's output (mil.h). */
static const char *cam_layer(const struct amil_model *m, const char *layer)
{
    (void)m;
    static const char conv2[] = "feature_extractor_part1.3";
    if (layer && strcmp(layer, conv2) != 0) {
        amil_fail("--layer: an attention-MIL model's Grad-CAM is at its second convolution, "
                  "%s, not '%s'", conv2, layer);
        return NULL;
    }
    return conv2;
}

static int gradcam_bag(struct amil_model *m, const struct amil_record *r, int target,
                       struct amil_bag_cams *out)
{
    const struct amil_mil *mil = m->impl;
    struct amil_mil_work *w = m->work;
    const struct amil_tensor *patches = amil_mil_bag_patches(mil, r);
    if (!patches)
        return -1;
    if (target >= mil->classes)
        return amil_fail("--class %d: the model has %d classes", target, mil->classes);
    int n = (int)patches->shape[0], side = amil_mil_gradcam_side(mil);
    float *cams = amil_xmalloc(sizeof *cams * (size_t)n * side * side);
    target = amil_mil_gradcam(mil, w, patches->data, n, target, cams);
    int64_t cams_shape[3] = {n, side, side}, classes = mil->classes;
    if (amil_tensor_finite("prob", w->prob, 1, &classes, -1) < 0 ||
        amil_tensor_finite("the maps", cams, 3, cams_shape, 0) < 0) {
        free(cams);
        return -1;   /* weights past float's range: no map, and no class */
    }
    /* a slide's bag is large: the network's buffers go before the picture
     * is made */
    amil_mil_work_free(w);
    *out = (struct amil_bag_cams){cams, n, side, target, mil->patch, cam_layer(m, NULL)};
    return 0;
}

const struct amil_model_ops amil_mil_model = {
    .input = AMIL_INPUT_PATCHES,
    .units = "patches",
    .recognise = recognise,
    .from_record = from_record,
    .free = free_model,
    .classes = classes,
    .bag = bag,
    .lacks = lacks,
    .featurize = featurize,
    .attend = attend,
    .classify = classify,
    .predict = predict,
    .cam_layer = cam_layer,
    .gradcam_bag = gradcam_bag,
    .noun = "an attention-MIL model",
};
