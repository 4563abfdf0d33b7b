/* nn.h: neural network layers as forward/backward pairs (llm.c's way).
 *
 * Every pointer's comment gives its shape.  Every backward function
 * accumulates, with +=, both its parameters' gradients and its input's
 * gradient (llm.c's convention): a caller zeroes the gradients once per
 * step, and an activation read by two layers gets the sum of both without
 * a scratch buffer.  So a backward's dinp is never its dout.
 *
 * Convolutions take activations as (C, N, H, W): channel c of every image
 * is one contiguous block, so that a convolution over N images is one
 * matrix product, (OC, C·K·K) × (C·K·K, N·OH·OW), with no transpose after
 * it; for N = 1 that is one image's (C, H, W).  Pooling and pointwise
 * layers see only planes or values, in any order.
 *
 * Each BLAS-backed layer has a plain-loop reference (*_reference) that the
 * unit tests hold it against.
 */
#ifndef AMIL_NN_H
#define AMIL_NN_H

#include <stddef.h>
#include <stdint.h>

/* ---- convolution -------------------------------------------------------- */

/* Output side of a convolution: (size + 2 pad - kernel) / stride + 1. */
int amil_conv_out(int size, int kernel, int stride, int pad);

/* cols (C·K·K, N·OH·OW): row (c, ki, kj), column (n, oh, ow) holds
 * inp (C, N, H, W) at [c][n][oh·stride + ki - pad][ow·stride + kj - pad],
 * 0 off the edge. */
void amil_im2col(float *cols, const float *inp, int N, int C, int H, int W, int K,
                 int stride, int pad);

/* out (OC, N, OH, OW) = weight (OC, C, K, K) * inp (C, N, H, W) + bias (OC).
 * cols is scratch of C·K·K × N·OH·OW floats (im2col), kept for backward. */
void amil_conv2d_forward(float *out, float *cols, const float *inp, const float *weight,
                         const float *bias, int N, int C, int H, int W, int OC, int K,
                         int stride, int pad);
/* The same for one image (N = 1) on the kernels k (kernels.h), a panel
 * of AMIL_CONV_PANEL output positions at a time, for panels first .. end-1
 * (amil_conv2d_panel_count of them; threads may split them): each
 * position's inputs packed in cache, then the kernels' product with the
 * weights as they lie.  scratch holds amil_conv2d_panel_scratch floats,
 * 64-byte aligned.  Each output is its bias plus the sum over (c, ki, kj)
 * in order, whatever the panel; with relu, max(that, 0) (a ReLU folded:
 * no pass of its own over the output). */
#define AMIL_CONV_PANEL 64
struct amil_kernels;
size_t amil_conv2d_panel_scratch(int C, int K, int OC);
static inline int amil_conv2d_panel_count(int OH, int OW)
{
    return (OH * OW + AMIL_CONV_PANEL - 1) / AMIL_CONV_PANEL;
}
void amil_conv2d_panels(const struct amil_kernels *k, float *out, float *scratch,
                        const float *inp, const float *weight, const float *bias, int relu,
                        int C, int H, int W, int OC, int K, int stride, int pad, int first,
                        int end);
/* The same in bfloat16 (k->product_bf16, where the CPU has AVX512_BF16):
 * weight (OC, C·K·K) rounded to bfloat16 once by the caller, C·K·K even;
 * the inputs rounded as they are packed, the sums in float32. */
void amil_conv2d_panels_bf16(const struct amil_kernels *k, float *out, float *scratch,
                             const float *inp, const uint16_t *weight, const float *bias,
                             int relu, int C, int H, int W, int OC, int K, int stride, int pad,
                             int first, int end);
/* dweight (OC, C, K, K) +=, dbias (OC) +=, dinp (C, N, H, W) += (each if not
 * NULL).  cols as forward left it (unread without dweight); dcols is
 * scratch of the same size. */
void amil_conv2d_backward(float *dinp, float *dweight, float *dbias, float *dcols,
                          const float *dout, const float *cols, const float *weight,
                          int N, int C, int H, int W, int OC, int K, int stride, int pad);
void amil_conv2d_forward_reference(float *out, const float *inp, const float *weight,
                                   const float *bias, int N, int C, int H, int W, int OC,
                                   int K, int stride, int pad);

/* ---- pooling and pointwise --------------------------------------------- */

/* Max-pool of K×K windows with stride and padding (padding counts as
 * -inf) over planes of H×W (planes = N·C) to sides OH, OW =
 * amil_conv_out(H or W, K, stride, pad).  argmax (planes, OH, OW) gets each
 * winner's offset in its input plane: the first maximum in scan order, NaN
 * winning, as PyTorch; NULL where no backward will ask (faster). */
void amil_maxpool_forward(float *out, int32_t *argmax, const float *inp, size_t planes,
                          int H, int W, int K, int stride, int pad);
/* dinp (planes, H, W) += dout (planes, OH, OW) at each window's winner. */
void amil_maxpool_backward(float *dinp, const float *dout, const int32_t *argmax,
                           size_t planes, int H, int W, int OH, int OW);

/* PyTorch's adaptive average pool of planes H×W to OH×OW: output cell i of
 * n over a side of s averages [floor(i·s/n), ceil((i+1)·s/n)). */
void amil_avgpool_forward(float *out, const float *inp, size_t planes, int H, int W, int OH,
                          int OW);
/* dinp (planes, H, W) += each cell's dout shared equally over its window. */
void amil_avgpool_backward(float *dinp, const float *dout, size_t planes, int H, int W,
                           int OH, int OW);

/* Batch norm in evaluation mode over (N, C, HW), as PyTorch computes it on
 * the CPU: per channel alpha = weight / √(var + eps), beta = bias - mean ·
 * alpha, out = inp · alpha + beta; weight, bias, mean, var (C); eps is
 * PyTorch's default.  The parameters are frozen: backward gives dinp +=
 * dout · alpha only. */
#define AMIL_BATCHNORM_EPS 1e-5f
/* Channel c's alpha and beta, as the forward computes them (a
 * convolution before it can fold them into its weights). */
void amil_batchnorm_scale(const float *weight, const float *bias, const float *mean,
                          const float *var, int c, float *alpha, float *beta);
void amil_batchnorm_forward(float *out, const float *inp, const float *weight,
                            const float *bias, const float *mean, const float *var, int N,
                            int C, size_t HW);
void amil_batchnorm_backward(float *dinp, const float *dout, const float *weight,
                             const float *bias, const float *mean, const float *var, int N,
                             int C, size_t HW);

/* Forward in place over n values; backward: dinp (n) += dout (n) times the
 * derivative, read from the forward output y (ReLU: y > 0; tanh: 1 - y²;
 * sigmoid: y (1 - y)). */
void amil_relu_forward(float *x, size_t n);
void amil_relu_backward(float *dinp, const float *dout, const float *y, size_t n);
/* Leaky ReLU with slope for x < 0; backward needs the sign, kept in y. */
void amil_leaky_relu_forward(float *x, size_t n, float slope);
void amil_leaky_relu_backward(float *dinp, const float *dout, const float *y, size_t n,
                              float slope);
/* Guided Backpropagation's (leaky) ReLU (Springenberg et al. 2015): what
 * leaky_relu_backward would pass, clamped at 0 (PyTorch: a backward hook's
 * clamp(min=0)); slope 0 for a plain ReLU. */
void amil_guided_relu_backward(float *dinp, const float *dout, const float *y, size_t n,
                               float slope);
void amil_tanh_forward(float *x, size_t n);
void amil_tanh_backward(float *dinp, const float *dout, const float *y, size_t n);
void amil_sigmoid_forward(float *x, size_t n);
void amil_sigmoid_backward(float *dinp, const float *dout, const float *y, size_t n);
/* Inverted dropout: keeps each value with probability 1 - p and scales it
 * by 1 / (1 - p); mask (n) is 0 or 1/(1 - p), drawn from uniform (n) values
 * in [0, 1) the caller supplies (from its seeded generator). */
void amil_dropout_forward(float *x, float *mask, const double *uniform, size_t n, float p);
void amil_dropout_backward(float *dinp, const float *dout, const float *mask, size_t n);
/* A residual sum: out (n) = a + b; backward adds dout to da and db (each
 * if not NULL).  amil_add_relu_forward: out = max(a + b, 0) in one pass,
 * the forward of a sum and the ReLU after it. */
void amil_add_forward(float *out, const float *a, const float *b, size_t n);
void amil_add_relu_forward(float *out, const float *a, const float *b, size_t n);
void amil_add_backward(float *da, float *db, const float *dout, size_t n);

/* ---- dense ------------------------------------------------------------- */

/* out (N, OC) = inp (N, C) · weight (OC, C)ᵀ + bias (OC), PyTorch's Linear. */
void amil_linear_forward(float *out, const float *inp, const float *weight,
                         const float *bias, int N, int C, int OC);
/* dweight (OC, C) +=, dbias (OC) +=, dinp (N, C) += (each if not NULL). */
void amil_linear_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                          const float *inp, const float *weight, int N, int C, int OC);
void amil_linear_forward_reference(float *out, const float *inp, const float *weight,
                                   const float *bias, int N, int C, int OC);

/* sums (C) += the sum over N rows of x (N, C): a bias's gradient. */
void amil_column_sums(float *sums, const float *x, int N, int C);

/* ---- attention pooling -------------------------------------------------- */

/* Softmax of each of K rows of N scores, in place (max subtracted). */
void amil_softmax_forward(float *x, int K, int N);
/* dx (K, N) += y ⊙ (dy - Σ dy ⊙ y), row by row. */
void amil_softmax_backward(float *dx, const float *dy, const float *y, int K, int N);

/* (C, N, H, W) <-> (N, C·H·W): PyTorch's view(-1, C·H·W) of a batch. */
void amil_chw_to_rows(float *rows, const float *planes, int N, int C, int HW);
void amil_rows_to_chw(float *planes, const float *rows, int N, int C, int HW);

/* ---- transformer encoder (forward only: frozen backbones') -------------- */

/* rows (N, C·P·P) = the P×P patches of inp (C, H, W), row by row of
 * patches (N = ⌊H/P⌋·⌊W/P⌋), each in (c, y, x) order: a patch embedding's
 * convolution of kernel and stride P becomes one matrix product. */
void amil_patchify(float *rows, const float *inp, int C, int H, int W, int P);
/* out (N, D) = each row of inp (N, D) less its mean, over the square root
 * of its variance (biased) plus eps, times weight (D) plus bias (D):
 * PyTorch's LayerNorm over the last dimension.  out may be inp. */
void amil_layernorm_forward(float *out, const float *inp, const float *weight,
                            const float *bias, size_t N, int D, float eps);
/* x (n) = x Φ(x) in place, the GELU of erf (not tanh's), on the kernels
 * (Φ within 2e-7 of itself); the reference on libm's erff. */
void amil_gelu_forward(float *x, size_t n);
void amil_gelu_forward_reference(float *x, size_t n);
/* out (T, D) = multi-head self-attention of one sequence: for each of
 * heads heads of d = D / heads columns, softmax(Q Kᵀ / √d) V, where Q, K
 * and V are that head's columns of the thirds of qkv (T, 3D) (PyTorch's
 * in_proj and timm's qkv both stack them so); scratch holds
 * amil_self_attention_scratch() floats.  With out and scratch 64-byte
 * aligned and the heads' columns a multiple of the lanes, its products
 * run on the kernels' (else on BLAS); the softmax on the kernels (e^x
 * within 2e-7). */
void amil_self_attention_forward(float *out, float *scratch, const float *qkv, int T, int D,
                                 int heads);
size_t amil_self_attention_scratch(int T, int D, int heads);
void amil_self_attention_forward_reference(float *out, const float *qkv, int T, int D,
                                           int heads);

/* ---- resampling ---------------------------------------------------------- */

/* out (OH, OW) = map (H, W) scaled bilinearly, as torch's
 * F.interpolate(mode="bilinear", align_corners=False). */
void amil_upsample_bilinear(float *out, int OH, int OW, const float *map, int H, int W);
/* map (H, W) read bilinearly at (sy, sx), in its pixels (pixel (0, 0)'s
 * centre at (0, 0)), clamped to the map: output pixel (y, x) of
 * amil_upsample_bilinear reads it at ((y + 0.5) H / OH - 0.5, ...), so
 * sampling a map at any scale agrees with it. */
float amil_bilinear_at(const float *map, int H, int W, double sy, double sx);

/* ---- losses ------------------------------------------------------------ */

/* The paper's negative Bernoulli log-likelihood of label y ∈ {0, 1} under
 * probability p, clamped to [1e-5, 1 - 1e-5]; *dp gets dloss/dp (zero where
 * the clamp holds, as torch.clamp's gradient).  Returns the loss. */
double amil_bernoulli_nll(float p, int y, float *dp);
/* Softmax cross-entropy of logits (classes) against label y; dlogits gets
 * softmax - onehot.  Returns the loss. */
double amil_cross_entropy(const float *logits, int classes, int y, float *dlogits);

#endif
