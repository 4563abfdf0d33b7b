/* kernels.c: the lane kernels of kernels.h, written once with GCC's vector
 * extensions and compiled once per instruction set (the Makefile defines
 * ISA and LANES and passes -mavx512f, -mavx2 -mfma, or nothing).  The
 * file is compiled with -ffp-contract=fast, so that acc += w * x becomes one
 * fused multiply-add where the instruction set has one; every lane sums in
 * the same order on every path, so the AVX-512 and AVX2 paths give the same
 * bits wherever no sum runs across lanes.
 *
 * Each kernel is a loop over register tiles: a tile keeps its accumulators
 * in registers for a whole reduction, with sizes fixed at compile time (the
 * TILE_* constants below, chosen for the registers each set has: 32 vector
 * registers with AVX-512, 16 otherwise); edges are tiles of smaller fixed
 * sizes, selected by a switch so that each is compiled with constants. */
#include <stdlib.h>
#include <string.h>
#if LANES > 4
#include <immintrin.h>
#endif

#include "amil.h"
#include "kernels.h"

#if !defined(ISA) || !defined(LANES)
#error "kernels.c is compiled with -DISA=name -DLANES=n (see the Makefile)"
#endif

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define NAME(f) CAT(f##_, ISA)
#define STR_(a) #a
#define STR(a) STR_(a)

typedef float vf __attribute__((vector_size(LANES * 4)));
typedef int32_t vi __attribute__((vector_size(LANES * 4)));
typedef uint8_t vb __attribute__((vector_size(LANES)));

/* the vector at p (LANES floats, aligned) */
#define V(p) (*(vf *)(p))
#define INLINE static inline __attribute__((always_inline))

#if LANES == 16   /* 32 registers */
enum { TILE_OC = 3, TILE_X = 8, TILE_DW_OC = 4, TILE_M = 6, TILE_G = 4, TILE_DM = 4,
       TILE_DK = 6, TILE_SHIFT_OC = 4, TILE_SHIFT_V = 6, TILE_PN = 6, TILE_PV = 4,
       TILE_WO = 5 };
#else             /* 16 registers */
enum { TILE_OC = 2, TILE_X = 4, TILE_DW_OC = 2, TILE_M = 3, TILE_G = 3, TILE_DM = 2,
       TILE_DK = 4, TILE_SHIFT_OC = 4, TILE_SHIFT_V = 3, TILE_PN = 3, TILE_PV = 3,
       TILE_WO = 2 };
#endif

/* s in every lane: one broadcast (not 0 + s, which costs an add and turns
 * -0 into +0) */
INLINE vf splat(float s) { return __builtin_shuffle((vf){s}, (vi){0}); }

/* unaligned */
INLINE vf load_any(const float *p)
{
    vf x;
    memcpy(&x, p, sizeof x);
    return x;
}
INLINE void store_any(float *p, vf x) { memcpy(p, &x, sizeof x); }
/* the first n (< LANES) floats at p, the other lanes zero; reads nothing
 * past them */
INLINE vf load_first(const float *p, int n)
{
#if LANES == 16
    return (vf)_mm512_maskz_loadu_ps((__mmask16)((1u << n) - 1), p);
#elif LANES == 8
    __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(n),
                                      _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    return (vf)_mm256_maskload_ps(p, mask);
#else
    vf x = {0};
    for (int l = 0; l < n; l++)
        x[l] = p[l];
    return x;
#endif
}

INLINE float sum_lanes(vf v)
{
    float s = 0;
    for (int l = 0; l < LANES; l++)
        s += v[l];
    return s;
}

/* where mask (all ones or zeros per lane) is set, a; elsewhere b */
INLINE vf blend(vi mask, vf a, vf b) { return (vf)(((vi)a & mask) | ((vi)b & ~mask)); }

/* Calls TILE(..., n) with n a compile-time constant equal to the runtime
 * count (1 to 6), so that each edge tile is compiled for its size. */
#define FIXED(count, TILE, ...)                                   \
    switch (count) {                                              \
    case 1: TILE(__VA_ARGS__, 1); break;                          \
    case 2: TILE(__VA_ARGS__, 2); break;                          \
    case 3: TILE(__VA_ARGS__, 3); break;                          \
    case 4: TILE(__VA_ARGS__, 4); break;                          \
    case 5: TILE(__VA_ARGS__, 5); break;                          \
    default: TILE(__VA_ARGS__, 6); break;                         \
    }

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

static void NAME(conv5)(float *out, const float *in, const float *weight, int C, int H,
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

static void NAME(conv5_dweight)(float *dweight, const float *dout, const float *in,
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
        V(din + ((size_t)c * H + yy) * W * LANES + (size_t)x * LANES) = acc[x];
}

static void NAME(conv5_dinput)(float *din, const float *dout, const float *weight, int C,
                               int H, int W, int OC)
{
    int OH = H - 4, OW = W - 4;
    if (OW == 8) {   /* the paper's conv2 (28×28 patches): rows in registers */
        for (int c = 0; c < C; c++)
            for (int yy = 0; yy < H; yy++)
                dinput_row(din, dout, weight, C, H, OC, c, yy, 8);
        return;
    }
    memset(din, 0, sizeof *din * (size_t)C * H * W * LANES);
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

static void NAME(pool_bias_relu)(float *out, uint8_t *arg, const float *in, const float *bias,
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

static void NAME(unpool_relu)(float *din, float *dbias, const float *dout, const float *out,
                              const uint8_t *arg, int C, int H, int W)
{
    int OH = H / 2, OW = W / 2;
    if (H % 2 || W % 2)   /* floor mode: the last row or column gets nothing */
        memset(din, 0, sizeof *din * (size_t)C * H * W * LANES);
    for (int c = 0; c < C; c++) {
        vf sum = (vf){0};
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
                       size_t a_col, const float *bias, int relu, int M, int K, int m0,
                       int g0, const int gb, const int mb)
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
            V(out + ((size_t)(g0 + j) * M + m0 + i) * LANES) = v;
        }
}

#define DENSE_TILE(out, x, a, ar, ac, bias, relu, M, K, m0, g0, gb, mb) \
    dense_tile(out, x, a, ar, ac, bias, relu, M, K, m0, g0, gb, mb)
#define DENSE_EDGE(out, x, a, ar, ac, bias, relu, M, K, m0, g0, gb) \
    FIXED(mb, DENSE_TILE, out, x, a, ar, ac, bias, relu, M, K, m0, g0, gb)

static void NAME(dense)(float *out, const float *x, const float *a, size_t a_row,
                        size_t a_col, const float *bias, int relu, int groups, int M, int K)
{
    for (int g0 = 0; g0 < groups; g0 += TILE_G) {
        int gb = groups - g0 < TILE_G ? groups - g0 : TILE_G;
        for (int m0 = 0; m0 < M; m0 += TILE_M) {
            int mb = M - m0 < TILE_M ? M - m0 : TILE_M;
            if (gb == TILE_G && mb == TILE_M)
                dense_tile(out, x, a, a_row, a_col, bias, relu, M, K, m0, g0, TILE_G, TILE_M);
            else if (gb == TILE_G)
                DENSE_EDGE(out, x, a, a_row, a_col, bias, relu, M, K, m0, g0, TILE_G)
            else
                for (int g = g0; g < groups; g++)
                    DENSE_EDGE(out, x, a, a_row, a_col, bias, relu, M, K, m0, g, 1)
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

static void NAME(dense_dweight)(float *d, const float *x, const float *y, int groups, int M,
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


/* ---- convolution as shifted products (the CNN baselines) ----------------- */

/* Channels oc0 .. oc0+ocb-1 at positions p .. p + vb·LANES - 1,
 * input channels c0 .. c1-1: starting from the bias (c0 = 0 unless
 * accumulating) or from the sums so far in out, then over c and the taps in that order; sums stored
 * and loaded back are the same floats, so blocking over channels changes
 * no bit. */
INLINE void shift_tile(float *out, size_t out_stride, const float *in, size_t in_stride,
                       const float *weight, const float *bias, const int *off, int T, int C,
                       int c0, int c1, int accumulate, int oc0, size_t p, const int ocb,
                       const int vb)
{
    vf acc[TILE_SHIFT_OC][TILE_SHIFT_V];
    for (int o = 0; o < ocb; o++)
        for (int j = 0; j < vb; j++)
            if (c0 > 0 || accumulate)
                memcpy(&acc[o][j], out + (size_t)(oc0 + o) * out_stride + p + j * LANES,
                       sizeof acc[o][j]);
            else
                acc[o][j] = splat(bias ? bias[oc0 + o] : 0);
    size_t per_oc = (size_t)C * T;
    for (int c = c0; c < c1; c++) {
        const float *x = in + c * in_stride + p;
        const float *wo[TILE_SHIFT_OC];
        for (int o = 0; o < ocb; o++)
            wo[o] = weight + (size_t)(oc0 + o) * per_oc + (size_t)c * T;
        for (int t = 0; t < T; t++) {
            const float *xt = x + off[t];
            vf xv[TILE_SHIFT_V];
            for (int j = 0; j < vb; j++)
                memcpy(&xv[j], xt + j * LANES, sizeof xv[j]);   /* unaligned */
            for (int o = 0; o < ocb; o++) {
                vf wv = splat(wo[o][t]);
                for (int j = 0; j < vb; j++)
                    acc[o][j] += wv * xv[j];
            }
        }
    }
    for (int o = 0; o < ocb; o++)
        for (int j = 0; j < vb; j++)
            memcpy(out + (size_t)(oc0 + o) * out_stride + p + j * LANES, &acc[o][j],
                   sizeof acc[o][j]);
}

/* Input channels per pass: a tile's weights (TILE_SHIFT_OC × 64 × taps)
 * stay in L1 across the positions of a chunk. */
#define SHIFT_CHANNELS 64
/* Floats of output a chunk keeps in L2 while the channels pass over it. */
#define SHIFT_CHUNK_FLOATS (64 * 1024)

/* The tile of ocb channels and vb vectors, each size a compile-time constant
 * (full tiles are 4 × TILE_SHIFT_V; edges are smaller; vb never exceeds
 * TILE_SHIFT_V, the clamps only keep the unused cases compilable). */
#define SHIFT_TILE(ocb, vb) shift_tile(out, out_stride, in, in_stride, weight, bias, off, T, \
                                       C, c0, c1, accumulate, oc, p, ocb, vb)
#define SHIFT_VECTORS(ocb)                                          \
    switch (vb) {                                                   \
    case 1: SHIFT_TILE(ocb, 1); break;                              \
    case 2: SHIFT_TILE(ocb, 2); break;                              \
    case 3: SHIFT_TILE(ocb, 3); break;                              \
    case 4: SHIFT_TILE(ocb, 4 < TILE_SHIFT_V ? 4 : TILE_SHIFT_V); break; \
    case 5: SHIFT_TILE(ocb, 5 < TILE_SHIFT_V ? 5 : TILE_SHIFT_V); break; \
    default: SHIFT_TILE(ocb, TILE_SHIFT_V); break;                  \
    }

static void NAME(conv_shift)(float *out, size_t out_stride, const float *in,
                             size_t in_stride, const float *weight, const float *bias,
                             const int *off, int T, int C, int OC, int accumulate,
                             size_t p_first, size_t p_end)
{
    size_t block = (size_t)TILE_SHIFT_V * LANES;
    size_t chunk = SHIFT_CHUNK_FLOATS / (size_t)OC / block * block;
    chunk = chunk > block ? chunk : block;
    for (size_t pc = p_first; pc < p_end; pc += chunk) {
        size_t pe = p_end - pc < chunk ? p_end : pc + chunk;
        for (int c0 = 0; c0 < C; c0 += SHIFT_CHANNELS) {
            int c1 = C - c0 < SHIFT_CHANNELS ? C : c0 + SHIFT_CHANNELS;
            for (int oc = 0; oc < OC; oc += TILE_SHIFT_OC) {
                int ocb = OC - oc < TILE_SHIFT_OC ? OC - oc : TILE_SHIFT_OC;
                for (size_t p = pc; p < pe; p += block) {
                    int vb = pe - p < block ? (int)((pe - p) / LANES) : TILE_SHIFT_V;
                    switch (ocb) {
                    case 1: SHIFT_VECTORS(1); break;
                    case 2: SHIFT_VECTORS(2); break;
                    case 3: SHIFT_VECTORS(3); break;
                    default: SHIFT_VECTORS(TILE_SHIFT_OC); break;
                    }
                }
            }
        }
    }
}
#undef SHIFT_VECTORS
#undef SHIFT_TILE

/* ---- conv_shift's weight gradient and the lane transpose -------------------- */

/* Two vectors' halves of width h exchanged (h a power of two below LANES):
 * with bit h of the column clear, lo keeps a's and takes b's from h to the
 * left; hi the rest.  Over h = LANES/2 .. 1, L rows so paired become their
 * transpose. */
INLINE void exchange(vf *a, vf *b, const int h)
{
    vi lo, hi;
    for (int c = 0; c < LANES; c++) {
        lo[c] = c & h ? LANES + c - h : c;
        hi[c] = c & h ? LANES + c : c + h;
    }
    vf x = __builtin_shuffle(*a, *b, lo), y = __builtin_shuffle(*a, *b, hi);
    *a = x, *b = y;
}

/* one step of a transpose or a fold for each h, each h a constant (the
 * masks are then constants: one two-source permute each) */
#if LANES == 16
#define EACH_HALF(STEP) STEP(8); STEP(4); STEP(2); STEP(1)
#elif LANES == 8
#define EACH_HALF(STEP) STEP(4); STEP(2); STEP(1)
#else
#define EACH_HALF(STEP) STEP(2); STEP(1)
#endif

INLINE void transpose_tile(vf r[LANES])
{
#define TRANSPOSE_STEP(h)                       \
    for (int i = 0; i < LANES; i++)             \
        if (!(i & (h)))                         \
            exchange(&r[i], &r[i + (h)], (h))
    EACH_HALF(TRANSPOSE_STEP);
#undef TRANSPOSE_STEP
}

static void NAME(transpose)(float *dst, size_t dst_row, size_t dst_tile, const float *src,
                            size_t src_row, size_t src_tile, size_t tiles)
{
    for (size_t k = 0; k < tiles; k++) {
        vf r[LANES];
        for (int i = 0; i < LANES; i++)
            r[i] = load_any(src + k * src_tile + i * src_row);
        transpose_tile(r);
        for (int i = 0; i < LANES; i++)
            store_any(dst + k * dst_tile + i * dst_row, r[i]);
    }
}

/* bit-reversed i, of log2(LANES) bits */
INLINE int reversed(int i)
{
    int r = 0;
    for (int b = 1; b < LANES; b *= 2)
        r = r * 2 + (i & b ? 1 : 0);
    return r;
}

/* The LANES sums of LANES vectors' lanes, as one vector (lane j: the sum
 * of acc[j]): pairs of vectors fold their halves together, so that every
 * step halves the vectors and the partial sums of each. */
INLINE vf fold(const vf acc[LANES])
{
    vf v[LANES];
    for (int j = 0; j < LANES; j++)   /* bit-reversed, so the sums land in order */
        v[j] = acc[reversed(j)];
#define FOLD_STEP(h)                               \
    for (int m = 0; m < (h); m++) {                \
        vf a = v[2 * m], b = v[2 * m + 1];         \
        exchange(&a, &b, (h));                     \
        v[m] = a + b;                              \
    }
    EACH_HALF(FOLD_STEP);
#undef FOLD_STEP
    return v[0];
}

/* TILE_DS_OC × TILE_DS_Q = LANES sums: one fold per tile. */
#if LANES == 16
enum { TILE_DS_OC = 4, TILE_DS_Q = 4 };
#elif LANES == 8
enum { TILE_DS_OC = 2, TILE_DS_Q = 4 };
#else
enum { TILE_DS_OC = 2, TILE_DS_Q = 2 };
#endif

INLINE void outer_products(vf acc[LANES], const vf dv[TILE_DS_OC], const vf xv[TILE_DS_Q])
{
    for (int o = 0; o < TILE_DS_OC; o++)
        for (int t = 0; t < TILE_DS_Q; t++)
            acc[o * TILE_DS_Q + t] += dv[o] * xv[t];
}

/* Output channels oc0 .., items q0 .. (q = c·T + t, the weight's own
 * order) of conv_shift_dweight; rows past OC or C·T repeat the last and
 * are not stored. */
INLINE void shift_dweight_tile(float *dweight, const float *dout, size_t dout_stride,
                               size_t dout_item, const float *in, size_t in_stride,
                               size_t in_item, const int *off, int T, int C, int OC,
                               size_t P, int n, int oc0, int q0, const int tail)
{
    int CT = C * T;
    size_t dfrom[TILE_DS_OC], xfrom[TILE_DS_Q];
    for (int o = 0; o < TILE_DS_OC; o++)
        dfrom[o] = (size_t)(oc0 + o < OC ? oc0 + o : OC - 1) * dout_stride;
    for (int t = 0; t < TILE_DS_Q; t++) {
        int q = q0 + t < CT ? q0 + t : CT - 1;
        xfrom[t] = (size_t)(q / T) * in_stride + (size_t)off[q % T];
    }
    vf acc[LANES];
    for (int j = 0; j < LANES; j++)
        acc[j] = (vf){0};
    size_t whole = P / LANES * LANES;
    for (int i = 0; i < n; i++) {
        const float *d = dout + (size_t)i * dout_item, *x = in + (size_t)i * in_item;
        for (size_t p = 0; p < whole; p += LANES) {
            vf dv[TILE_DS_OC], xv[TILE_DS_Q];
            for (int o = 0; o < TILE_DS_OC; o++)
                dv[o] = load_any(d + dfrom[o] + p);
            for (int t = 0; t < TILE_DS_Q; t++)
                xv[t] = load_any(x + xfrom[t] + p);
            outer_products(acc, dv, xv);
        }
        if (tail) {   /* the last positions, zeros in the other lanes */
            int rest = (int)(P - whole);
            vf dv[TILE_DS_OC], xv[TILE_DS_Q];
            for (int o = 0; o < TILE_DS_OC; o++)
                dv[o] = load_first(d + dfrom[o] + whole, rest);
            for (int t = 0; t < TILE_DS_Q; t++)
                xv[t] = load_first(x + xfrom[t] + whole, rest);
            outer_products(acc, dv, xv);
        }
    }
    vf sums = fold(acc);
    for (int o = 0; o < TILE_DS_OC && oc0 + o < OC; o++)
        for (int t = 0; t < TILE_DS_Q && q0 + t < CT; t++)
            dweight[(size_t)(oc0 + o) * CT + q0 + t] += sums[o * TILE_DS_Q + t];
}

static void NAME(conv_shift_dweight)(float *dweight, const float *dout, size_t dout_stride,
                                     size_t dout_item, const float *in, size_t in_stride,
                                     size_t in_item, const int *off, int T, int C, int OC,
                                     size_t P, int n)
{
    /* Every tile reads all n items of its rows of dout and of in.  When
     * dout is small (a few rows: the linear layer as dot products), in's
     * rows are the outer loop, so that each is read from memory once and
     * dout stays in L1; otherwise dout's. */
#define SHIFT_DW_TILE(tail)                                                                \
    shift_dweight_tile(dweight, dout, dout_stride, dout_item, in, in_stride, in_item, off, \
                       T, C, OC, P, n, oc0, q0, tail)
#define SHIFT_DW_TILES    /* the tail's code only where there is one: 1.4x */ \
    if (P % LANES)                                                             \
        SHIFT_DW_TILE(1);                                                      \
    else                                                                       \
        SHIFT_DW_TILE(0)
    if ((size_t)n * OC * P <= 8192) {
        for (int q0 = 0; q0 < C * T; q0 += TILE_DS_Q)
            for (int oc0 = 0; oc0 < OC; oc0 += TILE_DS_OC)
                SHIFT_DW_TILES;
        return;
    }
    for (int oc0 = 0; oc0 < OC; oc0 += TILE_DS_OC)
        for (int q0 = 0; q0 < C * T; q0 += TILE_DS_Q)
            SHIFT_DW_TILES;
#undef SHIFT_DW_TILES
#undef SHIFT_DW_TILE
}

/* ---- products with the outputs in lanes (Winograd's) ----------------------- */

/* Rows n0 .. n0+nb-1, columns (vectors) v0 .. v0+vb-1 of out: the sum over
 * c in order of x[c·x_stride + n] · a[c·OC + column]. */
INLINE void product_tile(float *out, const float *x, size_t x_stride, const float *a, int C,
                         int OC, int n0, int v0, const int nb, const int vb)
{
    vf acc[TILE_PN][TILE_PV];
    for (int i = 0; i < nb; i++)
        for (int j = 0; j < vb; j++)
            acc[i][j] = (vf){0};
    for (int c = 0; c < C; c++) {
        const float *xc = x + c * x_stride + n0;
        const float *ac = a + (size_t)c * OC + (size_t)v0 * LANES;
        vf av[TILE_PV];
        for (int j = 0; j < vb; j++)
            av[j] = load_any(ac + j * LANES);
        for (int i = 0; i < nb; i++) {
            vf xv = splat(xc[i]);
            for (int j = 0; j < vb; j++)
                acc[i][j] += xv * av[j];
        }
    }
    for (int i = 0; i < nb; i++)
        for (int j = 0; j < vb; j++)
            V(out + (size_t)(n0 + i) * OC + (size_t)(v0 + j) * LANES) = acc[i][j];
}

#define PRODUCT_TILE(nb, vb) product_tile(out, x, x_stride, a, C, OC, n, v, nb, vb)
#define PRODUCT_ROWS(vb)                                                      \
    switch (nb) {                                                             \
    case 1: PRODUCT_TILE(1, vb); break;                                       \
    case 2: PRODUCT_TILE(2, vb); break;                                       \
    case 3: PRODUCT_TILE(3, vb); break;                                       \
    case 4: PRODUCT_TILE(4 < TILE_PN ? 4 : TILE_PN, vb); break;               \
    case 5: PRODUCT_TILE(5 < TILE_PN ? 5 : TILE_PN, vb); break;               \
    default: PRODUCT_TILE(TILE_PN, vb); break;                                \
    }

static void NAME(product)(float *out, const float *x, size_t x_stride, const float *a,
                          int C, int OC, int n_first, int n_end)
{
    int vectors = OC / LANES;
    for (int v = 0; v < vectors; v += TILE_PV) {   /* a's panel stays in cache */
        int vb = vectors - v < TILE_PV ? vectors - v : TILE_PV;
        for (int n = n_first; n < n_end; n += TILE_PN) {
            int nb = n_end - n < TILE_PN ? n_end - n : TILE_PN;
            switch (vb) {
            case 1: PRODUCT_ROWS(1); break;
            case 2: PRODUCT_ROWS(2); break;
            case 3: PRODUCT_ROWS(3 < TILE_PV ? 3 : TILE_PV); break;
            default: PRODUCT_ROWS(TILE_PV); break;
            }
        }
    }
}
#undef PRODUCT_ROWS
#undef PRODUCT_TILE

/* ---- Winograd F(2×2, 3×3)'s input transform ------------------------------ */

/* One block row's 16 values: t = Bᵀ d over rows, V = t B over columns. */
#define WINOGRAD_BLOCK(T, LOAD, STORE)                                        \
    do {                                                                      \
        T t[4][4];                                                            \
        for (int j = 0; j < 4; j++) {                                         \
            const float *col = rows + (j % 2 ? half : 0) + tx + j / 2;        \
            T d0 = LOAD(col), d1 = LOAD(col + row_stride),                    \
              d2 = LOAD(col + 2 * row_stride), d3 = LOAD(col + 3 * row_stride); \
            t[0][j] = d0 - d2;                                                \
            t[1][j] = d1 + d2;                                                \
            t[2][j] = d2 - d1;                                                \
            t[3][j] = d1 - d3;                                                \
        }                                                                     \
        for (int i = 0; i < 4; i++) {                                         \
            STORE(v + (size_t)(i * 4 + 0) * plane + tx, t[i][0] - t[i][2]);    \
            STORE(v + (size_t)(i * 4 + 1) * plane + tx, t[i][1] + t[i][2]);    \
            STORE(v + (size_t)(i * 4 + 2) * plane + tx, t[i][2] - t[i][1]);    \
            STORE(v + (size_t)(i * 4 + 3) * plane + tx, t[i][1] - t[i][3]);    \
        }                                                                     \
    } while (0)

/* the first n (< LANES) lanes of x to p, one masked store where the set
 * has one */
INLINE void store_first(float *p, vf x, int n)
{
#if LANES == 16
    _mm512_mask_storeu_ps(p, (__mmask16)((1u << n) - 1), (__m512)x);
#elif LANES == 8
    __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(n),
                                      _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    _mm256_maskstore_ps(p, mask, (__m256)x);
#else
    for (int l = 0; l < n; l++)
        p[l] = x[l];
#endif
}

static void NAME(winograd_input_row)(float *v, size_t plane, const float *rows,
                                     size_t row_stride, int tw)
{
    size_t half = row_stride / 2;
    int tx = 0;
    for (; tx + LANES <= tw; tx += LANES)
        WINOGRAD_BLOCK(vf, load_any, store_any);
    if (tx < tw) {   /* the last blocks: whole vectors, stored in part */
        int lanes = tw - tx;
#define STORE_SOME(p, x) store_first((p), (x), lanes)
        WINOGRAD_BLOCK(vf, load_any, STORE_SOME);
#undef STORE_SOME
    }
}
#undef WINOGRAD_BLOCK

/* Winograd F(2×2, 3×3)'s output transform, with the output channels in
 * lanes: a block row's two output rows for LANES channels are gathered in
 * rows (2, W, LANES), then copied out row by row of each channel, so that
 * the stores run along memory (storing lane by lane into the planes had
 * touched a page a float on VGG's 224×224 maps). */
static void NAME(winograd_output)(float *out, const float *M, const float *bias, int OC,
                                  int H, int W)
{
    int th = (H + 1) / 2, tw = (W + 1) / 2;
    size_t plane = (size_t)th * tw * OC, hw = (size_t)H * W;
    float *rows = amil_xaligned(sizeof(float) * 2 * (2 * (size_t)tw) * LANES);
    size_t row = 2 * (size_t)tw * LANES;   /* floats of one gathered row */
    for (int ty = 0; ty < th; ty++)
        for (int oc = 0; oc < OC; oc += LANES) {
            vf b = (vf){0};
            if (bias)
                b = load_any(bias + oc);
            for (int tx = 0; tx < tw; tx++) {
                const float *mm = M + ((size_t)ty * tw + tx) * OC + oc;
                vf t[2][4];
                for (int j = 0; j < 4; j++) {   /* t = Aᵀ m */
                    vf m0 = V(mm + j * plane), m1 = V(mm + (4 + j) * plane),
                       m2 = V(mm + (8 + j) * plane), m3 = V(mm + (12 + j) * plane);
                    t[0][j] = m0 + m1 + m2;
                    t[1][j] = m1 - m2 - m3;
                }
                for (int i = 0; i < 2; i++) {   /* Y = t A */
                    V(rows + i * row + (size_t)(2 * tx) * LANES) =
                        b + t[i][0] + t[i][1] + t[i][2];
                    V(rows + i * row + (size_t)(2 * tx + 1) * LANES) =
                        b + t[i][1] - t[i][2] - t[i][3];
                }
            }
            for (int i = 0; i < 2 && 2 * ty + i < H; i++)
                for (int l = 0; l < LANES; l++) {
                    float *to = out + (size_t)(oc + l) * hw + (size_t)(2 * ty + i) * W;
                    const float *from = rows + i * row + l;
                    for (int x = 0; x < W; x++)
                        to[x] = from[(size_t)x * LANES];
                }
        }
    free(rows);
}

/* ---- Winograd F(4×4, 5×5): model.c's second convolution ------------------- */

/* Interpolation at 0, ±1, ±2, ±1/2 and infinity: an 8×8 input tile d gives
 * a 4×4 output tile Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A, 6.25 times fewer
 * multiplications than the direct sum (about 4e-6 of the largest output
 * off it in float32).  The matrices, G 8×5, Bᵀ 8×8, Aᵀ 4×8, are written out
 * as sums with their zeros and ones dropped. */

/* u (8, stride us) = G g, g (5, stride gs) */
INLINE void wino5_g(vf *u, size_t us, const vf *g, size_t gs)
{
    vf g0 = g[0], g1 = g[gs], g2 = g[2 * gs], g3 = g[3 * gs], g4 = g[4 * gs];
    vf even = g0 + g2 + g4, odd = g1 + g3;
    vf e3 = splat(1.0f / 90) * g0 + splat(2.0f / 45) * g2 + splat(8.0f / 45) * g4;
    vf o3 = splat(1.0f / 45) * g1 + splat(4.0f / 45) * g3;
    vf e5 = splat(32.0f / 45) * g0 + splat(8.0f / 45) * g2 + splat(2.0f / 45) * g4;
    vf o5 = splat(16.0f / 45) * g1 + splat(4.0f / 45) * g3;
    u[0] = -g0;
    u[us] = splat(-2.0f / 9) * (even + odd);
    u[2 * us] = splat(-2.0f / 9) * (even - odd);
    u[3 * us] = e3 + o3;
    u[4 * us] = e3 - o3;
    u[5 * us] = e5 + o5;
    u[6 * us] = e5 - o5;
    u[7 * us] = g4;
}

/* v (8, stride vs) = Bᵀ d, d (8, stride ds) */
INLINE void wino5_b(vf *v, size_t vs, const vf *d, size_t ds)
{
    vf d0 = d[0], d1 = d[ds], d2 = d[2 * ds], d3 = d[3 * ds], d4 = d[4 * ds],
       d5 = d[5 * ds], d6 = d[6 * ds], d7 = d[7 * ds];
    vf a1 = d1 + d5 - splat(4.25f) * d3, b1 = d2 + d6 - splat(4.25f) * d4;
    vf a3 = splat(0.5f) * d1 - splat(2.5f) * d3 + splat(2.0f) * d5;
    vf b3 = splat(0.25f) * d2 - splat(1.25f) * d4 + d6;
    vf a5 = splat(2.0f) * d1 - splat(2.5f) * d3 + splat(0.5f) * d5;
    vf b5 = splat(4.0f) * d2 - splat(5.0f) * d4 + d6;
    v[0] = d6 - d0 + splat(5.25f) * (d2 - d4);
    v[vs] = b1 + a1;
    v[2 * vs] = b1 - a1;
    v[3 * vs] = b3 + a3;
    v[4 * vs] = b3 - a3;
    v[5 * vs] = b5 + a5;
    v[6 * vs] = b5 - a5;
    v[7 * vs] = d7 - d1 + splat(5.25f) * (d3 - d5);
}

/* y (4, stride ys) = Aᵀ m, m (8, stride ms) */
INLINE void wino5_a(vf *y, size_t ys, const vf *m, size_t ms)
{
    vf s12 = m[ms] + m[2 * ms], d12 = m[ms] - m[2 * ms];
    vf s34 = m[3 * ms] + m[4 * ms], d34 = m[3 * ms] - m[4 * ms];
    vf s56 = m[5 * ms] + m[6 * ms], d56 = m[5 * ms] - m[6 * ms];
    y[0] = m[0] + s12 + s34 + s56;
    y[ys] = d12 + splat(2.0f) * d34 + splat(0.5f) * d56;
    y[2 * ys] = s12 + splat(4.0f) * s34 + splat(0.25f) * s56;
    y[3 * ys] = d12 + splat(8.0f) * d34 + splat(0.125f) * d56 + m[7 * ms];
}

static void NAME(winograd5_weights)(float *U, const float *gt, size_t pairs)
{
    for (size_t q = 0; q < pairs; q += LANES) {
        int n = pairs - q < LANES ? (int)(pairs - q) : LANES;   /* the last: in part */
        vf g[25], t[8 * 5], u[8];
        for (int k = 0; k < 25; k++)
            g[k] = n == LANES ? load_any(gt + k * pairs + q) : load_first(gt + k * pairs + q, n);
        for (int j = 0; j < 5; j++)   /* t = G g: each column */
            wino5_g(t + j, 5, g + j, 5);
        for (int a = 0; a < 8; a++) {   /* U = t Gᵀ: each row */
            wino5_g(u, 1, t + a * 5, 1);
            for (int b = 0; b < 8; b++) {
                float *to = U + (size_t)(a * 8 + b) * pairs + q;
                if (n == LANES)
                    store_any(to, u[b]);
                else
                    store_first(to, u[b], n);
            }
        }
    }
}

static void NAME(winograd5_input)(float *V, const float *in, int C, int H)
{
    int tiles = (H - 4) / 4, T = tiles * tiles;
    size_t position = (size_t)C * T * LANES;
    for (int c = 0; c < C; c++)
        for (int ty = 0; ty < tiles; ty++)
            for (int tx = 0; tx < tiles; tx++) {
                const float *d = in + (((size_t)c * H + 4 * ty) * H + 4 * tx) * LANES;
                vf row[8], t[8 * 8], v[8];
                for (int r = 0; r < 8; r++) {   /* t = d B: each row */
                    for (int x = 0; x < 8; x++)
                        row[x] = V(d + ((size_t)r * H + x) * LANES);
                    wino5_b(t + r * 8, 1, row, 1);
                }
                float *to = V + ((size_t)c * T + ty * tiles + tx) * LANES;
                for (int b = 0; b < 8; b++) {   /* Bᵀ t: each column */
                    wino5_b(v, 1, t + b, 8);
                    for (int a = 0; a < 8; a++)
                        V(to + (a * 8 + b) * position) = v[a];
                }
            }
}

/* m (64, ocb, 4, lanes) = Σ over c of U (64, OC, C) at oc0 + o times V (64,
 * C, T, lanes) at tiles t0 .. t0+3: the element-wise products of ocb
 * output channels and four tiles, summed over c in order. */
INLINE void wino5_products(float *m, const float *U, const float *V, int C, int OC, int T,
                           int oc0, int t0, const int ocb)
{
    for (int p = 0; p < 64; p++) {
        const float *u = U + ((size_t)p * OC + oc0) * C;
        const float *v = V + ((size_t)p * C * T + t0) * LANES;
        vf acc[6][4];
        for (int o = 0; o < ocb; o++)
            for (int j = 0; j < 4; j++)
                acc[o][j] = (vf){0};
        for (int c = 0; c < C; c++) {
            vf x[4];
            for (int j = 0; j < 4; j++)
                x[j] = V(v + ((size_t)c * T + j) * LANES);
            for (int o = 0; o < ocb; o++) {
                vf w = splat(u[o * C + c]);
                for (int j = 0; j < 4; j++)
                    acc[o][j] += w * x[j];
            }
        }
        for (int o = 0; o < ocb; o++)
            for (int j = 0; j < 4; j++)
                V(m + (((size_t)p * ocb + o) * 4 + j) * LANES) = acc[o][j];
    }
}

#define WINO5_PRODUCTS(m, U, V, C, OC, T, oc0, t0, ocb) \
    wino5_products(m, U, V, C, OC, T, oc0, t0, ocb)

static void NAME(winograd5_output)(float *out, float *m, const float *U, const float *V,
                                   int C, int OC, int H)
{
    int tiles = H / 4, T = tiles * tiles;
    for (int oc0 = 0; oc0 < OC; oc0 += TILE_WO)
        for (int t0 = 0; t0 < T; t0 += 4) {
            int ocb = OC - oc0 < TILE_WO ? OC - oc0 : TILE_WO;
            FIXED(ocb, WINO5_PRODUCTS, m, U, V, C, OC, T, oc0, t0);
            for (int o = 0; o < ocb; o++)
                for (int j = 0; j < 4; j++) {
                    const vf *mm = (const vf *)m + o * 4 + j;
                    size_t stride = (size_t)ocb * 4;   /* vectors between positions */
                    vf t[8 * 4], y[4];
                    for (int a = 0; a < 8; a++)   /* t = M A: each row */
                        wino5_a(t + a * 4, 1, mm + a * 8 * stride, stride);
                    int ty = (t0 + j) / tiles, tx = (t0 + j) % tiles;
                    float *to = out + (((size_t)(oc0 + o) * H + 4 * ty) * H + 4 * tx) * LANES;
                    for (int x = 0; x < 4; x++) {   /* Aᵀ t: each column */
                        wino5_a(y, 1, t + x, 4);
                        for (int i = 0; i < 4; i++)
                            V(to + ((size_t)i * H + x) * LANES) = y[i];
                    }
                }
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
    .transpose = NAME(transpose),
    .product = NAME(product),
    .winograd_input_row = NAME(winograd_input_row),
    .winograd_output = NAME(winograd_output),
    .winograd5_weights = NAME(winograd5_weights),
    .winograd5_input = NAME(winograd5_input),
    .winograd5_output = NAME(winograd5_output),
};
