/* metrics.c: the ROC AUC by ranks. */
#include <math.h>
#include <stdlib.h>

#include "base/base.h"
#include "compute/metrics.h"
#include "record/record.h"

struct ranked {
    double score;
    int positive;
};

static int by_score(const void *a, const void *b)
{
    double x = ((const struct ranked *)a)->score, y = ((const struct ranked *)b)->score;
    return (x > y) - (x < y);
}

double amil_auc(const double *score, const int *positive, size_t n)
{
    struct ranked *items = amil_xmalloc(sizeof *items * (n ? n : 1));
    size_t positives = 0;
    for (size_t i = 0; i < n; i++) {
        items[i].score = score[i];
        items[i].positive = positive[i] != 0;
        positives += items[i].positive;
    }
    size_t negatives = n - positives;
    int all_numbers = 1;   /* a NaN is not ordered: no rank for it */
    for (size_t i = 0; i < n; i++)
        all_numbers &= !isnan(score[i]);
    if (positives == 0 || negatives == 0 || !all_numbers) {
        free(items);
        return NAN;
    }
    qsort(items, n, sizeof *items, by_score);
    /* Sum of the positives' ranks (from 1), ties given their mean rank. */
    double rank_sum = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i + 1, tied_positives = items[i].positive;
        while (j < n && items[j].score == items[i].score)
            tied_positives += items[j++].positive;
        rank_sum += tied_positives * ((double)(i + 1) + (double)j) / 2;
        i = j;
    }
    free(items);
    double u = rank_sum - (double)positives * (positives + 1) / 2;
    return u / ((double)positives * negatives);
}

struct amil_score amil_score_of(const struct amil_verdict *v, size_t n)
{
    struct amil_score s = {0};
    double *score = amil_xmalloc(sizeof *score * (n ? n : 1));
    int *positive = amil_xmalloc(sizeof *positive * (n ? n : 1));
    for (size_t i = 0; i < n; i++) {
        s.loss += v[i].loss;
        s.error += v[i].predicted != v[i].label;
        score[i] = v[i].score;
        positive[i] = v[i].label == 1;
    }
    s.loss /= n;
    s.error /= n;
    s.accuracy = 1 - s.error;
    s.auc = amil_auc(score, positive, n);
    free(score);
    free(positive);
    return s;
}

int amil_most_probable(const float *prob, int classes)
{
    int best = 0;
    for (int c = 1; c < classes; c++)
        best = prob[c] > prob[best] ? c : best;
    return best;
}

int amil_label_of(const struct amil_record *r, int classes, long *label)
{
    int has = amil_record_meta_long(r, "label", 0, classes - 1, label);
    if (has < 0)
        return amil_fail("label '%s' is not a class of the model (0 to %d)",
                         amil_record_meta(r, "label"), classes - 1);
    return has;
}
