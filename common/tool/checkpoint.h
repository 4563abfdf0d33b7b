/* checkpoint.h: what train leaves after each epoch and resumes from: a
 * model's record with kind "checkpoint", the epochs done, the seed and the
 * batch of the run, and the optimizer's settings and state (optim.h).
 *
 * Randomness in training (the order of samples, net's crops, dropout)
 * comes from one generator per epoch, seeded from (seed, epoch), so that a
 * resumed run draws what an uninterrupted one would without replaying the
 * epochs before. */
#ifndef AMIL_CHECKPOINT_H
#define AMIL_CHECKPOINT_H

#include "base/base.h"
#include "compute/optim.h"
#include "compute/params.h"
#include "models/model.h"
#include "record/record.h"

struct amil_checkpoint {
    long epoch;             /* epochs done */
    long seed;              /* the run's --seed */
    long batch;             /* samples a step; 0 when a checkpoint has none */
};

/* Adds c and the optimizer over params (its trained ones) to model record r. */
void amil_checkpoint_to_record(struct amil_record *r, const struct amil_checkpoint *c,
                               const struct amil_optimizer *o, const struct amil_param *params,
                               int nparams);
/* Reads c, and makes o (amil_optim_init, for n floats of the parameter
 * buffer from base on) with the checkpoint's settings and state over
 * params.  Returns 0, or -1 with a message. */
int amil_checkpoint_from_record(const struct amil_record *r, struct amil_checkpoint *c,
                                struct amil_optimizer *o, size_t base, size_t n,
                                const struct amil_param *params, int nparams);

/* Resume from the checkpoint at path, of family's: the model into m (its
 * ops, impl and work), the optimizer into o (its trained parameters'
 * state), the run into c (a batch family's must name its batch).  0, or
 * -1 with a message that names path (not a checkpoint, another family's,
 * ...). */
int amil_checkpoint_load(const char *path, const struct amil_model_ops *family,
                         struct amil_model *m, struct amil_optimizer *o,
                         struct amil_checkpoint *c);

/* Into buf (size bytes): program and its args (n of them) again, any
 * --resume or -r with its value left out, then --resume path and a
 * newline: the command that goes on from the checkpoint at path.  Cut
 * short, never overrun, when it does not fit. */
void amil_resume_command(char *buf, size_t size, const char *program, int n,
                         char *const *args, const char *path);

/* The seed of epoch's generator (GSL's mt19937 keeps its low 32 bits):
 * splitmix64 of (seed, epoch), so that no two pairs share one in practice. */
unsigned long amil_epoch_seed(unsigned long seed, long epoch);

/* Checkpoints on the way and interrupts: on SIGINT and SIGTERM the
 * program (name, run as argv) says where the last checkpoint is and the
 * command that goes on from it (argv with --resume), or that there is none
 * yet, then dies of the signal; a checkpoint being written stays as it was. */
void amil_checkpoint_catch_interrupts(const char *name, int argc, char **argv);
/* r (the model's record, freed here) with c and o's state of params as a
 * checkpoint, written whole or not at all to path, and the interrupt
 * message brought up to date with no interrupt in between.  0, or -1 with
 * a message. */
int amil_checkpoint_save(const char *path, struct amil_record *r, const struct amil_checkpoint *c,
                         const struct amil_optimizer *o, const struct amil_param *params,
                         int nparams);

#endif
