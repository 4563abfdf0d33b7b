/* nn.c: the layers of nn.h.  Matrix products go to BLAS (OpenBLAS's
 * cblas_sgemm); everything else is a plain loop over contiguous memory. */
#include <math.h>
#include <string.h>

#include <cblas.h>

#include "kernels.h"
#include "nn.h"
#include "parallel.h"

static int thread_count = 1;

void amil_threads(int n)
{
    thread_count = n > 0 ? n : 1;
    openblas_set_num_threads(thread_count);
}

int amil_thread_count(void) { return thread_count; }

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

/* The adjoint of im2col: dinp (C, N, H, W) = Σ of the cols that read each
 * pixel. */
static void col2im(float *dinp, const float *dcols, int N, int C, int H, int W, int K,
                   int stride, int pad)
{
    int OH = amil_conv_out(H, K, stride, pad), OW = amil_conv_out(W, K, stride, pad);
    size_t columns = (size_t)N * OH * OW;
    memset(dinp, 0, sizeof *dinp * (size_t)C * N * H * W);
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

void amil_maxpool2_forward(float *out, uint8_t *argmax, const float *inp, int planes,
                           int H, int W)
{
    int OH = H / 2, OW = W / 2;
    for (size_t p = 0; p < (size_t)planes; p++) {
        const float *plane = inp + p * H * W;
        for (int oh = 0; oh < OH; oh++) {
            const float *top = plane + (size_t)(2 * oh) * W, *bottom = top + W;
            float *o = out + (p * OH + oh) * OW;
            uint8_t *arg = argmax + (p * OH + oh) * OW;
            for (int ow = 0; ow < OW; ow++) {
                /* the first maximum in scan order wins, and NaN wins as in
                 * PyTorch (val > max || isnan(val)); no branches */
                float best = top[2 * ow], v;
                int k = 0, wins;
                v = top[2 * ow + 1], wins = v > best || v != v;
                best = wins ? v : best, k = wins ? 1 : k;
                v = bottom[2 * ow], wins = v > best || v != v;
                best = wins ? v : best, k = wins ? 2 : k;
                v = bottom[2 * ow + 1], wins = v > best || v != v;
                best = wins ? v : best, k = wins ? 3 : k;
                o[ow] = best;
                arg[ow] = (uint8_t)k;
            }
        }
    }
}

void amil_maxpool2_backward(float *dinp, const float *dout, const uint8_t *argmax,
                            int planes, int H, int W)
{
    int OH = H / 2, OW = W / 2;
    memset(dinp, 0, sizeof *dinp * (size_t)planes * H * W);
    for (size_t p = 0; p < (size_t)planes; p++)
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++) {
                size_t o = (p * OH + oh) * OW + ow;
                int k = argmax[o];
                dinp[p * H * W + (size_t)(2 * oh + k / 2) * W + 2 * ow + k % 2] = dout[o];
            }
}

void amil_relu_forward(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)   /* NaN passes through, as in PyTorch */
        x[i] = x[i] > 0 || x[i] != x[i] ? x[i] : 0;
}

void amil_relu_backward(float *dx, const float *y, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dx[i] = y[i] > 0 ? dx[i] : 0;
}

void amil_leaky_relu_forward(float *x, size_t n, float slope)
{
    for (size_t i = 0; i < n; i++)
        x[i] = x[i] > 0 ? x[i] : x[i] * slope;
}

void amil_leaky_relu_backward(float *dx, const float *y, size_t n, float slope)
{
    for (size_t i = 0; i < n; i++)
        dx[i] = y[i] > 0 ? dx[i] : dx[i] * slope;
}

void amil_tanh_forward(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = tanhf(x[i]);
}

void amil_tanh_backward(float *dx, const float *y, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dx[i] *= 1 - y[i] * y[i];
}

void amil_sigmoid_forward(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = 1 / (1 + expf(-x[i]));
}

void amil_sigmoid_backward(float *dx, const float *y, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dx[i] *= y[i] * (1 - y[i]);
}

void amil_dropout_forward(float *x, float *mask, const double *uniform, size_t n, float p)
{
    float keep = 1 / (1 - p);
    for (size_t i = 0; i < n; i++) {
        mask[i] = uniform[i] >= p ? keep : 0;
        x[i] *= mask[i];
    }
}

void amil_dropout_backward(float *dx, const float *mask, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dx[i] *= mask[i];
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
            cblas_sgemv(CblasRowMajor, CblasTrans, OC, C, 1.0f, weight, C, dout, 1, 0.0f,
                        dinp, 1);
        return;
    }
    /* dweight (OC, C) += dout (N, OC)ᵀ · inp (N, C) */
    if (dweight)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, C, N, 1.0f, dout, OC, inp,
                    C, 1.0f, dweight, C);
    /* dinp (N, C) = dout (N, OC) · weight (OC, C) */
    if (dinp)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, C, OC, 1.0f, dout, OC,
                    weight, C, 0.0f, dinp, C);
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
            dx[(size_t)k * N + i] = yr[i] * (float)(dyr[i] - dot);
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

/* The source of output pixel d along a side: max(0, (d + 0.5) · in / out -
 * 0.5), between pixels i0 and i1 at weight l for i1. */
static void source(int d, int in, int out, int *i0, int *i1, double *l)
{
    double s = fmax(0, (d + 0.5) * ((double)in / out) - 0.5);
    *i0 = (int)s, *i1 = *i0 + (*i0 < in - 1), *l = s - *i0;
}

void amil_upsample_bilinear(float *out, int OH, int OW, const float *map, int H, int W)
{
    for (int y = 0; y < OH; y++) {
        int y0, y1, x0, x1;
        double ly, lx;
        source(y, H, OH, &y0, &y1, &ly);
        for (int x = 0; x < OW; x++) {
            source(x, W, OW, &x0, &x1, &lx);
            out[(size_t)y * OW + x] =
                (float)((1 - ly) * ((1 - lx) * map[y0 * W + x0] + lx * map[y0 * W + x1]) +
                        ly * ((1 - lx) * map[y1 * W + x0] + lx * map[y1 * W + x1]));
        }
    }
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
