/* samples.h: the records a trainer learns from or scores, read through once
 * and then by index.  A regular file is indexed (where each record starts)
 * and read again when a record is wanted, so that a data set larger than
 * memory trains; standard input, a pipe or a FIFO cannot be read again, so
 * its records are held in memory.
 *
 * A record holds one or more samples: one bag (attention-MIL), one image
 * to crop (net), or an image's tiles (a frozen backbone's head); samples
 * are numbered through the whole set. */
#ifndef AMIL_SAMPLES_H
#define AMIL_SAMPLES_H

#include <sys/types.h>

#include "base/base.h"
#include "record/record.h"
#include "record/stream.h"

struct amil_samples {
    struct amil_stream stream;
    long count;                     /* records */
    off_t *offsets;                 /* a file: where each record starts */
    struct amil_record *held;       /* standard input: the records */
    long *first;                    /* (count + 1): record i holds samples
                                       first[i] .. first[i + 1] - 1 */
};

/* Checks record `index` of the set called `name` and returns the samples
 * it holds, or -1 with a message. */
typedef long amil_samples_check(struct amil_record *r, long index, const char *name,
                                void *context);

/* Reads path ("-" or NULL: standard input) through once, every record
 * through check.  Returns 0, or -1 with a message (a record that does not
 * parse or check, a set without records). */
int amil_samples_load(struct amil_samples *s, const char *path, amil_samples_check *check,
                      void *context);
void amil_samples_free(struct amil_samples *s);
/* Record i into r, which amil_samples_put gives back (a held one is
 * lent, a file's read again).  Returns 0, or -1 with a message (a file
 * that changed since it was indexed). */
int amil_samples_get(struct amil_samples *s, long i, struct amil_record *r);
void amil_samples_put(const struct amil_samples *s, struct amil_record *r);
/* The record that holds sample k. */
long amil_samples_record_of(const struct amil_samples *s, long k);
/* Samples in the whole set. */
long amil_samples_total(const struct amil_samples *s);

/* Loss, error and AUC of a set: every record through judge, which
 * returns 0, or -1 when the record is not what it was when the set was
 * loaded.  0, or -1 with a message naming the record. */
struct amil_verdict;
struct amil_score;
typedef int amil_samples_judge(void *context, struct amil_record *r, struct amil_verdict *v);
int amil_samples_score(struct amil_samples *s, amil_samples_judge *judge, void *context,
                       struct amil_score *score);

#endif
