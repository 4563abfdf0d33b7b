/* optim.c: the optimizers of optim.h. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "optim.h"

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

void amil_optim_step(struct amil_optimizer *o, float *w, const float *grads)
{
    o->step++;
    /* Scalars as PyTorch passes them: Python doubles (1 - beta1 computed in
     * double) rounded to float by the float kernels. */
    float lr = (float)o->lr, decay = (float)o->decay, eps = (float)o->eps;
    float b1 = (float)o->beta1, b2 = (float)o->beta2, momentum = (float)o->momentum;
    float one_minus_b1 = (float)(1 - o->beta1), one_minus_b2 = (float)(1 - o->beta2);
    float shrink = (float)(1 - o->lr * o->decay);   /* AdamW's */
    switch (o->kind) {
    case AMIL_ADAM:
    case AMIL_ADAMW: {
        /* bias corrections in double, as Python computes them */
        double correction1 = 1 - pow(o->beta1, (double)o->step);
        float step_size = (float)(o->lr / correction1);
        float root2 = (float)sqrt(1 - pow(o->beta2, (double)o->step));
        for (size_t i = 0; i < o->n; i++) {
            float g = grads[i];
            if (o->kind == AMIL_ADAMW)
                w[i] *= shrink;
            else if (decay != 0)
                g += decay * w[i];
            o->m[i] = o->m[i] * b1 + g * one_minus_b1;
            o->v[i] = o->v[i] * b2 + one_minus_b2 * g * g;   /* addcmul's order */
            float denom = sqrtf(o->v[i]) / root2 + eps;
            w[i] += -step_size * (o->m[i] / denom);
        }
        break;
    }
    case AMIL_SGD:
        for (size_t i = 0; i < o->n; i++) {
            float g = grads[i] + decay * w[i];
            if (momentum != 0) {   /* the buffer starts as the first gradient */
                o->m[i] = o->step == 1 ? g : o->m[i] * momentum + g;
                g = o->m[i];
            }
            w[i] += -lr * g;
        }
        break;
    case AMIL_RMSPROP: {
        float alpha = (float)o->alpha, one_minus_alpha = (float)(1 - o->alpha);
        for (size_t i = 0; i < o->n; i++) {
            float g = grads[i] + decay * w[i];
            o->v[i] = o->v[i] * alpha + one_minus_alpha * g * g;
            float avg = sqrtf(o->v[i]) + eps;
            if (momentum != 0) {
                o->m[i] = o->m[i] * momentum + g / avg;
                w[i] += -lr * o->m[i];
            } else {
                w[i] += -lr * (g / avg);
            }
        }
        break;
    }
    }
}

void amil_optim_to_record(const struct amil_optimizer *o, const struct amil_param *params,
                          int nparams, struct amil_record *r)
{
    amil_meta_set(r, "optimizer", names[o->kind]);
    amil_meta_setf(r, "optimizer_step", "%ld", o->step);
    amil_meta_setf(r, "lr", "%.17g", o->lr);
    amil_meta_setf(r, "beta1", "%.17g", o->beta1);
    amil_meta_setf(r, "beta2", "%.17g", o->beta2);
    amil_meta_setf(r, "eps", "%.17g", o->eps);
    amil_meta_setf(r, "decay", "%.17g", o->decay);
    amil_meta_setf(r, "momentum", "%.17g", o->momentum);
    amil_meta_setf(r, "alpha", "%.17g", o->alpha);
    for (int i = 0; i < nparams; i++) {
        char name[96];
        const float *state[2] = {o->m, o->v};
        for (int s = 0; s < 2; s++) {
            snprintf(name, sizeof name, "optimizer.%s.%s", params[i].name, s ? "v" : "m");
            struct amil_tensor *t = amil_put(r, name, AMIL_F32, params[i].ndim, params[i].shape);
            memcpy(t->data, state[s] + (params[i].offset - o->base), t->nbytes);
        }
    }
}

int amil_optim_from_record(struct amil_optimizer *o, const struct amil_param *params,
                           int nparams, const struct amil_record *r)
{
    const char *kind = amil_meta_get(r, "optimizer");
    if (!kind || amil_optim_parse(kind) != (int)o->kind)
        return amil_fail("the checkpoint's optimizer is %s, not %s", kind ? kind : "missing",
                         names[o->kind]);
    long step;
    if (amil_meta_long(r, "optimizer_step", 0, 1L << 40, &step) != 1)
        return amil_fail("the checkpoint has no optimizer_step");
    o->step = step;
    for (int i = 0; i < nparams; i++) {
        char name[96];
        float *state[2] = {o->m, o->v};
        for (int s = 0; s < 2; s++) {
            snprintf(name, sizeof name, "optimizer.%s.%s", params[i].name, s ? "v" : "m");
            const struct amil_tensor *t = amil_find(r, name);
            if (!t || t->dtype != AMIL_F32 || t->nbytes != params[i].count * sizeof(float))
                return amil_fail("the checkpoint has no F32 tensor %s of the right size",
                                 name);
            memcpy(state[s] + (params[i].offset - o->base), t->data, t->nbytes);
        }
    }
    return 0;
}
