/* cnn_model.c: the CNN baselines and frozen backbones (cnn.h) as a model
 * family (model.h): an image's tiles (or a bag's patches of the input's
 * side) to features, and images or their cached features to classes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "compute/nn.h"
#include "media/image.h"
#include "models/cnn.h"
#include "models/model.h"
#include "record/record.h"

static int from_record(struct amil_model *m, struct amil_record *r)
{
    struct amil_cnn *cnn = m->impl = amil_xcalloc(1, sizeof *cnn);
    m->work = amil_xcalloc(1, sizeof(struct amil_cnn_work));
    if (amil_cnn_from_record(cnn, r) < 0)
        return -1;
    m->features_by = amil_cnn_features_fingerprint(cnn);
    m->knows_features = cnn->trained > 0;
    return 0;
}

/* What training adds: the network's own buffers (m->work runs the frozen
 * backbone over tiles and judges), the batch, and the backbone's
 * fingerprint, which a set's cached features must carry. */
struct cnn_trainer {
    const struct amil_train_spec *spec;
    struct amil_cnn_work w;
    struct amil_cnn_batch batch;
    int capacity;           /* samples the batch holds */
    uint64_t backbone;
    const char *backbone_from;   /* its file, for messages */
};

static void free_model(struct amil_model *m)
{
    struct cnn_trainer *t = m->trainer;
    if (t) {
        amil_cnn_work_free(&t->w);
        free(t->batch.crops), free(t->batch.features), free(t->batch.labels);
        free(t->batch.dscores);
    }
    free(t);
    if (m->impl)
        amil_cnn_free(m->impl);
    if (m->work)
        amil_cnn_work_free(m->work);
    free(m->impl);
    free(m->work);
}

static int classes(const struct amil_model *m)
{
    return ((const struct amil_cnn *)m->impl)->classes;
}

static const char *lacks(const struct amil_model *m, enum amil_stage stage)
{
    const struct amil_cnn *cnn = m->impl;
    static char why[128];
    if (stage == AMIL_STAGE_FEATURES && !cnn->trained)
        return "net is trained whole, not on cached features; only a frozen "
               "backbone (vgg19, a resnet, a ViT) has features to cache";
    if ((stage == AMIL_STAGE_CLASSES || stage == AMIL_STAGE_GRADCAM) && cnn->headless) {
        snprintf(why, sizeof why,
                 "a %s backbone without its last layer: it only featurizes (train --arch %s "
                 "fits one)", amil_cnn_arch_name(cnn->arch), amil_cnn_arch_name(cnn->arch));
        return why;
    }
    if (stage == AMIL_STAGE_GRADCAM && cnn->cam_layer < 0) {
        snprintf(why, sizeof why, "%s has no feature maps for Grad-CAM to look at",
                 amil_cnn_arch_name(cnn->arch));
        return why;
    }
    if (stage == AMIL_STAGE_ATTENTION) {
        snprintf(why, sizeof why,
                 "arch '%s' is not an attention-MIL model (amil or gated) or a CLAM head",
                 amil_cnn_arch_name(cnn->arch));
        return why;
    }
    return NULL;
}

/* The tiles of a record's image through the backbone. */
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
    amil_cnn_featurize(m, w, pixels, W, coords, n, NULL, features);
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
    int64_t shape[2] = {n, F};
    float *features = amil_record_put(r, "features", AMIL_F32, 2, shape)->data;
    amil_cnn_featurize(m, w, NULL, 0, NULL, n, pixels, features);
    return n;
}

/* A bag's patches when the record has no image, else the image's tiles. */
static long featurize(struct amil_model *m, struct amil_record *r, const char **consumed)
{
    if (!amil_record_find(r, "image") && amil_record_find(r, "patches")) {
        *consumed = "patches";
        return featurize_patches(m->impl, m->work, r);
    }
    if (featurize_image(m->impl, m->work, r) < 0)
        return -1;
    *consumed = "image";
    return 1;
}

/* From the tiles' cached features if a frozen backbone's record has them,
 * else from the image. */
static const char *classify(struct amil_model *m, const struct amil_record *r, float *prob)
{
    const struct amil_cnn *cnn = m->impl;
    if (cnn->trained && amil_record_find(r, "features")) {
        const struct amil_tensor *f = amil_cnn_cached(cnn, r);
        if (!f)
            return NULL;
        amil_cnn_classify(cnn, m->work, NULL, 0, 0, f->data, (int)f->shape[0], prob);
        return "features";
    }
    const struct amil_tensor *image = amil_cnn_image(cnn, r);
    if (!image)
        return NULL;
    amil_cnn_classify(cnn, m->work, image->data, (int)image->shape[0], (int)image->shape[1],
                      NULL, 0, prob);
    return "image";
}

static int predict(const struct amil_model *m, const float *prob)
{
    return amil_cnn_predict(m->impl, prob);
}

/* The layer's index, as the name asks (NULL: the architecture's own). */
static int layer_index(const struct amil_cnn *cnn, const char *layer)
{
    int at = layer ? amil_cnn_layer(cnn, layer) : cnn->cam_layer;
    if (at < 0)
        return amil_fail("--layer: %s has no layer '%s'", amil_cnn_arch_name(cnn->arch), layer);
    if (!amil_cnn_is_map(cnn, at))
        return amil_fail("--layer: '%s' is not a layer of feature maps", layer);
    return at;
}

static const char *cam_layer(const struct amil_model *m, const char *layer)
{
    const struct amil_cnn *cnn = m->impl;
    int at = layer_index(cnn, layer);
    return at < 0 ? NULL : cnn->layers[at].name;
}

/* The maps of img at layer for class target, summed over its tiles, then
 * averaged over the tiles that cover each pixel. */
static void explain_tiles(const struct amil_cnn *m, const struct amil_image *img, int layer,
                          int target, struct amil_image_maps *out)
{
    int T = m->size, H = img->height, W = img->width, n;
    int32_t *coords = amil_cnn_tile_coords(m, H, W, &n);
    const struct amil_layer *at = &m->layers[layer];
    uint8_t *tile = amil_xmalloc((size_t)T * T * 3);
    float *cam = amil_xmalloc(sizeof *cam * at->h * at->w);
    float *scaled = amil_xmalloc(sizeof *scaled * T * T);
    struct amil_cnn_work w = {0};
    float dscores[AMIL_CNN_MAX_CLASSES] = {0};
    dscores[target] = 1;
    size_t pixels = (size_t)H * W;
    out->covers = amil_xcalloc(pixels, sizeof *out->covers);
    for (int i = 0; i < n; i++) {
        int top = coords[2 * i], left = coords[2 * i + 1];
        amil_cnn_cut(tile, img->pixels, W, top, left, T);
        amil_cnn_forward(m, &w, tile, 1, NULL);
        if (out->cam) {
            amil_cnn_backward(m, &w, dscores, 1, layer, AMIL_BACKWARD_PLAIN, NULL);
            amil_cnn_gradcam(m, &w, layer, 0, cam);
            amil_upsample_bilinear(scaled, T, T, cam, at->h, at->w);
        }
        if (out->guided)
            amil_cnn_backward(m, &w, dscores, 1, 0, AMIL_BACKWARD_GUIDED, NULL);
        for (int y = 0; y < T; y++)
            for (int x = 0; x < T; x++) {
                size_t at_image = (size_t)(top + y) * W + left + x;
                out->covers[at_image]++;
                if (out->cam)
                    out->cam[at_image] += scaled[y * T + x];
                for (int c = 0; out->guided && c < 3; c++)
                    out->guided[c * pixels + at_image] +=
                        w.grad[0][((size_t)c * T + y) * T + x];
            }
    }
    for (size_t p = 0; p < pixels; p++) {
        if (out->cam)
            out->cam[p] /= (float)out->covers[p];
        for (int c = 0; out->guided && c < 3; c++)
            out->guided[c * pixels + p] /= (float)out->covers[p];
    }
    amil_cnn_work_free(&w);
    free(tile), free(cam), free(scaled), free(coords);
}

static int gradcam_image(struct amil_model *m, const struct amil_image *img, const char *name,
                         const char *layer, int target, int cam, int guided,
                         struct amil_image_maps *out)
{
    const struct amil_cnn *cnn = m->impl;
    int T = cnn->size;
    if (img->width < T || img->height < T)
        return amil_fail("%s: %d×%d, smaller than %s's %d×%d input", name, img->width,
                         img->height, amil_cnn_arch_name(cnn->arch), T, T);
    int at = layer_index(cnn, layer);
    if (at < 0)
        return -1;
    if (target >= cnn->classes)
        return amil_fail("--class %d: the model has %d classes", target, cnn->classes);
    if (target < 0) {   /* the class the model gives the image */
        float prob[AMIL_CNN_MAX_CLASSES];
        amil_cnn_classify(cnn, m->work, img->pixels, img->height, img->width, NULL, 0, prob);
        int64_t classes = cnn->classes;
        if (amil_tensor_finite("prob", prob, 1, &classes, -1) < 0)
            return amil_fail_in(name);
        target = amil_cnn_predict(cnn, prob);
    }
    size_t pixels = (size_t)img->width * img->height;
    *out = (struct amil_image_maps){.target = target, .layer = cnn->layers[at].name,
                                    .arch = amil_cnn_arch_name(cnn->arch)};
    if (cam)
        out->cam = amil_xcalloc(pixels, sizeof *out->cam);
    if (guided)
        out->guided = amil_xcalloc(3 * pixels, sizeof *out->guided);
    explain_tiles(cnn, img, at, target, out);
    return 0;
}

/* ---- training: batches of samples ----------------------------------------- */

/* A new network (random, then the weights given) or a checkpoint's, which
 * must be of the arch asked for. */
static int start(struct amil_model *m, const struct amil_train_spec *spec, int *random_backbone)
{
    struct amil_cnn *cnn = m->impl;
    if (cnn && cnn->arch != (enum amil_cnn_arch)spec->variant)
        return amil_fail("a checkpoint of %s, not %s", amil_cnn_arch_name(cnn->arch),
                         amil_cnn_arch_name(spec->variant));
    if (!cnn) {
        cnn = m->impl = amil_xcalloc(1, sizeof *cnn);
        m->work = amil_xcalloc(1, sizeof(struct amil_cnn_work));
        if (amil_cnn_start(cnn, spec->variant, spec->classes, spec->seed, spec->norm,
                           spec->weights, spec->norm_given) < 0)
            return -1;
        *random_backbone = !spec->weights && cnn->trained > 0;
    }
    struct cnn_trainer *t = m->trainer = amil_xcalloc(1, sizeof *t);
    t->spec = spec;
    t->backbone = amil_cnn_features_fingerprint(cnn);
    t->backbone_from = spec->weights  ? spec->weights
                       : spec->resume ? spec->resume
                                      : "a random backbone";
    return 0;
}

static struct amil_params *params(struct amil_model *m, int *first)
{
    struct amil_cnn *cnn = m->impl;
    *first = cnn->trained;
    return &cnn->params;
}

/* An image (or its cached features) with a label: one sample for net (a
 * crop), one per tile for the frozen backbones. */
static long check(struct amil_model *m, struct amil_record *r, int *form)
{
    const struct cnn_trainer *t = m->trainer;
    long samples = amil_cnn_samples(m->impl, r, form);
    if (samples < 0 ||
        (*form == 1 && amil_check_stage(r, "features_by", t->backbone, t->backbone_from) < 0))
        return -1;
    return samples;
}

static int take(struct amil_model *m, const struct amil_record *r, long sample, int form,
                gsl_rng *rng, int k)
{
    const struct amil_cnn *cnn = m->impl;
    struct cnn_trainer *t = m->trainer;
    if (k >= t->capacity) {   /* grown by the first step */
        int T = cnn->size, F = amil_cnn_feature_size(cnn), B = t->capacity = k + 1;
        if (!cnn->trained)
            t->batch.crops = amil_xrealloc(t->batch.crops, (size_t)B * T * T * 3);
        t->batch.features = amil_xrealloc(t->batch.features, sizeof(float) * B * F);
        t->batch.labels = amil_xrealloc(t->batch.labels, sizeof(long) * B);
        t->batch.dscores = amil_xrealloc(t->batch.dscores, sizeof(float) * B * cnn->classes);
    }
    return amil_cnn_take(cnn, m->work, r, sample, form, rng, &t->batch, k);
}

static double step(struct amil_model *m, int n, float *grads, gsl_rng *rng, int *errors)
{
    const struct amil_cnn *cnn = m->impl;
    struct cnn_trainer *t = m->trainer;
    if (cnn->trained)
        amil_cnn_forward_head(cnn, &t->w, t->batch.features, n, rng);
    else
        amil_cnn_forward(cnn, &t->w, t->batch.crops, n, rng);
    const float *scores = t->w.out[cnn->nlayers - 1];
    double loss = amil_cnn_loss(cnn, scores, t->batch.labels, n, t->batch.dscores);
    amil_cnn_backward(cnn, &t->w, t->batch.dscores, n, cnn->trained ? cnn->features : 0,
                      AMIL_BACKWARD_PLAIN, grads);
    *errors = 0;
    for (int j = 0; j < n; j++)
        *errors += amil_cnn_predict(cnn, scores + (size_t)j * cnn->classes) !=
                   t->batch.labels[j];
    return loss;
}

static int judge(struct amil_model *m, struct amil_record *r, int form, struct amil_verdict *v)
{
    return amil_cnn_judge(m->impl, m->work, r, form, v);
}

static void to_record(const struct amil_model *m, struct amil_record *r)
{
    amil_cnn_to_record(m->impl, r);
}

/* The paper's baselines: RMSprop, lr 3e-4, momentum 0.4, batches of 32,
 * 10 epochs. */
static const struct amil_train_ops train = {
    .unit = "sample",
    .takes = AMIL_TRAIN_BATCH,
    .defaults = {.epochs = 10, .batch = 32, .lr = 3e-4, .decay = 0, .momentum = 0.4,
                 .optimizer = AMIL_RMSPROP},
    .arch_parse = amil_cnn_arch_parse,
    AMIL_TRAIN_FUNCTIONS,
};

const struct amil_model_ops amil_cnn_model = {
    .input = AMIL_INPUT_IMAGE,
    .units = "images",
    .recognise = amil_cnn_is_model,
    .from_record = from_record,
    .free = free_model,
    .classes = classes,
    .lacks = lacks,
    .featurize = featurize,
    .classify = classify,
    .predict = predict,
    .cam_layer = cam_layer,
    .gradcam_image = gradcam_image,
    .noun = "a CNN model",
    .settings = "trunc global_pool precision",
    .train = &train,
};
