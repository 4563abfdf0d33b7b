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
    amil_bag_trainer_free(m);
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
               "(vgg19, resnet18, resnet50), then attend with the head";
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

/* ---- training: one bag a step --------------------------------------------- */

/* The words of --arch: CLAM_SB's gated attention, or its plain one. */
static int arch_parse(const char *word)
{
    return strcmp(word, "clam") == 0 ? 0 : strcmp(word, "clam-plain") == 0 ? 1 : -1;
}

static int start(struct amil_model *m, const struct amil_train_spec *spec, int *random_backbone)
{
    (void)random_backbone;
    amil_bag_trainer_start(m, spec, sizeof(struct amil_clam), sizeof(struct amil_clam_work));
    return 0;
}

static struct amil_params *params(struct amil_model *m, int *first)
{
    *first = 0;
    return &((struct amil_clam *)m->impl)->params;
}

/* A labelled bag of features; the first one makes the head when it has
 * no weights. */
static long check(struct amil_model *m, struct amil_record *r, int *form)
{
    (void)form;
    const struct amil_train_spec *s = ((struct amil_bag_step *)m->trainer)->spec;
    struct amil_clam *clam = m->impl;
    if (!clam->params.weights) {
        if (amil_clam_for_bag(clam, r, s->variant == 0, s->hidden, s->attention,
                              s->classes) < 0)
            return -1;
        amil_params_randomize(&clam->params, s->seed);
    }
    long label;
    int has = 0;
    if (!amil_clam_bag_features(clam, r) || (has = amil_clam_bag_label(clam, r, &label)) < 0)
        return -1;
    if (!has)
        return amil_fail("no label (bagify -l or -L gives one)");
    /* a head learns one backbone's features: the first bag that says
     * which (or the resumed head) sets them, and the head keeps them */
    uint64_t by;
    int says = amil_record_fingerprint(r, "features_by", &by);
    if (says < 0)
        return -1;
    char made[4200];
    if (says && clam->knows_features && by != clam->features_by)
        return amil_fail("its features were made by %s, the head's by %016llx: a CLAM head "
                         "learns one backbone's features",
                         amil_record_made_by(r, "features_by", by, made, sizeof made),
                         (unsigned long long)clam->features_by);
    if (says && !clam->knows_features)
        clam->features_by = by, clam->knows_features = 1;
    return 1;
}

static int take(struct amil_model *m, const struct amil_record *r, long sample, int form,
                gsl_rng *rng, int k)
{
    (void)sample, (void)form, (void)rng, (void)k;
    struct amil_bag_step *t = m->trainer;
    const struct amil_tensor *x = amil_clam_bag_features(m->impl, r);
    if (!x || amil_clam_bag_label(m->impl, r, &t->label) != 1)
        return -1;
    t->input = x->data;
    t->n = (int)x->shape[0];
    return 0;
}

static double step(struct amil_model *m, int n, float *grads, gsl_rng *rng, int *errors)
{
    (void)n;
    const struct amil_bag_step *t = m->trainer;
    struct amil_clam_work *w = m->work;
    double loss = amil_clam_step(m->impl, w, t->input, t->n, (int)t->label, grads, rng);
    *errors = amil_clam_predict(m->impl, w->prob) != t->label;
    return loss;
}

static int judge(struct amil_model *m, struct amil_record *r, int form, struct amil_verdict *v)
{
    (void)form;
    return amil_clam_judge(m->impl, m->work, r, v);
}

static void to_record(const struct amil_model *m, struct amil_record *r)
{
    amil_clam_to_record(m->impl, r);
}

/* CLAM's own sizes and optimizer settings (its main.py's defaults). */
static const struct amil_train_ops train = {
    .unit = "bag",
    .holds = 1,
    .takes = AMIL_TRAIN_SIZES,
    .defaults = {.epochs = 20, .batch = 1, .hidden = 512, .attention = 256, .lr = 2e-4,
                 .decay = 1e-5, .momentum = 0, .optimizer = AMIL_ADAM},
    .arch_parse = arch_parse,
    AMIL_TRAIN_FUNCTIONS,
};

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
    .train = &train,
};
