/* test_cnn.c: the CNN baselines (net, vgg19, resnet18) against PyTorch 1.13
 * and torchvision 0.14 on a committed fixture
 * (tests/data/cnn-fixture.safetensors, made by tests/torch/cnn_fixture.py):
 * torchvision's modules in float64, the truth both float32 implementations
 * are held to, on crops of the real BreakHis image with weights both sides
 * compute from a hash.
 *
 * For each case: the logits; Grad-CAM of every class at the fixture's
 * layer, and scaled to the image; Guided Backpropagation of class 1; the
 * loss and gradient of every trained parameter for a batch of two.  Each
 * within a relative error of 1e-3 (max |ours - torch| / max |torch|), with
 * two exceptions, both from max-pooling: where two values of a window are
 * equal to float32's precision, which wins (and gets the whole gradient)
 * is decided by rounding, in any float32 implementation.  On net's crop our
 * forward activations agree with float64 to 7e-7, yet 4, 1 and 1 windows of
 * the first three max-pools pick another winner (measured against
 * F.max_pool2d(return_indices=True) on our activations); PyTorch's float32
 * run flips fewer.  So the gradients that pass back through those pools
 * (net's conv1 to conv3: up to 4.5e-3 here, PyTorch float32 9e-5) are held
 * to 1e-2, and Guided Backpropagation, all of whose values pass back
 * through every pool, is measured in the L2 norm (‖ours - torch‖ /
 * ‖torch‖) and held to 2e-2 (1.3e-2 for net, 1.5e-3 for vgg19, 1.4e-7 for
 * resnet18, whose pools see no near ties). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/base.h"
#include "compute/kernels.h"
#include "compute/nn.h"
#include "media/image.h"
#include "models/cnn.h"
#include "record/record.h"
#include "record/stream.h"
#include "torch_check.h"

/* cnn_fixture.py's weights(): v = 2u - 1; convolution and linear weights
 * v √(6 / fan_in), biases v / √fan_in; batch norm weight 1 + v/4, bias
 * v/10, running mean v/10, running variance 1 + v/4; the last layer's
 * weight negated (see there why). */
static void formula_weights(struct amil_cnn *m)
{
    for (int t = 0; t < m->params.n; t++) {
        const struct amil_param *p = &m->params.at[t];
        const char *suffix = strrchr(p->name, '.') + 1;
        for (size_t j = 0; j < p->count; j++) {
            double v = 2 * hash_uniform(t, j) - 1, x;
            if (p->fan_in == 0)
                x = strcmp(suffix, "weight") == 0 || strcmp(suffix, "running_var") == 0
                        ? 1 + v / 4 : v / 10;
            else
                x = strcmp(suffix, "weight") == 0 ? v * sqrt(6.0 / p->fan_in)
                                                  : v / sqrt((double)p->fan_in);
            if (t == m->params.n - 2)   /* the last layer's weight */
                x = -x;
            m->params.weights[p->offset + j] = (float)x;
        }
    }
}

static long meta(const struct amil_record *r, const char *key)
{
    long v;
    if (amil_record_meta_long(r, key, 0, 1L << 20, &v) != 1)
        fail_msg("fixture record has no %s", key);
    return v;
}

/* A crop of the BreakHis image (H, W, 3), and (mirrored) its mirror image. */
static uint8_t *crop(const struct amil_image *img, long y0, long x0, long H, long W,
                     int mirrored)
{
    uint8_t *out = malloc((size_t)H * W * 3);
    for (long y = 0; y < H; y++)
        for (long x = 0; x < W; x++)
            for (int c = 0; c < 3; c++) {
                long sx = x0 + (mirrored ? W - 1 - x : x);
                out[(y * W + x) * 3 + c] = img->pixels[((y0 + y) * img->width + sx) * 3 + c];
            }
    return out;
}

/* Sends m's weights through a model file, as programs load them: the
 * frozen ones borrowed from the file's mapping (which must outlive the
 * record), the trained ones copied. */
static void through_file(struct amil_cnn *m)
{
    struct amil_record r;
    amil_cnn_to_record(m, &r);
    char path[] = "/tmp/amil-cnn-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "wb");
    assert_int_equal(amil_record_write(f, &r), 0);
    assert_int_equal(fclose(f), 0);
    amil_record_free(&r);
    memset(m->params.weights, 0, sizeof *m->params.weights * m->params.nweights);
    if (amil_record_load(path, &r) < 0)
        fail_msg("%s", amil_error());
    unlink(path);
    for (int i = 0; i < m->params.n; i++)
        amil_cnn_take_param(m, i, &r);
    amil_record_free(&r);
    int borrowed = 0;
    for (int i = 0; i < m->params.n; i++)
        borrowed += m->params.at[i].data != m->params.weights + m->params.at[i].offset;
    assert_int_equal(borrowed, m->trained);
    assert_true(m->trained == 0 || m->mapping);
}

static void one_case(const struct amil_record *r, const struct amil_image *img,
                     const struct amil_kernels *kernels)
{
    long classes = meta(r, "classes"), label = meta(r, "label");
    long H = meta(r, "height"), W = meta(r, "width");
    const char *arch_name = amil_record_meta(r, "arch");
    const char *layer_name = amil_record_meta(r, "cam_layer");
    int arch = amil_cnn_arch_parse(arch_name);
    assert_true(arch >= 0);
    struct amil_cnn m;
    if (amil_cnn_init(&m, arch, (int)classes, (int)H, (int)W, NULL) < 0)
        fail_msg("%s", amil_error());
    formula_weights(&m);
    through_file(&m);
    print_message("# case: %s, %ld×%ld, %ld classes, Grad-CAM at %s, %s kernels\n",
                  arch_name, W, H, classes, layer_name, kernels->name);
    int layer = amil_cnn_layer(&m, layer_name);
    assert_true(layer > 0);
    const struct amil_layer *at = &m.layers[layer];

    uint8_t *image = crop(img, meta(r, "crop_y"), meta(r, "crop_x"), H, W, 0);
    struct amil_cnn_work w = {.kernels = kernels};
    amil_cnn_forward(&m, &w, image, 1, NULL);
    float logits[16];
    memcpy(logits, w.out[m.nlayers - 1], sizeof *logits * classes);
    expect_close("forward", logits, r, "logits", 1e-4);

    /* Grad-CAM of each class's logit; some map must be more than zeros */
    float *cam = malloc(sizeof *cam * at->h * at->w), *scaled = malloc(sizeof *scaled * H * W);
    float dscores[16];
    double largest = 0;
    for (int c = 0; c < classes; c++) {
        for (int k = 0; k < classes; k++)
            dscores[k] = k == c;
        amil_cnn_backward(&m, &w, dscores, 1, layer, AMIL_BACKWARD_PLAIN, NULL);
        amil_cnn_gradcam(&m, &w, layer, 0, cam);
        char name[32];
        snprintf(name, sizeof name, "cam_raw.%d", c);
        expect_close("grad-cam", cam, r, name, 1e-3);
        for (int j = 0; j < at->h * at->w; j++)
            largest = fmax(largest, cam[j]);
        if (c == 1 && amil_record_find(r, "cam.1")) {
            amil_upsample_bilinear(scaled, (int)H, (int)W, cam, at->h, at->w);
            expect_close("grad-cam", scaled, r, "cam.1", 1e-3);
        }
    }
    assert_true(largest > 0);

    /* Guided Backpropagation of class 1, in the L2 norm */
    const struct amil_tensor *guided = amil_record_find(r, "guided.1");
    if (guided) {
        for (int k = 0; k < classes; k++)
            dscores[k] = k == 1;
        amil_cnn_backward(&m, &w, dscores, 1, 0, AMIL_BACKWARD_GUIDED, NULL);
        const float *theirs = guided->data;
        double diff = 0, norm = 0;
        for (size_t j = 0; j < (size_t)3 * H * W; j++) {
            diff += ((double)w.grad[0][j] - theirs[j]) * ((double)w.grad[0][j] - theirs[j]);
            norm += (double)theirs[j] * theirs[j];
        }
        double e = sqrt(diff / norm);
        print_message("# guided     %-40s relative L2 error %.2e (PyTorch float32: %s), "
                      "largest element %.2e (%s)\n", "guided.1", e,
                      amil_record_meta(r, "torch_float32_l2.guided.1"),
                      relative_error(w.grad[0], theirs, (size_t)3 * H * W),
                      amil_record_meta(r, "torch_float32_error.guided.1"));
        assert_true(norm > 0);
        assert_true(e < 2e-2);
    }

    /* training: the crop and its mirror image, mean cross-entropy */
    uint8_t *batch = malloc((size_t)2 * H * W * 3), *mirror = crop(img, meta(r, "crop_y"),
                                                                   meta(r, "crop_x"), H, W, 1);
    memcpy(batch, image, (size_t)H * W * 3);
    memcpy(batch + (size_t)H * W * 3, mirror, (size_t)H * W * 3);
    long labels[2] = {label, (label + 1) % classes};
    amil_cnn_forward(&m, &w, batch, 2, NULL);
    float *grads = calloc(m.params.nweights, sizeof *grads), dbatch[32];
    float loss = (float)amil_cnn_loss(&m, w.out[m.nlayers - 1], labels, 2, dbatch);
    expect_close("loss", &loss, r, "loss", 1e-4);
    amil_cnn_backward(&m, &w, dbatch, 2, m.trained ? m.features : 0, AMIL_BACKWARD_PLAIN,
                      grads);
    int checked = 0;
    for (int i = 0; i < m.params.n; i++) {
        char name[96];
        snprintf(name, sizeof name, "grad.%s", m.params.at[i].name);
        const struct amil_tensor *t = amil_record_find(r, name);
        if (i < m.trained) {   /* frozen: no gradient, and none in the fixture */
            assert_null(t);
            continue;
        }
        assert_non_null(t);
        size_t stride = m.params.at[i].count > 4096 ? 97 : 1, n = t->nbytes / sizeof(float);
        assert_int_equal(n, (m.params.at[i].count + stride - 1) / stride);
        float *picked = malloc(sizeof *picked * n);
        for (size_t j = 0; j < n; j++)
            picked[j] = grads[m.params.at[i].offset + j * stride];
        int below_pools = m.arch == AMIL_CNN_NET && strncmp(m.params.at[i].name, "conv", 4) == 0 &&
                          m.params.at[i].name[4] <= '3';
        expect_close("gradient", picked, r, name, below_pools ? 1e-2 : 1e-3);
        free(picked);
        checked++;
    }
    assert_true(checked >= 2);
    free(grads), free(batch), free(mirror), free(image), free(cam), free(scaled);
    amil_cnn_work_free(&w);
    amil_cnn_free(&m);
}

static void against_torchvision(void **state)
{
    (void)state;
    struct amil_image img;
    if (amil_image_load(test_data("SOB_B_A-14-22549G-40-001.png"), 0, 3, 1 << 24, &img) < 0)
        fail_msg("%s", amil_error());
    FILE *f = fopen(test_data("cnn-fixture.safetensors"), "rb");
    if (!f)
        fail_msg("cannot open %s", test_data("cnn-fixture.safetensors"));
    struct amil_stream s;
    struct amil_record r;
    int cases = 0, got;
    amil_stream_open(&s, f, "cnn-fixture.safetensors");
    const struct amil_kernels *sets[3];
    int nsets = amil_kernels_available(sets);
    while ((got = amil_record_read(&s, &r)) == 1) {
        for (int k = 0; k < nsets; k++)   /* every instruction set this CPU runs */
            one_case(&r, &img, sets[k]);
        amil_record_free(&r);
        cases++;
    }
    fclose(f);
    amil_image_free(&img);
    if (got < 0)
        fail_msg("%s", amil_error());
    assert_int_equal(cases, 5);
}

/* A frozen ResNet18's fast paths against its trained self's plain ones,
 * on sides no tile divides: 116 × 124 makes layer1 29 × 31 (Winograd's
 * F(4×4, 3×3), whose last tiles hang over the edge), layer2 15 × 16
 * (F(2×2, 3×3)), and stride-2 panels with short last ones.  Frozen and
 * forward-only, the batch norms are folded too.  The features of a real
 * crop, every kernel set this CPU runs, within 1e-5 of the largest. */
static void fast_paths(void **state)
{
    (void)state;
    struct amil_image img;
    if (amil_image_load(test_data("SOB_B_A-14-22549G-40-001.png"), 0, 3, 1 << 24, &img) < 0)
        fail_msg("%s", amil_error());
    int H = 116, W = 124;
    struct amil_cnn m;
    if (amil_cnn_init(&m, AMIL_CNN_RESNET18, 2, H, W, NULL) < 0)
        fail_msg("%s", amil_error());
    formula_weights(&m);
    uint8_t *image = crop(&img, 40, 60, H, W, 0);
    int F = amil_cnn_feature_size(&m);
    assert_true(m.layers[m.layers[5].input].h == 29);   /* layer1's input, after the pool */
    const struct amil_kernels *sets[3];
    int nsets = amil_kernels_available(sets);
    for (int k = 0; k < nsets; k++) {
        float *plain = malloc(sizeof *plain * F);
        m.trained = 0;   /* every layer trained: no Winograd, no folds */
        struct amil_cnn_work w = {.kernels = sets[k]};
        amil_cnn_forward(&m, &w, image, 1, NULL);
        memcpy(plain, w.out[m.features], sizeof *plain * F);
        amil_cnn_work_free(&w);
        m.trained = m.params.n;   /* every layer frozen */
        struct amil_cnn_work fast = {.kernels = sets[k], .forward_only = 1};
        amil_cnn_forward(&m, &fast, image, 1, NULL);
        double largest = 0, worst = 0;
        for (int j = 0; j < F; j++) {
            largest = fmax(largest, fabs(plain[j]));
            worst = fmax(worst, fabs(fast.out[m.features][j] - plain[j]));
        }
        print_message("# fast paths, %s kernels: largest difference %.2e of %.2e\n",
                      sets[k]->name, worst, largest);
        assert_true(largest > 0);
        assert_true(worst <= 1e-5 * largest);
        amil_cnn_work_free(&fast);
        if (sets[k]->product_bf16 && amil_cpu_has_bf16()) {
            /* in bfloat16: layer1 as F(2×2), four blocks of tile rows */
            m.form.bf16 = 1;
            struct amil_cnn_work half = {.kernels = sets[k], .forward_only = 1};
            amil_cnn_forward(&m, &half, image, 1, NULL);
            double dot = 0, norm = 0, norm_plain = 0;
            for (int j = 0; j < F; j++) {
                double a = half.out[m.features][j];
                dot += a * plain[j], norm += a * a, norm_plain += (double)plain[j] * plain[j];
            }
            double cosine = dot / sqrt(norm * norm_plain);
            print_message("# fast paths in bf16, %s kernels: cosine %.7f\n", sets[k]->name,
                          cosine);
            assert_true(cosine >= 0.9999);
            amil_cnn_work_free(&half);
            m.form.bf16 = 0;
        }
        free(plain);
    }
    free(image);
    amil_cnn_free(&m);
    amil_image_free(&img);
}

/* The sizes torchvision's models have: vgg19 143,667,240 parameters with
 * ImageNet's 1000 classes, resnet18 11,689,512 (its batch norms' running
 * statistics are buffers, not parameters: 9,600 of them). */
static size_t counted(const struct amil_cnn *m)
{
    size_t count = 0;
    for (int i = 0; i < m->params.n; i++)
        count += m->params.at[i].count;
    assert_true(m->params.nweights < count + 16 * (size_t)m->params.n);   /* the line gaps */
    return count;
}

static void torchvision_sizes(void **state)
{
    (void)state;
    struct amil_cnn m;
    assert_int_equal(amil_cnn_init(&m, AMIL_CNN_VGG19, 1000, 0, 0, NULL), 0);
    assert_int_equal(counted(&m), 143667240);
    assert_int_equal(m.params.n, 38);
    amil_cnn_free(&m);
    assert_int_equal(amil_cnn_init(&m, AMIL_CNN_RESNET18, 1000, 0, 0, NULL), 0);
    assert_int_equal(counted(&m), 11689512 + 9600);
    amil_cnn_free(&m);
    assert_int_equal(amil_cnn_init(&m, AMIL_CNN_NET, 2, 0, 0, NULL), 0);
    assert_int_equal(counted(&m), 1792 + 36928 + 73856 + 147584 + 147584 + 2098176 + 2050);
    amil_cnn_free(&m);
    assert_int_equal(amil_cnn_init(&m, AMIL_CNN_NET, 2, 224, 224, NULL), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(against_torchvision),
        cmocka_unit_test(torchvision_sizes),
        cmocka_unit_test(fast_paths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
