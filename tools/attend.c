/* attend: the attention of an attention-MIL model over featurized bags.
 *
 * Reads records with `features` F32 [N, L] (from featurize) and writes each
 * with `attention` F32 [K, N], the softmax over the N patches of each of the
 * K branches' scores, and `embedding` F32 [K, L], the attention-weighted sum
 * of the features.  The features, consumed, are left out unless -k keeps
 * them.
 */
#include <stdlib.h>
#include <string.h>

#include "amil.h"
#include "filter.h"
#include "model.h"
#include "nn.h"

static const char usage_text[] =
    "usage: attend -m MODEL [-k] [-j THREADS] [FILE]\n"
    "  -m, --model MODEL    the model (from train, or a PyTorch state_dict)\n"
    "  -k, --keep           keep the features in the records\n"
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
    int status = amil_filter_args(argc, argv, 0, &f);
    if (status == 1)
        usage(0);
    if (status < 0) {
        amil_warn("%s", amil_error());
        usage(2);
    }
    return f;
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
    struct amil_progress progress;
    amil_progress_start(&progress);
    int got;
    while ((got = amil_read(&s, &r)) == 1) {
        const struct amil_tensor *h = amil_expect(&r, "features", AMIL_F32, 2);
        if (h && (h->shape[1] != m.hidden || h->shape[0] < 1 ||
                  h->shape[0] > INT32_MAX / 1024)) {
            amil_fail("features are [%lld, %lld]; the model's are [N ≥ 1, %d]",
                      (long long)h->shape[0], (long long)h->shape[1], m.hidden);
            h = NULL;
        }
        if (!h)
            amil_die("%s: record %ld: %s", s.name, s.index - 1, amil_error());
        int n = (int)h->shape[0];
        amil_attend(&m, &w, h->data, n);
        int64_t a_shape[2] = {m.branches, n}, m_shape[2] = {m.branches, m.hidden};
        memcpy(amil_put(&r, "attention", AMIL_F32, 2, a_shape)->data, w.a,
               sizeof(float) * (size_t)m.branches * n);
        memcpy(amil_put(&r, "embedding", AMIL_F32, 2, m_shape)->data, w.m,
               sizeof(float) * (size_t)m.branches * m.hidden);
        if (!cl.keep)
            amil_remove(&r, "features");
        amil_meta_set(&r, "model", cl.model);
        if (amil_write(stdout, &r) < 0)
            amil_die("write error:");
        amil_record_free(&r);
        amil_progress_add(&progress, n, "patches");
    }
    amil_progress_end(&progress);
    if (got < 0)
        amil_die("%s", amil_error());
    amil_stream_close(&s);
    amil_work_free(&w);
    amil_model_free(&m);
    return amil_close_stdout();
}
