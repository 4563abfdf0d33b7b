/* cnn_tokens.c: a vision transformer's layers of the graph of cnn.h,
 * forward only (a frozen encoder's): the patch embedding, the linear
 * layers on the kernels' product (float32, or bfloat16 where asked), and
 * the layers run image by image (LayerNorm, attention, GELU, LayerScale,
 * the residual sums, pooling), threads splitting the images. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "compute/kernels.h"
#include "compute/nn.h"
#include "models/cnn.h"
#include "models/cnn_impl.h"

#define LAYERNORM_EPS 1e-6f   /* torchvision's and timm's ViTs' */

/* tokens (T, D) of one image inp (C, H, W): the class token, then each
 * P×P patch (row by row, into rows: scratch of C·H·W) times the weights
 * (D, C·P·P) plus bias; then plus the positions (T, D) */
static void embed(const struct amil_cnn *m, float *rows, const struct amil_layer *l,
                  const struct amil_layer *in, float *tokens, const float *inp)
{
    int P = l->kernel, T = l->h, D = l->w;
    amil_patchify(rows, inp, in->c, in->h, in->w, P);
    memcpy(tokens, PARAM(m, l, 2), sizeof *tokens * D);
    amil_linear_forward(tokens + D, rows, PARAM(m, l, 0), PARAM(m, l, 1), T - 1,
                        in->c * P * P, D);
    const float *position = PARAM(m, l, 3);
    for (size_t j = 0; j < (size_t)T * D; j++)
        tokens[j] += position[j];
}

/* A token linear's outputs go a panel at a time: its weights' rows
 * transposed into the thread's pack (C, PANEL), in cache, then every row
 * through the product kernel; threads split the panels.  Weights read as
 * the file has them: no copy of them kept, nothing made at first use. */

struct linear_pass {
    const struct amil_kernels *k;
    float *out;             /* (rows, OC) */
    const float *inp;       /* (rows, C) */
    const float *weight, *bias;   /* (OC, C), (OC) */
    float *packs;           /* per thread, (C, PANEL) */
    int rows, C, OC;
};

static void linear_of_panels(void *ctx, int first, int end, int thread)
{
    const struct linear_pass *p = ctx;
    float *pack = p->packs + (size_t)thread * p->C * PANEL;
    for (int panel = first; panel < end; panel++) {
        int o0 = panel * PANEL, P = p->OC - o0 < PANEL ? p->OC - o0 : PANEL;
        /* pack (C, P) = rows o0 .. o0+P-1 of the weights transposed, in
         * blocks of 16 × 16 */
        for (int c0 = 0; c0 < p->C; c0 += 16)
            for (int o = 0; o < P; o++)
                for (int c = c0; c < p->C && c < c0 + 16; c++)
                    pack[(size_t)c * P + o] = p->weight[(size_t)(o0 + o) * p->C + c];
        p->k->product(p->out + o0, (size_t)p->OC, p->inp, 1, (size_t)p->C, pack, p->bias + o0,
                      p->C, P, 0, p->rows);
    }
}

/* out (rows, OC) = inp (rows, C) · weight (OC, C)ᵀ + bias on the product
 * kernel.  At 197 × 768 × 2304 (a ViT-B/16 block's qkv) the kernel ran at
 * 210 GFLOP/s on one core of a measured 231 peak, OpenBLAS's SGEMM
 * (forced to Haswell) at 103. */
/* The bfloat16 path: the weights rounded once (w->prepared[i], pairs of
 * input channels, (C/2, OC, 2)), the input each time (w->bf16_rows);
 * threads split the panels as in f32, with nothing to pack. */
struct bf16_pass {
    const struct amil_kernels *k;
    float *out;
    const uint16_t *x, *a;
    const float *bias;
    int rows, C, OC;
};

static void bf16_of_panels(void *ctx, int first, int end, int thread)
{
    (void)thread;
    const struct bf16_pass *p = ctx;
    for (int panel = first; panel < end; panel++) {
        int o0 = panel * PANEL, P = p->OC - o0 < PANEL ? p->OC - o0 : PANEL;
        p->k->product_bf16(p->out + o0, (size_t)p->OC, p->x, 2, (size_t)p->C, p->a + 2 * o0,
                           2 * (size_t)p->OC, p->bias + o0, p->C / 2, P, 0, p->rows);
    }
}

static void token_linear_bf16(const struct amil_cnn *m, struct amil_cnn_work *w, int i,
                              float *out, const float *inp, int rows)
{
    const struct amil_layer *l = &m->layers[i];
    int C = m->layers[l->input].w, OC = l->w;
    const float *weight = PARAM(m, l, 0);
    if (!w->prepared[i] || w->prepared_of[i] != weight) {
        free(w->prepared[i]);
        float *row = amil_xmalloc(sizeof *row * OC * 2);
        uint16_t *a = (uint16_t *)(w->prepared[i] = amil_xaligned(sizeof(uint16_t) * C * OC));
        for (int p = 0; p < C / 2; p++) {   /* a[p][o][k] = weight[o][2p + k] */
            for (int o = 0; o < OC; o++)
                row[2 * o] = weight[(size_t)o * C + 2 * p],
                row[2 * o + 1] = weight[(size_t)o * C + 2 * p + 1];
            w->kernels->to_bf16(a + (size_t)p * OC * 2, row, (size_t)OC * 2);
        }
        free(row);
        w->prepared_of[i] = weight;
    }
    w->kernels->to_bf16(w->bf16_rows, inp, (size_t)rows * C);
    struct bf16_pass pass = {w->kernels, out, w->bf16_rows, (const uint16_t *)w->prepared[i],
                             PARAM(m, l, 1), rows, C, OC};
    cnn_run(w, (OC + PANEL - 1) / PANEL, bf16_of_panels, &pass);
}

void cnn_token_linear(const struct amil_cnn *m, struct amil_cnn_work *w, int i, float *out,
                      const float *inp, int rows)
{
    if (m->form.bf16) {
        token_linear_bf16(m, w, i, out, inp, rows);
        return;
    }
    const struct amil_layer *l = &m->layers[i];
    int C = m->layers[l->input].w, OC = l->w;
    struct linear_pass pass = {w->kernels, out, inp, PARAM(m, l, 0), PARAM(m, l, 1), w->packs,
                               rows, C, OC};
    cnn_run(w, (OC + PANEL - 1) / PANEL, linear_of_panels, &pass);
}

/* out (D) = the class token of tokens (T, D), or the mean of the others */
static void pool_tokens(float *out, const float *tokens, int T, int D, int pool)
{
    if (pool == AMIL_POOL_TOKEN) {
        memcpy(out, tokens, sizeof *out * D);
        return;
    }
    for (int d = 0; d < D; d++) {
        double sum = 0;
        for (int t = 1; t < T; t++)
            sum += tokens[(size_t)t * D + d];
        out[d] = (float)(sum / (T - 1));
    }
}

/* Layer i (a transformer's, but for its linears) over images first ..
 * end-1, each alone, thread's scratch its part of w->cols: threads split
 * the images. */
struct image_pass {
    const struct amil_cnn *m;
    struct amil_cnn_work *w;
    int i;
};

static void token_images(void *ctx, int first, int end, int thread)
{
    const struct image_pass *p = ctx;
    const struct amil_cnn *m = p->m;
    const struct amil_layer *l = &m->layers[p->i], *in = &m->layers[l->input];
    float *scratch = p->w->cols + (size_t)thread * p->w->cols_size;
    size_t per_in = layer_size(in), per_out = layer_size(l);
    for (int b = first; b < end; b++) {
        float *out = p->w->out[p->i] + b * per_out;
        const float *inp = p->w->out[l->input] + b * per_in;
        switch (l->op) {
        case AMIL_OP_EMBED:
            embed(m, scratch, l, in, out, inp);
            break;
        case AMIL_OP_LAYERNORM:
            amil_layernorm_forward(out, inp, PARAM(m, l, 0), PARAM(m, l, 1), (size_t)l->h,
                                   l->w, LAYERNORM_EPS);
            break;
        case AMIL_OP_SELF_ATTENTION:
            amil_self_attention_forward(out, scratch, inp, l->h, l->w, l->kernel);
            break;
        case AMIL_OP_GELU:
            memcpy(out, inp, sizeof *out * per_out);
            amil_gelu_forward(out, per_out);
            break;
        case AMIL_OP_SCALE:
            for (size_t j = 0; j < per_out; j++)
                out[j] = inp[j] * PARAM(m, l, 0)[j % l->w];
            break;
        case AMIL_OP_POOL_TOKENS:
            pool_tokens(out, inp, in->h, l->w, l->kernel);
            break;
        case AMIL_OP_ADD:
            amil_add_forward(out, inp, p->w->out[l->input2] + b * per_out, per_out);
            break;
        default:
            break;
        }
    }
}

void cnn_token_images(const struct amil_cnn *m, struct amil_cnn_work *w, int i, int B)
{
    struct image_pass pass = {m, w, i};
    cnn_run(w, B, token_images, &pass);
}
