/* attention.h: attention pooling (Ilse, Tomczak and Welling 2018), the
 * layer the attention-MIL network and CLAM's head share.  A bag's N
 * instances' features H (N, L) are scored, K branches each:
 *
 *   plain:  scores = w · tanh(V h + bv) + bw
 *   gated:  scores = w · (tanh(V h + bv) ⊙ σ(U h + bu)) + bw
 *
 * then A (K, N) = the softmax over N of the scores, and the bag's
 * embedding M (K, L) = A · H.  The rows' work is split over the threads
 * (parallel.h); the products are OpenBLAS's.
 *
 * Backward follows the layer convention of nn.h: every gradient is added
 * to (+=), except the pass's own scratch, which it zeroes.  A backward
 * can run over a bag's rows a chunk at a time (Grad-CAM's bounded
 * memory): the scores' gradients span the bag, the rows' their chunk. */
#ifndef AMIL_ATTENTION_H
#define AMIL_ATTENTION_H

/* The layer's tensors by their roles: pointers into a model's flat buffer
 * of weights, or the same roles in its gradients. */
struct amil_attention_params {
    float *v, *v_bias;      /* (D, L), (D): the tanh branch */
    float *u, *u_bias;      /* (D, L), (D): the sigmoid gate; NULL when plain */
    float *w, *w_bias;      /* (K, D), (K): the scores */
};

struct amil_attention {
    int L, D, K;            /* features, hidden units, branches */
    int gated;
    struct amil_attention_params weights;
};

/* The roles of the parameters at[0..], in the order V, bv, (U, bu when
 * gated,) w, bw: in the gradients' buffer at their offsets, or with
 * buffer NULL the weights themselves. */
struct amil_param;
struct amil_attention_params amil_attention_params_at(float *buffer, const struct amil_param *at,
                                                      int gated);

/* A bag's buffers, the caller's (rows: the bag's N, or a chunk's). */
struct amil_attention_buffers {
    float *v, *u, *gate;    /* (N, D): tanh(V h), σ(U h), their product */
    float *scores;          /* (N, K) */
    float *a;               /* (K, N): the attention */
    float *m;               /* (K, L): the embedding */
    /* gradients: of m; of a and the softmax's input (K, N) and the same
     * transposed (N, K) */
    float *dm, *da, *dsoft, *dscores;
    /* a chunk's rows (rows, D): of tanh's and σ's outputs, of their
     * inputs, of the gate */
    float *dvt, *dut, *dv, *du, *dgate;
};

/* H (n, L) to b's v, u, gate, scores, a and m. */
void amil_attention_forward(const struct amil_attention *p, struct amil_attention_buffers *b,
                            const float *h, int n);

/* From b->dm (K, L), the gradient of the embedding, to b->dscores (N, K)
 * through the softmax (b->da, b->dsoft: scratch of the pass). */
void amil_attention_backward_scores(const struct amil_attention *p,
                                    struct amil_attention_buffers *b, const float *h, int n);

/* Rows base .. base+count-1 of a bag of n, whose features are h (count,
 * L): dh (count, L) += their gradient through M = A H and the scoring
 * network; b's row gradients (dv, du, ...) are the chunk's, its
 * activations and dscores the bag's. */
void amil_attention_backward_rows(const struct amil_attention *p,
                                  struct amil_attention_buffers *b, const float *h, int base,
                                  int count, int n, float *dh);

/* After backward_rows over the whole bag (b->dv, b->du of all n rows):
 * the gradients of every weight added to g. */
void amil_attention_backward_weights(const struct amil_attention *p,
                                     const struct amil_attention_buffers *b, const float *h,
                                     int n, struct amil_attention_params *g);

#endif
