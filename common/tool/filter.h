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
    int force;              /* --force: records even to a terminal */
    int trunc;              /* --trunc: a resnet50 through layer3 (featurize) */
    const char *pool;       /* --pool token|avg: a ViT's pooling, or NULL */
    const char *precision;  /* --precision f32|bf16, or NULL */
};

/* What a filter takes beyond -m, -k, -j and --force. */
enum {
    AMIL_FILTER_TABLE = 1,     /* -t (classify) */
    AMIL_FILTER_BACKBONE = 2   /* --trunc, --pool and --precision (featurize) */
};

/* Parses -m MODEL [-k] [-j N] [--force] [-h] [FILE] and what takes
 * (AMIL_FILTER_*) adds, for main(): -h prints usage on standard output
 * and exits 0; wrong options print why and the usage on standard error
 * and exit 2.  Records to a terminal are refused, as gzip does, unless -t
 * or --force. */
struct amil_filter amil_filter_args(int argc, char **argv, unsigned takes, const char *usage);
/* The model of f, with what its options say of it (amil_model_load_with);
 * dies with the message if it cannot be read. */
struct amil_model;
void amil_filter_model(const struct amil_filter *f, struct amil_model *m);

struct amil_record;
/* What a filter does to one record r, the stream's index-th (from 0): adds
 * its tensors and names in *consumed the one it read (dropped unless -k),
 * or with -t prints the record's line itself; returns the units of work
 * done (for the progress line), or -1 with a message. */
typedef long amil_filter_each(void *ctx, struct amil_record *r, long index,
                              const char **consumed);

/* A filter's loop: every record of f's input through each(), then, unless
 * -t, tagged with the model and written to standard output; with bags, a
 * slide's consecutive parts are read as one record (amil_bag_read).  A bad
 * record is fatal ("INPUT: record N: why"), after the whole records before
 * it, and so is an empty stream ("INPUT: no records"); a progress line on a
 * terminal counts unit.  Returns the records read. */
long amil_filter_run(const struct amil_filter *f, int bags, amil_filter_each *each, void *ctx,
                     const char *unit);

#endif
