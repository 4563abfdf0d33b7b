/* mil_head.c: the attention-MIL network's head (mil.h): the attention
 * pool (compute/attention.h) and the classifier, forward and backward,
 * and a training step's loss and gradients through the whole network. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "compute/attention.h"
#include "compute/nn.h"
#include "models/mil_impl.h"
#include "record/record.h"

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

/* From w->dlogits (the gradient of whatever scalar is being differentiated
 * with respect to the logits) to the scores of the bag attend has just run
 * on h (N, L): dM (K, L), then through the pool to w->dscores (N, K).
 * grads (nweights, or NULL) += the classifier's gradients. */
void mil_scores_backward(const struct amil_mil *m, struct amil_mil_work *w, const float *h,
                         int n, float *grads)
{
    int L = m->hidden, K = m->branches, head = m->params.n - 2;
    mil_fit(m, w, n, STAGE_SCORES_BACKWARD);
    memset(w->dm, 0, sizeof *w->dm * L * K);
    amil_linear_backward(w->dm, grads ? grads + m->params.at[head].offset : NULL,
                         grads ? grads + m->params.at[head + 1].offset : NULL, w->dlogits,
                         w->m, W(m, head), 1, L * K, amil_mil_outputs(m));
    struct amil_attention attention = mil_attention(m);
    struct amil_attention_buffers b = mil_attention_buffers(w);
    amil_attention_backward_scores(&attention, &b, h, n);
}

/* dH of rows base .. base+count-1 of a bag of n (the chunk's h (count, L)):
 * the pool's, then through the linear layer's ReLU into the lanes
 * (mil_relu_to_lanes). */
void mil_rows_backward(const struct amil_mil *m, struct amil_mil_work *w, const float *h,
                       int base, int count, int n)
{
    memset(w->dh, 0, sizeof *w->dh * count * m->hidden);
    struct amil_attention attention = mil_attention(m);
    struct amil_attention_buffers b = mil_attention_buffers(w);
    amil_attention_backward_rows(&attention, &b, h, base, count, n, w->dh);
    mil_relu_to_lanes(m, w, h, count);
}

/* Backward from w->dlogits through the whole network of the bag
 * amil_mil_step has just run forward: grads (nweights) += its parameters'
 * gradients. */
static void backward(const struct amil_mil *m, struct amil_mil_work *w, int n, float *grads)
{
    mil_scores_backward(m, w, w->h, n, grads);
    mil_rows_backward(m, w, w->h, 0, n, n);
    struct amil_attention attention = mil_attention(m);
    struct amil_attention_buffers b = mil_attention_buffers(w);
    struct amil_attention_params g =
        amil_attention_params_at(grads, &m->params.at[ATT_FIRST], attention.gated);
    amil_attention_backward_weights(&attention, &b, w->h, n, &g);
    mil_features_backward(m, w, n, grads);
}

/* Sets w->dlogits to the gradient of class target's score, its logit: with
 * the sigmoid head, class 1's is z and class 0's is -z. */
void mil_score_of(const struct amil_mil *m, struct amil_mil_work *w, int target)
{
    for (int c = 0; c < amil_mil_outputs(m); c++)
        w->dlogits[c] = m->classes == 2 ? (target == 1 ? 1.0f : -1.0f) : (c == target);
}

double amil_mil_step(const struct amil_mil *m, struct amil_mil_work *w,
                     const uint8_t *patches, int n, int y, float *grads)
{
    amil_mil_featurize(m, w, patches, n);
    amil_mil_attend(m, w, w->h, n);
    amil_mil_classify(m, w, w->m);
    int outputs = amil_mil_outputs(m);
    if (!grads)   /* the loss alone */
        return m->classes == 2 ? amil_bernoulli_nll(w->prob[1], y, NULL)
                               : amil_cross_entropy(w->logits, outputs, y, NULL);
    mil_fit(m, w, n, STAGE_SCORES_BACKWARD);
    mil_fit(m, w, n, STAGE_BACKWARD);
    double loss;
    if (m->classes == 2) {
        float p = w->prob[1], dp;
        loss = amil_bernoulli_nll(p, y, &dp);
        w->dlogits[0] = dp * p * (1 - p);   /* through the sigmoid */
    } else {
        loss = amil_cross_entropy(w->logits, outputs, y, w->dlogits);
    }
    backward(m, w, n, grads);
    return loss;
}

int amil_mil_judge(const struct amil_mil *m, struct amil_mil_work *w,
                   const struct amil_record *r, struct amil_verdict *v)
{
    const struct amil_tensor *p = amil_mil_bag_patches(m, r);
    if (!p || amil_mil_bag_label(m, r, &v->label) != 1)
        return p ? amil_fail("no label") : -1;
    v->loss = amil_mil_step(m, w, p->data, (int)p->shape[0], (int)v->label, NULL);
    v->predicted = amil_mil_predict(m, w->prob);
    v->score = w->prob[1];
    return 0;
}
