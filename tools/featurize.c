/* featurize: the feature extractor of an attention-MIL model over bags.
 *
 * Reads bag records (`patches` U8 [N, P, P, C], from bagify) and writes
 * each with `features` F32 [N, L]: every patch through the model's two
 * convolutions and its linear layer, all N patches of a bag as one batch.
 * The patches, consumed, are left out unless -k keeps them.
 */
#include <stdlib.h>
#include <string.h>

#include "amil.h"
#include "filter.h"
#include "model.h"
#include "nn.h"

static const char usage_text[] =
    "usage: featurize -m MODEL [-k] [-j THREADS] [FILE]\n"
    "  -m, --model MODEL    the model (from train, or a PyTorch state_dict)\n"
    "  -k, --keep           keep the patches in the records\n"
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
    int got;
    while ((got = amil_read(&s, &r)) == 1) {
        const struct amil_tensor *patches = amil_bag_patches(&m, &r);
        if (!patches)
            amil_die("%s: record %ld: %s", s.name, s.index - 1, amil_error());
        int n = (int)patches->shape[0];
        amil_featurize(&m, &w, patches->data, n);
        int64_t shape[2] = {n, m.hidden};
        memcpy(amil_put(&r, "features", AMIL_F32, 2, shape)->data, w.h,
               sizeof(float) * (size_t)n * m.hidden);
        if (!cl.keep)
            amil_remove(&r, "patches");
        amil_meta_set(&r, "model", cl.model);
        if (amil_write(stdout, &r) < 0)
            amil_die("write error:");
        amil_record_free(&r);
    }
    if (got < 0)
        amil_die("%s", amil_error());
    amil_stream_close(&s);
    amil_work_free(&w);
    amil_model_free(&m);
    return amil_close_stdout();
}
