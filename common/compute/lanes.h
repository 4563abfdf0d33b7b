/* lanes.h: what the kernel sources (kernels.c, kernels_shift.c,
 * kernels_winograd.c) share: the vector types of one instruction set,
 * their helpers, the register tiles' sizes, and each kernel's declaration
 * for kernels.c's table.  Each of those files is compiled once per
 * instruction set (the Makefile defines ISA and LANES and passes
 * -mavx512f, -mavx2 -mfma, or nothing) with -ffp-contract=fast, so that
 * acc += w * x becomes one fused multiply-add where the set has one.
 * Private: only those files include it. */
#ifndef AMIL_LANES_H
#define AMIL_LANES_H

#include <stdlib.h>
#include <string.h>
#if LANES > 4
#include <immintrin.h>
#endif

#include "base/base.h"
#include "compute/kernels.h"

#if !defined(ISA) || !defined(LANES)
#error "the kernels are compiled with -DISA=name -DLANES=n (see the Makefile)"
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
INLINE vi splat_int(int32_t s) { return __builtin_shuffle((vi){s}, (vi){0}); }

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

/* Kernel f of this instruction set (f_avx512, ...), of the type of its
 * entry in struct amil_kernels. */
#define KERNEL(f) __typeof__(*((struct amil_kernels *)0)->f) NAME(f)
KERNEL(conv5);
KERNEL(conv5_dweight);
KERNEL(conv5_dinput);
KERNEL(pool_bias_relu);
KERNEL(unpool_relu);
KERNEL(dense);
KERNEL(dense_dweight);
KERNEL(conv_shift);
KERNEL(conv_shift_dweight);
KERNEL(dots);
KERNEL(transpose);
KERNEL(product);
KERNEL(product_add);
KERNEL(gelu);
KERNEL(product_bf16);
KERNEL(to_bf16);
KERNEL(pairs_bf16);
KERNEL(softmax);
KERNEL(winograd_input_row);
KERNEL(winograd_output);
KERNEL(winograd5_weights);
KERNEL(winograd5_input);
KERNEL(winograd5_output);
KERNEL(winograd5_doutput);
KERNEL(winograd5_dweights);
KERNEL(winograd5_dinput);

#endif
