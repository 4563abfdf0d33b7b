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
 * last layer on them without running the backbone every epoch.
 *
 * The patches or the image, consumed, are left out unless -k keeps them.
 */
#include <stdlib.h>
#include <string.h>

#include "amil.h"
#include "filter.h"
#include "model.h"
#include "nn.h"

static const char usage_text[] =
    "usage: featurize -m MODEL [-k] [-j THREADS] [FILE]\n"
    "  -m, --model MODEL    the model (from train, or a PyTorch state_dict):\n"
    "                       attention-MIL, or a vgg19 or resnet18 backbone\n"
    "  -k, --keep           keep the patches (or the image) in the records\n"
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

/* The tiles of a record's image through a CNN backbone. */
static int featurize_image(const struct amil_cnn *m, struct amil_cnn_work *w,
                           struct amil_record *r)
{
    const struct amil_tensor *image = amil_cnn_image(m, r);
    if (!image)
        return -1;
    /* the pixels' buffer, not the tensor: amil_put may move the tensors */
    const uint8_t *pixels = image->data;
    int n, H = (int)image->shape[0], W = (int)image->shape[1];
    int F = amil_cnn_feature_size(m);
    int32_t *coords = amil_cnn_tile_coords(m, H, W, &n);
    int64_t shape[2] = {n, F}, coord_shape[2] = {n, 2};
    float *features = amil_put(r, "features", AMIL_F32, 2, shape)->data;
    amil_cnn_featurize(m, w, pixels, W, coords, n, features);
    memcpy(amil_put(r, "coords", AMIL_I32, 2, coord_shape)->data, coords,
           sizeof *coords * 2 * n);
    amil_meta_setf(r, "patch", "%d", m->size);
    free(coords);
    return 0;
}

int main(int argc, char **argv)
{
    amil_init(argc, argv);
    struct amil_filter cl = parse_args(argc, argv);
    amil_threads((int)cl.threads);
    struct amil_any_model any;
    if (amil_any_load(&any, cl.model) < 0)
        amil_die("%s", amil_error());
    struct amil_model *m = &any.mil;
    if (any.is_cnn && !any.cnn.trained)
        amil_die("%s: net is trained whole, not on cached features; only a frozen "
                 "backbone (vgg19, resnet18) has features to cache", cl.model);
    struct amil_stream s;
    if (amil_stream_open_path(&s, cl.input) < 0)
        amil_die("%s", amil_error());
    struct amil_work w = {0};
    struct amil_cnn_work cw = {0};
    struct amil_record r;
    struct amil_progress progress;
    amil_progress_start(&progress);
    int got;
    while ((got = amil_read(&s, &r)) == 1) {
        long units = 1;
        if (any.is_cnn) {
            if (featurize_image(&any.cnn, &cw, &r) < 0)
                amil_die("%s: record %ld: %s", s.name, s.index - 1, amil_error());
            if (!cl.keep)
                amil_remove(&r, "image");
        } else {
            const struct amil_tensor *patches = amil_bag_patches(m, &r);
            if (!patches)
                amil_die("%s: record %ld: %s", s.name, s.index - 1, amil_error());
            int n = (int)patches->shape[0];
            units = n;
            amil_featurize(m, &w, patches->data, n);
            int64_t shape[2] = {n, m->hidden};
            memcpy(amil_put(&r, "features", AMIL_F32, 2, shape)->data, w.h,
                   sizeof(float) * (size_t)n * m->hidden);
            if (!cl.keep)
                amil_remove(&r, "patches");
        }
        amil_meta_set(&r, "model", cl.model);
        if (amil_write(stdout, &r) < 0)
            amil_die("write error:");
        amil_record_free(&r);
        amil_progress_add(&progress, units, any.is_cnn ? "images" : "patches");
    }
    amil_progress_end(&progress);
    if (got < 0)
        amil_die("%s", amil_error());
    amil_stream_close(&s);
    amil_work_free(&w);
    amil_cnn_work_free(&cw);
    amil_any_free(&any);
    return amil_close_stdout();
}
