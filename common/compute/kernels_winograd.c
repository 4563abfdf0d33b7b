/* kernels_winograd.c: lane kernels (lanes.h) for Winograd's minimal
 * filtering: products with the outputs in lanes, F(2×2, 3×3) for the
 * CNN baselines' frozen 3×3 convolutions and F(4×4, 5×5), forward and
 * backward, for A-MIL's convolutions. */
#include "base/base.h"
#include "compute/lanes.h"

/* ---- products with the outputs in lanes (Winograd's) ----------------------- */

/* Rows n0 .. n0+nb-1, columns (vectors) v0 .. v0+vb-1 of out: bias (or 0)
 * plus the sum over c in order of x[c·x_c + n·x_n] · a[c·OC + column]. */
INLINE void product_tile(float *out, size_t out_stride, const float *x, size_t x_c, size_t x_n,
                         const float *a, const float *bias, int C, int OC, int n0, int v0,
                         const int nb, const int vb, const int add)
{
    vf acc[TILE_PN][TILE_PV];
    const float *row[TILE_PN];
    for (int i = 0; i < nb; i++) {
        row[i] = x + (size_t)(n0 + i) * x_n;
        for (int j = 0; j < vb; j++)
            acc[i][j] = bias ? load_any(bias + (size_t)(v0 + j) * LANES) : (vf){0};
    }
    for (int c = 0; c < C; c++) {
        const float *ac = a + (size_t)c * OC + (size_t)v0 * LANES;
        vf av[TILE_PV];
        for (int j = 0; j < vb; j++)
            av[j] = load_any(ac + j * LANES);
        for (int i = 0; i < nb; i++) {
            vf xv = splat(row[i][c * x_c]);
            for (int j = 0; j < vb; j++)
                acc[i][j] += xv * av[j];
        }
    }
    for (int i = 0; i < nb; i++)
        for (int j = 0; j < vb; j++) {
            float *to = out + (size_t)(n0 + i) * out_stride + (size_t)(v0 + j) * LANES;
            if (add)
                store_any(to, load_any(to) + acc[i][j]);
            else
                V(to) = acc[i][j];
        }
}

#define PRODUCT_TILE(nb, vb) \
    product_tile(out, out_stride, x, x_c, x_n, a, bias, C, OC, n, v, nb, vb, add)
#define PRODUCT_ROWS(vb)                                                      \
    switch (nb) {                                                             \
    case 1: PRODUCT_TILE(1, vb); break;                                       \
    case 2: PRODUCT_TILE(2, vb); break;                                       \
    case 3: PRODUCT_TILE(3, vb); break;                                       \
    case 4: PRODUCT_TILE(4 < TILE_PN ? 4 : TILE_PN, vb); break;               \
    case 5: PRODUCT_TILE(5 < TILE_PN ? 5 : TILE_PN, vb); break;               \
    default: PRODUCT_TILE(TILE_PN, vb); break;                                \
    }

INLINE void products(float *out, size_t out_stride, const float *x, size_t x_c, size_t x_n,
                     const float *a, const float *bias, int C, int OC, int n_first, int n_end,
                     const int add)
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

void NAME(product)(float *out, size_t out_stride, const float *x, size_t x_c, size_t x_n,
                   const float *a, const float *bias, int C, int OC, int n_first, int n_end)
{
    products(out, out_stride, x, x_c, x_n, a, bias, C, OC, n_first, n_end, 0);
}

void NAME(product_add)(float *out, size_t out_stride, const float *x, size_t x_c, size_t x_n,
                       const float *a, int C, int OC, int n_first, int n_end)
{
    products(out, out_stride, x, x_c, x_n, a, NULL, C, OC, n_first, n_end, 1);
}

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

void NAME(winograd_input_row)(float *v, size_t plane, const float *rows,
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
void NAME(winograd_output)(float *out, const float *M, const float *bias, int relu, int OC,
                           int H, int W, int ty0, int ty1)
{
    const vf zero = {0};
    int tw = (W + 1) / 2;
    size_t plane = (size_t)(ty1 - ty0) * tw * OC, hw = (size_t)H * W;
    float *rows = amil_xaligned(sizeof(float) * 2 * (2 * (size_t)tw) * LANES);
    size_t row = 2 * (size_t)tw * LANES;   /* floats of one gathered row */
    for (int ty = ty0; ty < ty1; ty++)
        for (int oc = 0; oc < OC; oc += LANES) {
            vf b = (vf){0};
            if (bias)
                b = load_any(bias + oc);
            for (int tx = 0; tx < tw; tx++) {
                const float *mm = M + ((size_t)(ty - ty0) * tw + tx) * OC + oc;
                vf t[2][4];
                for (int j = 0; j < 4; j++) {   /* t = Aᵀ m */
                    vf m0 = V(mm + j * plane), m1 = V(mm + (4 + j) * plane),
                       m2 = V(mm + (8 + j) * plane), m3 = V(mm + (12 + j) * plane);
                    t[0][j] = m0 + m1 + m2;
                    t[1][j] = m1 - m2 - m3;
                }
                for (int i = 0; i < 2; i++) {   /* Y = t A */
                    vf y0 = b + t[i][0] + t[i][1] + t[i][2], y1 = b + t[i][1] - t[i][2] - t[i][3];
                    if (relu)   /* NaN passes, as amil_relu_forward's */
                        y0 = blend(y0 <= zero, zero, y0), y1 = blend(y1 <= zero, zero, y1);
                    V(rows + i * row + (size_t)(2 * tx) * LANES) = y0;
                    V(rows + i * row + (size_t)(2 * tx + 1) * LANES) = y1;
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

/* ---- Winograd F(4×4, 5×5): A-MIL's convolutions -------------------------- */

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

void NAME(winograd5_weights)(float *U, const float *gt, size_t pairs)
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

void NAME(winograd5_input)(float *V, const float *in, int C, int H)
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

void NAME(winograd5_output)(float *out, float *m, const float *U, const float *V,
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

/* ---- F(4×4, 5×5) backward: the adjoints of its three transforms --------- */

/* m (8, stride ms) = A y, y (4, stride ys): wino5_a's adjoint */
INLINE void wino5_at(vf *m, size_t ms, const vf *y, size_t ys)
{
    vf y0 = y[0], y1 = y[ys], y2 = y[2 * ys], y3 = y[3 * ys];
    vf even1 = y0 + y2, odd1 = y1 + y3;   /* the rows of ±1, ±2 and ±1/2 */
    vf even2 = y0 + splat(4.0f) * y2, odd2 = splat(2.0f) * y1 + splat(8.0f) * y3;
    vf even3 = y0 + splat(0.25f) * y2, odd3 = splat(0.5f) * y1 + splat(0.125f) * y3;
    m[0] = y0;
    m[ms] = even1 + odd1;
    m[2 * ms] = even1 - odd1;
    m[3 * ms] = even2 + odd2;
    m[4 * ms] = even2 - odd2;
    m[5 * ms] = even3 + odd3;
    m[6 * ms] = even3 - odd3;
    m[7 * ms] = y3;
}

/* d (8, stride ds) = B v, v (8, stride vs): wino5_b's adjoint */
INLINE void wino5_bt(vf *d, size_t ds, const vf *v, size_t vs)
{
    vf v0 = v[0], v7 = v[7 * vs];
    vf s1 = v[vs] + v[2 * vs], r1 = v[vs] - v[2 * vs];
    vf s3 = v[3 * vs] + v[4 * vs], r3 = v[3 * vs] - v[4 * vs];
    vf s5 = v[5 * vs] + v[6 * vs], r5 = v[5 * vs] - v[6 * vs];
    d[0] = -v0;
    d[ds] = r1 + splat(0.5f) * r3 + splat(2.0f) * r5 - v7;
    d[2 * ds] = splat(5.25f) * v0 + s1 + splat(0.25f) * s3 + splat(4.0f) * s5;
    d[3 * ds] = splat(5.25f) * v7 - splat(4.25f) * r1 - splat(2.5f) * (r3 + r5);
    d[4 * ds] = -(splat(5.25f) * v0 + splat(4.25f) * s1 + splat(1.25f) * s3 + splat(5.0f) * s5);
    d[5 * ds] = r1 + splat(2.0f) * r3 + splat(0.5f) * r5 - splat(5.25f) * v7;
    d[6 * ds] = v0 + s1 + s3 + s5;
    d[7 * ds] = v7;
}

/* g (5, stride gs) = Gᵀ u, u (8, stride us): wino5_g's adjoint */
INLINE void wino5_gt(vf *g, size_t gs, const vf *u, size_t us)
{
    vf s1 = u[us] + u[2 * us], r1 = u[us] - u[2 * us];
    vf s3 = u[3 * us] + u[4 * us], r3 = u[3 * us] - u[4 * us];
    vf s5 = u[5 * us] + u[6 * us], r5 = u[5 * us] - u[6 * us];
    vf minus_two_ninths = splat(-2.0f / 9);
    g[0] = splat(1.0f / 90) * s3 + splat(32.0f / 45) * s5 + minus_two_ninths * s1 - u[0];
    g[gs] = splat(1.0f / 45) * r3 + splat(16.0f / 45) * r5 + minus_two_ninths * r1;
    g[2 * gs] = splat(2.0f / 45) * s3 + splat(8.0f / 45) * s5 + minus_two_ninths * s1;
    g[3 * gs] = splat(4.0f / 45) * r3 + splat(4.0f / 45) * r5 + minus_two_ninths * r1;
    g[4 * gs] = splat(8.0f / 45) * s3 + splat(2.0f / 45) * s5 + minus_two_ninths * s1 + u[7 * us];
}

void NAME(winograd5_dweights)(float *dgt, const float *dU, size_t pairs)
{
    for (size_t q = 0; q < pairs; q += LANES) {
        int n = pairs - q < LANES ? (int)(pairs - q) : LANES;   /* the last: in part */
        vf u[64], t[5 * 8], g[5];
        for (int k = 0; k < 64; k++)
            u[k] = n == LANES ? load_any(dU + k * pairs + q) : load_first(dU + k * pairs + q, n);
        for (int b = 0; b < 8; b++)   /* t = Gᵀ dU: each column */
            wino5_gt(t + b, 8, u + b, 8);
        for (int i = 0; i < 5; i++) {   /* dg = t G: each row */
            wino5_gt(g, 1, t + i * 8, 1);
            for (int j = 0; j < 5; j++) {
                float *to = dgt + (size_t)(i * 5 + j) * pairs + q;
                if (n == LANES)
                    store_any(to, g[j]);
                else
                    store_first(to, g[j], n);
            }
        }
    }
}

void NAME(winograd5_doutput)(float *dM, const float *dout, int OC, int H)
{
    int tiles = H / 4, T = tiles * tiles;
    size_t position = (size_t)OC * T * LANES;
    for (int oc = 0; oc < OC; oc++)
        for (int ty = 0; ty < tiles; ty++)
            for (int tx = 0; tx < tiles; tx++) {
                const float *dy = dout + (((size_t)oc * H + 4 * ty) * H + 4 * tx) * LANES;
                vf row[4], t[4 * 8], m[8];
                for (int i = 0; i < 4; i++) {   /* t = dy A: each row */
                    for (int x = 0; x < 4; x++)
                        row[x] = V(dy + ((size_t)i * H + x) * LANES);
                    wino5_at(t + i * 8, 1, row, 1);
                }
                float *to = dM + ((size_t)oc * T + ty * tiles + tx) * LANES;
                for (int b = 0; b < 8; b++) {   /* A t: each column */
                    wino5_at(m, 1, t + b, 8);
                    for (int a = 0; a < 8; a++)
                        V(to + (a * 8 + b) * position) = m[a];
                }
            }
}

void NAME(winograd5_dinput)(float *din, float *m, const float *Ut, const float *dM, int C,
                            int OC, int H)
{
    int tiles = H / 4, T = tiles * tiles, side = H + 4;
    for (int c0 = 0; c0 < C; c0 += TILE_WO)
        for (int t0 = 0; t0 < T; t0 += 4) {
            int cb = C - c0 < TILE_WO ? C - c0 : TILE_WO;
            /* dV of channels c0 .. c0+cb-1, four tiles: the forward's
             * products with Ut (64, C, OC) for U and dM for V */
            FIXED(cb, WINO5_PRODUCTS, m, Ut, dM, OC, C, T, c0, t0);
            for (int o = 0; o < cb; o++)
                for (int j = 0; j < 4; j++) {
                    const vf *dv = (const vf *)m + o * 4 + j;
                    size_t stride = (size_t)cb * 4;   /* vectors between positions */
                    vf t[8 * 8], d[8];
                    for (int b = 0; b < 8; b++)   /* t = B dV: each column */
                        wino5_bt(t + b, 8, dv + b * stride, 8 * stride);
                    int ty = (t0 + j) / tiles, tx = (t0 + j) % tiles;
                    float *to = din + (((size_t)(c0 + o) * side + 4 * ty) * side + 4 * tx) * LANES;
                    for (int r = 0; r < 8; r++) {   /* t Bᵀ: each row, added */
                        wino5_bt(d, 1, t + r * 8, 1);
                        for (int x = 0; x < 8; x++)
                            V(to + ((size_t)r * side + x) * LANES) += d[x];
                    }
                }
        }
}
