/* samples.c: the sample store of samples.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/base.h"
#include "compute/metrics.h"
#include "record/record.h"
#include "record/stream.h"
#include "tool/samples.h"

/* Grows the arrays to hold a record more. */
static void make_room(struct amil_samples *s, long *capacity, int from_file)
{
    if (s->count < *capacity)
        return;
    *capacity = *capacity ? 2 * *capacity : 256;
    if (from_file)
        s->offsets = amil_xrealloc(s->offsets, sizeof *s->offsets * *capacity);
    else
        s->held = amil_xrealloc(s->held, sizeof *s->held * *capacity);
    s->first = amil_xrealloc(s->first, sizeof *s->first * (*capacity + 1));
}

int amil_samples_load(struct amil_samples *s, const char *path, amil_samples_check *check,
                      void *context)
{
    memset(s, 0, sizeof *s);
    if (amil_stream_open_path(&s->stream, path) < 0)
        return -1;
    struct stat st;
    int from_file = fstat(fileno(s->stream.file), &st) == 0 && S_ISREG(st.st_mode);
    long capacity = 0;
    s->first = amil_xmalloc(sizeof *s->first);
    s->first[0] = 0;
    for (;;) {
        off_t at = from_file ? ftello(s->stream.file) : 0;
        struct amil_record r;
        int got = amil_bag_read(&s->stream, &r);   /* a slide's parts: one bag */
        if (got <= 0) {
            if (got == 0 && s->count > 0)
                return 0;
            if (got == 0)
                amil_fail("%s: no records", s->stream.name);
            amil_samples_free(s);
            return -1;
        }
        long samples = check(&r, s->count, s->stream.name, context);
        if (samples < 0) {
            amil_record_free(&r);
            amil_samples_free(s);
            return -1;
        }
        make_room(s, &capacity, from_file);
        if (from_file) {
            s->offsets[s->count] = at;
            amil_record_free(&r);
        } else {
            s->held[s->count] = r;
        }
        s->first[s->count + 1] = s->first[s->count] + samples;
        s->count++;
    }
}

void amil_samples_free(struct amil_samples *s)
{
    for (long i = 0; s->held && i < s->count; i++)
        amil_record_free(&s->held[i]);
    free(s->held);
    free(s->offsets);
    free(s->first);
    amil_stream_close(&s->stream);
    memset(s, 0, sizeof *s);
}

int amil_samples_get(struct amil_samples *s, long i, struct amil_record *r)
{
    if (s->held) {
        *r = s->held[i];
        return 0;
    }
    if (fseeko(s->stream.file, s->offsets[i], SEEK_SET) != 0)
        return amil_fail("%s: cannot seek: %s", s->stream.name, strerror(errno));
    s->stream.index = i;
    int got = amil_bag_read(&s->stream, r);
    if (got == 0)
        return amil_fail("%s: record %ld changed since it was first read (the file is "
                         "shorter)", s->stream.name, i);
    return got < 0 ? -1 : 0;
}

void amil_samples_put(const struct amil_samples *s, struct amil_record *r)
{
    if (!s->held)
        amil_record_free(r);
}

long amil_samples_record_of(const struct amil_samples *s, long k)
{
    long lo = 0, hi = s->count - 1;   /* the last i with first[i] <= k */
    while (lo < hi) {
        long mid = (lo + hi + 1) / 2;
        if (s->first[mid] <= k)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

long amil_samples_total(const struct amil_samples *s) { return s->first[s->count]; }

int amil_samples_score(struct amil_samples *s, amil_samples_judge *judge, void *context,
                       struct amil_score *score)
{
    struct amil_verdict *v = amil_xmalloc(sizeof *v * (size_t)s->count);
    int status = 0;
    for (long i = 0; status == 0 && i < s->count; i++) {
        struct amil_record r;
        if (amil_samples_get(s, i, &r) < 0)
            status = -1;
        else if (judge(context, &r, &v[i]) < 0)
            status = amil_fail("%s: record %ld changed since it was first read", s->stream.name,
                               i);
        if (status == 0)
            amil_samples_put(s, &r);
    }
    if (status == 0)
        *score = amil_score_of(v, (size_t)s->count);
    free(v);
    return status;
}
