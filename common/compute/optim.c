/* optim.c: the optimizers of optim.h. */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "compute/optim.h"
#include "compute/parallel.h"
#include "record/record.h"

static const char *const names[] = {"adam", "adamw", "sgd", "rmsprop"};

const char *amil_optim_name(enum amil_optim_kind kind) { return names[kind]; }

int amil_optim_parse(const char *name)
{
    return amil_name_index(names, 4, name);
}

void amil_optim_init(struct amil_optimizer *o, enum amil_optim_kind kind, size_t n)
{
    memset(o, 0, sizeof *o);
    o->kind = kind;
    o->lr = kind == AMIL_ADAM || kind == AMIL_ADAMW ? 1e-3 : 1e-2;
    o->beta1 = 0.9;
    o->beta2 = 0.999;
    o->eps = 1e-8;
    o->decay = kind == AMIL_ADAMW ? 1e-2 : 0;
    o->alpha = 0.99;
    o->n = n;
    o->m = amil_xcalloc(n, sizeof *o->m);
    o->v = amil_xcalloc(n, sizeof *o->v);
}

void amil_optim_free(struct amil_optimizer *o)
{
    free(o->m);
    free(o->v);
    memset(o, 0, sizeof *o);
}

/* One step's scalars, as PyTorch passes them: Python doubles (1 - beta1
 * computed in double) rounded to float by the float kernels. */
struct step {
    const struct amil_optimizer *o;
    float *w;
    const float *grads;
    float *zero;   /* grads again, to be zeroed once read; or NULL */
    float lr, decay, eps, b1, b2, momentum, one_minus_b1, one_minus_b2, shrink;
    float step_size, root2, alpha, one_minus_alpha;
};

/* Elements per task: every thread a contiguous range of whole chunks. */
#define CHUNK 4096

/* Elements [first·CHUNK, end·CHUNK) of one step; element by element, so
 * that any split among threads, and any vector width, gives the same bytes
 * (no multiply-add is contracted: -std=c11 means -ffp-contract=off).
 * Compiled for AVX-512 and AVX2 too, the loader choosing: the square roots
 * and divisions are most of the time. */
__attribute__((target_clones("avx512f", "avx2", "default")))
static void step_chunks(void *ctx, int first, int end, int thread)
{
    (void)thread;
    const struct step s = *(const struct step *)ctx;   /* a copy: the stores below
                                                           cannot alias it */
    const struct amil_optimizer *o = s.o;
    float *w = s.w, *m = o->m, *v = o->v;
    const float *grads = s.grads;
    size_t from = (size_t)first * CHUNK, to = (size_t)end * CHUNK;
    to = to < o->n ? to : o->n;
    switch (o->kind) {
    case AMIL_ADAM:
    case AMIL_ADAMW:
        for (size_t i = from; i < to; i++) {
            float g = grads[i];
            if (s.zero)
                s.zero[i] = 0;
            if (o->kind == AMIL_ADAMW)
                w[i] *= s.shrink;
            else if (s.decay != 0)
                g += s.decay * w[i];
            m[i] = m[i] * s.b1 + g * s.one_minus_b1;
            v[i] = v[i] * s.b2 + s.one_minus_b2 * g * g;   /* addcmul's order */
            float denom = sqrtf(v[i]) / s.root2 + s.eps;
            w[i] += -s.step_size * (m[i] / denom);
        }
        break;
    case AMIL_SGD:
        for (size_t i = from; i < to; i++) {
            float g = grads[i] + s.decay * w[i];
            if (s.zero)
                s.zero[i] = 0;
            if (s.momentum != 0) {   /* the buffer starts as the first gradient */
                m[i] = o->step == 1 ? g : m[i] * s.momentum + g;
                g = m[i];
            }
            w[i] += -s.lr * g;
        }
        break;
    case AMIL_RMSPROP:
        for (size_t i = from; i < to; i++) {
            float g = grads[i] + s.decay * w[i];
            if (s.zero)
                s.zero[i] = 0;
            v[i] = v[i] * s.alpha + s.one_minus_alpha * g * g;
            float avg = sqrtf(v[i]) + s.eps;
            if (s.momentum != 0) {
                m[i] = m[i] * s.momentum + g / avg;
                w[i] += -s.lr * m[i];
            } else {
                w[i] += -s.lr * (g / avg);
            }
        }
        break;
    }
}

static void step_of(struct amil_optimizer *o, float *w, const float *grads, float *zero)
{
    o->step++;
    struct step s = {
        .o = o, .w = w, .grads = grads, .zero = zero,
        .lr = (float)o->lr, .decay = (float)o->decay, .eps = (float)o->eps,
        .b1 = (float)o->beta1, .b2 = (float)o->beta2, .momentum = (float)o->momentum,
        .one_minus_b1 = (float)(1 - o->beta1), .one_minus_b2 = (float)(1 - o->beta2),
        .shrink = (float)(1 - o->lr * o->decay),   /* AdamW's */
        /* Adam's bias corrections in double, as Python computes them */
        .step_size = (float)(o->lr / (1 - pow(o->beta1, (double)o->step))),
        .root2 = (float)sqrt(1 - pow(o->beta2, (double)o->step)),
        .alpha = (float)o->alpha, .one_minus_alpha = (float)(1 - o->alpha),
    };
    amil_parallel((int)((o->n + CHUNK - 1) / CHUNK), step_chunks, &s);
}

void amil_optim_step(struct amil_optimizer *o, float *w, const float *grads)
{
    step_of(o, w, grads, NULL);
}

void amil_optim_step_and_zero(struct amil_optimizer *o, float *w, float *grads)
{
    step_of(o, w, grads, grads);
}

/* The settings a record carries, by their metadata keys. */
static const struct {
    const char *key;
    size_t offset;
} settings[] = {
    {"lr", offsetof(struct amil_optimizer, lr)},
    {"beta1", offsetof(struct amil_optimizer, beta1)},
    {"beta2", offsetof(struct amil_optimizer, beta2)},
    {"eps", offsetof(struct amil_optimizer, eps)},
    {"decay", offsetof(struct amil_optimizer, decay)},
    {"momentum", offsetof(struct amil_optimizer, momentum)},
    {"alpha", offsetof(struct amil_optimizer, alpha)},
};
#define SETTING(o, i) ((double *)((char *)(o) + settings[i].offset))

void amil_optim_to_record(const struct amil_optimizer *o, const struct amil_param *params,
                          int nparams, struct amil_record *r)
{
    amil_record_set_meta(r, "optimizer", names[o->kind]);
    amil_record_set_metaf(r, "optimizer_step", "%ld", o->step);
    for (size_t i = 0; i < sizeof settings / sizeof *settings; i++)
        amil_record_set_metaf(r, settings[i].key, "%.17g", *SETTING(o, i));
    for (int i = 0; i < nparams; i++) {
        char name[96];
        const float *state[2] = {o->m, o->v};
        for (int s = 0; s < 2; s++) {
            snprintf(name, sizeof name, "optimizer.%s.%s", params[i].name, s ? "v" : "m");
            struct amil_tensor *t =
                amil_record_put(r, name, AMIL_F32, params[i].ndim, params[i].shape);
            memcpy(t->data, state[s] + (params[i].offset - o->base), t->nbytes);
        }
    }
}

int amil_optim_from_record(struct amil_optimizer *o, const struct amil_param *params,
                           int nparams, const struct amil_record *r)
{
    const char *kind = amil_record_meta(r, "optimizer");
    if (!kind || amil_optim_parse(kind) != (int)o->kind)
        return amil_fail("the checkpoint's optimizer is %s, not %s", kind ? kind : "missing",
                         names[o->kind]);
    long step;
    if (amil_record_meta_long(r, "optimizer_step", 0, 1L << 40, &step) != 1)
        return amil_fail("the checkpoint has no optimizer_step");
    o->step = step;
    for (size_t i = 0; i < sizeof settings / sizeof *settings; i++) {
        const char *v = amil_record_meta(r, settings[i].key);
        if (!v || amil_parse_double(v, 0, 1e6, SETTING(o, i)) < 0)
            return amil_fail("bad or missing %s", settings[i].key);
    }
    for (int i = 0; i < nparams; i++) {
        char name[96];
        float *state[2] = {o->m, o->v};
        for (int s = 0; s < 2; s++) {
            snprintf(name, sizeof name, "optimizer.%s.%s", params[i].name, s ? "v" : "m");
            const struct amil_tensor *t = amil_record_find(r, name);
            if (!t || t->dtype != AMIL_F32 || t->nbytes != params[i].count * sizeof(float))
                return amil_fail("the checkpoint has no F32 tensor %s of the right size",
                                 name);
            if (amil_tensor_finite(name, t->data, t->ndim, t->shape, -1) < 0)
                return -1;
            memcpy(state[s] + (params[i].offset - o->base), t->data, t->nbytes);
        }
    }
    return 0;
}
