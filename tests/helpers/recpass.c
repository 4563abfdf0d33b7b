/* recpass: a test helper.  Reads a stream and writes every record back,
 * checked and re-encoded, so tests can see what a program that reads
 * records does with bad input and with tensors it does not know.
 *
 *   recpass [-a darkness|index|flat] [-K BRANCHES] [-r TENSOR] [FILE]
 *
 * -r removes a tensor; -f NAME=VALUE fills an F32 tensor with VALUE (nan
 * and inf too), to make a broken model or checkpoint, and -f NAME@I=VALUE
 * sets its value at flat index I alone; -m KEY=VALUE sets a
 * metadata value.
 * -a adds an `attention` F32 [K, N] over a bag's patches before attend
 * exists: softmax over patches of their mean darkness (255 - mean pixel) / 8
 * (tissue gets the weight), or of the patch index / 8, or of index / (8 N)
 * (flat: nearly uniform, max/min e^(1/8)); branch k > 0 is the
 * reverse order of branch 0, so a test can tell branches apart. */
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "record/record.h"
#include "record/stream.h"

static void add_attention(struct amil_record *r, const char *how, long branches)
{
    struct amil_tensor *patches = amil_record_expect(r, "patches", AMIL_U8, 4);
    if (!patches)
        amil_die("%s", amil_error());
    int64_t n = patches->shape[0];
    size_t per_patch = (size_t)(patches->shape[1] * patches->shape[2] * patches->shape[3]);
    double *score = amil_xmalloc((size_t)n * sizeof *score);
    for (int64_t i = 0; i < n; i++) {
        if (strcmp(how, "index") == 0 || strcmp(how, "flat") == 0) {
            score[i] = (double)i / 8 / (how[0] == 'f' ? (double)n : 1);
            continue;
        }
        const unsigned char *px = (const unsigned char *)patches->data + i * per_patch;
        double sum = 0;
        for (size_t j = 0; j < per_patch; j++)
            sum += px[j];
        score[i] = (255 - sum / per_patch) / 8;
    }
    int64_t shape[2] = {branches, n};
    float *a = amil_record_put(r, "attention", AMIL_F32, 2, shape)->data;
    for (long k = 0; k < branches; k++) {
        double top = -INFINITY, total = 0;
        for (int64_t i = 0; i < n; i++)
            top = fmax(top, score[k ? n - 1 - i : i]);
        for (int64_t i = 0; i < n; i++)
            total += exp(score[k ? n - 1 - i : i] - top);
        for (int64_t i = 0; i < n; i++)
            a[k * n + i] = (float)(exp(score[k ? n - 1 - i : i] - top) / total);
    }
    free(score);
}

int main(int argc, char **argv)
{
    amil_init(argc, argv);
    const char *attention = NULL, *remove = NULL, *fill = NULL, *meta = NULL;
    long branches = 1;
    int c;
    while ((c = getopt(argc, argv, "a:K:r:f:m:")) != -1) {
        if (c == 'a')
            attention = optarg;
        else if (c == 'm')
            meta = optarg;
        else if (c == 'f')
            fill = optarg;
        else if (c == 'r')
            remove = optarg;
        else if (c == 'K' && amil_parse_long(optarg, 1, 16, &branches) == 0)
            ;
        else
            amil_die("usage: recpass [-a darkness|index|flat] [-K BRANCHES] [-r TENSOR] "
                     "[-f TENSOR=VALUE] [-m KEY=VALUE] [FILE]");
    }
    FILE *f = optind < argc ? fopen(argv[optind], "rb") : stdin;
    if (!f)
        amil_die("%s:", argv[optind]);
    struct amil_stream s;
    struct amil_record r;
    int got;
    amil_stream_open(&s, f, optind < argc ? argv[optind] : "<stdin>");
    while ((got = amil_record_read(&s, &r)) == 1) {
        if (attention)
            add_attention(&r, attention, branches);
        if (remove)
            amil_record_remove(&r, remove);
        if (meta) {
            const char *eq = strchr(meta, '=');
            if (!eq)
                amil_die("-m %s: not KEY=VALUE", meta);
            char key[256];
            snprintf(key, sizeof key, "%.*s", (int)(eq - meta), meta);
            amil_record_set_meta(&r, key, eq + 1);
        }
        if (fill) {
            char name[256];
            const char *eq = strchr(fill, '='), *at = strchr(fill, '@');
            const char *end = at && at < eq ? at : eq;
            snprintf(name, sizeof name, "%.*s", end ? (int)(end - fill) : 0, fill);
            struct amil_tensor *t = eq ? amil_record_find(&r, name) : NULL;
            if (!t || t->dtype != AMIL_F32)
                amil_die("-f %s: no F32 tensor of that name", fill);
            float value = strtof(eq + 1, NULL);
            size_t count = t->nbytes / sizeof value, first = 0;
            if (end == at) {   /* NAME@I=VALUE: the one value at flat index I */
                first = strtoul(at + 1, NULL, 10);
                if (first >= count)
                    amil_die("-f %s: %s has %zu values", fill, name, count);
                count = first + 1;
            }
            for (size_t i = first; i < count; i++)
                ((float *)t->data)[i] = value;
        }
        if (amil_record_write(stdout, &r) < 0)
            amil_die("write error:");
        amil_record_free(&r);
    }
    if (got < 0)
        amil_die("%s", amil_error());
    return amil_close_stdout();
}
