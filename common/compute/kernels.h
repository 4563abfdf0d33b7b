/* kernels.h: the attention-MIL network's heavy layers over groups of
 * patches held in vector lanes, one implementation per instruction set,
 * chosen at run time.
 *
 * A *group* is `lanes` patches (16 with AVX-512, 8 with AVX2, 4 in the
 * portable path).  Its activations are laid out (C, H, W, lanes): every
 * pixel is one vector holding that pixel of each patch of the group, so a
 * 5×5 convolution is multiply-adds of broadcast weights with whole vectors,
 * with no im2col, no waste on any spatial size and no shuffles; pooling,
 * bias and ReLU are vector operations.  Patches are independent, so every
 * lane computes exactly what one patch alone would.
 *
 * Every buffer a kernel reads or writes in lane layout is aligned to 64
 * bytes.  Kernels of a backward pass add (+=) what they compute to the
 * gradient they are given, as nn.h's layers do: parameter gradients sums
 * over the groups, positions and lanes, input gradients each lane's own, so
 * the caller zeroes a gradient once and every contribution adds to it; the
 * forward kernels overwrite their output (dense and transpose, which serve
 * both, add when asked).  One source file (kernels.c) is compiled once per instruction
 * set; amil_kernels() picks the best this CPU runs, or the one named by the
 * environment variable AMIL_ISA (avx512, avx2, portable).
 */
#ifndef AMIL_KERNELS_H
#define AMIL_KERNELS_H

#include <stddef.h>
#include <stdint.h>

struct amil_kernels {
    const char *name;   /* "avx512", "avx2" or "portable" */
    int lanes;          /* patches in a group: 16, 8 or 4 */

    /* out (OC, H-4, W-4) = weight (OC, C, 5, 5) ⋆ in (C, H, W), a valid
     * 5×5 cross-correlation (PyTorch's conv2d), no bias. */
    void (*conv5)(float *out, const float *in, const float *weight, int C, int H, int W,
                  int OC);
    /* dweight (OC, C, 5, 5) += Σ over groups, positions and lanes of
     * dout (OC, H-4, W-4) × the input in (C, H, W) under each tap; group g's
     * are at dout + g·dout_stride and in + g·in_stride (floats). */
    void (*conv5_dweight)(float *dweight, const float *dout, const float *in, int groups,
                          size_t dout_stride, size_t in_stride, int C, int H, int W, int OC);
    /* din (C, H, W) += the adjoint of conv5 applied to dout (OC, H-4, W-4). */
    void (*conv5_dinput)(float *din, const float *dout, const float *weight, int C, int H,
                         int W, int OC);
    /* out (C, H/2, W/2) = ReLU(2×2 max-pool of in (C, H, W) + bias (C)),
     * PyTorch's floor mode; arg (C, H/2, W/2, lanes) says which of the four
     * won (the first in scan order on ties; NaN wins, as in PyTorch). */
    void (*pool_bias_relu)(float *out, uint8_t *arg, const float *in, const float *bias,
                           int C, int H, int W);
    /* Its backward: g = dout (C, H/2, W/2) where out > 0, else 0;
     * dbias (C) += Σ g; din (C, H, W) = g at each window's winner, zero
     * elsewhere (and in an odd last row or column, outside every window). */
    void (*unpool_relu)(float *din, float *dbias, const float *dout, const float *out,
                        const uint8_t *arg, int C, int H, int W);
    /* out[g] (M) = Σ_k A(m, k) x[g] (K) (+ bias (M)) (then ReLU if relu),
     * for groups g, vectors; x[g] = x + g·K·lanes, out[g] = out + g·M·lanes;
     * A(m, k) = a[m·a_row + k·a_col], so a is a matrix or its transpose
     * (a linear layer's input gradient).  With accumulate, out += that. */
    void (*dense)(float *out, const float *x, const float *a, size_t a_row, size_t a_col,
                  const float *bias, int relu, int accumulate, int groups, int M, int K);
    /* d (M, K) += Σ over groups and lanes of x[g] (M) ⊗ y[g] (K). */
    void (*dense_dweight)(float *d, const float *x, const float *y, int groups, int M, int K);

    /* The CNN baselines' stride-1 convolutions, one image in plain (C, H, W)
     * layout (not lanes): with the input zero-padded and each channel
     * flattened, output position p (row y, column x of the padded width)
     * reads input p + off[t] under tap t, so a convolution is a sum of
     * shifted rows times broadcast weights, vectors along p, no im2col.
     * out[oc·out_stride + p] = bias[oc] (0 if bias is NULL; with accumulate,
     * out's own value instead) + Σ over c < C, t < T of
     * weight[(oc·C + c)·T + t] · in[c·in_stride + p + off[t]], for p from
     * p_first to p_end (multiples of shift_block, one vector; no alignment
     * asked).  The caller makes in readable up to the last p plus the
     * largest offset in every channel. */
    int shift_block;
    void (*conv_shift)(float *out, size_t out_stride, const float *in, size_t in_stride,
                       const float *weight, const float *bias, const int *off, int T, int C,
                       int OC, int accumulate, size_t p_first, size_t p_end);
    /* conv_shift's weight gradient, over n items (images or patches):
     * dweight (OC, C·T) += Σ over i < n, p < P of
     * dout[i·dout_item + oc·dout_stride + p] ·
     * in[i·in_item + c·in_stride + p + off[t]], at [oc][c·T + t]; no
     * alignment asked, nothing read past position P - 1.  With one item
     * and one tap, rows of dot products: out (OC, C) += dout (OC, P) ·
     * in (C, P)ᵀ (mil_features.c's linear layer, nn.c's small linear layers). */
    void (*conv_shift_dweight)(float *dweight, const float *dout, size_t dout_stride,
                               size_t dout_item, const float *in, size_t in_stride,
                               size_t in_item, const int *off, int T, int C, int OC,
                               size_t P, int n);
    /* Rows of dot products, batches of them: out[b] (M, N) += a[b] (M, K) ·
     * x[b] (N, K)ᵀ, a[b] = a + b·a_batch (floats), x[b] and out[b] alike;
     * K a multiple of lanes, a and x 64-byte aligned and their rows too
     * (Winograd's weight gradient in the domain of U, mil_features.c). */
    void (*dots)(float *out, size_t out_batch, const float *a, size_t a_batch, const float *x,
                 size_t x_batch, int M, int N, size_t K, int batches);
    /* Transposes lanes × lanes tiles: dst[k·dst_tile + r·dst_row + c] =
     * src[k·src_tile + c·src_row + r] for tiles k < tiles (lanes layout to
     * planes and back); with accumulate, dst += that; no alignment asked. */
    void (*transpose)(float *dst, size_t dst_row, size_t dst_tile, const float *src,
                      size_t src_row, size_t src_tile, size_t tiles, int accumulate);
    /* out (N, OC) rows n_first .. n_end-1, out_stride floats apart, = bias
     * (OC; 0 if NULL) + Σ over c < C of x[c·x_c + n·x_n] · a (C, OC) row c:
     * the outputs in lanes, x broadcast, read down its columns (x_n = 1:
     * Winograd's products, cnn_pass.c; the linear layer's input gradient,
     * mil_features.c) or along its rows (x_c = 1: a transformer's linear
     * layers, a panel of outputs at a time).  OC and out_stride multiples
     * of lanes; out 64-byte aligned. */
    void (*product)(float *out, size_t out_stride, const float *x, size_t x_c, size_t x_n,
                    const float *a, const float *bias, int C, int OC, int n_first, int n_end);
    /* The same sum added to out: out += Σ over c of x[c·x_c + n·x_n] · a
     * row c, the sum made first (the linear layer's weight gradient,
     * mil_features.c); out needs no alignment. */
    void (*product_add)(float *out, size_t out_stride, const float *x, size_t x_c, size_t x_n,
                        const float *a, int C, int OC, int n_first, int n_end);
    /* The product in bfloat16 (kernels_bf16.c), NULL in a set without it
     * (only AVX-512's has it, and only a CPU with AVX512_BF16 runs it:
     * amil_cpu_has_bf16): out (N, OC) rows n_first .. n_end-1, out_stride
     * apart, = bias (or 0) + Σ over pairs p of x[n·x_n + p·x_p + k] ·
     * a[p·a_stride + 2o + k], k = 0, 1: x's pairs (along its rows, x_p =
     * 2: a transformer's linear layers, a convolution's panels; or down
     * its columns, x_n = 2: Winograd's products) and a's rows of pairs
     * (C/2, OC, 2) in bfloat16, the sums in float32.  OC a multiple of 16;
     * out 64-byte aligned.  to_bf16: dst (n) = src rounded to the nearest
     * bfloat16, ties to even.  pairs_bf16: dst (n, 2) = (row0[j], row1[j])
     * so rounded, two rows of an operand made pairs. */
    void (*product_bf16)(float *out, size_t out_stride, const uint16_t *x, size_t x_p,
                         size_t x_n, const uint16_t *a, size_t a_stride, const float *bias,
                         int pairs, int OC, int n_first, int n_end);
    void (*to_bf16)(uint16_t *dst, const float *src, size_t n);
    void (*pairs_bf16)(uint16_t *dst, const float *row0, const float *row1, size_t n);
    /* A transformer's elementwise work (kernels_transformer.c): x (n) =
     * GELU(x) in place, Φ within 2e-7 of itself (erfc's Chebyshev fit);
     * each of rows rows of x (rows, n) softmaxed in place, e^x within 2e-7. */
    void (*gelu)(float *x, size_t n);
    void (*softmax)(float *x, int rows, int n);
    /* Winograd F(2×2, 3×3)'s input transform of one row of tw blocks:
     * rows holds the block row's four input rows, row_stride floats apart,
     * each as two arrays of row_stride / 2 floats, its column 2k-1 at k,
     * then its column 2k at k; block tx's 16 values Bᵀ d B go to
     * v[x·plane + tx], x = 4i + j (cnn_pass.c).  It reads whole vectors: up to
     * a vector past the last row's end. */
    void (*winograd_input_row)(float *v, size_t plane, const float *rows, size_t row_stride,
                               int tw);
    /* Its output transform: out (OC, H, W) = bias (OC, or NULL) + Aᵀ m A of
     * each 2×2 block's m in block rows ty0 .. ty1-1, M (16, their blocks,
     * OC) aligned, OC a multiple of lanes; with relu, max(that, 0). */
    void (*winograd_output)(float *out, const float *M, const float *bias, int relu, int OC,
                            int H, int W, int ty0, int ty1);

    /* Winograd F(4×4, 5×5), the attention-MIL model's convolutions in lanes
     * (mil_features.c).  The weights: U (64, pairs) = G g Gᵀ of each 5×5
     * kernel g, read from gt (25, pairs), its taps transposed (pairs = OC·C,
     * in U's order (OC, C)). */
    void (*winograd5_weights)(float *U, const float *gt, size_t pairs);
    /* The input: V (64, C, T, lanes) = Bᵀ d B of each 8×8 tile d of in (C,
     * H, H, lanes), tiles 4 apart, T = ((H - 4) / 4)² of them. */
    void (*winograd5_input)(float *V, const float *in, int C, int H);
    /* out (OC, H, H, lanes) = conv5's output, no bias: Aᵀ (U ⊙ V summed over
     * C) A of each 4×4 tile; T = (H / 4)² a multiple of 4; m is scratch of
     * 64 · 4 · 6 vectors. */
    void (*winograd5_output)(float *out, float *m, const float *U, const float *V, int C,
                             int OC, int H);
    /* Its backward, the adjoints of the three transforms (the gradient of
     * the function the forward computes, so within rounding of conv5's).
     * doutput: dM (64, OC, T, lanes) = A dy Aᵀ of each 4×4 tile of dout
     * (OC, H, H, lanes), the gradient of the products.  The weights'
     * gradient is then dU (64, OC·C) += Σ over tiles and lanes of dM ⊗ V
     * (dots), and dweights: dgt (25, pairs) = Gᵀ dU G of each
     * pair, winograd5_weights's adjoint (written, not added).  dinput:
     * din (C, H+4, H+4, lanes) += B dV Bᵀ of each tile, dV (64, C, T,
     * lanes) the products of Ut (64, C, OC), U's transpose, with dM; m is
     * winograd5_output's scratch. */
    void (*winograd5_doutput)(float *dM, const float *dout, int OC, int H);
    void (*winograd5_dweights)(float *dgt, const float *dU, size_t pairs);
    void (*winograd5_dinput)(float *din, float *m, const float *Ut, const float *dM, int C,
                             int OC, int H);
};

/* The kernels this process uses: AMIL_ISA's if set (NULL with a message if
 * this CPU cannot run it or the name is unknown), else the best available.
 * Chosen once. */
const struct amil_kernels *amil_kernels(void);
/* Whether this CPU has AVX512_BF16 (vdpbf16ps), which product_bf16 needs. */
int amil_cpu_has_bf16(void);
/* Every set this CPU can run, best first; returns how many (at most 3). */
int amil_kernels_available(const struct amil_kernels **sets);

extern const struct amil_kernels amil_kernels_avx512, amil_kernels_avx2,
    amil_kernels_portable;

#endif
