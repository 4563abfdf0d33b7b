/* transformer.c: the layers of nn.h a vision transformer adds (patch
 * embedding, LayerNorm, GELU, multi-head self-attention), forward only:
 * they serve frozen encoders, which nothing trains through. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "base/base.h"
#include "compute/kernels.h"
#include "compute/nn.h"

void amil_patchify(float *rows, const float *inp, int C, int H, int W, int P)
{
    int across = W / P, down = H / P;
    size_t width = (size_t)C * P * P;
    for (int i = 0; i < down; i++)
        for (int j = 0; j < across; j++) {
            float *row = rows + ((size_t)i * across + j) * width;
            for (int c = 0; c < C; c++)
                for (int y = 0; y < P; y++, row += P)
                    memcpy(row, inp + ((size_t)c * H + (size_t)i * P + y) * W + (size_t)j * P,
                           sizeof(float) * P);
        }
}

void amil_layernorm_forward(float *out, const float *inp, const float *weight,
                            const float *bias, size_t N, int D, float eps)
{
    for (size_t n = 0; n < N; n++) {
        const float *x = inp + n * D;
        float *y = out + n * D;
        /* two passes in double: a token's values can sit far from zero
         * (the residual stream grows along the blocks) */
        double mean = 0, var = 0;
        for (int d = 0; d < D; d++)
            mean += x[d];
        mean /= D;
        for (int d = 0; d < D; d++)
            var += (x[d] - mean) * (x[d] - mean);
        float m = (float)mean, invstd = (float)(1 / sqrt(var / D + eps));
        for (int d = 0; d < D; d++)
            y[d] = (x[d] - m) * invstd * weight[d] + bias[d];
    }
}

void amil_gelu_forward(float *x, size_t n)
{
    const struct amil_kernels *k = amil_kernels();
    if (k)
        k->gelu(x, n);
    else
        amil_gelu_forward_reference(x, n);
}

void amil_gelu_forward_reference(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = 0.5f * x[i] * (1 + erff(x[i] * (float)M_SQRT1_2));
}

size_t amil_self_attention_scratch(int T, int D, int heads)
{
    size_t Tp = ((size_t)T + 15) / 16 * 16, d = (size_t)(D / heads);
    return (T + d) * Tp + T * d;
}

/* On the kernels' product, outputs in lanes: a head's keys transposed and
 * scaled into kt (d, Tp), its values into v (T, d), the scores (T, Tp)
 * with Tp = T rounded up to 16 (columns past T zero, unread). */
static void attention_on_kernels(const struct amil_kernels *k, float *out, float *scratch,
                                 const float *qkv, int T, int D, int heads)
{
    int d = D / heads, stride = 3 * D, Tp = (T + 15) / 16 * 16;
    float scale = 1 / sqrtf((float)d);
    float *scores = scratch, *kt = scores + (size_t)T * Tp, *v = kt + (size_t)d * Tp;
    for (int h = 0; h < heads; h++) {
        const float *q = qkv + h * d;
        memset(kt, 0, sizeof *kt * d * Tp);
        for (int j = 0; j < T; j++)
            for (int e = 0; e < d; e++) {
                kt[(size_t)e * Tp + j] = q[(size_t)j * stride + D + e] * scale;
                v[(size_t)j * d + e] = q[(size_t)j * stride + 2 * D + e];
            }
        k->product(scores, (size_t)Tp, q, 1, (size_t)stride, kt, NULL, d, Tp, 0, T);
        for (int i = 0; i < T; i++)
            k->softmax(scores + (size_t)i * Tp, 1, T);
        k->product(out + h * d, (size_t)D, scores, 1, (size_t)Tp, v, NULL, T, d, 0, T);
    }
}

void amil_self_attention_forward(float *out, float *scratch, const float *qkv, int T, int D,
                                 int heads)
{
    int d = D / heads, stride = 3 * D;
    const struct amil_kernels *kernels = amil_kernels();
    if (kernels && d % kernels->lanes == 0 && D % kernels->lanes == 0 &&
        (uintptr_t)out % 64 == 0 && (uintptr_t)scratch % 64 == 0) {
        attention_on_kernels(kernels, out, scratch, qkv, T, D, heads);
        return;
    }
    float scale = 1 / sqrtf((float)d), *scores = scratch;
    for (int h = 0; h < heads; h++) {
        const float *q = qkv + h * d, *k = q + D, *v = q + 2 * D;
        /* scores (T, T) = Q Kᵀ / √d, each row softmaxed, then out's head
         * columns = scores V */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, d, scale, q, stride, k,
                    stride, 0.0f, scores, T);
        if (kernels)
            kernels->softmax(scores, T, T);
        else
            amil_softmax_forward(scores, T, T);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, d, T, 1.0f, scores, T, v,
                    stride, 0.0f, out + h * d, D);
    }
}

void amil_self_attention_forward_reference(float *out, const float *qkv, int T, int D,
                                           int heads)
{
    int d = D / heads, stride = 3 * D;
    double *p = amil_xmalloc(sizeof *p * T);
    for (int h = 0; h < heads; h++)
        for (int i = 0; i < T; i++) {
            const float *q = qkv + (size_t)i * stride + h * d;
            double top = -INFINITY, sum = 0;
            for (int j = 0; j < T; j++) {
                const float *k = qkv + (size_t)j * stride + D + h * d;
                double dot = 0;
                for (int e = 0; e < d; e++)
                    dot += (double)q[e] * k[e];
                p[j] = dot / sqrt(d);
                top = p[j] > top ? p[j] : top;
            }
            for (int j = 0; j < T; j++)
                sum += p[j] = exp(p[j] - top);
            for (int e = 0; e < d; e++) {
                double o = 0;
                for (int j = 0; j < T; j++)
                    o += p[j] / sum * qkv[(size_t)j * stride + 2 * D + h * d + e];
                out[(size_t)i * D + h * d + e] = (float)o;
            }
        }
    free(p);
}
