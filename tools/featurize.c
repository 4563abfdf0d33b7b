/* featurize: the feature extractor of a model over bags or images.
 *
 * With an attention-MIL model, reads bag records (`patches` U8 [N, P, P,
 * C], from bagify) and writes each with `features` F32 [N, L]: every patch
 * through the model's two convolutions and its linear layer, all N patches
 * of a bag as one batch.
 *
 * With a frozen backbone (vgg19, resnet18, resnet50, a ViT), reads image records
 * (`image` U8 [H, W, 3], from bagify -w) and writes each with `features`
 * F32 [N, F] and `coords` I32 [N, 2]: the input of the last layer for each
 * of the image's N tiles, computed once, so that train fits the
 * last layer on them without running the backbone every epoch.  A bag of
 * patches of the backbone's input side (bagify -p 224 of a slide, for a
 * CLAM head) gives each patch's features the same way, one tile each.
 *
 * The patches or the image, consumed, are left out unless -k keeps them.
 */
#include "base/base.h"
#include "compute/nn.h"
#include "compute/parallel.h"
#include "models/model.h"
#include "record/record.h"
#include "tool/filter.h"

static const char usage_text[] =
    "usage: featurize -m MODEL [-k] [-j THREADS] [--trunc] [--pool token|avg]\n"
    "                 [--precision f32|bf16] [--force] [FILE]\n"
    "  -m, --model MODEL    the model (from train, or a PyTorch state_dict):\n"
    "                       attention-MIL, or a vgg19, resnet18, resnet50 or\n"
    "                       ViT backbone (torchvision's or timm's)\n"
    "  -k, --keep           keep the patches (or the image) in the records\n"
    "  -j, --threads N      threads for the matrix products [1]\n"
    "      --trunc          resnet50 through layer3: CLAM's 1024 features\n"
    "      --pool HOW       a ViT's features: the class token, or the mean of\n"
    "                       the patch tokens [as the file says, else token]\n"
    "      --precision P    a backbone's products in f32 or bf16 (AVX512_BF16)\n"
    "                       [f32]\n"
    "      --force          write records even to a terminal\n"
    "  -h, --help           this help\n";

/* A record's features, and which weights made them: the stages after
 * check it. */
static long featurize_one(void *ctx, struct amil_record *r, long index, const char **consumed)
{
    (void)index;
    struct amil_model *m = ctx;
    long units = m->ops->featurize(m, r, consumed);
    const struct amil_tensor *made = units >= 0 ? amil_record_find(r, "features") : NULL;
    if (made && amil_tensor_finite("features", made->data, 2, made->shape, 0) < 0)
        return -1;   /* finite weights can overflow: such features are no features */
    if (units >= 0) {
        amil_record_set_fingerprint(r, "features_by", m->features_by);
        amil_record_set_meta(r, "features_model", m->path);
    }
    return units;
}

int main(int argc, char **argv)
{
    amil_init(argc, argv);
    struct amil_filter cl = amil_filter_args(argc, argv, AMIL_FILTER_BACKBONE, usage_text);
    amil_threads((int)cl.threads);
    struct amil_model m;
    amil_filter_model(&cl, &m);
    if (amil_model_runs(&m, AMIL_STAGE_FEATURES) < 0)
        amil_die("%s", amil_error());
    amil_filter_run(&cl, 0, featurize_one, &m, m.ops->units);
    amil_model_free(&m);
    return amil_close_stdout();
}
