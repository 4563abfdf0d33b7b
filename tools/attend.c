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
#include "mil.h"
#include "nn.h"

static const char usage_text[] =
    "usage: attend -m MODEL [-k] [-j THREADS] [FILE]\n"
    "  -m, --model MODEL    the model (from train, or a PyTorch state_dict)\n"
    "  -k, --keep           keep the features in the records\n"
    "  -j, --threads N      threads for the matrix products [1]\n"
    "  -h, --help           this help\n";

struct attend {
    const struct amil_mil *m;
    struct amil_mil_work w;
};

/* A record's attention and embedding from its features. */
static long attend_one(void *ctx, struct amil_record *r, long index, const char **consumed)
{
    (void)index;
    struct attend *a = ctx;
    const struct amil_mil *m = a->m;
    const struct amil_tensor *h = amil_record_expect(r, "features", AMIL_F32, 2);
    if (!h)
        return -1;
    if (h->shape[1] != m->hidden || h->shape[0] < 1 || h->shape[0] > INT32_MAX / 1024)
        return amil_fail("features are [%lld, %lld]; the model's are [N ≥ 1, %d]",
                         (long long)h->shape[0], (long long)h->shape[1], m->hidden);
    int n = (int)h->shape[0];
    amil_mil_attend(m, &a->w, h->data, n);
    int64_t a_shape[2] = {m->branches, n}, m_shape[2] = {m->branches, m->hidden};
    memcpy(amil_record_put(r, "attention", AMIL_F32, 2, a_shape)->data, a->w.a,
           sizeof(float) * (size_t)m->branches * n);
    memcpy(amil_record_put(r, "embedding", AMIL_F32, 2, m_shape)->data, a->w.m,
           sizeof(float) * (size_t)m->branches * m->hidden);
    *consumed = "features";
    return n;
}

int main(int argc, char **argv)
{
    amil_init(argc, argv);
    struct amil_filter cl = amil_filter_args(argc, argv, 0, usage_text);
    amil_threads((int)cl.threads);
    struct amil_mil m;
    if (amil_mil_load(&m, cl.model) < 0)
        amil_die("%s", amil_error());
    struct attend a = {.m = &m};
    amil_filter_run(&cl, 1, attend_one, &a, "patches");
    amil_mil_work_free(&a.w);
    amil_mil_free(&m);
    return amil_close_stdout();
}
