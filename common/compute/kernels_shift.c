/* kernels_shift.c: lane kernels (lanes.h) for a convolution as products
 * of broadcast weights and shifted rows (the CNN baselines; A-MIL's
 * partial groups), their weight gradient, and the transpose between
 * planes and lanes. */
#include "compute/lanes.h"

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

void NAME(conv_shift)(float *out, size_t out_stride, const float *in,
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

void NAME(transpose)(float *dst, size_t dst_row, size_t dst_tile, const float *src,
                            size_t src_row, size_t src_tile, size_t tiles, int accumulate)
{
    for (size_t k = 0; k < tiles; k++) {
        vf r[LANES];
        for (int i = 0; i < LANES; i++)
            r[i] = load_any(src + k * src_tile + i * src_row);
        transpose_tile(r);
        for (int i = 0; i < LANES; i++) {
            float *d = dst + k * dst_tile + i * dst_row;
            store_any(d, accumulate ? load_any(d) + r[i] : r[i]);
        }
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

void NAME(conv_shift_dweight)(float *dweight, const float *dout, size_t dout_stride,
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

/* Rows oc0 .. of a and n0 .. of x (past M or N: the last again, not
 * stored) of dots: a tile of TILE_DS_OC × TILE_DS_Q sums, one fold. */
INLINE void dots_tile(float *out, const float *a, const float *x, int M, int N, size_t K,
                      int m0, int n0)
{
    const float *ar[TILE_DS_OC], *xr[TILE_DS_Q];
    for (int o = 0; o < TILE_DS_OC; o++)
        ar[o] = a + (size_t)(m0 + o < M ? m0 + o : M - 1) * K;
    for (int t = 0; t < TILE_DS_Q; t++)
        xr[t] = x + (size_t)(n0 + t < N ? n0 + t : N - 1) * K;
    vf acc[LANES];
    for (int j = 0; j < LANES; j++)
        acc[j] = (vf){0};
    for (size_t k = 0; k < K; k += LANES) {
        vf dv[TILE_DS_OC], xv[TILE_DS_Q];
        for (int o = 0; o < TILE_DS_OC; o++)
            dv[o] = V(ar[o] + k);
        for (int t = 0; t < TILE_DS_Q; t++)
            xv[t] = V(xr[t] + k);
        outer_products(acc, dv, xv);
    }
    vf sums = fold(acc);
    for (int o = 0; o < TILE_DS_OC && m0 + o < M; o++) {
        float *row = out + (size_t)(m0 + o) * N + n0;
        if (n0 + TILE_DS_Q <= N) {   /* one short vector, from a register */
            typedef float vq __attribute__((vector_size(TILE_DS_Q * sizeof(float))));
            vq have, add;
            memcpy(&have, row, sizeof have);
            memcpy(&add, (const float *)&sums + o * TILE_DS_Q, sizeof add);
            have += add;
            memcpy(row, &have, sizeof have);
        } else {
            for (int t = 0; t < N - n0; t++)
                row[t] += sums[o * TILE_DS_Q + t];
        }
    }
}

void NAME(dots)(float *out, size_t out_batch, const float *a, size_t a_batch, const float *x,
                size_t x_batch, int M, int N, size_t K, int batches)
{
    for (int b = 0; b < batches; b++)
        for (int m0 = 0; m0 < M; m0 += TILE_DS_OC)
            for (int n0 = 0; n0 < N; n0 += TILE_DS_Q)
                dots_tile(out + b * out_batch, a + b * a_batch, x + b * x_batch, M, N, K, m0,
                          n0);
}
