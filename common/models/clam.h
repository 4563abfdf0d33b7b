/* clam.h: CLAM's attention head (Lu et al., "Data-efficient and weakly
 * supervised computational pathology on whole-slide images", Nature
 * Biomedical Engineering 2021; its single-branch CLAM_SB), over the
 * feature vectors of a slide's patches that a frozen backbone cached
 * (featurize), one bag at a time:
 *
 *   features X (N, F) ─▶ linear F→L, ReLU, dropout = H (N, L)
 *   attention, gated: s = c · (tanh(A H) ⊙ σ(B H)), or plain c · tanh(A H)
 *     (each with its bias); a (1, N) = softmax over the N patches
 *   M (1, L) = a H; classifier: 2 classes, one output and the paper's loss
 *     (sigmoid, Bernoulli); more (or a CLAM file's two), softmax and
 *     cross-entropy
 *
 * CLAM's sizes are F = 1024 (its ResNet-50 features; 512 from resnet18),
 * L = 512, D = 256, dropout 0.25.  Parameter names are CLAM's state_dict
 * names, so its checkpoints load (its instance classifiers, which only its
 * clustering loss uses, are left out):
 *   attention_net.0                      the linear layer F→L
 *   attention_net.3.attention_a.0, .attention_b.0, .attention_c   gated
 *   attention_net.3.module.0, .module.2 (or .3 after a dropout)     plain
 *   classifiers
 */
#ifndef AMIL_CLAM_H
#define AMIL_CLAM_H

#include <gsl/gsl_rng.h>

#include "base/base.h"
#include "compute/metrics.h"
#include "compute/params.h"
#include "record/record.h"

struct amil_clam {
    int gated;              /* 1: CLAM's Attn_Net_Gated; 0: Attn_Net */
    int features;           /* F */
    int hidden;             /* L, 512 */
    int attention;          /* D, 256 */
    int classes;            /* at least 2 */
    int outputs;            /* 1 (two classes, the paper's loss) or classes */
    float dropout;          /* of H while training, 0.25 */
    struct amil_params params;
    uint64_t features_by;   /* the backbone's features it was trained on, */
    int knows_features;     /* when they said (a state_dict of CLAM's: not) */
};

/* The parameter table (weights zeroed); last_name: the plain attention's
 * second layer ("attention_net.3.module.2", or .3 in a CLAM file trained
 * with dropout; NULL for gated).  0, or -1 with a message when a size is
 * out of range. */
int amil_clam_init(struct amil_clam *m, int gated, int features, int hidden, int attention,
                   int classes, int outputs, const char *last_name);
void amil_clam_free(struct amil_clam *m);

/* Model files: arch "clam" and the sizes in the metadata; a bare CLAM
 * state_dict (safetensors) is read off its tensors' names and shapes. */
int amil_clam_is_model(const struct amil_record *r);
void amil_clam_to_record(const struct amil_clam *m, struct amil_record *r);
int amil_clam_from_record(struct amil_clam *m, const struct amil_record *r);

/* One bag's activations and gradients, grown to fit. */
struct amil_clam_work {
    int capacity;           /* rows the buffers hold */
    float *hr, *h, *mask;   /* (N, L): after ReLU, after dropout, its mask */
    float *v, *u, *gate;    /* (N, D): tanh(A H), σ(B H), their product */
    float *scores, *a;      /* (N): the scores, their softmax */
    float m[4096], logits[1024], prob[1024], dlogits[1024], dm[4096];
    float *dh, *dhr;        /* (N, L): of H, of the ReLU's output */
    /* the pool's (compute/attention.h): (N, D) of tanh's and σ's outputs,
     * of their inputs, of the gate; (N) of a, of the softmax's input */
    float *dvt, *dut, *dv, *du, *dgate, *da, *dsoft, *dscores;
    double *uniform;        /* (N, L) dropout's draws */
};
void amil_clam_work_free(struct amil_clam_work *w);

/* The two stages, as attend and classify run them: the bag's attention
 * (w->a, n) and embedding (w->m, L) from its features x (n, F), with rng
 * H's dropout drawn from it (training), else none (inference); then the
 * probabilities (w->prob, classes) of an embedding em (L). */
void amil_clam_attend(const struct amil_clam *m, struct amil_clam_work *w, const float *x,
                      int n, gsl_rng *rng);
void amil_clam_classify(const struct amil_clam *m, struct amil_clam_work *w, const float *em);
/* The same, then the loss of label y: grads (nweights) += its gradient.
 * Returns the loss. */
double amil_clam_step(const struct amil_clam *m, struct amil_clam_work *w, const float *x,
                      int n, int y, float *grads, gsl_rng *rng);
/* The class predicted from w->prob: for one output p >= 0.5, else the most
 * probable (the first of equals). */
int amil_clam_predict(const struct amil_clam *m, const float *prob);
/* The fingerprint (params.h) of the weights that make a bag's attention
 * and embedding, chained after its features' when the head knows them. */
uint64_t amil_clam_embedding_fingerprint(const struct amil_clam *m);

/* A new head (weights zeroed) for bags like r, whose `features` give F;
 * two classes take one output and the paper's loss.  0, or -1 with a
 * message. */
int amil_clam_for_bag(struct amil_clam *m, const struct amil_record *r, int gated, int hidden,
                      int attention, int classes);
/* A bag this head reads: `features` F32 (N ≥ 1, F); the tensor, or NULL
 * with a message. */
const struct amil_tensor *amil_clam_bag_features(const struct amil_clam *m,
                                                 const struct amil_record *r);
/* The record's label: 1 and *label in [0, classes), 0 if none, -1 with a
 * message. */
int amil_clam_bag_label(const struct amil_clam *m, const struct amil_record *r, long *label);
/* What the head makes of labelled bag r (metrics.h), without dropout. */
int amil_clam_judge(const struct amil_clam *m, struct amil_clam_work *w,
                    const struct amil_record *r, struct amil_verdict *v);

#endif
