/* localize.c: localize's reader of mnist-bags' table of bags, its lookup
 * of a record's bag, its scoring of attention and the AUC (amil_auc).  The
 * program is compiled in, its main renamed; amil_die() jumps back.
 *
 * An input is TABLE, or TABLE NUL SCORES: each byte of SCORES is a label
 * (its low bit) and a score (the rest): (v - 61) / 8 for v = byte >> 1
 * below 123, so that ties are common; 123 the double in the next 8 bytes;
 * 124 -0; 125 -inf; 126 inf; 127 NaN.  The table's rows, in order, are
 * records of their file, with attention from the scores (float), while
 * the scores last; and the AUC of all the scores against their labels
 * must be the Mann-Whitney count of pairs (NaN when a score is NaN or a
 * class is empty). */
#define main localize_main
#include "../../tools/localize.c"
#include "base/base.h"
#undef main
#include "fuzz.h"

struct scores {
    double *score;
    int *label;
    size_t n;
};

static struct scores decode(const uint8_t *p, size_t size)
{
    struct scores s = {amil_xmalloc(sizeof *s.score * (size ? size : 1)),
                       amil_xmalloc(sizeof *s.label * (size ? size : 1)), 0};
    for (size_t i = 0; i < size; i++) {
        unsigned v = p[i] >> 1;
        double x = (double)((int)v - 61) / 8;
        if (v == 123 && size - i > 8)
            memcpy(&x, p + i + 1, 8);
        else if (v == 124)
            x = -0.0;
        else if (v == 125)
            x = -INFINITY;
        else if (v == 126)
            x = INFINITY;
        else if (v == 127)
            x = NAN;
        s.label[s.n] = p[i] & 1;
        s.score[s.n++] = x;
        if (v == 123 && size - i > 8)
            i += 8;
    }
    return s;
}

/* amil_auc against the count of (positive, negative) pairs, the positive
 * above counting 2 and a tie 1: exact in double for the sizes checked. */
static void check_auc(const struct scores *s)
{
    double auc = amil_auc(s->score, s->label, s->n);
    size_t positives = 0, nan = 0;
    for (size_t i = 0; i < s->n; i++)
        positives += s->label[i], nan += isnan(s->score[i]);
    size_t negatives = s->n - positives;
    if (positives == 0 || negatives == 0 || nan) {
        if (!isnan(auc)) {
            fprintf(stderr, "auc %g of %zu positives, %zu negatives, %zu NaN\n", auc,
                    positives, negatives, nan);
            abort();
        }
        return;
    }
    if (positives * negatives > 1000000)
        return;
    uint64_t twice = 0;
    for (size_t i = 0; i < s->n; i++)
        for (size_t j = 0; s->label[i] && j < s->n; j++)
            if (!s->label[j])
                twice += 2 * (s->score[i] > s->score[j]) + (s->score[i] == s->score[j]);
    double expected = (double)twice / (2.0 * (double)positives * (double)negatives);
    if (auc != expected) {
        fprintf(stderr, "auc %.17g, pairs say %.17g (%zu positives, %zu negatives)\n", auc,
                expected, positives, negatives);
        abort();
    }
}

/* The table's bags, in order, with attention from the scores as
 * localize's main loop would take it (a bag of scores not all finite is
 * an error there, and skipped here), then the pooled AUC as report's. */
static void score_bags(const struct bag *bags, long count, const struct index *ix,
                       const struct scores *s)
{
    struct cmdline cl = {.target = 9};
    struct tally t = {0};
    size_t at = 0;
    for (long i = 0; i < count; i++) {
        /* a record of this row's file is scored as the first row of that
         * file (bag_of: its attention must be that row's length) */
        int ambiguous;
        const struct bag *b = find(ix, bags[i].file, &ambiguous);
        if (!b || ambiguous || strcmp(b->file, bags[i].file) != 0) {
            fprintf(stderr, "row %ld (%s) not found by its file\n", i, bags[i].file);
            abort();
        }
        (void)find(ix, bags[i].base, &ambiguous);
        long n = b->length;
        if (s->n - at < (size_t)n)
            break;
        float *att = amil_xmalloc(sizeof *att * (size_t)n);
        int finite = 1;
        for (long k = 0; k < n; k++) {
            att[k] = (float)s->score[at + (size_t)k];
            finite &= isfinite(att[k]) != 0;
        }
        at += (size_t)n;
        t.records++;
        if (finite)
            add_bag(&cl, b, att, n, &t);
        free(att);
    }
    struct scores pooled = {t.score, t.positive, (size_t)t.instances};
    check_auc(&pooled);
    free(t.score), free(t.positive);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t table = nul ? (size_t)(nul - data) : size;
    struct scores s = nul ? decode(nul + 1, size - table - 1) : decode(data, 0);
    check_auc(&s);
    const char *path = fuzz_file(data, table);
    if (!path)
        goto out;
    if (setjmp(fuzz_died) == 0) {
        long count;
        struct bag *bags = read_table(path, &count);
        struct index ix = make_index(bags, count);
        score_bags(bags, count, &ix, &s);
        free(ix.by_file), free(ix.by_base);
        for (long i = 0; i < count; i++)
            free(bags[i].file), free(bags[i].classes);
        free(bags);
    }
    fuzz_close_files();
out:
    free(s.score), free(s.label);
    return 0;
}
