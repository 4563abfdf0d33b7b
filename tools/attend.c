/* attend: the attention of an attention-MIL model over featurized bags.
 *
 * Reads records with `features` F32 [N, L] (from featurize) and writes each
 * with `attention` F32 [K, N], the softmax over the N patches of each of the
 * K branches' scores, and `embedding` F32 [K, L], the attention-weighted sum
 * of the features.  A CLAM head (clam.h) reads a backbone's features [N, F]
 * and gives attention [1, N] and its embedding [1, L].  The features,
 * consumed, are left out unless -k keeps them.
 */
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "compute/nn.h"
#include "compute/parallel.h"
#include "models/mil.h"
#include "record/record.h"
#include "tool/filter.h"

static const char usage_text[] =
    "usage: attend -m MODEL [-k] [-j THREADS] [--force] [FILE]\n"
    "  -m, --model MODEL    the model (from train, or a PyTorch state_dict):\n"
    "                       attention-MIL, or a CLAM head\n"
    "  -k, --keep           keep the features in the records\n"
    "  -j, --threads N      threads for the matrix products [1]\n"
    "      --force          write records even to a terminal\n"
    "  -h, --help           this help\n";

struct attend {
    const char *model;
    struct amil_any_model any;
    struct amil_mil_work w;
    struct amil_clam_work cw;
};

/* A record's attention and embedding from its features. */
static long attend_one(void *ctx, struct amil_record *r, long index, const char **consumed)
{
    (void)index;
    struct attend *a = ctx;
    const struct amil_mil *m = &a->any.mil;
    const struct amil_clam *c = &a->any.clam;
    int clam = a->any.is_clam, width = clam ? c->features : m->hidden;
    int branches = clam ? 1 : m->branches, L = clam ? c->hidden : m->hidden;
    const struct amil_tensor *h = amil_record_expect(r, "features", AMIL_F32, 2);
    if (!h)
        return -1;
    if (h->shape[1] != width || h->shape[0] < 1 || h->shape[0] > INT32_MAX / 1024)
        return amil_fail("features are [%lld, %lld]; the model's are [N ≥ 1, %d]",
                         (long long)h->shape[0], (long long)h->shape[1], width);
    int n = (int)h->shape[0];
    if (amil_tensor_finite("features", h->data, 2, h->shape, 0) < 0)
        return -1;
    if (a->any.knows_features &&
        amil_check_stage(r, "features_by", a->any.features_by, a->model) < 0)
        return -1;
    if (clam)
        amil_clam_attend(c, &a->cw, h->data, n, NULL);
    else
        amil_mil_attend(m, &a->w, h->data, n);
    int64_t a_shape[2] = {branches, n}, m_shape[2] = {branches, L};
    memcpy(amil_record_put(r, "attention", AMIL_F32, 2, a_shape)->data, clam ? a->cw.a : a->w.a,
           sizeof(float) * (size_t)branches * n);
    memcpy(amil_record_put(r, "embedding", AMIL_F32, 2, m_shape)->data, clam ? a->cw.m : a->w.m,
           sizeof(float) * (size_t)branches * L);
    /* finite weights and features can still overflow to inf, and then NaN */
    if (amil_tensor_finite("attention", amil_record_find(r, "attention")->data, 2, a_shape, 1) <
            0 ||
        amil_tensor_finite("embedding", amil_record_find(r, "embedding")->data, 2, m_shape,
                           -1) < 0)
        return -1;
    amil_record_set_fingerprint(r, "embedding_by", a->any.embedding_by);
    amil_record_set_meta(r, "attention_model", a->model);
    *consumed = "features";
    return n;
}

int main(int argc, char **argv)
{
    amil_init(argc, argv);
    struct amil_filter cl = amil_filter_args(argc, argv, 0, usage_text);
    amil_threads((int)cl.threads);
    struct attend a = {.model = cl.model};
    if (amil_any_load(&a.any, cl.model) < 0)
        amil_die("%s", amil_error());
    if (a.any.is_cnn)
        amil_die("%s: arch '%s' is not an attention-MIL model (amil or gated) or a CLAM head",
                 cl.model, amil_cnn_arch_name(a.any.cnn.arch));
    amil_filter_run(&cl, 1, attend_one, &a, "patches");
    amil_mil_work_free(&a.w);
    amil_clam_work_free(&a.cw);
    amil_any_free(&a.any);
    return amil_close_stdout();
}
