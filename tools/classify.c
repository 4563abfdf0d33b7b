/* classify: the classifier of an attention-MIL model over attended bags.
 *
 * Reads records with `embedding` F32 [K, L] (from attend) and writes each
 * with `prob` F32 [classes] (two classes: [1 - p, p] from the paper's
 * sigmoid; more: a softmax) and the metadata `predicted`, the most probable
 * class.  The embedding, consumed, is left out unless -k keeps it.  With -t
 * it writes a table instead, one line per record, for evaluate(1):
 *
 *   source  label  prob_0 ... prob_{C-1}  predicted  patient
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "amil.h"
#include "filter.h"
#include "model.h"
#include "nn.h"

static const char usage_text[] =
    "usage: classify -m MODEL [-t | -k] [-j THREADS] [FILE]\n"
    "  -m, --model MODEL    the model (from train, or a PyTorch state_dict)\n"
    "  -t, --table          write a TSV line per record instead of records\n"
    "  -k, --keep           keep the embedding in the records\n"
    "  -j, --threads N      threads for the matrix products [1]\n"
    "  -h, --help           this help\n";

static _Noreturn void usage(int status)
{
    fputs(usage_text, status ? stderr : stdout);
    exit(status);
}

static struct amil_filter parse_args(int argc, char **argv)
{
    struct amil_filter f;
    int status = amil_filter_args(argc, argv, 1, &f);
    if (status == 1)
        usage(0);
    if (status < 0) {
        amil_warn("%s", amil_error());
        usage(2);
    }
    return f;
}

/* A metadata value fit for a TSV cell: tabs and newlines become spaces. */
static void put_cell(const char *v)
{
    for (; v && *v; v++)
        putchar(*v == '\t' || *v == '\n' || *v == '\r' ? ' ' : *v);
}

static void put_header(const struct amil_model *m)
{
    printf("source\tlabel");
    for (int c = 0; c < m->classes; c++)
        printf("\tprob_%d", c);
    printf("\tpredicted\tpatient\n");
}

static void put_row(const struct amil_model *m, const struct amil_record *r,
                    const float *prob, int predicted)
{
    put_cell(amil_meta_get(r, "source"));
    putchar('\t');
    long label;
    if (amil_meta_long(r, "label", 0, LONG_MAX, &label) == 1)
        printf("%ld", label);
    for (int c = 0; c < m->classes; c++)
        printf("\t%.9g", prob[c]);
    printf("\t%d\t", predicted);
    put_cell(amil_meta_get(r, "patient"));
    putchar('\n');
}

int main(int argc, char **argv)
{
    amil_init(argc, argv);
    struct amil_filter cl = parse_args(argc, argv);
    amil_threads((int)cl.threads);
    struct amil_model m;
    if (amil_model_load(&m, cl.model) < 0)
        amil_die("%s", amil_error());
    struct amil_stream s;
    if (amil_stream_open_path(&s, cl.input) < 0)
        amil_die("%s", amil_error());
    struct amil_work w = {0};
    struct amil_record r;
    int got;
    while ((got = amil_read(&s, &r)) == 1) {
        const struct amil_tensor *em = amil_expect(&r, "embedding", AMIL_F32, 2);
        if (em && (em->shape[0] != m.branches || em->shape[1] != m.hidden)) {
            amil_fail("embedding is [%lld, %lld]; the model's is [%d, %d]",
                      (long long)em->shape[0], (long long)em->shape[1], m.branches,
                      m.hidden);
            em = NULL;
        }
        if (!em)
            amil_die("%s: record %ld: %s", s.name, s.index - 1, amil_error());
        amil_classify(&m, &w, em->data);
        int predicted = amil_model_predict(&m, w.prob);
        if (cl.table) {
            if (s.index == 1)   /* the header, once the first record is good */
                put_header(&m);
            put_row(&m, &r, w.prob, predicted);
        } else {
            int64_t shape[1] = {m.classes};
            memcpy(amil_put(&r, "prob", AMIL_F32, 1, shape)->data, w.prob,
                   sizeof(float) * m.classes);
            amil_meta_setf(&r, "predicted", "%d", predicted);
            if (!cl.keep)
                amil_remove(&r, "embedding");
            amil_meta_set(&r, "model", cl.model);
            if (amil_write(stdout, &r) < 0)
                amil_die("write error:");
        }
        amil_record_free(&r);
    }
    if (got < 0)
        amil_die("%s", amil_error());
    if (cl.table && s.index == 0)   /* no records: a table with no rows */
        put_header(&m);
    amil_stream_close(&s);
    amil_work_free(&w);
    amil_model_free(&m);
    return amil_close_stdout();
}
