/* evaluate: score a classifier from classify -t's table.
 *
 * Reads the TSV (source, label, prob_0 ... prob_{C-1}, predicted, patient)
 * and prints accuracy, error, precision, recall, specificity, F1, ROC AUC
 * and the confusion matrix, as text or (-j) JSON.  Two classes: class 1 is
 * the positive one (malignant on BreakHis).  More: precision, recall,
 * specificity and F1 are the macro means over classes, each against the
 * rest, and the AUC the mean of the one-against-rest AUCs.
 *
 * --by patient adds the patient-level recognition rate of the BreakHis
 * literature (Spanhol et al. 2016): for each patient, the images classified
 * correctly over the patient's images, then the mean over patients.
 */
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "compute/metrics.h"
#include "tool/cli.h"

struct cmdline {
    int json, by_patient;
    const char *input;
};

static const char usage_text[] =
    "usage: evaluate [-j] [--by image|patient] [FILE]\n"
    "  -j, --json        JSON instead of text\n"
    "  -b, --by UNIT     image (the default) or patient: also the patient-level\n"
    "                    recognition rate\n"
    "  -h, --help        this help\n"
    "FILE is classify -t's table [stdin]\n";

/* --by into by_patient, which once patient stays so. */
static void read_by(void *to, const char *option, const char *arg)
{
    if (strcmp(arg, "patient") == 0)
        *(int *)to = 1;
    else if (strcmp(arg, "image") != 0)
        amil_misuse("%s: '%s' is not image or patient", option, arg);
}

static struct cmdline parse_args(int argc, char **argv)
{
    amil_usage_is(usage_text);
    struct cmdline cl = {0};
    struct amil_opt options[] = {
        AMIL_FLAG("json", 'j', &cl.json),
        AMIL_READ("by", 'b', &cl.by_patient, read_by),
        AMIL_OPTIONS_END};
    optind = amil_options(argc, argv, options);
    if (argc - optind > 1)
        amil_misuse("%s: one FILE at most", argv[optind + 1]);
    cl.input = optind < argc ? argv[optind] : "-";
    return cl;
}

/* One row of the table. */
struct row {
    long line;              /* in the table, from 1 */
    int label, predicted;
    double *prob;           /* [classes] */
    char *patient;
};

/* Splits line at tabs in place; returns the number of fields (at most max). */
static int split(char *line, char **fields, int max)
{
    int n = 0;
    line[strcspn(line, "\r\n")] = '\0';
    for (char *p = line; n < max;) {
        fields[n++] = p;
        p = strchr(p, '\t');
        if (!p)
            break;
        *p++ = '\0';
    }
    return n;
}

static struct row *read_table(const struct cmdline *cl, int *classes, long *count)
{
    FILE *f = strcmp(cl->input, "-") == 0 ? stdin : fopen(cl->input, "r");
    const char *name = f == stdin ? "<stdin>" : cl->input;
    if (!f)
        amil_die("%s:", cl->input);
    char *line = NULL, *fields[1100];
    size_t size = 0;
    long number = 1;
    ssize_t got = getline(&line, &size, f);
    if (got < 0)
        amil_die("%s: empty: not a table of classify -t", name);
    if (strlen(line) != (size_t)got)
        amil_die("%s: line 1: a NUL byte: not a table", name);
    int n = split(line, fields, 1100);
    if (n == 1100)
        amil_die("%s: line 1: more than 1095 classes", name);
    /* the header: source label prob_0 .. prob_{C-1} predicted patient */
    *classes = n - 4;
    int header = n >= 6 && strcmp(fields[0], "source") == 0 &&
                 strcmp(fields[1], "label") == 0 && strcmp(fields[n - 2], "predicted") == 0 &&
                 strcmp(fields[n - 1], "patient") == 0;
    for (int c = 0; header && c < *classes; c++) {
        char want[32];
        snprintf(want, sizeof want, "prob_%d", c);
        header = strcmp(fields[2 + c], want) == 0;
    }
    if (!header)
        amil_die("%s: line 1: not the header of classify -t "
                 "(source label prob_0 ... predicted patient)", name);
    struct row *rows = NULL;
    long capacity = 0;
    *count = 0;
    while ((got = getline(&line, &size, f)) >= 0) {
        number++;
        if (strlen(line) != (size_t)got)
            amil_die("%s: line %ld: a NUL byte", name, number);
        if (line[strspn(line, "\r\n")] == '\0')   /* a blank line, LF or CRLF */
            continue;
        if (split(line, fields, n + 1) != n)   /* n + 1 fields: too many */
            amil_die("%s: line %ld: %d fields expected", name, number, n);
        if (*count == capacity) {
            capacity = capacity ? 2 * capacity : 256;
            rows = amil_xrealloc(rows, sizeof *rows * capacity);
        }
        struct row *r = &rows[*count];
        r->line = number;
        long label, predicted;
        if (fields[1][0] == '\0')
            amil_die("%s: line %ld: no label for %s: nothing to score against", name,
                     number, fields[0]);
        if (amil_parse_long(fields[1], 0, *classes - 1, &label) < 0 ||
            amil_parse_long(fields[n - 2], 0, *classes - 1, &predicted) < 0)
            amil_die("%s: line %ld: label or predicted class: %s", name, number,
                     amil_error());
        r->label = (int)label;
        r->predicted = (int)predicted;
        r->prob = amil_xmalloc(sizeof *r->prob * *classes);
        for (int c = 0; c < *classes; c++)
            if (amil_parse_double(fields[2 + c], 0, 1, &r->prob[c]) < 0)
                amil_die("%s: line %ld: prob_%d: %s", name, number, c, amil_error());
        r->patient = fields[n - 1][0] ? amil_xstrdup(fields[n - 1]) : NULL;
        (*count)++;
    }
    if (ferror(f))
        amil_die("%s:", name);
    if (*count == 0)
        amil_die("%s: no rows to score", name);
    free(line);
    if (f != stdin)
        fclose(f);
    return rows;
}

struct result {
    long images, patients;
    int classes;
    double accuracy, precision, recall, specificity, f1, auc, patient_rate;
    long *confusion;        /* [true][predicted] */
};

static double ratio(double a, double b) { return b > 0 ? a / b : NAN; }

static int by_patient_name(const void *a, const void *b)
{
    const struct row *x = a, *y = b;
    return strcmp(x->patient, y->patient);
}

static struct result score(const struct cmdline *cl, const char *name, struct row *rows,
                           long n, int classes)
{
    struct result s = {.images = n, .classes = classes};
    s.confusion = amil_xcalloc((size_t)classes * classes, sizeof *s.confusion);
    long correct = 0;
    for (long i = 0; i < n; i++) {
        s.confusion[rows[i].label * classes + rows[i].predicted]++;
        correct += rows[i].label == rows[i].predicted;
    }
    s.accuracy = (double)correct / n;
    /* one class against the rest: class 1 alone for two classes */
    int first = classes == 2 ? 1 : 0;
    int counted = 0;
    double *score = amil_xmalloc(sizeof *score * n);
    int *positive = amil_xmalloc(sizeof *positive * n);
    for (int c = first; c < classes; c++, counted++) {
        double tp = s.confusion[c * classes + c], fp = 0, fn = 0;
        for (int k = 0; k < classes; k++)
            if (k != c) {
                fp += s.confusion[k * classes + c];
                fn += s.confusion[c * classes + k];
            }
        double tn = n - tp - fp - fn;
        double precision = ratio(tp, tp + fp), recall = ratio(tp, tp + fn);
        s.precision += precision;
        s.recall += recall;
        s.specificity += ratio(tn, tn + fp);
        s.f1 += ratio(2 * tp, 2 * tp + fp + fn);   /* 0, not NaN, when tp = 0 */
        for (long i = 0; i < n; i++) {
            score[i] = rows[i].prob[c];
            positive[i] = rows[i].label == c;
        }
        s.auc += amil_auc(score, positive, (size_t)n);
    }
    s.precision /= counted, s.recall /= counted, s.specificity /= counted;
    s.f1 /= counted, s.auc /= counted;
    free(score);
    free(positive);

    if (cl->by_patient) {
        for (long i = 0; i < n; i++)
            if (!rows[i].patient)
                amil_die("%s: line %ld: no patient: --by patient needs BreakHis names "
                         "(bagify writes the patient from them)", name, rows[i].line);
        qsort(rows, (size_t)n, sizeof *rows, by_patient_name);
        double sum = 0;
        for (long i = 0; i < n;) {
            long j = i, right = 0;
            while (j < n && strcmp(rows[j].patient, rows[i].patient) == 0)
                right += rows[j].label == rows[j].predicted, j++;
            sum += (double)right / (j - i);
            s.patients++;
            i = j;
        }
        s.patient_rate = sum / s.patients;
    }
    return s;
}

static void print_json_number(const char *key, double v, int comma)
{
    if (isnan(v))
        printf("\"%s\":null", key);
    else
        printf("\"%s\":%.6g", key, v);
    if (comma)
        putchar(',');
}

static void print(const struct cmdline *cl, const struct result *s)
{
    const char *keys[] = {"accuracy", "error", "precision", "recall", "specificity",
                          "f1", "auc"};
    double values[] = {s->accuracy, 1 - s->accuracy, s->precision, s->recall,
                       s->specificity, s->f1, s->auc};
    int C = s->classes;
    if (cl->json) {
        printf("{\"images\":%ld,\"classes\":%d,", s->images, C);
        for (int i = 0; i < 7; i++)
            print_json_number(keys[i], values[i], 1);
        if (cl->by_patient) {
            printf("\"patients\":%ld,", s->patients);
            print_json_number("patient_recognition_rate", s->patient_rate, 1);
        }
        printf("\"confusion\":[");
        for (int t = 0; t < C; t++) {
            printf("%s[", t ? "," : "");
            for (int p = 0; p < C; p++)
                printf("%s%ld", p ? "," : "", s->confusion[t * C + p]);
            printf("]");
        }
        printf("]}\n");
        return;
    }
    printf("images\t%ld\nclasses\t%d\n", s->images, C);
    for (int i = 0; i < 7; i++)
        printf("%s\t%.4f\n", keys[i], values[i]);
    if (cl->by_patient)
        printf("patients\t%ld\npatient_recognition_rate\t%.4f\n", s->patients,
               s->patient_rate);
    printf("confusion (rows: true class, columns: predicted)\n");
    for (int p = 0; p < C; p++)
        printf("\t%d", p);
    putchar('\n');
    for (int t = 0; t < C; t++) {
        printf("%d", t);
        for (int p = 0; p < C; p++)
            printf("\t%ld", s->confusion[t * C + p]);
        putchar('\n');
    }
}

int main(int argc, char **argv)
{
    amil_init(argc, argv);
    struct cmdline cl = parse_args(argc, argv);
    int classes;
    long n;
    struct row *rows = read_table(&cl, &classes, &n);
    const char *name = strcmp(cl.input, "-") == 0 ? "<stdin>" : cl.input;
    struct result s = score(&cl, name, rows, n, classes);
    print(&cl, &s);
    for (long i = 0; i < n; i++) {
        free(rows[i].prob);
        free(rows[i].patient);
    }
    free(rows);
    free(s.confusion);
    return amil_close_stdout();
}
