/* kernels.c: the lane kernels of kernels.h, written once with GCC's vector
 * extensions and compiled once per instruction set (lanes.h says how):
 * here the 5×5 convolution, pooling and dense kernels of the A-MIL model,
 * and the table of all of them; kernels_shift.c and kernels_winograd.c
 * hold the rest.  Every lane sums in the same order on every path, so the
 * AVX-512 and AVX2 paths give the same bits wherever no sum runs across
 * lanes.
 *
 * Each kernel is a loop over register tiles: a tile keeps its accumulators
 * in registers for a whole reduction, with sizes fixed at compile time (the
 * TILE_* constants of lanes.h, chosen for the registers each set has: 32 vector
 * registers with AVX-512, 16 otherwise); edges are tiles of smaller fixed
 * sizes, selected by a switch so that each is compiled with constants. */
#include "compute/lanes.h"

/* ---- 5×5 convolution --------------------------------------------------- */

/* out rows y, columns x0 .. x0+xb-1, channels oc0 .. oc0+ocb-1: the sum over
 * c, ki, kj in that order, so every tiling gives the same bits. */
INLINE void conv5_tile(float *out, const float *in, const float *weight, int C, int H,
                       int W, int oc0, int y, int x0, const int xb, const int ocb)
{
    int OH = H - 4, OW = W - 4;
    vf acc[6][8];
    for (int o = 0; o < ocb; o++)
        for (int j = 0; j < xb; j++)
            acc[o][j] = (vf){0};
    for (int c = 0; c < C; c++)
        for (int ki = 0; ki < 5; ki++) {
            const float *row = in + ((size_t)(c * H + y + ki) * W + x0) * LANES;
            const float *taps = weight + ((size_t)oc0 * C + c) * 25 + ki * 5;
            for (int kj = 0; kj < 5; kj++) {
                vf w[6];
                for (int o = 0; o < ocb; o++)
                    w[o] = splat(taps[(size_t)o * C * 25 + kj]);
                for (int j = 0; j < xb; j++) {
                    vf x = V(row + (size_t)(j + kj) * LANES);
                    for (int o = 0; o < ocb; o++)
                        acc[o][j] += w[o] * x;
                }
            }
        }
    for (int o = 0; o < ocb; o++)
        for (int j = 0; j < xb; j++)
            V(out + (((size_t)(oc0 + o) * OH + y) * OW + x0 + j) * LANES) = acc[o][j];
}

#define CONV5_TILE(out, in, weight, C, H, W, oc0, y, x0, xb, ocb) \
    conv5_tile(out, in, weight, C, H, W, oc0, y, x0, xb, ocb)
#define CONV5_EDGE(out, in, weight, C, H, W, oc0, y, x0, xb) \
    FIXED(ocb, CONV5_TILE, out, in, weight, C, H, W, oc0, y, x0, xb)

void NAME(conv5)(float *out, const float *in, const float *weight, int C, int H,
                        int W, int OC)
{
    int OH = H - 4, OW = W - 4;
    for (int oc0 = 0; oc0 < OC; oc0 += TILE_OC) {
        int ocb = OC - oc0 < TILE_OC ? OC - oc0 : TILE_OC;
        for (int y = 0; y < OH; y++) {
            int x0 = 0;
            if (ocb == TILE_OC)
                for (; x0 + TILE_X <= OW; x0 += TILE_X)
                    conv5_tile(out, in, weight, C, H, W, oc0, y, x0, TILE_X, TILE_OC);
            else
                for (; x0 + TILE_X <= OW; x0 += TILE_X)
                    CONV5_EDGE(out, in, weight, C, H, W, oc0, y, x0, TILE_X);
            for (; x0 < OW; x0++)
                CONV5_EDGE(out, in, weight, C, H, W, oc0, y, x0, 1);
        }
    }
}

/* dweight for channels oc0 .. oc0+ocb-1, input channel c, kernel row ki:
 * the 5 taps of that row, summed over groups, positions and lanes. */
INLINE void dweight_tile(float *dweight, const float *dout, const float *in, int groups,
                         size_t dout_stride, size_t in_stride, int C, int H, int W,
                         int oc0, int c, int ki, const int ocb)
{
    int OH = H - 4, OW = W - 4;
    size_t plane = (size_t)OH * OW * LANES;
    vf acc[6][5];
    for (int o = 0; o < ocb; o++)
        for (int kj = 0; kj < 5; kj++)
            acc[o][kj] = (vf){0};
    for (int g = 0; g < groups; g++)
        for (int y = 0; y < OH; y++) {
            const float *row = in + g * in_stride + ((size_t)(c * H + y + ki) * W) * LANES;
            const float *d = dout + g * dout_stride + ((size_t)oc0 * OH + y) * OW * LANES;
            for (int x = 0; x < OW; x++) {
                vf taps[5];
                for (int kj = 0; kj < 5; kj++)
                    taps[kj] = V(row + (size_t)(x + kj) * LANES);
                for (int o = 0; o < ocb; o++) {
                    vf dv = V(d + o * plane + (size_t)x * LANES);
                    for (int kj = 0; kj < 5; kj++)
                        acc[o][kj] += dv * taps[kj];
                }
            }
        }
    for (int o = 0; o < ocb; o++)
        for (int kj = 0; kj < 5; kj++)
            dweight[((size_t)(oc0 + o) * C + c) * 25 + ki * 5 + kj] += sum_lanes(acc[o][kj]);
}

#define DWEIGHT_TILE(dw, dout, in, groups, ds, is, C, H, W, oc0, c, ki, ocb) \
    dweight_tile(dw, dout, in, groups, ds, is, C, H, W, oc0, c, ki, ocb)

void NAME(conv5_dweight)(float *dweight, const float *dout, const float *in,
                                int groups, size_t dout_stride, size_t in_stride, int C,
                                int H, int W, int OC)
{
    for (int oc0 = 0; oc0 < OC; oc0 += TILE_DW_OC) {
        int ocb = OC - oc0 < TILE_DW_OC ? OC - oc0 : TILE_DW_OC;
        for (int c = 0; c < C; c++)
            for (int ki = 0; ki < 5; ki++)
                FIXED(ocb, DWEIGHT_TILE, dweight, dout, in, groups, dout_stride, in_stride,
                      C, H, W, oc0, c, ki)
    }
}

/* din row yy of channel c, all of its W = ow + 4 columns in registers: the
 * sum over oc, ki, kj of weight × dout, in that order (as the general loop
 * below adds them). */
INLINE void dinput_row(float *din, const float *dout, const float *weight, int C, int H,
                       int OC, int c, int yy, const int ow)
{
    const int W = ow + 4;
    int OH = H - 4;
    vf acc[12];
    for (int x = 0; x < W; x++)
        acc[x] = (vf){0};
    for (int oc = 0; oc < OC; oc++)
        for (int ki = 0; ki < 5; ki++) {
            int y = yy - ki;
            if (y < 0 || y >= OH)
                continue;
            const float *d = dout + ((size_t)oc * OH + y) * ow * LANES;
            const float *taps = weight + ((size_t)oc * C + c) * 25 + ki * 5;
            vf dv[8];
            for (int x = 0; x < ow; x++)
                dv[x] = V(d + (size_t)x * LANES);
            for (int kj = 0; kj < 5; kj++) {
                vf w = splat(taps[kj]);
                for (int x = 0; x < ow; x++)
                    acc[x + kj] += w * dv[x];
            }
        }
    for (int x = 0; x < W; x++)
        V(din + ((size_t)c * H + yy) * W * LANES + (size_t)x * LANES) += acc[x];
}

void NAME(conv5_dinput)(float *din, const float *dout, const float *weight, int C,
                               int H, int W, int OC)
{
    int OH = H - 4, OW = W - 4;
    if (OW == 8) {   /* the paper's conv2 (28×28 patches): rows in registers */
        for (int c = 0; c < C; c++)
            for (int yy = 0; yy < H; yy++)
                dinput_row(din, dout, weight, C, H, OC, c, yy, 8);
        return;
    }
    for (int c = 0; c < C; c++)
        for (int oc = 0; oc < OC; oc++)
            for (int ki = 0; ki < 5; ki++)
                for (int y = 0; y < OH; y++) {
                    float *row = din + ((size_t)c * H + y + ki) * W * LANES;
                    const float *d = dout + ((size_t)oc * OH + y) * OW * LANES;
                    const float *taps = weight + ((size_t)oc * C + c) * 25 + ki * 5;
                    for (int kj = 0; kj < 5; kj++) {
                        vf w = splat(taps[kj]);
                        for (int x = 0; x < OW; x++)
                            V(row + (size_t)(x + kj) * LANES) += w * V(d + (size_t)x * LANES);
                    }
                }
}

/* ---- pooling, bias and ReLU --------------------------------------------- */

void NAME(pool_bias_relu)(float *out, uint8_t *arg, const float *in, const float *bias,
                                 int C, int H, int W)
{
    int OH = H / 2, OW = W / 2;
    for (int c = 0; c < C; c++) {
        vf b = splat(bias[c]);
        for (int oy = 0; oy < OH; oy++)
            for (int ox = 0; ox < OW; ox++) {
                const float *p = in + (((size_t)c * H + 2 * oy) * W + 2 * ox) * LANES;
                vf window[4] = {V(p), V(p + LANES), V(p + (size_t)W * LANES),
                                V(p + (size_t)(W + 1) * LANES)};
                vf best = window[0];
                vi k = (vi){0};
                for (int q = 1; q < 4; q++) {
                    /* the first maximum in scan order; NaN wins, as PyTorch's */
                    vi wins = (window[q] > best) | (window[q] != window[q]);
                    best = blend(wins, window[q], best);
                    k = (k & ~wins) | (((vi){0} + q) & wins);
                }
                /* max commutes with adding the channel's bias and with ReLU:
                 * PyTorch's conv + bias, ReLU, pool, on a quarter of the values */
                vf v = best + b;
                vi keep = (v > (vf){0}) | (v != v);
                size_t o = ((size_t)c * OH + oy) * OW + ox;
                V(out + o * LANES) = blend(keep, v, (vf){0});
                vb kb = __builtin_convertvector(k, vb);
                memcpy(arg + o * LANES, &kb, LANES);
            }
    }
}

void NAME(unpool_relu)(float *din, float *dbias, const float *dout, const float *out,
                              const uint8_t *arg, int C, int H, int W)
{
    int OH = H / 2, OW = W / 2;   /* floor mode: an odd last row or column gets zero */
    for (int c = 0; c < C; c++) {
        vf sum = (vf){0};
        for (int y = 2 * OH; y < H; y++)
            memset(din + ((size_t)c * H + y) * W * LANES, 0, sizeof(float) * W * LANES);
        for (int y = 0; y < 2 * OH && 2 * OW < W; y++)
            V(din + (((size_t)c * H + y) * W + W - 1) * LANES) = (vf){0};
        for (int oy = 0; oy < OH; oy++)
            for (int ox = 0; ox < OW; ox++) {
                size_t o = ((size_t)c * OH + oy) * OW + ox;
                vf g = blend(V(out + o * LANES) > (vf){0}, V(dout + o * LANES), (vf){0});
                sum += g;
                vb kb;
                memcpy(&kb, arg + o * LANES, LANES);
                vi k = __builtin_convertvector(kb, vi);
                float *p = din + (((size_t)c * H + 2 * oy) * W + 2 * ox) * LANES;
                float *window[4] = {p, p + LANES, p + (size_t)W * LANES,
                                    p + (size_t)(W + 1) * LANES};
                for (int q = 0; q < 4; q++)
                    V(window[q]) = blend(k == q, g, (vf){0});
            }
        dbias[c] += sum_lanes(sum);
    }
}

/* ---- dense -------------------------------------------------------------- */

INLINE void dense_tile(float *out, const float *x, const float *a, size_t a_row,
                       size_t a_col, const float *bias, int relu, int accumulate, int M,
                       int K, int m0, int g0, const int gb, const int mb)
{
    vf acc[6][6];
    for (int i = 0; i < mb; i++)
        for (int j = 0; j < gb; j++)
            acc[i][j] = (vf){0};
    for (int k = 0; k < K; k++) {
        vf xs[6];
        for (int j = 0; j < gb; j++)
            xs[j] = V(x + ((size_t)(g0 + j) * K + k) * LANES);
        for (int i = 0; i < mb; i++) {
            vf w = splat(a[(size_t)(m0 + i) * a_row + (size_t)k * a_col]);
            for (int j = 0; j < gb; j++)
                acc[i][j] += w * xs[j];
        }
    }
    for (int i = 0; i < mb; i++)
        for (int j = 0; j < gb; j++) {
            vf v = acc[i][j] + (bias ? bias[m0 + i] : 0.0f);
            if (relu)   /* NaN passes, as PyTorch's */
                v = blend((v > (vf){0}) | (v != v), v, (vf){0});
            float *o = out + ((size_t)(g0 + j) * M + m0 + i) * LANES;
            V(o) = accumulate ? V(o) + v : v;
        }
}

#define DENSE_TILE(out, x, a, ar, ac, bias, relu, add, M, K, m0, g0, gb, mb) \
    dense_tile(out, x, a, ar, ac, bias, relu, add, M, K, m0, g0, gb, mb)
#define DENSE_EDGE(out, x, a, ar, ac, bias, relu, add, M, K, m0, g0, gb) \
    FIXED(mb, DENSE_TILE, out, x, a, ar, ac, bias, relu, add, M, K, m0, g0, gb)

void NAME(dense)(float *out, const float *x, const float *a, size_t a_row,
                        size_t a_col, const float *bias, int relu, int accumulate,
                        int groups, int M, int K)
{
    for (int g0 = 0; g0 < groups; g0 += TILE_G) {
        int gb = groups - g0 < TILE_G ? groups - g0 : TILE_G;
        for (int m0 = 0; m0 < M; m0 += TILE_M) {
            int mb = M - m0 < TILE_M ? M - m0 : TILE_M;
            if (gb == TILE_G && mb == TILE_M)
                dense_tile(out, x, a, a_row, a_col, bias, relu, accumulate, M, K, m0, g0,
                           TILE_G, TILE_M);
            else if (gb == TILE_G)
                DENSE_EDGE(out, x, a, a_row, a_col, bias, relu, accumulate, M, K, m0, g0,
                           TILE_G)
            else
                for (int g = g0; g < groups; g++)
                    DENSE_EDGE(out, x, a, a_row, a_col, bias, relu, accumulate, M, K, m0, g,
                               1)
        }
    }
}

INLINE void dense_dweight_tile(float *d, const float *x, const float *y, int groups, int M,
                               int K, int m0, int k0, const int kb, const int mb)
{
    vf acc[6][6];
    for (int i = 0; i < mb; i++)
        for (int j = 0; j < kb; j++)
            acc[i][j] = (vf){0};
    for (int g = 0; g < groups; g++) {
        vf ys[6];
        for (int j = 0; j < kb; j++)
            ys[j] = V(y + ((size_t)g * K + k0 + j) * LANES);
        for (int i = 0; i < mb; i++) {
            vf xv = V(x + ((size_t)g * M + m0 + i) * LANES);
            for (int j = 0; j < kb; j++)
                acc[i][j] += xv * ys[j];
        }
    }
    for (int i = 0; i < mb; i++)
        for (int j = 0; j < kb; j++)
            d[(size_t)(m0 + i) * K + k0 + j] += sum_lanes(acc[i][j]);
}

#define DDW_TILE(d, x, y, groups, M, K, m0, k0, kb, mb) \
    dense_dweight_tile(d, x, y, groups, M, K, m0, k0, kb, mb)
#define DDW_EDGE(d, x, y, groups, M, K, m0, k0, kb) \
    FIXED(mb, DDW_TILE, d, x, y, groups, M, K, m0, k0, kb)

void NAME(dense_dweight)(float *d, const float *x, const float *y, int groups, int M,
                                int K)
{
    for (int m0 = 0; m0 < M; m0 += TILE_DM) {
        int mb = M - m0 < TILE_DM ? M - m0 : TILE_DM;
        int k0 = 0;
        if (mb == TILE_DM)
            for (; k0 + TILE_DK <= K; k0 += TILE_DK)
                dense_dweight_tile(d, x, y, groups, M, K, m0, k0, TILE_DK, TILE_DM);
        else
            for (; k0 + TILE_DK <= K; k0 += TILE_DK)
                DDW_EDGE(d, x, y, groups, M, K, m0, k0, TILE_DK)
        for (; k0 < K; k0++)
            DDW_EDGE(d, x, y, groups, M, K, m0, k0, 1)
    }
}

const struct amil_kernels NAME(amil_kernels) = {
    .name = STR(ISA),
    .lanes = LANES,
    .conv5 = NAME(conv5),
    .conv5_dweight = NAME(conv5_dweight),
    .conv5_dinput = NAME(conv5_dinput),
    .pool_bias_relu = NAME(pool_bias_relu),
    .unpool_relu = NAME(unpool_relu),
    .dense = NAME(dense),
    .dense_dweight = NAME(dense_dweight),
    .shift_block = LANES,
    .conv_shift = NAME(conv_shift),
    .conv_shift_dweight = NAME(conv_shift_dweight),
    .dots = NAME(dots),
    .transpose = NAME(transpose),
    .product = NAME(product),
    .product_add = NAME(product_add),
#if LANES == 16
    .product_bf16 = NAME(product_bf16),
    .to_bf16 = NAME(to_bf16),
    .pairs_bf16 = NAME(pairs_bf16),
#endif
    .gelu = NAME(gelu),
    .softmax = NAME(softmax),
    .winograd_input_row = NAME(winograd_input_row),
    .winograd_output = NAME(winograd_output),
    .winograd5_weights = NAME(winograd5_weights),
    .winograd5_input = NAME(winograd5_input),
    .winograd5_output = NAME(winograd5_output),
    .winograd5_doutput = NAME(winograd5_doutput),
    .winograd5_dweights = NAME(winograd5_dweights),
    .winograd5_dinput = NAME(winograd5_dinput),
};
