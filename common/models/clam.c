/* clam.c: CLAM's attention head (clam.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "compute/attention.h"
#include "compute/kernels.h"
#include "compute/nn.h"
#include "compute/parallel.h"
#include "models/clam.h"
#include "record/record.h"

/* The parameters in table order: the linear layer, the attention's layers
 * (two for plain, three for gated) from ATT on, the classifier; each
 * weight then bias. */
enum { FC_WEIGHT, FC_BIAS, ATT };
#define W(m, i) ((m)->params.weights + (m)->params.at[i].offset)
#define CLASSIFIER(m) ((m)->params.n - 2)
#define MAX_HIDDEN 4096
#define MAX_CLASSES 1024

static int add_linear(struct amil_params *t, const char *name, int out, int in)
{
    char full[64];
    int64_t shape[2] = {out, in};
    snprintf(full, sizeof full, "%s.weight", name);
    if (amil_params_add(t, full, 2, shape, (size_t)in) < 0)
        return -1;
    snprintf(full, sizeof full, "%s.bias", name);
    return amil_params_add(t, full, 1, shape, (size_t)in);
}

int amil_clam_init(struct amil_clam *m, int gated, int features, int hidden, int attention,
                   int classes, int outputs, const char *last_name)
{
    memset(m, 0, sizeof *m);
    if (!amil_kernels())   /* AMIL_ISA names a set this CPU cannot run */
        return -1;
    if (features < 1 || features > (1 << 20) || hidden < 1 || hidden > MAX_HIDDEN ||
        attention < 1 || attention > (1 << 20) || classes < 2 || classes > MAX_CLASSES ||
        (outputs != 1 && outputs != classes) || (outputs == 1 && classes != 2))
        return amil_fail("a CLAM head of %d features, %d hidden, %d attention, %d classes "
                         "and %d outputs is out of range (hidden at most %d, classes 2 to "
                         "%d)", features, hidden, attention, classes, outputs, MAX_HIDDEN,
                         MAX_CLASSES);
    *m = (struct amil_clam){gated, features, hidden, attention, classes, outputs, 0.25f, {0}, 0, 0};
    struct amil_params *t = &m->params;
    int failed = add_linear(t, "attention_net.0", hidden, features) < 0;
    if (gated)
        failed = failed || add_linear(t, "attention_net.3.attention_a.0", attention, hidden) < 0 ||
                 add_linear(t, "attention_net.3.attention_b.0", attention, hidden) < 0 ||
                 add_linear(t, "attention_net.3.attention_c", 1, attention) < 0;
    else
        failed = failed || add_linear(t, "attention_net.3.module.0", attention, hidden) < 0 ||
                 add_linear(t, last_name ? last_name : "attention_net.3.module.2", 1,
                            attention) < 0;
    failed = failed || add_linear(t, "classifiers", outputs, hidden) < 0;
    if (failed) {
        memset(m, 0, sizeof *m);
        return -1;
    }
    amil_params_alloc(t);
    return 0;
}

void amil_clam_free(struct amil_clam *m)
{
    amil_params_free(&m->params);
    memset(m, 0, sizeof *m);
}

/* ---- records ------------------------------------------------------------ */

int amil_clam_is_model(const struct amil_record *r)
{
    const char *arch = amil_record_meta(r, "arch");
    return arch ? strcmp(arch, "clam") == 0 : amil_record_find(r, "attention_net.0.weight") != NULL;
}

void amil_clam_to_record(const struct amil_clam *m, struct amil_record *r)
{
    amil_record_init(r);
    amil_record_set_meta(r, "kind", "model");
    amil_record_set_meta(r, "arch", "clam");
    amil_record_set_meta(r, "attention_net", m->gated ? "gated" : "plain");
    amil_record_set_metaf(r, "classes", "%d", m->classes);
    amil_record_set_metaf(r, "features", "%d", m->features);
    amil_record_set_metaf(r, "hidden", "%d", m->hidden);
    amil_record_set_metaf(r, "attention", "%d", m->attention);
    amil_record_set_metaf(r, "dropout", "%g", (double)m->dropout);
    if (m->knows_features)
        amil_record_set_fingerprint(r, "features_by", m->features_by);
    amil_params_to_record(&m->params, r);
}

uint64_t amil_clam_embedding_fingerprint(const struct amil_clam *m)
{
    int classifier = m->params.n - 2;   /* classifiers' weight and bias come last */
    return amil_params_fingerprint(&m->params, 0, classifier,
                                   m->knows_features ? m->features_by : 0);
}

/* A 2-D tensor's shape, or -1 with a message. */
static int shape2(const struct amil_record *r, const char *name, int64_t *rows, int64_t *cols)
{
    const struct amil_tensor *t = amil_record_find(r, name);
    if (!t || t->ndim != 2)
        return amil_fail("no 2-D tensor %s: not a CLAM head", name);
    *rows = t->shape[0], *cols = t->shape[1];
    return 0;
}

int amil_clam_from_record(struct amil_clam *m, const struct amil_record *r)
{
    int64_t hidden = 0, features = 0, attention = 0, unused = 0, outputs = 0;
    int gated = amil_record_find(r, "attention_net.3.attention_a.0.weight") != NULL;
    const char *last = amil_record_find(r, "attention_net.3.module.3.weight")
                           ? "attention_net.3.module.3" : "attention_net.3.module.2";
    if (shape2(r, "attention_net.0.weight", &hidden, &features) < 0 ||
        shape2(r, gated ? "attention_net.3.attention_a.0.weight"
                        : "attention_net.3.module.0.weight", &attention, &unused) < 0 ||
        shape2(r, "classifiers.weight", &outputs, &unused) < 0)
        return -1;
    long classes = outputs == 1 ? 2 : (long)outputs;
    if (amil_record_meta_long(r, "classes", 2, MAX_CLASSES, &classes) < 0)
        return -1;
    if (hidden < 1 || hidden > MAX_HIDDEN || features < 1 || features > (1 << 20) ||
        attention < 1 || attention > (1 << 20) || outputs < 1 || outputs > MAX_CLASSES)
        return amil_fail("a CLAM head of %lld features, %lld hidden, %lld attention and %lld "
                         "outputs is out of range", (long long)features, (long long)hidden,
                         (long long)attention, (long long)outputs);
    struct amil_clam probe;   /* the table alone, checked before the buffer */
    if (amil_clam_init(&probe, gated, (int)features, (int)hidden, (int)attention, (int)classes,
                       (int)outputs, gated ? NULL : last) < 0)
        return -1;
    if (amil_params_check(&probe.params, r) < 0) {
        amil_clam_free(&probe);
        return -1;
    }
    amil_params_copy(&probe.params, r);
    const char *dropout = amil_record_meta(r, "dropout");
    if (dropout) {
        char *end;
        double p = strtod(dropout, &end);
        if (end == dropout || *end || !(p >= 0 && p < 1)) {
            amil_clam_free(&probe);
            return amil_fail("dropout '%s' is not a probability below 1", dropout);
        }
        probe.dropout = (float)p;
    }
    int knows = amil_record_fingerprint(r, "features_by", &probe.features_by);
    if (knows < 0) {
        amil_clam_free(&probe);
        return -1;
    }
    probe.knows_features = knows;
    *m = probe;
    return 0;
}

/* ---- the bag ------------------------------------------------------------ */

/* The buffers, each with the count of its rows' floats: L, D or 1. */
#define CLAM_BUFFERS(X, L, D) \
    X(hr, L) X(h, L) X(mask, L) X(dh, L) X(dhr, L) \
    X(v, D) X(u, D) X(gate, D) X(dv, D) X(du, D) X(dvt, D) X(dut, D) X(dgate, D) \
    X(scores, 1) X(a, 1) X(da, 1) X(dsoft, 1) X(dscores, 1)

void amil_clam_work_free(struct amil_clam_work *w)
{
#define FREE(name, width) free(w->name), w->name = NULL;
    CLAM_BUFFERS(FREE, 0, 0)
#undef FREE
    free(w->uniform);
    w->uniform = NULL;
    w->capacity = 0;
}

static void fit(const struct amil_clam *m, struct amil_clam_work *w, int n)
{
    /* the pool splits the rows over the threads: OpenBLAS stays on one
     * (parallel.h), for every product of the head, so that each bag's
     * bytes are those of the first */
    amil_threads_to_lanes();
    if (n <= w->capacity)
        return;
    amil_clam_work_free(w);
    size_t L = (size_t)m->hidden, D = (size_t)m->attention;
#define ALLOC(name, width) w->name = amil_xmalloc(sizeof(float) * (size_t)n * (width));
    CLAM_BUFFERS(ALLOC, L, D)
#undef ALLOC
    w->uniform = amil_xmalloc(sizeof *w->uniform * (size_t)n * L);
    w->capacity = n;
}

/* The pool's sizes and weights (gradients, with grads not NULL), and the
 * work's buffers it runs in. */
static struct amil_attention pool_of(const struct amil_clam *m, float *grads,
                                     struct amil_attention_params *g)
{
    const struct amil_param *at = &m->params.at[ATT];
    if (g)
        *g = amil_attention_params_at(grads, at, m->gated);
    return (struct amil_attention){m->hidden, m->attention, 1, m->gated,
                                   amil_attention_params_at(NULL, at, m->gated)};
}

static struct amil_attention_buffers buffers_of(struct amil_clam_work *w)
{
    return (struct amil_attention_buffers){w->v, w->u, w->gate, w->scores, w->a, w->m,
                                           w->dm, w->da, w->dsoft, w->dscores, w->dvt,
                                           w->dut, w->dv, w->du, w->dgate};
}

void amil_clam_attend(const struct amil_clam *m, struct amil_clam_work *w, const float *x,
                      int n, gsl_rng *rng)
{
    fit(m, w, n);
    int F = m->features, L = m->hidden;
    size_t nl = (size_t)n * L;
    amil_linear_forward(w->hr, x, W(m, FC_WEIGHT), W(m, FC_BIAS), n, F, L);
    amil_relu_forward(w->hr, nl);
    memcpy(w->h, w->hr, sizeof *w->h * nl);
    if (rng && m->dropout > 0) {
        for (size_t i = 0; i < nl; i++)
            w->uniform[i] = gsl_rng_uniform(rng);
        amil_dropout_forward(w->h, w->mask, w->uniform, nl, m->dropout);
    } else {
        for (size_t i = 0; i < nl; i++)
            w->mask[i] = 1;
    }
    struct amil_attention pool = pool_of(m, NULL, NULL);
    struct amil_attention_buffers b = buffers_of(w);
    amil_attention_forward(&pool, &b, w->h, n);
}

void amil_clam_classify(const struct amil_clam *m, struct amil_clam_work *w, const float *em)
{
    int k = CLASSIFIER(m);
    amil_linear_forward(w->logits, em, W(m, k), W(m, k + 1), 1, m->hidden, m->outputs);
    if (m->outputs == 1) {
        float p = 1 / (1 + expf(-w->logits[0]));
        w->prob[0] = 1 - p, w->prob[1] = p;
    } else {
        memcpy(w->prob, w->logits, sizeof *w->prob * m->outputs);
        amil_softmax_forward(w->prob, 1, m->outputs);
    }
}

/* Back from w->dlogits through the head: grads += every parameter's. */
static void backward(const struct amil_clam *m, struct amil_clam_work *w, const float *x, int n,
                     float *grads)
{
    int F = m->features, L = m->hidden, k = CLASSIFIER(m);
    size_t nl = (size_t)n * L;
#define G(i) (grads + m->params.at[i].offset)
    memset(w->dm, 0, sizeof *w->dm * L);
    amil_linear_backward(w->dm, G(k), G(k + 1), w->dlogits, w->m, W(m, k), 1, L, m->outputs);
    struct amil_attention_params g;
    struct amil_attention pool = pool_of(m, grads, &g);
    struct amil_attention_buffers b = buffers_of(w);
    amil_attention_backward_scores(&pool, &b, w->h, n);
    memset(w->dh, 0, sizeof *w->dh * nl);
    amil_attention_backward_rows(&pool, &b, w->h, 0, n, n, w->dh);
    amil_attention_backward_weights(&pool, &b, w->h, n, &g);
    /* through the dropout and the ReLU to the first layer's weights */
    memset(w->dhr, 0, sizeof *w->dhr * nl);
    amil_dropout_backward(w->dhr, w->dh, w->mask, nl);
    memset(w->dh, 0, sizeof *w->dh * nl);
    amil_relu_backward(w->dh, w->dhr, w->hr, nl);
    amil_linear_backward(NULL, G(FC_WEIGHT), G(FC_BIAS), w->dh, x, W(m, FC_WEIGHT), n, F, L);
#undef G
}

double amil_clam_step(const struct amil_clam *m, struct amil_clam_work *w, const float *x,
                      int n, int y, float *grads, gsl_rng *rng)
{
    amil_clam_attend(m, w, x, n, rng);
    amil_clam_classify(m, w, w->m);
    double loss;
    if (m->outputs == 1) {
        float p = w->prob[1], dp;
        loss = amil_bernoulli_nll(p, y, &dp);
        w->dlogits[0] = dp * p * (1 - p);   /* through the sigmoid */
    } else {
        loss = amil_cross_entropy(w->logits, m->outputs, y, w->dlogits);
    }
    if (grads)
        backward(m, w, x, n, grads);
    return loss;
}

int amil_clam_predict(const struct amil_clam *m, const float *prob)
{
    return m->outputs == 1 ? prob[1] >= 0.5f : amil_most_probable(prob, m->classes);
}

const struct amil_tensor *amil_clam_bag_features(const struct amil_clam *m,
                                                 const struct amil_record *r)
{
    const struct amil_tensor *x = amil_record_expect(r, "features", AMIL_F32, 2);
    if (x && (x->shape[0] < 1 || x->shape[0] > INT32_MAX / 1024 || x->shape[1] != m->features))
        return amil_fail("features are [%lld, %lld]; the CLAM head's are [N ≥ 1, %d]",
                         (long long)x->shape[0], (long long)x->shape[1], m->features),
               NULL;
    if (x && amil_tensor_finite("features", x->data, 2, x->shape, 0) < 0)
        return NULL;
    return x;
}

int amil_clam_bag_label(const struct amil_clam *m, const struct amil_record *r, long *label)
{
    return amil_label_of(r, m->classes, label);
}

int amil_clam_judge(const struct amil_clam *m, struct amil_clam_work *w,
                    const struct amil_record *r, struct amil_verdict *v)
{
    const struct amil_tensor *x = amil_clam_bag_features(m, r);
    if (!x || amil_clam_bag_label(m, r, &v->label) != 1)
        return x ? amil_fail("no label") : -1;
    v->loss = amil_clam_step(m, w, x->data, (int)x->shape[0], (int)v->label, NULL, NULL);
    v->predicted = amil_clam_predict(m, w->prob);
    v->score = w->prob[1];
    return 0;
}

int amil_clam_for_bag(struct amil_clam *m, const struct amil_record *r, int gated, int hidden,
                      int attention, int classes)
{
    const struct amil_tensor *x = amil_record_find(r, "features");
    if (!x || x->dtype != AMIL_F32 || x->ndim != 2 || x->shape[1] < 1 || x->shape[1] > (1 << 20))
        return amil_fail("no features F32 [N, F ≤ 2^20]: a CLAM head trains on a backbone's "
                         "cached features (featurize)");
    return amil_clam_init(m, gated, (int)x->shape[1], hidden, attention, classes,
                          classes == 2 ? 1 : classes, NULL);
}
