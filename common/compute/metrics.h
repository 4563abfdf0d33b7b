/* metrics.h: scores of classifiers, in double. */
#ifndef AMIL_METRICS_H
#define AMIL_METRICS_H

#include <stddef.h>

#include "record/record.h"

/* Area under the ROC curve of scores for the items marked positive (1)
 * against the rest (0): the Mann-Whitney U statistic over (positives ×
 * negatives), ties counted one half.  NaN when either class is empty or
 * a score is NaN. */
double amil_auc(const double *score, const int *positive, size_t n);

/* What a model makes of one sample: its label, the class it predicts, the
 * loss, and its score for class 1 (its probability). */
struct amil_verdict {
    long label;
    int predicted;
    double loss, score;
};
/* Over a set: the mean loss, the error (the share predicted wrong) and the
 * accuracy, and the AUC of class 1's score against the rest (for two
 * classes, the usual one). */
struct amil_score {
    double loss, error, accuracy, auc;
};
struct amil_score amil_score_of(const struct amil_verdict *v, size_t n);

/* The most probable of classes (prob), the first of equals. */
int amil_most_probable(const float *prob, int classes);
/* A record's label: 1 and *label in [0, classes), 0 if it has none, -1
 * with a message if it is not such a class. */
struct amil_record;
int amil_label_of(const struct amil_record *r, int classes, long *label);

#endif
