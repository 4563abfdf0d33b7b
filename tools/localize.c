/* localize: how well attention finds the instances that make a bag
 * positive, measured against instance labels.
 *
 * Reads records with `attention` F32 [K, N] (from attend) and a `source`,
 * looks each bag up in a table of instance labels (mnist-bags's bags.tsv:
 * file, label, length, digits, ...), and over the positive bags (those that
 * hold the target digit) prints:
 *
 *   auc          instance-level ROC AUC of N · a_i (attention scaled so that
 *                uniform attention is 1 in bags of any length), all
 *                instances of all positive bags pooled, target against rest
 *   bag_auc      the mean over positive bags holding both kinds of instance
 *                of each bag's own AUC of a_i
 *   top1         the share of positive bags whose most attended instance is
 *                a target
 */
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "compute/metrics.h"
#include "record/record.h"
#include "record/stream.h"
#include "tool/cli.h"

struct cmdline {
    const char *table, *input;
    long target, branch;
    int json;
};

static const char usage_text[] =
    "usage: localize -i BAGS.tsv [-t DIGIT] [-b BRANCH] [-j] [FILE]\n"
    "  -i, --instances TSV   instance labels: mnist-bags's bags.tsv\n"
    "  -t, --target D        the instance class that makes a bag positive [9]\n"
    "  -b, --branch B        which attention branch [0]\n"
    "  -j, --json            JSON instead of text\n"
    "  -h, --help            this help\n"
    "FILE holds records with attention, from attend [stdin]\n";

static struct cmdline parse_args(int argc, char **argv)
{
    amil_usage_is(usage_text);
    struct cmdline cl = {.target = 9};
    struct amil_opt options[] = {
        AMIL_STRING("instances", 'i', &cl.table),
        AMIL_LONG("target", 't', &cl.target, 0, 1000000),
        AMIL_LONG("branch", 'b', &cl.branch, 0, 63),
        AMIL_FLAG("json", 'j', &cl.json),
        AMIL_OPTIONS_END};
    optind = amil_options_as(argc, argv, options, AMIL_OPTS_BY_LETTER);
    if (!cl.table)
        amil_misuse("no instance labels: give -i BAGS.tsv");
    if (argc - optind > 1)
        amil_misuse("%s: one FILE at most", argv[optind + 1]);
    cl.input = optind < argc ? argv[optind] : NULL;
    return cl;
}

struct bag {
    char *file;
    const char *base;       /* the file's base name */
    long length;
    long *classes;          /* [length] */
};

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

static struct bag *read_table(const char *path, long *count)
{
    FILE *f = fopen(path, "r");
    if (!f)
        amil_die("%s:", path);
    char *line = NULL;
    size_t size = 0;
    long number = 0, capacity = 0;
    struct bag *bags = NULL;
    *count = 0;
    while (getline(&line, &size, f) >= 0) {
        number++;
        line[strcspn(line, "\r\n")] = '\0';
        char *fields[4], *p = line;
        int n = 0;
        for (; n < 4; n++) {
            fields[n] = p;
            if (!(p = strchr(p, '\t')))
                break;
            *p++ = '\0';
        }
        if (number == 1) {
            if (n < 3 || strcmp(fields[0], "file") != 0 || strcmp(fields[3], "digits") != 0)
                amil_die("%s: line 1: not the header of a bags table "
                         "(file label length digits ...)", path);
            continue;
        }
        if (line[0] == '\0')
            continue;
        if (n < 3)
            amil_die("%s: line %ld: fewer than 4 fields", path, number);
        if (*count == capacity) {
            capacity = capacity ? 2 * capacity : 256;
            bags = amil_xrealloc(bags, sizeof *bags * capacity);
        }
        struct bag *b = &bags[(*count)++];
        if (amil_parse_long(fields[2], 1, 1000000, &b->length) < 0)
            amil_die("%s: line %ld: length: %s", path, number, amil_error());
        b->file = amil_xstrdup(fields[0]);
        b->base = base_name(b->file);
        b->classes = amil_xmalloc(sizeof *b->classes * b->length);
        long digits = 1;
        for (const char *q = fields[3]; *q; q++)
            digits += *q == ',';
        if (digits != b->length)
            amil_die("%s: line %ld: %ld digits for a bag of %ld", path, number, digits,
                     b->length);
        char *digit = fields[3];
        for (long i = 0; i < b->length; i++) {
            char *end = strchr(digit, ',');
            if (end)
                *end = '\0';
            if (amil_parse_long(digit, 0, 1000000, &b->classes[i]) < 0)
                amil_die("%s: line %ld: digit %ld: %s", path, number, i + 1, amil_error());
            if (end)
                digit = end + 1;
        }
    }
    free(line);
    fclose(f);
    if (*count == 0)
        amil_die("%s: no bags", path);
    return bags;
}

/* The table's rows sorted by file and by base name (ties by row), so that
 * each record's bag is found by binary search, not by a scan of every row
 * for every record. */
struct index {
    const struct bag **by_file, **by_base;
    long count;
};

static int cmp_file(const void *a, const void *b)
{
    const struct bag *x = *(const struct bag *const *)a, *y = *(const struct bag *const *)b;
    int c = strcmp(x->file, y->file);
    return c ? c : (x > y) - (x < y);
}

static int cmp_base(const void *a, const void *b)
{
    const struct bag *x = *(const struct bag *const *)a, *y = *(const struct bag *const *)b;
    int c = strcmp(x->base, y->base);
    return c ? c : (x > y) - (x < y);
}

static struct index make_index(const struct bag *bags, long count)
{
    struct index ix = {amil_xmalloc(sizeof *ix.by_file * count),
                       amil_xmalloc(sizeof *ix.by_base * count), count};
    for (long i = 0; i < count; i++)
        ix.by_file[i] = ix.by_base[i] = &bags[i];
    qsort(ix.by_file, (size_t)count, sizeof *ix.by_file, cmp_file);
    qsort(ix.by_base, (size_t)count, sizeof *ix.by_base, cmp_base);
    return ix;
}

/* The first of the sorted rows whose key (file or base name) is key, or
 * count if none. */
static long first_of(const struct bag *const *rows, long count, const char *key, int base)
{
    long lo = 0, hi = count;
    while (lo < hi) {
        long mid = lo + (hi - lo) / 2;
        if (strcmp(base ? rows[mid]->base : rows[mid]->file, key) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < count && strcmp(base ? rows[lo]->base : rows[lo]->file, key) == 0 ? lo : count;
}

/* The bag of a record's source: the first row of the same path, or else
 * the one row with the same base name (NULL if none; *ambiguous if
 * several). */
static const struct bag *find(const struct index *ix, const char *source, int *ambiguous)
{
    *ambiguous = 0;
    long i = first_of(ix->by_file, ix->count, source, 0);
    if (i < ix->count)
        return ix->by_file[i];
    const char *base = base_name(source);
    i = first_of(ix->by_base, ix->count, base, 1);
    if (i == ix->count)
        return NULL;
    *ambiguous = i + 1 < ix->count && strcmp(ix->by_base[i + 1]->base, base) == 0;
    return *ambiguous ? NULL : ix->by_base[i];
}

/* What the records add up to: every positive bag's instances (score:
 * attention × n, so that bags of different sizes compare; positive: of
 * the target class), and the counts of the summary. */
struct tally {
    double *score, bag_auc_sum;
    int *positive;
    long instances, capacity, positive_bags, both, top_hits, records;
};

/* The bag of record r in the table, checked against its attention. */
static const struct bag *bag_of(const struct cmdline *cl, const struct index *ix,
                                const struct amil_stream *s, long index,
                                const struct amil_record *r, const struct amil_tensor *a)
{
    const char *source = amil_record_meta(r, "source");
    if (cl->branch >= a->shape[0])
        amil_die("%s: record %ld: --branch %ld: the attention has %lld branches", s->name,
                 index, cl->branch, (long long)a->shape[0]);
    int ambiguous = 0;
    const struct bag *b = source ? find(ix, source, &ambiguous) : NULL;
    if (!b)
        amil_die("%s: record %ld: %s %s %s", s->name, index, source ? source : "(no source)",
                 ambiguous ? "matches several rows by base name in" : "is not in", cl->table);
    if (a->shape[1] != b->length)
        amil_die("%s: record %ld: %lld patches, but %s has %ld instances (cut strips "
                 "with bagify -c none)", s->name, index, (long long)a->shape[1], b->file,
                 b->length);
    return b;
}

/* One bag's attention att (n) against its instances' classes. */
static void add_bag(const struct cmdline *cl, const struct bag *b, const float *att, long n,
                    struct tally *t)
{
    int has_target = 0, has_other = 0;
    long best = 0;
    for (long i = 0; i < n; i++) {
        has_target |= b->classes[i] == cl->target;
        has_other |= b->classes[i] != cl->target;
        if (att[i] > att[best])
            best = i;
    }
    if (!has_target)
        return;
    t->positive_bags++;
    t->top_hits += b->classes[best] == cl->target;
    if (t->instances + n > t->capacity) {
        t->capacity = 2 * (t->instances + n);
        t->score = amil_xrealloc(t->score, sizeof *t->score * t->capacity);
        t->positive = amil_xrealloc(t->positive, sizeof *t->positive * t->capacity);
    }
    double *score = t->score + t->instances;
    int *positive = t->positive + t->instances;
    for (long i = 0; i < n; i++) {
        score[i] = (double)att[i] * n;
        positive[i] = b->classes[i] == cl->target;
    }
    if (has_other) {
        t->bag_auc_sum += amil_auc(score, positive, (size_t)n);
        t->both++;
    }
    t->instances += n;
}

static void report(const struct cmdline *cl, const struct tally *t)
{
    double auc = amil_auc(t->score, t->positive, (size_t)t->instances);
    double bag_auc = t->both ? t->bag_auc_sum / t->both : NAN;
    double top1 = (double)t->top_hits / t->positive_bags;
    if (cl->json) {
        printf("{\"bags\":%ld,\"positive_bags\":%ld,\"instances\":%ld,", t->records,
               t->positive_bags, t->instances);
        printf(isnan(auc) ? "\"auc\":null," : "\"auc\":%.6g,", auc);
        printf(isnan(bag_auc) ? "\"bag_auc\":null," : "\"bag_auc\":%.6g,", bag_auc);
        printf("\"top1\":%.6g}\n", top1);
    } else {
        printf("bags\t%ld\npositive_bags\t%ld\ninstances\t%ld\nauc\t%.4f\nbag_auc\t%.4f\n"
               "top1\t%.4f\n", t->records, t->positive_bags, t->instances, auc, bag_auc, top1);
    }
}

int main(int argc, char **argv)
{
    amil_init(argc, argv);
    struct cmdline cl = parse_args(argc, argv);
    long nbags;
    struct bag *bags = read_table(cl.table, &nbags);
    struct index ix = make_index(bags, nbags);
    struct amil_stream s;
    if (amil_stream_open_path(&s, cl.input) < 0)
        amil_die("%s", amil_error());
    struct tally t = {0};
    struct amil_record r;
    int got;
    while ((got = amil_record_read(&s, &r)) == 1) {
        long index = s.index - 1;
        t.records++;
        const struct amil_tensor *a = amil_record_expect(&r, "attention", AMIL_F32, 2);
        if (!a)
            amil_die("%s: record %ld: %s", s.name, index, amil_error());
        if (amil_tensor_finite("attention", a->data, 2, a->shape, 1) < 0)
            amil_die("%s: record %ld: %s", s.name, index, amil_error());
        const struct bag *b = bag_of(&cl, &ix, &s, index, &r, a);
        long n = (long)a->shape[1];
        add_bag(&cl, b, (const float *)a->data + cl.branch * n, n, &t);
        amil_record_free(&r);
    }
    if (got < 0)
        amil_die("%s", amil_error());
    if (t.records == 0)
        amil_die("%s: no records", s.name);
    amil_stream_close(&s);
    if (t.positive_bags == 0)
        amil_die("no positive bags among %ld records: nothing to localize", t.records);
    report(&cl, &t);
    for (long i = 0; i < nbags; i++) {
        free(bags[i].file);
        free(bags[i].classes);
    }
    free(bags);
    free(ix.by_file);
    free(ix.by_base);
    free(t.score);
    free(t.positive);
    return amil_close_stdout();
}
