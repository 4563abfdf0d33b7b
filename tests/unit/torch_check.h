/* torch_check.h: what the unit tests that hold amil to a PyTorch fixture
 * share: where the fixtures are, the weights both sides compute from a
 * hash, and the comparison.  Include after cmocka.h. */
#ifndef AMIL_TORCH_CHECK_H
#define AMIL_TORCH_CHECK_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "compute/params.h"
#include "record/record.h"
#include "test_data.h"

/* The fixtures' weights: parameter t, element j: u = splitmix64(t 2^32 +
 * j) in [0, 1), from its top 53 bits (fixture.py's and cnn_fixture.py's
 * hash_uniform()). */
static double hash_uniform(uint64_t t, uint64_t j)
{
    uint64_t z = (t << 32) + j + 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    return (double)(z >> 11) * 0x1p-53;
}

/* fixture.py's and clam_fixture.py's weights(): each parameter t of the
 * table, element j, (2u - 1) / sqrt(fan_in) with u = hash_uniform(t, j),
 * PyTorch's default distribution; parameters whose names begin with
 * loud_prefix 8 times that, so that the attention is far from uniform. */
static inline void hash_weights(struct amil_params *params, const char *loud_prefix)
{
    for (int t = 0; t < params->n; t++) {
        const struct amil_param *p = &params->at[t];
        double gain = strncmp(p->name, loud_prefix, strlen(loud_prefix)) == 0 ? 8.0 : 1.0;
        for (size_t j = 0; j < p->count; j++)
            params->weights[p->offset + j] =
                (float)(gain * (2 * hash_uniform(t, j) - 1) / sqrt((double)p->fan_in));
    }
}

/* max |ours - theirs| / max |theirs|, over n values */
static double relative_error(const float *ours, const float *theirs, size_t n)
{
    double diff = 0, scale = 0;
    for (size_t i = 0; i < n; i++) {
        diff = fmax(diff, fabs((double)ours[i] - theirs[i]));
        scale = fmax(scale, fabs(theirs[i]));
    }
    return scale > 0 ? diff / scale : diff;
}

/* Fails unless ours (as many floats as the fixture's tensor) is within a
 * relative error of tolerance of record r's tensor name; prints both
 * errors, ours and PyTorch float32's, as the fixture records it. */
static void expect_close(const char *what, const float *ours, const struct amil_record *r,
                         const char *name, double tolerance)
{
    const struct amil_tensor *t = amil_record_find(r, name);
    if (!t)
        fail_msg("fixture has no tensor %s", name);
    double e = relative_error(ours, t->data, t->nbytes / sizeof(float));
    char key[160];
    snprintf(key, sizeof key, "torch_float32_error.%s", name);
    const char *theirs = amil_record_meta(r, key);
    if (theirs)
        print_message("# %-10s %-40s relative error %.2e (PyTorch float32: %s)\n", what,
                      name, e, theirs);
    else
        print_message("# %-10s %-40s relative error %.2e\n", what, name, e);
    if (!(e < tolerance))
        fail_msg("%s %s: relative error %.3g over %.g", what, name, e, tolerance);
}

#endif
