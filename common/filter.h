/* filter.h: what featurize, attend and classify share: the options of a
 * program that applies part of a model to a stream of records. */
#ifndef AMIL_FILTER_H
#define AMIL_FILTER_H

struct amil_filter {
    const char *model;      /* -m MODEL */
    const char *input;      /* FILE, or NULL for stdin */
    int keep;               /* -k: keep the consumed tensor */
    int table;              /* -t: a table instead of records (classify) */
    long threads;           /* -j N [1] */
};

/* Parses -m MODEL [-k] [-j N] [-t, when with_table] [-h] [FILE].  Returns
 * 0, 1 when -h asks for help, or -1 with a message when the options are
 * wrong (the program prints its usage and exits 2). */
int amil_filter_args(int argc, char **argv, int with_table, struct amil_filter *f);

/* The model a filter applies: an attention-MIL model or a CNN baseline,
 * told apart by its record (amil_cnn_is_model). */
#include "cnn.h"
#include "model.h"

struct amil_any_model {
    int is_cnn;
    struct amil_model mil;
    struct amil_cnn cnn;
};
/* Loads path: 0, or -1 with a message naming it. */
int amil_any_load(struct amil_any_model *m, const char *path);
void amil_any_free(struct amil_any_model *m);

#endif
