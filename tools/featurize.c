/* featurize: the feature extractor of a model over bags or images.
 *
 * With an attention-MIL model, reads bag records (`patches` U8 [N, P, P,
 * C], from bagify) and writes each with `features` F32 [N, L]: every patch
 * through the model's two convolutions and its linear layer, all N patches
 * of a bag as one batch.
 *
 * With a frozen CNN backbone (vgg19, resnet18), reads image records
 * (`image` U8 [H, W, 3], from bagify -w) and writes each with `features`
 * F32 [N, F] and `coords` I32 [N, 2]: the input of the last layer for each
 * of the image's N tiles (cnn.h), computed once, so that train fits the
 * last layer on them without running the backbone every epoch.  A bag of
 * patches of the backbone's input side (bagify -p 224 of a slide, for a
 * CLAM head) gives each patch's features the same way, one tile each.
 *
 * The patches or the image, consumed, are left out unless -k keeps them.
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
    "usage: featurize -m MODEL [-k] [-j THREADS] [--force] [FILE]\n"
    "  -m, --model MODEL    the model (from train, or a PyTorch state_dict):\n"
    "                       attention-MIL, or a vgg19 or resnet18 backbone\n"
    "  -k, --keep           keep the patches (or the image) in the records\n"
    "  -j, --threads N      threads for the matrix products [1]\n"
    "      --force          write records even to a terminal\n"
    "  -h, --help           this help\n";

/* The tiles of a record's image through a CNN backbone. */
static int featurize_image(const struct amil_cnn *m, struct amil_cnn_work *w,
                           struct amil_record *r)
{
    const struct amil_tensor *image = amil_cnn_image(m, r);
    if (!image)
        return -1;
    /* the pixels' buffer, not the tensor: amil_record_put may move the tensors */
    const uint8_t *pixels = image->data;
    int n, H = (int)image->shape[0], W = (int)image->shape[1];
    int F = amil_cnn_feature_size(m);
    int32_t *coords = amil_cnn_tile_coords(m, H, W, &n);
    int64_t shape[2] = {n, F}, coord_shape[2] = {n, 2};
    float *features = amil_record_put(r, "features", AMIL_F32, 2, shape)->data;
    amil_cnn_featurize(m, w, pixels, W, coords, n, features);
    memcpy(amil_record_put(r, "coords", AMIL_I32, 2, coord_shape)->data, coords,
           sizeof *coords * 2 * n);
    amil_record_set_metaf(r, "patch", "%d", m->size);
    free(coords);
    return 0;
}

/* A bag's patches (N, S, S, 3), S the backbone's input side, each a tile:
 * features (N, F), in the order of patches; coords stay as they are. */
static int featurize_patches(const struct amil_cnn *m, struct amil_cnn_work *w,
                             struct amil_record *r)
{
    const struct amil_tensor *p = amil_record_expect(r, "patches", AMIL_U8, 4);
    if (!p)
        return -1;
    if (p->shape[0] < 1 || p->shape[0] > INT32_MAX / 4096 || p->shape[1] != m->size ||
        p->shape[2] != m->size || p->shape[3] != 3)
        return amil_fail("patches are [%lld, %lld, %lld, %lld]; %s takes RGB patches of "
                         "%d×%d (bagify -p %d)", (long long)p->shape[0], (long long)p->shape[1],
                         (long long)p->shape[2], (long long)p->shape[3],
                         amil_cnn_arch_name(m->arch), m->size, m->size, m->size);
    const uint8_t *pixels = p->data;   /* amil_record_put may move the tensors */
    int n = (int)p->shape[0], F = amil_cnn_feature_size(m);
    size_t patch = (size_t)m->size * m->size * 3;
    int64_t shape[2] = {n, F};
    float *features = amil_record_put(r, "features", AMIL_F32, 2, shape)->data;
    static const int32_t corner[2] = {0, 0};
    for (int i = 0; i < n; i++)
        amil_cnn_featurize(m, w, pixels + i * patch, m->size, corner, 1,
                           features + (size_t)i * F);
    return n;
}

struct featurize {
    const char *model;
    struct amil_any_model any;
    struct amil_mil_work w;
    struct amil_cnn_work cw;
};

/* A bag's features, or an image's tiles' through a CNN backbone. */
static long features_of(struct featurize *f, struct amil_record *r, const char **consumed)
{
    if (f->any.is_cnn && !amil_record_find(r, "image") && amil_record_find(r, "patches")) {
        *consumed = "patches";
        return featurize_patches(&f->any.cnn, &f->cw, r);
    }
    if (f->any.is_cnn) {
        if (featurize_image(&f->any.cnn, &f->cw, r) < 0)
            return -1;
        *consumed = "image";
        return 1;
    }
    const struct amil_mil *m = &f->any.mil;
    const struct amil_tensor *patches = amil_mil_bag_patches(m, r);
    if (!patches)
        return -1;
    int n = (int)patches->shape[0];
    const uint8_t *pixels = patches->data;   /* amil_record_put may move the tensors */
    int64_t shape[2] = {n, m->hidden};
    amil_mil_features(m, &f->w, pixels, n,
                      amil_record_put(r, "features", AMIL_F32, 2, shape)->data);
    *consumed = "patches";
    return n;
}

/* features_of, and which weights made them: the stages after check it. */
static long featurize_one(void *ctx, struct amil_record *r, long index, const char **consumed)
{
    (void)index;
    struct featurize *f = ctx;
    long units = features_of(f, r, consumed);
    const struct amil_tensor *made = units >= 0 ? amil_record_find(r, "features") : NULL;
    if (made && amil_tensor_finite("features", made->data, 2, made->shape, 0) < 0)
        return -1;   /* finite weights can overflow: such features are no features */
    if (units >= 0) {
        amil_record_set_fingerprint(r, "features_by", f->any.features_by);
        amil_record_set_meta(r, "features_model", f->model);
    }
    return units;
}

int main(int argc, char **argv)
{
    amil_init(argc, argv);
    struct amil_filter cl = amil_filter_args(argc, argv, 0, usage_text);
    amil_threads((int)cl.threads);
    struct featurize f = {.model = cl.model};
    if (amil_any_load(&f.any, cl.model) < 0)
        amil_die("%s", amil_error());
    if (f.any.is_clam)
        amil_die("%s: a CLAM head reads cached features: featurize with its backbone "
                 "(vgg19, resnet18), then attend with the head", cl.model);
    if (f.any.is_cnn && !f.any.cnn.trained)
        amil_die("%s: net is trained whole, not on cached features; only a frozen "
                 "backbone (vgg19, resnet18) has features to cache", cl.model);
    amil_filter_run(&cl, 0, featurize_one, &f, f.any.is_cnn ? "images" : "patches");
    amil_mil_work_free(&f.w);
    amil_cnn_work_free(&f.cw);
    amil_any_free(&f.any);
    return amil_close_stdout();
}
