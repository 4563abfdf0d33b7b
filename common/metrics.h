/* metrics.h: scores of classifiers, in double. */
#ifndef AMIL_METRICS_H
#define AMIL_METRICS_H

#include <stddef.h>

/* Area under the ROC curve of scores for the items marked positive (1)
 * against the rest (0): the Mann-Whitney U statistic over (positives ×
 * negatives), ties counted one half.  NaN when either class is empty. */
double amil_auc(const double *score, const int *positive, size_t n);

#endif
