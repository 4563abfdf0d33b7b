/* peak.c: this machine's single-precision FMA peak and memory bandwidth,
 * measured with loops of our own (not a BLAS), so that a kernel's GFLOP/s
 * can be read as a share of what the core can do.
 *
 *   peak [avx512|avx2]   prints "GFLOP/s" of one thread's FMA loop
 *   peak bandwidth       prints "GB/s" of one thread reading 256 MiB
 *
 * The FMA loop keeps 12 independent accumulators in registers (more than
 * latency × throughput, 4 × 2 on current x86 cores) and never touches
 * memory. */
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

#define ACCUMULATORS 24   /* FMAs per iteration of the loops below */

/* Twelve named accumulators, two FMAs each per iteration: written out, so
 * that no compiler keeps them in memory. */
#define FMA_ALL(fma)                                                                  \
    do {                                                                              \
        a0 = fma(a0, x, y), a1 = fma(a1, x, y), a2 = fma(a2, x, y), a3 = fma(a3, x, y);     \
        a4 = fma(a4, x, y), a5 = fma(a5, x, y), a6 = fma(a6, x, y), a7 = fma(a7, x, y);     \
        a8 = fma(a8, x, y), a9 = fma(a9, x, y), a10 = fma(a10, x, y), a11 = fma(a11, x, y); \
    } while (0)

__attribute__((target("avx512f"))) static double fma512(long iterations)
{
    __m512 x = _mm512_set1_ps(0.999999f), y = _mm512_set1_ps(1e-7f);
    /* distinct starting values, so that no two chains can be merged */
#define START(set) a0 = set(0), a1 = set(1), a2 = set(2), a3 = set(3), a4 = set(4), \
    a5 = set(5), a6 = set(6), a7 = set(7), a8 = set(8), a9 = set(9), a10 = set(10), a11 = set(11)
    __m512 START(_mm512_set1_ps);
    for (long it = 0; it < iterations; it++) {
        FMA_ALL(_mm512_fmadd_ps);
        FMA_ALL(_mm512_fmadd_ps);
    }
    __m512 sum = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                               _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
    sum = _mm512_add_ps(sum, _mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11)));
    return _mm512_reduce_add_ps(sum);
}

__attribute__((target("avx2,fma"))) static double fma256(long iterations)
{
    __m256 x = _mm256_set1_ps(0.999999f), y = _mm256_set1_ps(1e-7f);
    __m256 START(_mm256_set1_ps);
    for (long it = 0; it < iterations; it++) {
        FMA_ALL(_mm256_fmadd_ps);
        FMA_ALL(_mm256_fmadd_ps);
    }
    __m256 sum = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                               _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
    sum = _mm256_add_ps(sum, _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)));
    float lanes[8], total = 0;
    _mm256_storeu_ps(lanes, sum);
    for (int j = 0; j < 8; j++)
        total += lanes[j];
    return total;
}

/* Sums n floats with eight independent vector sums: bound by the memory,
 * not by the adds' latency. */
__attribute__((target("avx2"))) static double read_all(const float *x, size_t n)
{
    __m256 sum[8];
    for (int j = 0; j < 8; j++)
        sum[j] = _mm256_setzero_ps();
    for (size_t i = 0; i + 64 <= n; i += 64)
        for (int j = 0; j < 8; j++)
            sum[j] = _mm256_add_ps(sum[j], _mm256_load_ps(x + i + 8 * j));
    float lanes[8], total = 0;
    for (int j = 1; j < 8; j++)
        sum[0] = _mm256_add_ps(sum[0], sum[j]);
    _mm256_storeu_ps(lanes, sum[0]);
    for (int j = 0; j < 8; j++)
        total += lanes[j];
    return total;
}

int main(int argc, char **argv)
{
    const char *what = argc > 1 ? argv[1] : "avx512";
    if (strcmp(what, "bandwidth") == 0) {
        size_t n = (size_t)64 << 20;   /* floats: 256 MiB */
        float *x = aligned_alloc(64, n * sizeof *x);
        for (size_t i = 0; i < n; i++)
            x[i] = (float)(i & 255);
        double best = 1e30, sink = 0;
        for (int rep = 0; rep < 5; rep++) {
            double t = now();
            sink += read_all(x, n);
            t = now() - t;
            best = t < best ? t : best;
        }
        printf("%.1f\n", n * sizeof *x / best / 1e9 + 0 * sink);
        free(x);
        return 0;
    }
    int wide = strcmp(what, "avx512") == 0;
    if (wide ? !__builtin_cpu_supports("avx512f") : !__builtin_cpu_supports("fma")) {
        fprintf(stderr, "peak: this CPU has no %s\n", what);
        return 1;
    }
    long iterations = 20000000;
    double best = 1e30, sink = 0;
    for (int rep = 0; rep < 5; rep++) {
        double t = now();
        sink += wide ? fma512(iterations) : fma256(iterations);
        t = now() - t;
        best = t < best ? t : best;
    }
    double flops = 2.0 * ACCUMULATORS * (wide ? 16 : 8) * iterations;
    printf("%.1f\n", flops / best / 1e9 + 0 * sink);
    return 0;
}
