/* bench/sgemm.c THREADS: this machine's SGEMM rate (1024^3, OpenBLAS), the
 * ceiling bench/train.sh measures the model against.  Prints GFLOP/s. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <cblas.h>

int main(int argc, char **argv)
{
    int n = 1024;
    openblas_set_num_threads(argc > 1 ? atoi(argv[1]) : 1);
    float *a = calloc((size_t)n * n, 4), *b = calloc((size_t)n * n, 4), *c = calloc((size_t)n * n, 4);
    for (int i = 0; i < n * n; i++)
        a[i] = (float)(i % 7) * 0.1f, b[i] = (float)(i % 5) * 0.1f;
    struct timespec t0, t1;
    int reps = 0;
    double seconds;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n);
        reps++;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        seconds = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9;
    } while (seconds < 1.5);
    printf("%.1f\n", 2.0 * n * n * n * reps / seconds / 1e9);
    free(a), free(b), free(c);
    return 0;
}
