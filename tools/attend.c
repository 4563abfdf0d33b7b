/* attend: the attention of an attention-MIL model over featurized bags.
 *
 * Reads records with `features` F32 [N, L] (from featurize) and writes each
 * with `attention` F32 [K, N], the softmax over the N patches of each of the
 * K branches' scores, and `embedding` F32 [K, L], the attention-weighted sum
 * of the features.  A CLAM head reads a backbone's features [N, F]
 * and gives attention [1, N] and its embedding [1, L].  The features,
 * consumed, are left out unless -k keeps them.
 */
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "compute/nn.h"
#include "compute/parallel.h"
#include "models/model.h"
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

/* A record's attention and embedding from its features, and which
 * weights made them. */
static long attend_one(void *ctx, struct amil_record *r, long index, const char **consumed)
{
    (void)index;
    struct amil_model *m = ctx;
    long n = m->ops->attend(m, r, consumed);
    if (n < 0)
        return -1;
    amil_record_set_fingerprint(r, "embedding_by", m->embedding_by);
    amil_record_set_meta(r, "attention_model", m->path);
    return n;
}

int main(int argc, char **argv)
{
    amil_init(argc, argv);
    struct amil_filter cl = amil_filter_args(argc, argv, 0, usage_text);
    amil_threads((int)cl.threads);
    struct amil_model m;
    if (amil_model_load(&m, cl.model) < 0 || amil_model_runs(&m, AMIL_STAGE_ATTENTION) < 0)
        amil_die("%s", amil_error());
    amil_filter_run(&cl, 1, attend_one, &m, "patches");
    amil_model_free(&m);
    return amil_close_stdout();
}
