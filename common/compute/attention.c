/* attention.c: attention pooling (attention.h). */
#include <cblas.h>
#include <stddef.h>
#include <string.h>

#include "compute/attention.h"
#include "compute/nn.h"
#include "compute/parallel.h"
#include "compute/params.h"

struct amil_attention_params amil_attention_params_at(float *buffer, const struct amil_param *at,
                                                      int gated)
{
    float *of[6];
    for (int i = 0; i < (gated ? 6 : 4); i++)
        of[i] = buffer ? buffer + at[i].offset : at[i].data;
    if (!gated)
        return (struct amil_attention_params){of[0], of[1], NULL, NULL, of[2], of[3]};
    return (struct amil_attention_params){of[0], of[1], of[2], of[3], of[4], of[5]};
}

/* What the passes over a bag's rows share.  Row r of a pass is the bag's
 * row base + r in the bag's buffers (v, u, gate, dscores); h, dh and the
 * rows' gradients (dv, du ...) are the pass's own. */
struct rows_pass {
    const struct amil_attention *p;
    struct amil_attention_buffers *b;
    const float *h;
    float *dh;
    int base, n;
    struct amil_attention_params *g;
};

/* A task over rows (or units) first .. end-1 of a pass, and the loop that
 * splits [0, count) of them over the threads for it. */
typedef void rows_task(const struct amil_attention *p, const struct rows_pass *pass, int first,
                       int end);

struct rows_run {
    const struct rows_pass *pass;
    rows_task *task;
};

static void run_task(void *ctx, int first, int end, int thread)
{
    (void)thread;
    const struct rows_run *run = ctx;
    run->task(run->pass->p, run->pass, first, end);
}

static void run_rows(const struct rows_pass *pass, int count, rows_task *task)
{
    amil_threads_to_lanes();   /* the tasks' products: OpenBLAS on one thread */
    amil_parallel(count, run_task, &(struct rows_run){pass, task});
}

/* Rows first .. end-1: their scores, one product per layer over the rows. */
static void scores_of_rows(const struct amil_attention *p, const struct rows_pass *pass,
                           int first, int end)
{
    const struct amil_attention_params *P = &p->weights;
    struct amil_attention_buffers *b = pass->b;
    int L = p->L, D = p->D, K = p->K, rows = end - first;
    const float *h = pass->h + (size_t)first * L;
    float *v = b->v + (size_t)first * D, *scores = b->scores + (size_t)first * K;
    size_t nd = (size_t)rows * D;
    amil_linear_forward(v, h, P->v, P->v_bias, rows, L, D);
    amil_tanh_forward(v, nd);
    if (!p->gated) {
        amil_linear_forward(scores, v, P->w, P->w_bias, rows, D, K);
        return;
    }
    float *u = b->u + (size_t)first * D, *gate = b->gate + (size_t)first * D;
    amil_linear_forward(u, h, P->u, P->u_bias, rows, L, D);
    amil_sigmoid_forward(u, nd);
    for (size_t i = 0; i < nd; i++)
        gate[i] = v[i] * u[i];
    amil_linear_forward(scores, gate, P->w, P->w_bias, rows, D, K);
}

void amil_attention_forward(const struct amil_attention *p, struct amil_attention_buffers *b,
                            const float *h, int n)
{
    int L = p->L, K = p->K;
    struct rows_pass pass = {p, b, h, NULL, 0, n, NULL};
    run_rows(&pass, n, scores_of_rows);
    for (int k = 0; k < K; k++)   /* (N, K) -> (K, N), then softmax over N */
        for (int i = 0; i < n; i++)
            b->a[(size_t)k * n + i] = b->scores[(size_t)i * K + k];
    amil_softmax_forward(b->a, K, n);
    /* M (K, L) = A (K, N) · H (N, L) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, K, L, n, 1.0f, b->a, n, h, L, 0.0f,
                b->m, L);
}

void amil_attention_backward_scores(const struct amil_attention *p,
                                    struct amil_attention_buffers *b, const float *h, int n)
{
    int L = p->L, K = p->K;
    /* dA (K, N) = dM (K, L) · Hᵀ */
    memset(b->da, 0, sizeof *b->da * K * n);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, K, n, L, 1.0f, b->dm, L, h, L, 1.0f,
                b->da, n);
    memset(b->dsoft, 0, sizeof *b->dsoft * K * n);
    amil_softmax_backward(b->dsoft, b->da, b->a, K, n);
    for (int k = 0; k < K; k++)
        for (int i = 0; i < n; i++)
            b->dscores[(size_t)i * K + k] = b->dsoft[(size_t)k * n + i];
}

/* Rows first .. end-1 of the pass back through the scoring network from
 * dscores, into dh.  The rows' gradients are zeroed here, once, and every
 * product and layer adds to them. */
static void back_of_rows(const struct amil_attention *p, const struct rows_pass *pass,
                         int first, int end)
{
    const struct amil_attention_params *P = &p->weights;
    struct amil_attention_buffers *b = pass->b;
    int L = p->L, D = p->D, K = p->K, rows = end - first;
    size_t nd = (size_t)rows * D, at = (size_t)first * D, bag = (size_t)pass->base + first;
    const float *dscores = b->dscores + bag * K;
    const float *v = b->v + bag * D, *u = b->u + bag * D;
    float *dv = b->dv + at, *dvt = b->dvt + at, *dh = pass->dh + (size_t)first * L;
    memset(dv, 0, sizeof *dv * nd);
    memset(dvt, 0, sizeof *dvt * nd);
    if (!p->gated) {
        /* tanh's output: dVt (rows, D) += dscores (rows, K) · w (K, D) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, D, K, 1.0f, dscores, K,
                    P->w, D, 1.0f, dvt, D);
        amil_tanh_backward(dv, dvt, v, nd);
    } else {
        float *dgate = b->dgate + at, *du = b->du + at, *dut = b->dut + at;
        memset(dgate, 0, sizeof *dgate * nd);
        memset(du, 0, sizeof *du * nd);
        memset(dut, 0, sizeof *dut * nd);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, D, K, 1.0f, dscores, K,
                    P->w, D, 1.0f, dgate, D);
        /* the product tanh(V H) ⊙ σ(U H): each factor's gradient */
        for (size_t i = 0; i < nd; i++) {
            dvt[i] += dgate[i] * u[i];
            dut[i] += dgate[i] * v[i];
        }
        amil_tanh_backward(dv, dvt, v, nd);
        amil_sigmoid_backward(du, dut, u, nd);
        /* dH (rows, L) += dU (rows, D) · U (D, L) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, L, D, 1.0f, du, D, P->u,
                    L, 1.0f, dh, L);
    }
    /* dH (rows, L) += dV (rows, D) · V (D, L) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, L, D, 1.0f, dv, D, P->v, L,
                1.0f, dh, L);
}

void amil_attention_backward_rows(const struct amil_attention *p,
                                  struct amil_attention_buffers *b, const float *h, int base,
                                  int count, int n, float *dh)
{
    /* M = A H: dH (count, L) += A's columns of the rows ᵀ · dM (K, L) */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, count, p->L, p->K, 1.0f, b->a + base,
                n, b->dm, p->L, 1.0f, dh, p->L);
    struct rows_pass pass = {p, b, h, dh, base, n, NULL};
    run_rows(&pass, count, back_of_rows);
}

/* Units first .. end-1 of the first layers: their rows of the weights'
 * gradients (D, L) += dVᵀ (D, N) · H (N, L) (gated: U's too). */
static void dweight_of_units(const struct amil_attention *p, const struct rows_pass *pass,
                             int first, int end)
{
    int L = p->L, D = p->D, n = pass->n;
    const float *grad_of[2] = {pass->b->dv, pass->b->du};
    float *weights_of[2] = {pass->g->v, pass->g->u};
    for (int k = 0; k < (p->gated ? 2 : 1); k++)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, end - first, L, n, 1.0f,
                    grad_of[k] + first, D, pass->h, L, 1.0f,
                    weights_of[k] + (size_t)first * L, L);
}

void amil_attention_backward_weights(const struct amil_attention *p,
                                     const struct amil_attention_buffers *b, const float *h,
                                     int n, struct amil_attention_params *g)
{
    int D = p->D, K = p->K;
    struct rows_pass pass = {p, (struct amil_attention_buffers *)b, h, NULL, 0, n, g};
    run_rows(&pass, D, dweight_of_units);   /* units split among threads */
    /* the scoring layer's weight (K, D) += dscoresᵀ (K, N) · its input (N, D) */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, D, n, 1.0f, b->dscores, K,
                p->gated ? b->gate : b->v, D, 1.0f, g->w, D);
    amil_column_sums(g->w_bias, b->dscores, n, K);
    amil_column_sums(g->v_bias, b->dv, n, D);
    if (p->gated)
        amil_column_sums(g->u_bias, b->du, n, D);
}
