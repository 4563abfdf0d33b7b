/* classify: the classifier of a model: of an attention-MIL model over
 * attended bags, of a CNN baseline over images.
 *
 * With an attention-MIL model, reads records with `embedding` F32 [K, L]
 * (from attend).  With a CNN, reads image records (`image` U8 [H, W, 3],
 * from bagify -w), or for a frozen backbone the `features` of their tiles
 * (from featurize); the image's probabilities are the mean of its tiles'.
 * Writes each record with `prob` F32 [classes] (two classes of A-MIL:
 * [1 - p, p] from the paper's sigmoid; else a softmax) and the metadata
 * `predicted`, the most probable class.  What it read (embedding, image,
 * features) is left out unless -k keeps it.  With -t it writes a table
 * instead, one line per record, for evaluate(1):
 *
 *   source  label  prob_0 ... prob_{C-1}  predicted  patient
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "compute/nn.h"
#include "compute/parallel.h"
#include "models/model.h"
#include "record/record.h"
#include "tool/filter.h"

static const char usage_text[] =
    "usage: classify -m MODEL [-t | -k] [-j THREADS] [--force] [FILE]\n"
    "  -m, --model MODEL    the model (from train, or a PyTorch state_dict):\n"
    "                       attention-MIL, or a CNN (net, vgg19, resnet18, resnet50)\n"
    "  -t, --table          write a TSV line per record instead of records\n"
    "  -k, --keep           keep the embedding (image, features) in the records\n"
    "  -j, --threads N      threads for the matrix products [1]\n"
    "      --force          write records even to a terminal\n"
    "  -h, --help           this help\n";

/* A metadata value fit for a TSV cell: tabs and newlines become spaces. */
static void put_cell(const char *v)
{
    for (; v && *v; v++)
        putchar(*v == '\t' || *v == '\n' || *v == '\r' ? ' ' : *v);
}

static void put_header(int classes)
{
    printf("source\tlabel");
    for (int c = 0; c < classes; c++)
        printf("\tprob_%d", c);
    printf("\tpredicted\tpatient\n");
}

static void put_row(int classes, const struct amil_record *r, const float *prob,
                    int predicted)
{
    put_cell(amil_record_meta(r, "source"));
    putchar('\t');
    long label;
    if (amil_record_meta_long(r, "label", 0, LONG_MAX, &label) == 1)
        printf("%ld", label);
    for (int c = 0; c < classes; c++)
        printf("\t%.9g", prob[c]);
    printf("\t%d\t", predicted);
    put_cell(amil_record_meta(r, "patient"));
    putchar('\n');
}

struct classify {
    const struct amil_filter *cl;
    struct amil_model m;
    int classes;
};

/* A record's probabilities and predicted class: in the record, or with -t
 * as its line of the table (after the header, for the first). */
static long classify_one(void *ctx, struct amil_record *r, long index, const char **consumed)
{
    struct classify *c = ctx;
    float prob[AMIL_MAX_CLASSES];
    struct amil_model *m = &c->m;
    *consumed = m->ops->classify(m, r, prob);
    if (!*consumed)
        return -1;
    /* what it read was made by this model's weights, where the record says */
    int cached = m->knows_features && strcmp(*consumed, "features") == 0;
    int pooled = strcmp(*consumed, "embedding") == 0;
    if ((cached && amil_check_stage(r, "features_by", m->features_by, m->path) < 0) ||
        (pooled && amil_check_stage(r, "embedding_by", m->embedding_by, m->path) < 0))
        return -1;
    int64_t classes = c->classes;   /* an overflow on the way is not a class */
    if (amil_tensor_finite("prob", prob, 1, &classes, -1) < 0)
        return -1;
    int predicted = m->ops->predict(m, prob);
    if (c->cl->table) {
        if (index == 0)   /* the header, once the first record is good */
            put_header(c->classes);
        put_row(c->classes, r, prob, predicted);
        return 1;
    }
    int64_t shape[1] = {c->classes};
    memcpy(amil_record_put(r, "prob", AMIL_F32, 1, shape)->data, prob,
           sizeof(float) * c->classes);
    amil_record_set_metaf(r, "predicted", "%d", predicted);
    return 1;
}

int main(int argc, char **argv)
{
    amil_init(argc, argv);
    struct amil_filter cl = amil_filter_args(argc, argv, AMIL_FILTER_TABLE, usage_text);
    amil_threads((int)cl.threads);
    struct classify c = {.cl = &cl};
    if (amil_model_load(&c.m, cl.model) < 0 || amil_model_runs(&c.m, AMIL_STAGE_CLASSES) < 0)
        amil_die("%s", amil_error());
    c.classes = c.m.ops->classes(&c.m);
    if (c.classes > AMIL_MAX_CLASSES)
        amil_die("%s: %d classes; classify takes at most %d", cl.model, c.classes,
                 AMIL_MAX_CLASSES);
    amil_filter_run(&cl, 0, classify_one, &c, "records");
    amil_model_free(&c.m);
    return amil_close_stdout();
}
