/* trainer.h: train's loop, for every family that has a table of training
 * operations (model.h's amil_train_ops).
 *
 * Each epoch visits every sample of the training set once, in an order
 * drawn from a generator seeded from (seed, epoch), `batch` samples a step
 * (one bag for a bag family); it then scores the test set, writes a
 * checkpoint (weights and optimizer state, whole or not at all) and a line
 * of the TSV log on stdout.  A run resumed from a checkpoint reaches the
 * bytes of one never interrupted.  Errors end the program (amil_die), as
 * amil_filter_run's do. */
#ifndef AMIL_TRAINER_H
#define AMIL_TRAINER_H

#include "compute/optim.h"
#include "models/model.h"

/* A run as the command line asks for it. */
struct amil_training {
    const struct amil_model_ops *family;
    struct amil_train_spec spec;    /* the model, when a new one */
    const char *input;      /* training records, NULL for stdin */
    const char *test;       /* scored after each epoch, or NULL */
    const char *output;     /* the model */
    const char *checkpoint; /* where checkpoints go */
    long epochs, batch;
    enum amil_optim_kind optimizer;
    double lr, decay, momentum;
    int quiet;              /* no log lines or progress on stderr */
};

void amil_train(const struct amil_training *t);

#endif
