/* clam_model.c: CLAM's attention head (clam.h) as a model family
 * (model.h): attend and classify, on a frozen backbone's features. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "models/clam.h"
#include "models/model.h"
#include "record/record.h"

static int from_record(struct amil_model *m, struct amil_record *r)
{
    struct amil_clam *clam = m->impl = amil_xcalloc(1, sizeof *clam);
    m->work = amil_xcalloc(1, sizeof(struct amil_clam_work));
    if (amil_clam_from_record(clam, r) < 0)
        return -1;
    m->features_by = clam->features_by;
    m->knows_features = clam->knows_features;
    m->embedding_by = amil_clam_embedding_fingerprint(clam);
    return 0;
}

static void free_model(struct amil_model *m)
{
    if (m->impl)
        amil_clam_free(m->impl);
    if (m->work)
        amil_clam_work_free(m->work);
    free(m->impl);
    free(m->work);
}

static int classes(const struct amil_model *m)
{
    return ((const struct amil_clam *)m->impl)->classes;
}

static const char *lacks(const struct amil_model *m, enum amil_stage stage)
{
    (void)m;
    if (stage == AMIL_STAGE_FEATURES)
        return "a CLAM head reads cached features: featurize with its backbone "
               "(vgg19, resnet18), then attend with the head";
    if (stage == AMIL_STAGE_GRADCAM)
        return "a CLAM head has no Grad-CAM here: it pools a frozen backbone's features, "
               "not patches; give an attention-MIL model or a CNN";
    return NULL;
}

static long bag(const struct amil_model *m, const struct amil_record *r)
{
    const struct amil_tensor *features = amil_clam_bag_features(m->impl, r);
    return features ? (long)features->shape[0] : -1;
}

static long attend(struct amil_model *m, struct amil_record *r, const char **consumed)
{
    const struct amil_clam *clam = m->impl;
    struct amil_clam_work *w = m->work;
    const struct amil_tensor *h = amil_model_features_in(m, r, clam->features);
    if (!h)
        return -1;
    int n = (int)h->shape[0];
    amil_clam_attend(clam, w, h->data, n, NULL);
    if (amil_model_put_attention(r, w->a, w->m, 1, n, clam->hidden) < 0)
        return -1;
    *consumed = "features";
    return n;
}

static const char *classify(struct amil_model *m, const struct amil_record *r, float *prob)
{
    const struct amil_clam *clam = m->impl;
    struct amil_clam_work *w = m->work;
    const struct amil_tensor *em = amil_model_embedding_in(r, 1, clam->hidden);
    if (!em)
        return NULL;
    amil_clam_classify(clam, w, em->data);
    memcpy(prob, w->prob, sizeof *prob * clam->classes);
    return "embedding";
}

static int predict(const struct amil_model *m, const float *prob)
{
    return amil_clam_predict(m->impl, prob);
}

const struct amil_model_ops amil_clam_model = {
    .input = AMIL_INPUT_FEATURES,
    .units = "patches",
    .recognise = amil_clam_is_model,
    .from_record = from_record,
    .free = free_model,
    .classes = classes,
    .bag = bag,
    .lacks = lacks,
    .attend = attend,
    .classify = classify,
    .predict = predict,
    .noun = "a CLAM head",
};
