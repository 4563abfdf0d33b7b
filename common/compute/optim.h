/* optim.h: optimizers over a flat parameter buffer, as PyTorch 1.13 defines
 * them (torch.optim.Adam, AdamW, SGD, RMSprop, non-foreach), in float32 with
 * the same order of operations, so that a few steps agree with PyTorch to
 * float rounding. */
#ifndef AMIL_OPTIM_H
#define AMIL_OPTIM_H

#include <stddef.h>

#include "base/base.h"
#include "compute/params.h"
#include "record/record.h"

enum amil_optim_kind { AMIL_ADAM, AMIL_ADAMW, AMIL_SGD, AMIL_RMSPROP };

struct amil_optimizer {
    enum amil_optim_kind kind;
    double lr;
    double beta1, beta2;    /* Adam, AdamW */
    double eps;             /* Adam 1e-8, RMSprop 1e-8 */
    double decay;           /* L2 added to the gradient; AdamW: decoupled */
    double momentum;        /* SGD, RMSprop */
    double alpha;           /* RMSprop's smoothing, 0.99 */
    long step;              /* steps taken */
    size_t n;
    size_t base;            /* where in the flat buffer its n parameters start
                               (a frozen backbone's trained head); 0 */
    float *m;               /* Adam's exp_avg; SGD's and RMSprop's momentum buffer */
    float *v;               /* Adam's exp_avg_sq; RMSprop's square_avg */
};

const char *amil_optim_name(enum amil_optim_kind kind);
int amil_optim_parse(const char *name);   /* -1 if unknown */
/* PyTorch's defaults for the kind (lr: Adam 1e-3, SGD needs one: 1e-2 here,
 * RMSprop 1e-2), zero state for n parameters. */
void amil_optim_init(struct amil_optimizer *o, enum amil_optim_kind kind, size_t n);
void amil_optim_free(struct amil_optimizer *o);
/* One step: weights (n) move along grads (n); grads is left unchanged. */
void amil_optim_step(struct amil_optimizer *o, float *weights, const float *grads);
/* The same step, leaving grads zero for the next one's gradients to be
 * added to: a training loop's, one pass over them where a step and a
 * memset took two. */
void amil_optim_step_and_zero(struct amil_optimizer *o, float *weights, float *grads);

/* The state as tensors optimizer.<name>.m / .v for each parameter name and
 * its slice of the flat buffer (offset - base into the state), and
 * metadata (optimizer, step, lr, ...). */
void amil_optim_to_record(const struct amil_optimizer *o, const struct amil_param *params,
                          int nparams, struct amil_record *r);
/* Reads the step, the settings and the state back; o must be initialized
 * for the same n.  Returns 0, or -1 with a message. */
int amil_optim_from_record(struct amil_optimizer *o, const struct amil_param *params,
                           int nparams, const struct amil_record *r);

#endif
