/* kernels_bf16.c: the product of kernels.h in bfloat16, for CPUs with
 * AVX512_BF16: each vdpbf16ps multiplies 16 pairs of bfloat16 and adds
 * both products to float32 sums, twice the multiply-adds of an FMA.
 * Compiled once per instruction set as the other kernel files are; only
 * the AVX-512 set has it, and a caller checks amil_cpu_has_bf16() before
 * it takes it. */
#include <stdint.h>
#include <string.h>

#include "base/base.h"
#include "compute/lanes.h"

#if LANES == 16
#include <immintrin.h>

#define BF16 __attribute__((target("avx512f,avx512bw,avx512bf16,avx512vl")))

/* float to bfloat16, rounded to nearest even (NaN kept a NaN) */
static uint16_t to_bf16_one(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)(u >> 16 | 0x40);
    return (uint16_t)((u + 0x7fffu + (u >> 16 & 1)) >> 16);
}

BF16 void NAME(to_bf16)(uint16_t *dst, const float *src, size_t n)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256bh h = _mm512_cvtneps_pbh(_mm512_loadu_ps(src + i));
        memcpy(dst + i, &h, sizeof h);
    }
    for (; i < n; i++)
        dst[i] = to_bf16_one(src[i]);
}

/* dst (n, 2) = the pairs (row0[j], row1[j]) in bfloat16: two rows of a
 * product's operand interleaved, as product_bf16 reads them.  Sixteen
 * pairs at a time: both rows rounded into one vector of 32 (row0's low),
 * then their halves interleaved by a permutation of words. */
BF16 void NAME(pairs_bf16)(uint16_t *dst, const float *row0, const float *row1, size_t n)
{
    const __m512i interleave = _mm512_set_epi16(
        31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8,
        23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    size_t j = 0;
    for (; j + 16 <= n; j += 16) {
        __m512bh both = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(row1 + j), _mm512_loadu_ps(row0 + j));
        _mm512_storeu_si512(dst + 2 * j, _mm512_permutexvar_epi16(interleave, (__m512i)both));
    }
    for (; j < n; j++)
        dst[2 * j] = to_bf16_one(row0[j]), dst[2 * j + 1] = to_bf16_one(row1[j]);
}

/* Rows n0 .. n0+nb-1, columns (vectors) v0 .. v0+vb-1 of out */
BF16 static inline __attribute__((always_inline)) void
product_bf16_tile(float *out, size_t out_stride, const uint16_t *x, size_t x_p, size_t x_n,
                  const uint16_t *a, size_t a_stride, const float *bias, int pairs, int n0,
                  int v0, const int nb, const int vb)
{
    __m512 acc[TILE_PN][TILE_PV];
    for (int i = 0; i < nb; i++)
        for (int j = 0; j < vb; j++)
            acc[i][j] = bias ? _mm512_loadu_ps(bias + (size_t)(v0 + j) * 16) : _mm512_setzero_ps();
    for (int p = 0; p < pairs; p++) {
        const uint16_t *ap = a + (size_t)p * a_stride + (size_t)v0 * 32;
        __m512i av[TILE_PV];
        for (int j = 0; j < vb; j++)
            av[j] = _mm512_loadu_si512(ap + j * 32);
        for (int i = 0; i < nb; i++) {
            int32_t pair;
            memcpy(&pair, x + (size_t)(n0 + i) * x_n + (size_t)p * x_p, sizeof pair);
            __m512i xv = _mm512_set1_epi32(pair);
            for (int j = 0; j < vb; j++)
                acc[i][j] = _mm512_dpbf16_ps(acc[i][j], (__m512bh)av[j], (__m512bh)xv);
        }
    }
    for (int i = 0; i < nb; i++)
        for (int j = 0; j < vb; j++)
            _mm512_store_ps(out + (size_t)(n0 + i) * out_stride + (size_t)(v0 + j) * 16,
                            acc[i][j]);
}

#define TILE_BF16(nb, vb) \
    product_bf16_tile(out, out_stride, x, x_p, x_n, a, a_stride, bias, pairs, n, v, nb, vb)
#define ROWS_BF16(vb)                                 \
    switch (nb) {                                     \
    case 1: TILE_BF16(1, vb); break;                  \
    case 2: TILE_BF16(2, vb); break;                  \
    case 3: TILE_BF16(3, vb); break;                  \
    case 4: TILE_BF16(4, vb); break;                  \
    case 5: TILE_BF16(5, vb); break;                  \
    default: TILE_BF16(TILE_PN, vb); break;           \
    }

BF16 void NAME(product_bf16)(float *out, size_t out_stride, const uint16_t *x, size_t x_p,
                             size_t x_n, const uint16_t *a, size_t a_stride,
                             const float *bias, int pairs, int OC, int n_first, int n_end)
{
    int vectors = OC / 16;
    for (int v = 0; v < vectors; v += TILE_PV) {
        int vb = vectors - v < TILE_PV ? vectors - v : TILE_PV;
        for (int n = n_first; n < n_end; n += TILE_PN) {
            int nb = n_end - n < TILE_PN ? n_end - n : TILE_PN;
            switch (vb) {
            case 1: ROWS_BF16(1); break;
            case 2: ROWS_BF16(2); break;
            case 3: ROWS_BF16(3); break;
            default: ROWS_BF16(TILE_PV); break;
            }
        }
    }
}
#endif
