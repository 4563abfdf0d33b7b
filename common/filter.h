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

#endif
