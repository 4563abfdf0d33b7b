/* params.c: the parameter table of params.h and input normalization. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gsl/gsl_rng.h>

#include "base/base.h"
#include "compute/params.h"
#include "record/record.h"

static const char *const norm_names[] = {"x/255", "mnist", "imagenet"};

const char *amil_norm_name(enum amil_norm norm) { return norm_names[norm]; }

int amil_norm_parse(const char *name)
{
    return strcmp(name, "none") == 0 ? AMIL_NORM_NONE : amil_name_index(norm_names, 3, name);
}

void amil_norm_table(enum amil_norm norm, float table[3][256])
{
    /* ToTensor's img.float().div(255), then Normalize's (x - mean) / std,
     * in float as PyTorch */
    static const float means[3][3] = {{0, 0, 0}, {0.1307f, 0.1307f, 0.1307f},
                                      {0.485f, 0.456f, 0.406f}};
    static const float stds[3][3] = {{1, 1, 1}, {0.3081f, 0.3081f, 0.3081f},
                                     {0.229f, 0.224f, 0.225f}};
    for (int c = 0; c < 3; c++)
        for (int v = 0; v < 256; v++) {
            float x = (float)v / 255.0f;
            table[c][v] = norm == AMIL_NORM_NONE ? x : (x - means[norm][c]) / stds[norm][c];
        }
}

int amil_norm_of_record(const struct amil_record *r, enum amil_norm *norm)
{
    const char *text = amil_record_meta(r, "normalization");
    int n = text ? amil_norm_parse(text) : AMIL_NORM_NONE;
    if (n < 0)
        return amil_fail("normalization '%s' is not x/255, mnist or imagenet", text);
    *norm = n;
    return 0;
}

/* ---- the table ---------------------------------------------------------- */

int amil_params_add(struct amil_params *t, const char *name, int ndim,
                    const int64_t *shape, size_t fan_in)
{
    if (t->n == AMIL_PARAMS_MAX)
        return amil_fail("more than %d parameters", AMIL_PARAMS_MAX);
    struct amil_param *p = &t->at[t->n];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    p->ndim = ndim;
    p->count = 1;
    for (int d = 0; d < ndim; d++) {
        p->shape[d] = shape[d];
        if (shape[d] < 0 || __builtin_mul_overflow(p->count, (size_t)shape[d], &p->count))
            return amil_fail("parameter '%s' is too large", name);
    }
    /* every parameter starts on a 64-byte line (the buffer is aligned):
     * the kernels stream the linear layer's weight from memory, and loads
     * across two lines had made that 1.6x slower */
    p->offset = (t->nweights + 15) / 16 * 16;
    p->fan_in = fan_in;
    size_t end;
    if (__builtin_add_overflow(p->offset, p->count, &end) || end > AMIL_PARAMS_MAX_WEIGHTS)
        return amil_fail("the parameters need more than %zu floats",
                         (size_t)AMIL_PARAMS_MAX_WEIGHTS);
    t->nweights = end;
    return t->n++;
}

void amil_params_alloc(struct amil_params *t)
{
    /* calloc, then the first 64-byte line in it: zero pages stay unmapped
     * until written (VGG19's frozen 550 MB are borrowed from the file) */
    t->buffer = amil_xcalloc(t->nweights + 16, sizeof(float));
    t->weights = (float *)(((uintptr_t)t->buffer + 63) & ~(uintptr_t)63);
    for (int i = 0; i < t->n; i++)
        t->at[i].data = t->weights + t->at[i].offset;
}

void amil_params_free(struct amil_params *t)
{
    free(t->buffer);
    t->buffer = NULL;
    t->weights = NULL;
    for (int i = 0; i < t->n; i++)
        t->at[i].data = NULL;
}

const struct amil_param *amil_params_find(const struct amil_params *t, const char *name)
{
    for (int i = 0; i < t->n; i++)
        if (strcmp(t->at[i].name, name) == 0)
            return &t->at[i];
    return NULL;
}

void amil_params_randomize(struct amil_params *t, unsigned long seed)
{
    gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(rng, seed);
    for (int i = 0; i < t->n; i++) {
        const struct amil_param *p = &t->at[i];
        if (p->fan_in == 0) {   /* a norm or a scale: the identity; embeddings 0 */
            const char *dot = strrchr(p->name, '.'), *suffix = dot ? dot + 1 : p->name;
            float value = strcmp(suffix, "weight") == 0 || strcmp(suffix, "running_var") == 0 ||
                          strcmp(suffix, "gamma") == 0;
            for (size_t j = 0; j < p->count; j++)
                p->data[j] = value;
            continue;
        }
        double bound = 1 / sqrt((double)p->fan_in);
        for (size_t j = 0; j < p->count; j++)
            p->data[j] = (float)((2 * gsl_rng_uniform(rng) - 1) * bound);
    }
    gsl_rng_free(rng);
}

/* ---- records ------------------------------------------------------------ */

void amil_params_to_record(const struct amil_params *t, struct amil_record *r)
{
    for (int i = 0; i < t->n; i++) {
        const struct amil_param *p = &t->at[i];
        struct amil_tensor *tensor = amil_record_put(r, p->name, AMIL_F32, p->ndim, p->shape);
        memcpy(tensor->data, p->data, tensor->nbytes);
        const char *suffix = strrchr(p->name, '.');
        if (p->fan_in == 0 && suffix && strcmp(suffix, ".running_var") == 0) {
            char name[80];
            snprintf(name, sizeof name, "%.*s.num_batches_tracked",
                     (int)(suffix - p->name), p->name);
            amil_record_put(r, name, AMIL_I64, 0, NULL);
        }
    }
}

int amil_param_fits(const struct amil_param *p, const struct amil_tensor *t)
{
    int same = t && t->dtype == AMIL_F32 && t->ndim == p->ndim &&
               t->nbytes / sizeof(float) == p->count;
    for (int d = 0; same && d < p->ndim; d++)
        same = t->shape[d] == p->shape[d];
    return same;
}

int amil_params_check(const struct amil_params *t, const struct amil_record *r)
{
    for (int i = 0; i < t->n; i++) {
        const struct amil_param *p = &t->at[i];
        const struct amil_tensor *w = amil_record_find(r, p->name);
        if (!amil_param_fits(p, w))
            return amil_fail("tensor '%s' is missing or not F32 of the shape the model "
                             "needs", p->name);
        if (amil_tensor_finite(p->name, w->data, w->ndim, w->shape, -1) < 0)
            return -1;   /* a weight that is not a number makes every output one */
    }
    return 0;
}

/* Mixes one 64-bit word into h (a multiply and xor-shift per word, with
 * splitmix64's finalizer at the end): fast over a backbone's millions of
 * weights, and any changed bit changes the result. */
static uint64_t mix(uint64_t h, uint64_t word)
{
    h ^= word;
    h *= 0x9E3779B97F4A7C15ULL;
    return h ^ (h >> 29);
}

uint64_t amil_params_fingerprint(const struct amil_params *t, int from, int to, uint64_t after)
{
    uint64_t h = mix(0x243F6A8885A308D3ULL, after);
    for (int i = from; i < to; i++) {
        const struct amil_param *p = &t->at[i];
        for (const char *c = p->name; *c; c++)
            h = mix(h, (unsigned char)*c);
        for (int d = 0; d < p->ndim; d++)
            h = mix(h, (uint64_t)p->shape[d]);
        const unsigned char *bytes = (const unsigned char *)p->data;
        size_t n = p->count * sizeof(float), k = 0;
        for (; k + 8 <= n; k += 8) {
            uint64_t word;
            memcpy(&word, bytes + k, 8);
            h = mix(h, word);
        }
        for (; k < n; k++)
            h = mix(h, bytes[k]);
    }
    h ^= h >> 30, h *= 0xBF58476D1CE4E5B9ULL;
    h ^= h >> 27, h *= 0x94D049BB133111EBULL;
    return h ^ (h >> 31);
}

void amil_params_copy(struct amil_params *t, const struct amil_record *r)
{
    for (int i = 0; i < t->n; i++)
        memcpy(t->at[i].data, amil_record_find(r, t->at[i].name)->data,
               t->at[i].count * sizeof(float));
}
