/* nn.c: the layers of nn.h.  Matrix products go to BLAS (OpenBLAS's
 * cblas_sgemm); everything else is a plain loop over contiguous memory. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "base/base.h"
#include "compute/kernels.h"
#include "compute/nn.h"
#include "compute/parallel.h"

int amil_conv_out(int size, int kernel, int stride, int pad)
{
    return (size + 2 * pad - kernel) / stride + 1;
}

/* ---- convolution -------------------------------------------------------- */

/* cols (C·K·K, N·OH·OW): row (c, ki, kj), column (n, oh, ow) holds
 * inp[c][n][oh·stride + ki - pad][ow·stride + kj - pad], 0 off the edge. */
void amil_im2col(float *cols, const float *inp, int N, int C, int H, int W, int K,
                 int stride, int pad)
{
    int OH = amil_conv_out(H, K, stride, pad), OW = amil_conv_out(W, K, stride, pad);
    size_t columns = (size_t)N * OH * OW;
    for (int c = 0; c < C; c++)
        for (int ki = 0; ki < K; ki++)
            for (int kj = 0; kj < K; kj++) {
                float *row = cols + ((size_t)(c * K + ki) * K + kj) * columns;
                for (int n = 0; n < N; n++) {
                    const float *plane = inp + ((size_t)c * N + n) * H * W;
                    for (int oh = 0; oh < OH; oh++, row += OW) {
                        int y = oh * stride + ki - pad;
                        if (y < 0 || y >= H) {
                            memset(row, 0, sizeof *row * OW);
                            continue;
                        }
                        const float *line = plane + (size_t)y * W;
                        if (stride == 1 && pad == 0) {   /* the common case */
                            /* a loop, not memcpy: rows are 8 to 24 floats,
                             * too short for a call to pay */
                            for (int ow = 0; ow < OW; ow++)
                                row[ow] = line[kj + ow];
                            continue;
                        }
                        for (int ow = 0; ow < OW; ow++) {
                            int x = ow * stride + kj - pad;
                            row[ow] = x >= 0 && x < W ? line[x] : 0;
                        }
                    }
                }
            }
}

/* The adjoint of im2col: dinp (C, N, H, W) += Σ of the cols that read each
 * pixel. */
static void col2im(float *dinp, const float *dcols, int N, int C, int H, int W, int K,
                   int stride, int pad)
{
    int OH = amil_conv_out(H, K, stride, pad), OW = amil_conv_out(W, K, stride, pad);
    size_t columns = (size_t)N * OH * OW;
    for (int c = 0; c < C; c++)
        for (int ki = 0; ki < K; ki++)
            for (int kj = 0; kj < K; kj++) {
                const float *row = dcols + ((size_t)(c * K + ki) * K + kj) * columns;
                for (int n = 0; n < N; n++) {
                    float *plane = dinp + ((size_t)c * N + n) * H * W;
                    for (int oh = 0; oh < OH; oh++, row += OW) {
                        int y = oh * stride + ki - pad;
                        if (y < 0 || y >= H)
                            continue;
                        float *line = plane + (size_t)y * W;
                        for (int ow = 0; ow < OW; ow++) {
                            int x = ow * stride + kj - pad;
                            if (x >= 0 && x < W)
                                line[x] += row[ow];
                        }
                    }
                }
            }
}

void amil_conv2d_forward(float *out, float *cols, const float *inp, const float *weight,
                         const float *bias, int N, int C, int H, int W, int OC, int K,
                         int stride, int pad)
{
    int OH = amil_conv_out(H, K, stride, pad), OW = amil_conv_out(W, K, stride, pad);
    int columns = N * OH * OW, depth = C * K * K;
    amil_im2col(cols, inp, N, C, H, W, K, stride, pad);
    /* With a bias: the bias first, then out += weight · cols, so BLAS adds
     * in one pass; without (the caller adds it later): out = weight · cols. */
    if (bias)
        for (int o = 0; o < OC; o++)
            for (int j = 0; j < columns; j++)
                out[(size_t)o * columns + j] = bias[o];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, OC, columns, depth, 1.0f,
                weight, depth, cols, columns, bias ? 1.0f : 0.0f, out, columns);
}

void amil_conv2d_backward(float *dinp, float *dweight, float *dbias, float *dcols,
                          const float *dout, const float *cols, const float *weight,
                          int N, int C, int H, int W, int OC, int K, int stride, int pad)
{
    int OH = amil_conv_out(H, K, stride, pad), OW = amil_conv_out(W, K, stride, pad);
    int columns = N * OH * OW, depth = C * K * K;
    if (dbias)
        for (int o = 0; o < OC; o++) {
            double sum = 0;   /* hundreds of thousands of terms */
            for (int j = 0; j < columns; j++)
                sum += dout[(size_t)o * columns + j];
            dbias[o] += (float)sum;
        }
    /* dweight (OC, depth) += dout (OC, columns) · cols (depth, columns)ᵀ */
    if (dweight)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, OC, depth, columns, 1.0f, dout,
                    columns, cols, columns, 1.0f, dweight, depth);
    if (!dinp)
        return;
    /* dcols (depth, columns) = weight (OC, depth)ᵀ · dout (OC, columns) */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, depth, columns, OC, 1.0f, weight,
                depth, dout, columns, 0.0f, dcols, columns);
    col2im(dinp, dcols, N, C, H, W, K, stride, pad);
}

void amil_conv2d_forward_reference(float *out, const float *inp, const float *weight,
                                   const float *bias, int N, int C, int H, int W, int OC,
                                   int K, int stride, int pad)
{
    int OH = amil_conv_out(H, K, stride, pad), OW = amil_conv_out(W, K, stride, pad);
    for (int o = 0; o < OC; o++)
        for (int n = 0; n < N; n++)
            for (int oh = 0; oh < OH; oh++)
                for (int ow = 0; ow < OW; ow++) {
                    double sum = bias ? bias[o] : 0;
                    for (int c = 0; c < C; c++)
                        for (int ki = 0; ki < K; ki++)
                            for (int kj = 0; kj < K; kj++) {
                                int y = oh * stride + ki - pad, x = ow * stride + kj - pad;
                                if (y < 0 || y >= H || x < 0 || x >= W)
                                    continue;
                                sum += (double)weight[((o * C + c) * K + ki) * K + kj] *
                                       inp[(((size_t)c * N + n) * H + y) * W + x];
                            }
                    out[(((size_t)o * N + n) * OH + oh) * OW + ow] = (float)sum;
                }
}

/* ---- pooling and pointwise --------------------------------------------- */

/* a if it wins against b: larger, or NaN (NaN wins, as in PyTorch) */
static inline float max_or_nan(float a, float b)
{
    float m = a > b ? a : b;   /* two selects, no branch: the loops vectorize */
    return a != a ? a : m;
}

/* The max-pool's values alone (no argmax): each output row's window rows
 * first reduced down the columns, a loop along whole rows that vectorizes,
 * then across each window's columns.  The same values as the scan with
 * argmax (a maximum is a maximum in any order, and any NaN makes it NaN).
 * row is scratch of (OW - 1)·stride + K floats at least. */
static void maxpool_values(float *out, float *row, const float *inp, size_t planes, int H,
                           int W, int K, int stride, int pad)
{
    int OH = amil_conv_out(H, K, stride, pad), OW = amil_conv_out(W, K, stride, pad);
    int span = (OW - 1) * stride + K;
    for (size_t p = 0; p < planes; p++) {
        const float *plane = inp + p * H * W;
        for (int oh = 0; oh < OH; oh++) {
            int y0 = oh * stride - pad;
            int ki0 = y0 < 0 ? -y0 : 0, ki1 = H - y0 < K ? H - y0 : K;
            for (int x = 0; x < span; x++)
                row[x] = -INFINITY;
            /* row[x] = the window rows' maximum at padded column x */
            int x0 = pad, x1 = W + pad < span ? W + pad : span;
            for (int ki = ki0; ki < ki1; ki++) {
                const float *src = plane + (size_t)(y0 + ki) * W - pad;
                for (int x = x0; x < x1; x++)
                    row[x] = max_or_nan(src[x], row[x]);
            }
            float *best = out + (p * OH + oh) * OW;
            for (int ow = 0; ow < OW; ow++) {
                float m = -INFINITY;
                for (int kj = 0; kj < K; kj++)
                    m = max_or_nan(row[ow * stride + kj], m);
                best[ow] = m;
            }
        }
    }
}

void amil_maxpool_forward(float *out, int32_t *argmax, const float *inp, size_t planes,
                          int H, int W, int K, int stride, int pad)
{
    int OH = amil_conv_out(H, K, stride, pad), OW = amil_conv_out(W, K, stride, pad);
    /* an input row with -inf at both sides, so that no column is checked
     * against the bounds and the loop over a row of outputs vectorizes */
    int span = (OW - 1) * stride + K;
    float *row = amil_xmalloc(sizeof *row * (size_t)(span > W + pad ? span : W + pad));
    if (!argmax) {
        maxpool_values(out, row, inp, planes, H, W, K, stride, pad);
        free(row);
        return;
    }
    for (size_t p = 0; p < planes; p++) {
        const float *plane = inp + p * H * W;
        for (int oh = 0; oh < OH; oh++) {
            float *best = out + (p * OH + oh) * OW;
            int32_t *at = argmax + (p * OH + oh) * OW;
            int y0 = oh * stride - pad;
            int ki0 = y0 < 0 ? -y0 : 0, ki1 = H - y0 < K ? H - y0 : K;
            for (int ow = 0; ow < OW; ow++) {   /* PyTorch's start: the first inside */
                int x0 = ow * stride - pad;
                best[ow] = -INFINITY;
                at[ow] = (y0 + ki0) * W + (x0 > 0 ? x0 : 0);
            }
            for (int ki = ki0; ki < ki1; ki++) {
                const float *src = plane + (size_t)(y0 + ki) * W;
                for (int x = 0; x < span; x++) {
                    int from = x - pad;
                    row[x] = from >= 0 && from < W ? src[from] : -INFINITY;
                }
                int32_t base = (y0 + ki) * W - pad;
                for (int kj = 0; kj < K; kj++)
                    for (int ow = 0; ow < OW; ow++) {
                        float v = row[ow * stride + kj];
                        int wins = (v > best[ow]) | (v != v);   /* NaN wins, as PyTorch */
                        best[ow] = wins ? v : best[ow];
                        at[ow] = wins ? base + ow * stride + kj : at[ow];
                    }
            }
        }
    }
    free(row);
}

void amil_maxpool_backward(float *dinp, const float *dout, const int32_t *argmax,
                           size_t planes, int H, int W, int OH, int OW)
{
    size_t plane_in = (size_t)H * W, plane_out = (size_t)OH * OW;
    for (size_t p = 0; p < planes; p++)
        for (size_t j = 0; j < plane_out; j++)
            dinp[p * plane_in + argmax[p * plane_out + j]] += dout[p * plane_out + j];
}

/* PyTorch's adaptive average pooling: output cell i of n over an input of
 * size s averages [floor(i·s/n), ceil((i+1)·s/n)); cell (oh, ow) of OH×OW
 * over H×W averages rows y0..y1-1, columns x0..x1-1. */
struct cell {
    int y0, y1, x0, x1;
};

static struct cell cell_of(int oh, int ow, int H, int W, int OH, int OW)
{
    struct cell c = {(int)((long)oh * H / OH), (int)(((long)(oh + 1) * H + OH - 1) / OH),
                     (int)((long)ow * W / OW), (int)(((long)(ow + 1) * W + OW - 1) / OW)};
    return c;
}

void amil_avgpool_forward(float *out, const float *inp, size_t planes, int H, int W, int OH,
                          int OW)
{
    for (size_t p = 0; p < planes; p++)
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++) {
                struct cell c = cell_of(oh, ow, H, W, OH, OW);
                double sum = 0;
                for (int y = c.y0; y < c.y1; y++)
                    for (int x = c.x0; x < c.x1; x++)
                        sum += inp[(p * H + y) * W + x];
                out[(p * OH + oh) * OW + ow] = (float)(sum / ((c.y1 - c.y0) * (c.x1 - c.x0)));
            }
}

void amil_avgpool_backward(float *dinp, const float *dout, size_t planes, int H, int W,
                           int OH, int OW)
{
    for (size_t p = 0; p < planes; p++)
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++) {
                struct cell c = cell_of(oh, ow, H, W, OH, OW);
                float share = dout[(p * OH + oh) * OW + ow] / ((c.y1 - c.y0) * (c.x1 - c.x0));
                for (int y = c.y0; y < c.y1; y++)
                    for (int x = c.x0; x < c.x1; x++)
                        dinp[(p * H + y) * W + x] += share;
            }
}

void amil_batchnorm_scale(const float *weight, const float *bias, const float *mean,
                          const float *var, int c, float *alpha, float *beta)
{
    float invstd = 1 / sqrtf(var[c] + AMIL_BATCHNORM_EPS);
    *alpha = weight[c] * invstd;
    *beta = bias[c] - mean[c] * *alpha;
}

/* to (N, C, HW) = from · alpha + beta, or with add, to += from · alpha. */
static void batchnorm_map(float *to, const float *from, const float *weight,
                          const float *bias, const float *mean, const float *var, int N,
                          int C, size_t HW, int add)
{
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) {
            float alpha, beta;
            amil_batchnorm_scale(weight, bias, mean, var, c, &alpha, &beta);
            size_t at = ((size_t)n * C + c) * HW;
            for (size_t j = 0; j < HW; j++)
                to[at + j] = add ? to[at + j] + from[at + j] * alpha
                                 : from[at + j] * alpha + beta;
        }
}

void amil_batchnorm_forward(float *out, const float *inp, const float *weight,
                            const float *bias, const float *mean, const float *var, int N,
                            int C, size_t HW)
{
    batchnorm_map(out, inp, weight, bias, mean, var, N, C, HW, 0);
}

void amil_batchnorm_backward(float *dinp, const float *dout, const float *weight,
                             const float *bias, const float *mean, const float *var, int N,
                             int C, size_t HW)
{
    batchnorm_map(dinp, dout, weight, bias, mean, var, N, C, HW, 1);
}

void amil_relu_forward(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)   /* NaN passes through, as in PyTorch */
        x[i] = x[i] > 0 || x[i] != x[i] ? x[i] : 0;
}

void amil_relu_backward(float *dinp, const float *dout, const float *y, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dinp[i] += y[i] > 0 ? dout[i] : 0;
}

void amil_leaky_relu_forward(float *x, size_t n, float slope)
{
    for (size_t i = 0; i < n; i++)
        x[i] = x[i] > 0 ? x[i] : x[i] * slope;
}

void amil_leaky_relu_backward(float *dinp, const float *dout, const float *y, size_t n,
                              float slope)
{
    for (size_t i = 0; i < n; i++)
        dinp[i] += y[i] > 0 ? dout[i] : dout[i] * slope;
}

void amil_guided_relu_backward(float *dinp, const float *dout, const float *y, size_t n,
                               float slope)
{
    for (size_t i = 0; i < n; i++) {
        float d = y[i] > 0 ? dout[i] : dout[i] * slope;
        dinp[i] += d < 0 ? 0 : d;
    }
}

void amil_tanh_forward(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = tanhf(x[i]);
}

void amil_tanh_backward(float *dinp, const float *dout, const float *y, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dinp[i] += dout[i] * (1 - y[i] * y[i]);
}

void amil_sigmoid_forward(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = 1 / (1 + expf(-x[i]));
}

void amil_sigmoid_backward(float *dinp, const float *dout, const float *y, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dinp[i] += dout[i] * (y[i] * (1 - y[i]));
}

void amil_dropout_forward(float *x, float *mask, const double *uniform, size_t n, float p)
{
    float keep = 1 / (1 - p);
    for (size_t i = 0; i < n; i++) {
        mask[i] = uniform[i] >= p ? keep : 0;
        x[i] *= mask[i];
    }
}

void amil_dropout_backward(float *dinp, const float *dout, const float *mask, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dinp[i] += dout[i] * mask[i];
}

void amil_add_forward(float *out, const float *a, const float *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = a[i] + b[i];
}

void amil_add_relu_forward(float *out, const float *a, const float *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float sum = a[i] + b[i];
        out[i] = sum <= 0 ? 0 : sum;   /* NaN passes, as amil_relu_forward's */
    }
}

void amil_add_backward(float *da, float *db, const float *dout, size_t n)
{
    for (size_t i = 0; da && i < n; i++)
        da[i] += dout[i];
    for (size_t i = 0; db && i < n; i++)
        db[i] += dout[i];
}

/* ---- dense ------------------------------------------------------------- */

void amil_linear_forward(float *out, const float *inp, const float *weight,
                         const float *bias, int N, int C, int OC)
{
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OC; o++)
            out[(size_t)n * OC + o] = bias ? bias[o] : 0;
    const struct amil_kernels *k = amil_kernels();
    if (N == 1)   /* one row: read the weights once, not pack them (VGG19's 400 MB) */
        cblas_sgemv(CblasRowMajor, CblasNoTrans, OC, C, 1.0f, weight, C, inp, 1, 1.0f, out, 1);
    else if (N < 16 && k) {   /* a few rows: dot products, no packing (a 10-patch bag's
                                 attention: 3x faster than SGEMM) */
        int tap = 0;
        k->conv_shift_dweight(out, inp, (size_t)C, 0, weight, (size_t)C, 0, &tap, 1, OC, N,
                              (size_t)C, 1);
    } else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, C, 1.0f, inp, C, weight,
                    C, 1.0f, out, OC);
}

void amil_linear_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                          const float *inp, const float *weight, int N, int C, int OC)
{
    if (dbias)
        for (int n = 0; n < N; n++)
            for (int o = 0; o < OC; o++)
                dbias[o] += dout[(size_t)n * OC + o];
    /* one row: vector products, which read the weights once instead of
     * packing them (VGG19's first classifier layer is 400 MB) */
    if (N == 1) {
        if (dweight)
            cblas_sger(CblasRowMajor, OC, C, 1.0f, dout, 1, inp, 1, dweight, C);
        if (dinp)
            cblas_sgemv(CblasRowMajor, CblasTrans, OC, C, 1.0f, weight, C, dout, 1, 1.0f,
                        dinp, 1);
        return;
    }
    /* dweight (OC, C) += dout (N, OC)ᵀ · inp (N, C) */
    if (dweight)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, C, N, 1.0f, dout, OC, inp,
                    C, 1.0f, dweight, C);
    /* dinp (N, C) += dout (N, OC) · weight (OC, C) */
    if (dinp)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, C, OC, 1.0f, dout, OC,
                    weight, C, 1.0f, dinp, C);
}

void amil_linear_forward_reference(float *out, const float *inp, const float *weight,
                                   const float *bias, int N, int C, int OC)
{
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OC; o++) {
            double sum = bias ? bias[o] : 0;
            for (int c = 0; c < C; c++)
                sum += (double)inp[(size_t)n * C + c] * weight[(size_t)o * C + c];
            out[(size_t)n * OC + o] = (float)sum;
        }
}

void amil_column_sums(float *sums, const float *x, int N, int C)
{
    for (int i = 0; i < N; i++)
        for (int c = 0; c < C; c++)
            sums[c] += x[(size_t)i * C + c];
}

/* ---- attention pooling -------------------------------------------------- */

void amil_softmax_forward(float *x, int K, int N)
{
    for (int k = 0; k < K; k++) {
        float *row = x + (size_t)k * N, top = -INFINITY;
        for (int i = 0; i < N; i++)
            top = row[i] > top ? row[i] : top;
        double sum = 0;
        for (int i = 0; i < N; i++)
            sum += row[i] = expf(row[i] - top);
        for (int i = 0; i < N; i++)
            row[i] = (float)(row[i] / sum);
    }
}

void amil_softmax_backward(float *dx, const float *dy, const float *y, int K, int N)
{
    for (int k = 0; k < K; k++) {
        const float *dyr = dy + (size_t)k * N, *yr = y + (size_t)k * N;
        double dot = 0;
        for (int i = 0; i < N; i++)
            dot += (double)dyr[i] * yr[i];
        for (int i = 0; i < N; i++)
            dx[(size_t)k * N + i] += yr[i] * (float)(dyr[i] - dot);
    }
}

void amil_chw_to_rows(float *rows, const float *planes, int N, int C, int HW)
{
    for (int c = 0; c < C; c++)
        for (int n = 0; n < N; n++)
            memcpy(rows + ((size_t)n * C + c) * HW, planes + ((size_t)c * N + n) * HW,
                   sizeof *rows * HW);
}

void amil_rows_to_chw(float *planes, const float *rows, int N, int C, int HW)
{
    for (int c = 0; c < C; c++)
        for (int n = 0; n < N; n++)
            memcpy(planes + ((size_t)c * N + n) * HW, rows + ((size_t)n * C + c) * HW,
                   sizeof *rows * HW);
}

/* ---- resampling ---------------------------------------------------------- */

/* Source position s along a side of in pixels, taken to max(0, s) and at
 * most in - 1: between pixels i0 and i1 at weight l for i1. */
static void between(double s, int in, int *i0, int *i1, double *l)
{
    s = fmax(0, s);
    *i0 = s < in - 1 ? (int)s : in - 1, *i1 = *i0 + (*i0 < in - 1), *l = s - *i0;
}

static float bilinear(const float *map, int W, int y0, int y1, double ly, int x0, int x1,
                      double lx)
{
    return (float)((1 - ly) * ((1 - lx) * map[y0 * W + x0] + lx * map[y0 * W + x1]) +
                   ly * ((1 - lx) * map[y1 * W + x0] + lx * map[y1 * W + x1]));
}

void amil_upsample_bilinear(float *out, int OH, int OW, const float *map, int H, int W)
{
    for (int y = 0; y < OH; y++) {
        int y0, y1, x0, x1;
        double ly, lx;
        between((y + 0.5) * ((double)H / OH) - 0.5, H, &y0, &y1, &ly);
        for (int x = 0; x < OW; x++) {
            between((x + 0.5) * ((double)W / OW) - 0.5, W, &x0, &x1, &lx);
            out[(size_t)y * OW + x] = bilinear(map, W, y0, y1, ly, x0, x1, lx);
        }
    }
}

float amil_bilinear_at(const float *map, int H, int W, double sy, double sx)
{
    int y0, y1, x0, x1;
    double ly, lx;
    between(sy, H, &y0, &y1, &ly);
    between(sx, W, &x0, &x1, &lx);
    return bilinear(map, W, y0, y1, ly, x0, x1, lx);
}

/* ---- losses ------------------------------------------------------------ */

double amil_bernoulli_nll(float p, int y, float *dp)
{
    const float low = 1e-5f, high = 1.f - 1e-5f;
    float q = p < low ? low : p > high ? high : p;
    int clamped = p < low || p > high;
    /* The paper's loss: -(y log q + (1 - y) log(1 - q)), q in float as
     * PyTorch has it, the logarithm in double. */
    double loss = y ? -log(q) : -log1p(-(double)q);
    if (dp)
        *dp = clamped ? 0 : y ? -1 / q : 1 / (1 - q);
    return loss;
}

double amil_cross_entropy(const float *logits, int classes, int y, float *dlogits)
{
    double top = -INFINITY, sum = 0;
    for (int c = 0; c < classes; c++)
        top = logits[c] > top ? logits[c] : top;
    for (int c = 0; c < classes; c++)
        sum += exp(logits[c] - top);
    double log_sum = top + log(sum);
    if (dlogits)
        for (int c = 0; c < classes; c++)
            dlogits[c] = (float)(exp(logits[c] - log_sum) - (c == y));
    return log_sum - logits[y];
}
