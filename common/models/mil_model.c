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
    amil_bag_trainer_free(m);
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

/* ---- training: one bag a step --------------------------------------------- */

static int start(struct amil_model *m, const struct amil_train_spec *spec, int *random_backbone)
{
    (void)random_backbone;
    amil_bag_trainer_start(m, spec, sizeof(struct amil_mil), sizeof(struct amil_mil_work));
    return 0;
}

static struct amil_params *params(struct amil_model *m, int *first)
{
    *first = 0;
    return &((struct amil_mil *)m->impl)->params;
}

/* A labelled bag; the first one makes the model when it has no weights. */
static long check(struct amil_model *m, struct amil_record *r, int *form)
{
    (void)form;
    const struct amil_train_spec *s = ((struct amil_bag_step *)m->trainer)->spec;
    struct amil_mil *mil = m->impl;
    const struct amil_tensor *p = amil_record_find(r, "patches");
    if (!p && amil_record_find(r, "features"))
        return amil_fail("features, not patches: CLAM's head trains on a frozen backbone's "
                         "features (--arch clam); the attention-MIL model on patches");
    int made = 0;
    if (!mil->params.weights && p && p->dtype == AMIL_U8 && p->ndim == 4) {
        if (amil_mil_init(mil, s->variant, (int)p->shape[3], (int)p->shape[1], s->classes,
                          s->hidden, s->attention, s->branches) < 0)
            return -1;
        amil_params_randomize(&mil->params, s->seed);
        made = 1;
    }
    if (s->augment->he && mil->params.weights && mil->channels != 3)
        return amil_fail("--augment he needs RGB bags, not %d channel", mil->channels);
    if (made && s->norm == AMIL_NORM_IMAGENET && mil->channels != 3)
        return amil_fail("--normalize imagenet needs RGB bags, not %d channel%s",
                         mil->channels, mil->channels == 1 ? "" : "s");
    if (made)
        mil->norm = s->norm;
    long label;
    int has = 0;
    if (!amil_mil_bag_patches(mil, r) || (has = amil_mil_bag_label(mil, r, &label)) < 0)
        return -1;
    return has ? 1 : amil_fail("no label (bagify -l or -L gives one)");
}

static int take(struct amil_model *m, const struct amil_record *r, long sample, int form,
                gsl_rng *rng, int k)
{
    (void)sample, (void)form, (void)k;
    struct amil_bag_step *t = m->trainer;
    const struct amil_tensor *p = amil_mil_bag_patches(m->impl, r);
    if (!p || amil_mil_bag_label(m->impl, r, &t->label) != 1)
        return -1;
    t->input = amil_augment_patches(t->spec->augment, rng, p, &t->augmented);
    t->n = (int)p->shape[0];
    return 0;
}

static double step(struct amil_model *m, int n, float *grads, gsl_rng *rng, int *errors)
{
    (void)n, (void)rng;
    const struct amil_bag_step *t = m->trainer;
    struct amil_mil_work *w = m->work;
    double loss = amil_mil_step(m->impl, w, t->input, t->n, (int)t->label, grads);
    *errors = amil_mil_predict(m->impl, w->prob) != t->label;
    return loss;
}

static int judge(struct amil_model *m, struct amil_record *r, int form, struct amil_verdict *v)
{
    (void)form;
    return amil_mil_judge(m->impl, m->work, r, v);
}

static void to_record(const struct amil_model *m, struct amil_record *r)
{
    amil_mil_to_record(m->impl, r);
}

static const struct amil_train_ops train = {
    .unit = "bag",
    .holds = 1,
    .takes = AMIL_TRAIN_SIZES | AMIL_TRAIN_BRANCHES | AMIL_TRAIN_AUGMENT,
    .defaults = {.epochs = 20, .batch = 1, .hidden = 500, .attention = 128, .lr = 1e-4,
                 .decay = 1e-4, .momentum = 0, .optimizer = AMIL_ADAM},
    .arch_parse = amil_mil_arch_parse,
    AMIL_TRAIN_FUNCTIONS,
};

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
    .train = &train,
};
