/* bench/step.c: times one training step (forward, backward, Adam) and one
 * inference (featurize, attend, classify) of the paper's model on a bag of
 * random patches, in this process, as bench/train.sh's peer to PyTorch.
 *
 *   step PATCHES CHANNELS THREADS SECONDS
 *   step --isa              the instruction sets this CPU runs, best first
 *
 * prints: "train_ms INFER_ms gflop_train gflop_infer" (AMIL_ISA chooses the
 * kernels) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/base.h"
#include "compute/kernels.h"
#include "compute/nn.h"
#include "compute/optim.h"
#include "compute/parallel.h"
#include "models/mil.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    amil_init(argc, argv);
    if (argc == 2 && strcmp(argv[1], "--isa") == 0) {
        const struct amil_kernels *sets[3];
        int n = amil_kernels_available(sets);
        for (int i = 0; i < n; i++)
            printf("%s%s", sets[i]->name, i + 1 < n ? " " : "\n");
        return 0;
    }
    if (!amil_kernels())
        amil_die("%s", amil_error());
    if (argc != 5)
        amil_die("usage: step PATCHES CHANNELS THREADS SECONDS");
    int n = atoi(argv[1]), channels = atoi(argv[2]);
    double seconds = atof(argv[4]);
    amil_threads(atoi(argv[3]));
    struct amil_mil m;
    if (amil_mil_init(&m, AMIL_MIL_PLAIN, channels, 28, 2, 500, 128, 1) < 0)
        amil_die("%s", amil_error());
    amil_params_randomize(&m.params, 1);
    size_t bytes = (size_t)n * 28 * 28 * channels;
    uint8_t *patches = amil_xmalloc(bytes);
    srand(1);
    for (size_t i = 0; i < bytes; i++)
        patches[i] = (uint8_t)(rand() & 255);
    struct amil_mil_work w = {0};
    struct amil_optimizer o;
    amil_optim_init(&o, AMIL_ADAM, m.params.nweights);
    o.lr = 1e-4, o.decay = 1e-4;
    float *grads = amil_xmalloc(sizeof *grads * m.params.nweights);
    double times[2];
    for (int phase = 0; phase < 2; phase++) {
        long reps = 0;
        double start = 0;
        for (long k = 0;; k++) {
            if (k == 2)            /* two warm-up rounds */
                start = now();
            if (phase == 0) {
                memset(grads, 0, sizeof *grads * m.params.nweights);
                amil_mil_step(&m, &w, patches, n, 1, grads);
                amil_optim_step(&o, m.params.weights, grads);
            } else {
                amil_mil_featurize(&m, &w, patches, n);
                amil_mil_attend(&m, &w, w.h, n);
                amil_mil_classify(&m, &w, w.m);
            }
            if (k >= 2)
                reps++;
            if (k >= 4 && now() - start > seconds)
                break;
        }
        times[phase] = (now() - start) / reps * 1e3;
    }
    /* multiply-adds of the three big layers, forward; training is 3 times
     * that, less conv1's input gradient */
    double conv1 = 2.0 * 20 * 25 * channels * 24 * 24 * n;
    double conv2 = 2.0 * 50 * 500 * 8 * 8 * n, fc = 2.0 * 800 * 500 * n;
    double forward = conv1 + conv2 + fc, backward = conv1 + 2 * conv2 + 2 * fc;
    printf("%.3f %.3f %.4f %.4f\n", times[0], times[1], (forward + backward) / 1e9,
           forward / 1e9);
    return 0;
}
