/* mil.h: the attention-MIL network of the paper (Ilse et al. 2018 with
 * three input channels), plain or gated, over one bag at a time.
 *
 *   patches (N, P, P, C) u8 ─/255─▶ conv 5×5 C→20, ReLU, max-pool 2
 *     ─▶ conv 5×5 20→50, ReLU, max-pool 2 ─▶ view (N, 50·4·4)
 *     ─▶ linear →L, ReLU = features H (N, L)                  [featurize]
 *   attention: a = w · tanh(V H) (+ b), or gated w · (tanh(V H) ⊙ σ(U H));
 *     A (K, N) = softmax over the N patches; M (K, L) = A H    [attend]
 *   classifier: 2 classes: p = σ(c · M); more: softmax(c · M)   [classify]
 *
 * Parameters live in one flat buffer with a table of names (the PyTorch
 * state_dict names of the reference module), so a model file is one record
 * and the optimizer one loop.
 */
#ifndef AMIL_MIL_H
#define AMIL_MIL_H

#include <stddef.h>
#include <stdint.h>

#include "base/base.h"
#include "compute/metrics.h"
#include "compute/params.h"
#include "record/record.h"

enum amil_mil_arch { AMIL_MIL_PLAIN, AMIL_MIL_GATED };

/* Ceiling on a layer's width a model file may ask for (classes, hidden,
 * attention, branches). */
#define AMIL_MIL_MAX_WIDTH (1 << 20)

struct amil_mil {
    enum amil_mil_arch arch;
    int channels;           /* 1 or 3 */
    int patch;              /* side of a patch, 28 in the paper */
    int classes;            /* 2: one sigmoid output; more: softmax */
    int hidden;             /* L, 500 */
    int attention;          /* D, 128 */
    int branches;           /* K, 1 */
    int flat;               /* 50 · s · s, the features before the linear */
    enum amil_norm norm;    /* set after amil_mil_init; NONE by default */
    struct amil_params params;   /* the state_dict names of the reference */
};

/* Sets up the parameter table (weights zeroed).  Returns 0, or -1 with a
 * message when the geometry does not work (a patch too small for two 5×5
 * convolutions and two poolings) or the sizes are over the ceilings above. */
int amil_mil_init(struct amil_mil *m, enum amil_mil_arch arch, int channels, int patch,
                  int classes, int hidden, int attention, int branches);
void amil_mil_free(struct amil_mil *m);
const char *amil_mil_arch_name(enum amil_mil_arch arch);
int amil_mil_arch_parse(const char *name);   /* -1 if unknown */
int amil_mil_outputs(const struct amil_mil *m);   /* 1 or classes */

/* Model files: the weights under their state_dict names plus metadata
 * (arch, classes, channels, patch, hidden, attention, branches,
 * normalization: x/255, mnist or imagenet; x/255 when absent).  Loading
 * also takes a bare PyTorch state_dict saved with
 * safetensors: the architecture is read off the tensor names and shapes. */
void amil_mil_to_record(const struct amil_mil *m, struct amil_record *r);
int amil_mil_from_record(struct amil_mil *m, const struct amil_record *r);
int amil_mil_load(struct amil_mil *m, const char *path);
/* The buffers of one bag's activations and gradients, declared once:
 * X(STAGE, TYPE, NAME, COUNT, ...) for each, in the stage that grows it
 * (the features' lanes; the attention and classifier; the scores'
 * gradients; the rest of the backward), its element type and its count
 * in mil_fit's terms: N patches (at least 1) in G groups of V lanes, C
 * channels, patches of side P, L features, D attention, K branches,
 * T threads; c1, p1, c2, p2 a group's convolution and pooling outputs;
 * F the flat features before the linear.  The struct's fields, the
 * allocation and the free all come from this list. */
#define AMIL_MIL_BUFFERS(X) \
    /* (G, C, P, P, V) the normalized input */ \
    X(FEATURES, float, x, G * C * P * P * V) \
    /* (G, 20, S1, S1, V) pool 1, + bias, ReLU; which of its window won */ \
    X(FEATURES, float, p1, G * p1) X(FEATURES, uint8_t, arg1, G * p1) \
    /* (G, 50·S2·S2, V) pool 2, + bias, ReLU; which won */ \
    X(FEATURES, float, p2, G * p2) X(FEATURES, uint8_t, arg2, G * p2) \
    /* (G, L, V) features; (N, L) the same as rows: featurize's output */ \
    X(FEATURES, float, hl, G * L * V) X(FEATURES, float, h, N * L) \
    /* a thread's convolution outputs (scratch) */ \
    X(FEATURES, float, c1, c1 * T) X(FEATURES, float, c2, c2 * T) \
    /* conv 2 image by image (scratch) */ \
    X(FEATURES, float, planes, shift.planes * T) X(FEATURES, float, shifted, shift.shifted * T) \
    /* the convolutions as Winograd's F(4×4, 5×5), each where it fits: U \
     * of their weights, conv 1's (64, 20, C) and conv 2's (64, 50, 20) with \
     * its transpose ut (64, 20, 50), made from the copies at seen and \
     * remade when the weights differ, the taps transposed (gt, scratch for \
     * either); a thread's V of each, and its products (scratch) */ \
    X(FEATURES, float, wino1_u, 64 * 20 * C) X(FEATURES, float, wino1_seen, taps1) \
    X(FEATURES, float, wino1_v, wino1_tiles * V * T) \
    X(FEATURES, float, wino2_u, 64 * 50 * 20) X(FEATURES, float, wino2_ut, 64 * 50 * 20) \
    X(FEATURES, float, wino2_seen, taps) X(FEATURES, float, wino2_v, wino_tiles * V * T) \
    X(FEATURES, float, wino_gt, taps) X(FEATURES, float, wino_m, wino_scratch * T) \
    /* (N, D): tanh(V H), σ(U H), their product; (N, K) scores; (K, N) \
     * their softmax over N; (K, L) the embedding; (outputs), (classes) */ \
    X(ATTENTION, float, v, N * D) X(ATTENTION, float, u, N * D) \
    X(ATTENTION, float, gate, N * D) X(ATTENTION, float, scores, N * K) \
    X(ATTENTION, float, a, K * N) X(ATTENTION, float, m, K * L) \
    X(ATTENTION, float, logits, classes) X(ATTENTION, float, prob, classes) \
    /* the gradients of scores, a, the softmax's input, m and the logits */ \
    X(SCORES_BACKWARD, float, dscores, N * K) X(SCORES_BACKWARD, float, da, K * N) \
    X(SCORES_BACKWARD, float, dsoft, K * N) X(SCORES_BACKWARD, float, dm, K * L) \
    X(SCORES_BACKWARD, float, dlogits, classes) \
    /* the gradients of hl and p2; the linear layer's weight gradient in \
     * blocks (pk, dwk) or P2's rows (G·V, flat) in pk; a thread's of c2, p1, c1; threads 1..'s \
     * convolution weight gradients (dconv); of h, v, u; dvt, dut of tanh's \
     * and σ's outputs (v, u of their inputs); of the gate */ \
    X(BACKWARD, float, dhl, G * L * V) X(BACKWARD, float, dp2, G * p2) \
    X(BACKWARD, float, pk, blocks * G * V * V) X(BACKWARD, float, dwk, blocks * L * V) \
    X(BACKWARD, float, dc2, c2 * T) X(BACKWARD, float, dp1, p1 * T) \
    X(BACKWARD, float, dc1, c1 * T) X(BACKWARD, float, dconv, (T - 1) * conv_params + 1) \
    /* conv 2's backward as Winograd's: a thread's dM (64, 50, tiles, V) \
     * and dU (64, 50, 20), the weights' gradient from them (25, 50·20; conv 1's too) */ \
    X(BACKWARD, float, wino2_dm, wino2_dm * T) X(BACKWARD, float, wino2_du, 64 * 50 * 20 * T) \
    /* conv 1's: a thread's dM of four channels (64, 4, tiles, V) and dU \
     * (64, 20, C) */ \
    X(BACKWARD, float, wino1_dm, wino1_dm * T) X(BACKWARD, float, wino1_du, 64 * 20 * C * T) \
    X(BACKWARD, float, wino_dgt, taps) \
    X(BACKWARD, float, dh, N * L) X(BACKWARD, float, dv, N * D) \
    X(BACKWARD, float, du, N * D) X(BACKWARD, float, dvt, N * D) \
    X(BACKWARD, float, dut, N * D) X(BACKWARD, float, dgate, N * D)

/* Activations of one bag, kept for backward; grown to fit.  The feature
 * extractor's are in the lane layout of kernels.h (groups of lanes
 * patches, the last group padded with zeros). */
struct amil_mil_work {
    const struct amil_kernels *kernels;   /* amil_kernels(), at first use */
    int threads;            /* amil_thread_count() the buffers were made for */
    int capacity[4];        /* patches the buffers of each stage hold */
    int n;                  /* patches of the current bag */
    int wino_ready;         /* wino1_u, wino2_u are of the weights at their seen */
#define AMIL_MIL_FIELD(stage, type, name, count) type *name;
    AMIL_MIL_BUFFERS(AMIL_MIL_FIELD)
#undef AMIL_MIL_FIELD
};

void amil_mil_work_free(struct amil_mil_work *w);

/* The predicted class of probabilities prob (classes): for two classes the
 * paper's Y_hat = (p >= 0.5); for more, the most probable, the first of
 * equals. */
int amil_mil_predict(const struct amil_mil *m, const float *prob);
/* Fingerprints (params.h) of the weights that make a bag's features (the
 * feature extractor) and, chained after them, its attention and embedding
 * (the attention network). */
void amil_mil_fingerprints(const struct amil_mil *m, uint64_t *features, uint64_t *embedding);

/* Checks that a record is a bag this model can read: `patches` U8
 * (N ≥ 1, P, P, C) with the model's P and C.  Returns the tensor, or NULL
 * with a message. */
const struct amil_tensor *amil_mil_bag_patches(const struct amil_mil *m,
                                               const struct amil_record *r);
/* The record's label: 1 and *label in [0, classes), 0 if it has none, -1
 * (with a message) if it is not such a class. */
int amil_mil_bag_label(const struct amil_mil *m, const struct amil_record *r, long *label);

/* What the model makes of bag r (its patches and label): the loss of its
 * label, the class predicted, the probability of class 1.  Returns 0, or
 * -1 with a message when r is not a labelled bag of this model. */
int amil_mil_judge(const struct amil_mil *m, struct amil_mil_work *w,
                   const struct amil_record *r, struct amil_verdict *v);

/* The three stages, as featurize, attend and classify run them.  featurize
 * reads patches (N, P, P, C) u8 and leaves w->h (N, L); attend reads h
 * (N, L) (w->h or another buffer) and leaves w->a (K, N) and w->m (K, L);
 * classify reads m (K, L) and leaves w->prob (classes). */
void amil_mil_featurize(const struct amil_mil *m, struct amil_mil_work *w,
                        const uint8_t *patches, int n);
void amil_mil_attend(const struct amil_mil *m, struct amil_mil_work *w, const float *h, int n);
/* featurize's stage over a bag of any size in bounded memory: features (N,
 * L) of patches (N, P, P, C) u8, AMIL_MIL_CHUNK patches at a time, so that
 * w's buffers are set by the chunk, not the bag.  The chunk is a multiple
 * of every instruction set's lanes, so the patches fall in the same groups
 * as in one pass, and the features have the same bits. */
#define AMIL_MIL_CHUNK 256
void amil_mil_features(const struct amil_mil *m, struct amil_mil_work *w,
                       const uint8_t *patches, int n, float *features);
void amil_mil_classify(const struct amil_mil *m, struct amil_mil_work *w, const float *em);

/* All three, then the loss of label y and its gradient: grads (nweights)
 * += dloss/dweights (with grads NULL, the loss alone).  Returns the loss
 * (the paper's clamped Bernoulli negative log-likelihood for 2 classes,
 * cross-entropy otherwise). */
double amil_mil_step(const struct amil_mil *m, struct amil_mil_work *w,
                     const uint8_t *patches, int n, int y, float *grads);

/* Grad-CAM (Selvaraju et al. 2017) of the bag's score for class target at
 * the second convolution's output A (50 maps of side S per patch, S =
 * amil_mil_gradcam_side(), 8 for 28×28 patches): per patch, alpha_k =
 * the mean over the map of d score / d A_k, and cam (N, S, S) = ReLU(sum of
 * alpha_k A_k).  The score is the class's logit (two classes: z for class
 * 1, -z for class 0); target -1 is the class the model predicts.  Returns
 * the class explained.  Upsampling and laying the maps on the image are the
 * caller's.  In bounded memory: the bag's features (N, L) and attend's
 * buffers, the rest a chunk's (AMIL_MIL_CHUNK patches); the maps differ
 * from one pass over the bag by float rounding (OpenBLAS's products over
 * other row blocks), not more. */
int amil_mil_gradcam(const struct amil_mil *m, struct amil_mil_work *w,
                     const uint8_t *patches, int n, int target, float *cam);
int amil_mil_gradcam_side(const struct amil_mil *m);

#endif
