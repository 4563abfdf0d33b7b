/* test_mil.c: the whole network by finite differences, and against
 * PyTorch 1.13 on a committed fixture
 * (tests/data/torch-fixture.safetensors, made by tests/torch/fixture.py):
 * PyTorch's module run in float64, the truth both float32 implementations
 * are held to; the fixture also records PyTorch's own float32 error.
 *
 * For each case (the paper's model, two classes; a gated model with two
 * attention branches and three classes), on six real BreakHis patches: the
 * same features, attention, probabilities, loss and every parameter's
 * gradient, and the same parameters after three Adam steps, each within a
 * relative error of 1e-4 (max |ours - torch| / max |torch| per tensor). */
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/base.h"
#include "compute/kernels.h"
#include "compute/nn.h"
#include "compute/optim.h"
#include "compute/parallel.h"
#include "models/mil.h"
#include "record/record.h"
#include "record/stream.h"
#include "torch_check.h"

static const char *fixture_path(void) { return test_data("torch-fixture.safetensors"); }

static void one_case(const struct amil_record *r, const struct amil_kernels *kernels)
{
    long classes, hidden, attention, branches, label;
    assert_int_equal(amil_record_meta_long(r, "classes", 2, 100, &classes), 1);
    assert_int_equal(amil_record_meta_long(r, "hidden", 1, 10000, &hidden), 1);
    assert_int_equal(amil_record_meta_long(r, "attention", 1, 10000, &attention), 1);
    assert_int_equal(amil_record_meta_long(r, "branches", 1, 100, &branches), 1);
    assert_int_equal(amil_record_meta_long(r, "label", 0, 100, &label), 1);
    int arch = amil_mil_arch_parse(amil_record_meta(r, "arch"));
    assert_true(arch >= 0);
    struct amil_mil m;
    assert_int_equal(amil_mil_init(&m, arch, 3, 28, (int)classes, (int)hidden,
                                   (int)attention, (int)branches), 0);
    hash_weights(&m.params, "attention");
    const char *norm = amil_record_meta(r, "normalization");
    m.norm = norm ? amil_norm_parse(norm) : AMIL_NORM_NONE;
    assert_true((int)m.norm >= 0);
    print_message("# case: %s, %ld classes, %ld branches, normalization %s, %s kernels\n",
                  amil_record_meta(r, "arch"), classes, branches, amil_norm_name(m.norm),
                  kernels->name);
    const struct amil_tensor *patches = amil_record_expect(r, "patches", AMIL_U8, 4);
    assert_non_null(patches);
    int n = (int)patches->shape[0];

    struct amil_mil_work w = {.kernels = kernels};
    float *grads = calloc(m.params.nweights, sizeof *grads);
    double loss = amil_mil_step(&m, &w, patches->data, n, (int)label, grads);
    expect_close("forward", w.h, r, "features", 1e-4);
    expect_close("forward", w.a, r, "attention", 1e-4);
    expect_close("forward", w.prob, r, "prob", 1e-4);
    float loss_f = (float)loss;
    expect_close("forward", &loss_f, r, "loss", 1e-4);
    for (int i = 0; i < m.params.n; i++) {
        char name[96];
        snprintf(name, sizeof name, "grad.%s", m.params.at[i].name);
        /* The bias of the last attention layer adds the same to every
         * score, which the softmax takes away: its gradient is zero, and
         * both sides hold only rounding (1e-10) there. */
        if (i == m.params.n - 3) {
            float g = fabsf(grads[m.params.at[i].offset]);
            print_message("# gradient   %-40s %.2e (zero by the softmax's shift "
                          "invariance)\n", name, (double)g);
            assert_true(g < 1e-7);
            continue;
        }
        expect_close("gradient", grads + m.params.at[i].offset, r, name, 1e-4);
    }

    /* Grad-CAM of each class's score at the second convolution; some map
     * must be more than zeros, or the comparison proves little */
    int side = amil_mil_gradcam_side(&m);
    size_t cam_n = (size_t)n * side * side;
    float *cam = malloc(sizeof *cam * cam_n);
    double largest = 0;
    for (int c = 0; c < (int)classes; c++) {
        char name[32];
        snprintf(name, sizeof name, "gradcam.%d", c);
        amil_mil_gradcam(&m, &w, patches->data, n, c, cam);
        expect_close("grad-cam", cam, r, name, 1e-4);
        for (size_t j = 0; j < cam_n; j++)
            largest = fmax(largest, cam[j]);
    }
    assert_true(largest > 0);
    free(cam);

    /* three steps of the paper's Adam on the same bag */
    struct amil_optimizer o;
    amil_optim_init(&o, AMIL_ADAM, m.params.nweights);
    o.lr = 1e-4, o.decay = 1e-4;
    for (int step = 0; step < 3; step++) {
        memset(grads, 0, sizeof *grads * m.params.nweights);
        amil_mil_step(&m, &w, patches->data, n, (int)label, grads);
        amil_optim_step(&o, m.params.weights, grads);
    }
    for (int i = 0; i < m.params.n; i++) {
        char name[96];
        snprintf(name, sizeof name, "adam3.%s", m.params.at[i].name);
        expect_close("adam x3", m.params.weights + m.params.at[i].offset, r, name, 1e-4);
    }
    amil_optim_free(&o);
    free(grads);
    amil_mil_work_free(&w);
    amil_mil_free(&m);
}

static void against_pytorch(void **state)
{
    (void)state;
    FILE *f = fopen(fixture_path(), "rb");
    if (!f)
        fail_msg("cannot open %s", fixture_path());
    struct amil_stream s;
    struct amil_record r;
    int cases = 0, got;
    const struct amil_kernels *sets[3];
    int nsets = amil_kernels_available(sets);
    amil_stream_open(&s, f, fixture_path());
    while ((got = amil_record_read(&s, &r)) == 1) {
        const char *kind = amil_record_meta(&r, "kind");
        if (kind && (strcmp(kind, "pipeline") == 0 ||       /* for the bats tests */
                     strcmp(kind, "optimizers") == 0)) {   /* below */
            amil_record_free(&r);
            continue;
        }
        for (int k = 0; k < nsets; k++)   /* every instruction set this CPU has */
            one_case(&r, sets[k]);
        amil_record_free(&r);
        cases++;
    }
    fclose(f);
    if (got < 0)
        fail_msg("%s", amil_error());
    assert_int_equal(cases, 3);
}

/* Each optimizer, five steps, against torch.optim on the fixture's
 * "optimizers" record: the gradient g_t[j] = sin(0.37 j + 1.1 t) + 0.1 w_t[j]
 * in float, as fixture.py's optimizers() computes it. */
static void optimizers_against_pytorch(void **state)
{
    (void)state;
    FILE *f = fopen(fixture_path(), "rb");
    assert_non_null(f);
    struct amil_stream s;
    struct amil_record r;
    amil_stream_open(&s, f, fixture_path());
    int found = 0;
    while (!found && amil_record_read(&s, &r) == 1) {
        const char *kind = amil_record_meta(&r, "kind");
        found = kind && strcmp(kind, "optimizers") == 0;
        if (!found)
            amil_record_free(&r);
    }
    fclose(f);
    assert_true(found);
    struct {
        const char *name;
        enum amil_optim_kind kind;
        double lr, decay, momentum;
    } cases[4] = {{"adam", AMIL_ADAM, 1e-3, 1e-4, 0}, {"adamw", AMIL_ADAMW, 1e-3, 1e-2, 0},
                  {"sgd", AMIL_SGD, 1e-2, 1e-4, 0.9}, {"rmsprop", AMIL_RMSPROP, 3e-4, 1e-4, 0.4}};
    for (int c = 0; c < 4; c++) {
        float w[64], g[64], w2[64], g2[64];   /* the twin: step_and_zero's */
        for (int j = 0; j < 64; j++)   /* numpy.linspace(-1, 1, 64) in float */
            w[j] = w2[j] = (float)(-1.0 + 2.0 * j / 63.0);
        struct amil_optimizer o, o2;
        amil_optim_init(&o, cases[c].kind, 64);
        amil_optim_init(&o2, cases[c].kind, 64);
        o.lr = o2.lr = cases[c].lr, o.decay = o2.decay = cases[c].decay;
        o.momentum = o2.momentum = cases[c].momentum;
        for (int t = 0; t < 5; t++) {
            for (int j = 0; j < 64; j++) {
                g[j] = (float)sin(0.37 * j + 1.1 * t) + 0.1f * w[j];
                assert_true(t == 0 || g2[j] == 0);   /* left zero by the last step */
                g2[j] = g[j];
            }
            amil_optim_step(&o, w, g);
            amil_optim_step_and_zero(&o2, w2, g2);
        }
        char name[64];
        snprintf(name, sizeof name, "after5.%s", cases[c].name);
        expect_close("optimizer", w, &r, name, 1e-6);
        assert_memory_equal(w2, w, sizeof w);
        for (int j = 0; j < 64; j++)
            assert_true(g2[j] == 0);
        amil_optim_free(&o);
        amil_optim_free(&o2);
    }
    amil_record_free(&r);
}

/* A model written and read back is the same model. */
static void model_record_round_trip(void **state)
{
    (void)state;
    struct amil_mil m, back;
    assert_int_equal(amil_mil_init(&m, AMIL_MIL_GATED, 1, 28, 4, 20, 7, 2), 0);
    amil_params_randomize(&m.params, 5);
    struct amil_record r;
    amil_mil_to_record(&m, &r);
    assert_int_equal(amil_mil_from_record(&back, &r), 0);
    assert_int_equal(back.arch, AMIL_MIL_GATED);
    assert_int_equal(back.classes, 4);
    assert_int_equal(back.channels, 1);
    assert_int_equal(back.params.nweights, m.params.nweights);
    assert_memory_equal(back.params.weights, m.params.weights, sizeof(float) * m.params.nweights);
    /* a bare state_dict: the same model read off the shapes */
    while (r.nmeta)
        free(r.meta[--r.nmeta].key), free(r.meta[r.nmeta].value);
    struct amil_mil bare;
    assert_int_equal(amil_mil_from_record(&bare, &r), 0);
    assert_int_equal(bare.arch, AMIL_MIL_GATED);
    assert_int_equal(bare.classes, 4);
    assert_int_equal(bare.branches, 2);
    assert_int_equal(bare.attention, 7);
    assert_int_equal(bare.patch, 28);
    amil_mil_free(&bare);
    /* a tensor of the wrong shape is refused */
    r.tensors[0].shape[0] = 21;
    assert_int_equal(amil_mil_from_record(&bare, &r), -1);
    assert_non_null(strstr(amil_error(), "feature_extractor_part1.0.weight"));
    amil_record_free(&r);
    amil_mil_free(&m);
    amil_mil_free(&back);
}

/* The steps of numeric_gradient, the first one's first. */
static const double fd_steps[3] = {2e-3, 5e-4, 8e-3};

/* Central differences of the loss (computed in float) in weight i: a step
 * of 2e-3 (at 1e-5 the rounding swamps the difference), the difference
 * Richardson-extrapolated from h and h/2 (error O(h^4)); a miss of want by
 * more than 3 % plus the loss's rounding is retried at 5e-4 and 8e-3, as a
 * step can straddle a ReLU kink or a max-pool switch.  Returns the
 * derivative, *bound the tolerance of its step. */
static double numeric_gradient(struct amil_mil *m, struct amil_mil_work *w,
                               const uint8_t *patches, int n, int label, size_t i, double want,
                               double loss, double *bound)
{
    float saved = m->params.weights[i];
    double numeric = 0;
    for (int attempt = 0; attempt < 3; attempt++) {
        double h = fd_steps[attempt], d[2];
        for (int half = 0; half < 2; half++) {
            double step = half ? h / 2 : h, loss_at[2];
            for (int side = 0; side < 2; side++) {
                m->params.weights[i] = (float)(saved + (side ? -step : step));
                loss_at[side] = amil_mil_step(m, w, patches, n, label, NULL);
            }
            /* the step the floats really took */
            d[half] = (loss_at[0] - loss_at[1]) /
                      ((double)(float)(saved + step) - (float)(saved - step));
        }
        m->params.weights[i] = saved;
        numeric = (4 * d[1] - d[0]) / 3;
        *bound = 3e-2 * fabs(want) + 2 * fabs(loss) * FLT_EPSILON / h;
        if (fabs(numeric - want) <= *bound)
            break;
    }
    return numeric;
}

/* The whole model's gradient by central differences of the loss
 * (numeric_gradient), for both architectures and heads, on every
 * instruction set, at the three entries of largest gradient of each
 * parameter tensor, each held to 3 % of its value plus the loss's rounding
 * (an absolute floor of 1e-3 had let most checks pass whatever their
 * value).  A tensor whose gradients are all below ten times the rounding
 * (the attention layers' here, on four patches) cannot be checked this way
 * and is counted apart: gated_attention_finite_differences checks them on
 * a model scaled so that they matter, and the PyTorch fixtures check every
 * entry of every tensor precisely. */
static void whole_model_finite_differences(void **state)
{
    (void)state;
    struct {
        enum amil_mil_arch arch;
        int classes, branches, label;
    } cases[3] = {{AMIL_MIL_PLAIN, 2, 1, 1}, {AMIL_MIL_GATED, 2, 1, 0},
                  {AMIL_MIL_PLAIN, 4, 2, 3}};
    uint8_t patches[4 * 28 * 28 * 3];
    for (size_t i = 0; i < sizeof patches; i++)   /* smooth, varied images */
        patches[i] = (uint8_t)(128 + 100 * sin(0.05 * (double)i) * cos(0.0007 * (double)i));
    const struct amil_kernels *sets[3];
    int nsets = amil_kernels_available(sets);
    for (int c = 0; c < 3 * nsets; c++) {
        const struct amil_kernels *kernels = sets[c / 3];
        int label = cases[c % 3].label;
        struct amil_mil m;
        assert_int_equal(amil_mil_init(&m, cases[c % 3].arch, 3, 28, cases[c % 3].classes,
                                       16, 6, cases[c % 3].branches), 0);
        amil_params_randomize(&m.params, 7 + c % 3);
        for (size_t i = m.params.at[m.params.n - 4].offset; i < m.params.nweights; i++)
            m.params.weights[i] *= 4;   /* livelier attention and head */
        struct amil_mil_work w = {.kernels = kernels};
        float *grads = calloc(m.params.nweights, sizeof *grads);
        double loss = amil_mil_step(&m, &w, patches, 4, label, grads);
        /* the rounding of the loss (about an ulp of float) through the
         * extrapolated difference, at the first step */
        double rounding = 2 * fabs(loss) * FLT_EPSILON / fd_steps[0];
        int checked = 0, tensors = 0, too_small = 0;
        for (int t = 0; t < m.params.n; t++) {
            const struct amil_param *p = &m.params.at[t];
            const float *g = grads + p->offset;
            size_t top[3] = {0, 0, 0};   /* the entries of the 3 largest |g| */
            int ntop = p->count < 3 ? (int)p->count : 3;
            for (int r = 0; r < ntop; r++) {
                long best = -1;
                for (size_t i = 0; i < p->count; i++) {
                    int taken = 0;
                    for (int q = 0; q < r; q++)
                        taken |= top[q] == i;
                    if (!taken && (best < 0 || fabs(g[i]) > fabs(g[best])))
                        best = (long)i;
                }
                top[r] = (size_t)best;
            }
            tensors++;
            if (fabs(g[top[0]]) < 10 * rounding) {
                too_small++;
                continue;
            }
            for (int r = 0; r < ntop; r++) {
                size_t i = p->offset + top[r];
                double want = grads[i], bound;
                double numeric = numeric_gradient(&m, &w, patches, 4, label, i, want, loss,
                                                  &bound);
                if (!(fabs(numeric - want) <= bound))
                    fail_msg("case %d, %s kernels, %s[%zu]: analytic %.6g, numeric %.6g", c % 3,
                             kernels->name, p->name, top[r], want, numeric);
                checked++;
            }
        }
        print_message("# %-9s case %d: %d entries of %d tensors within 3 %%; %d tensors' "
                      "gradients under 10x the rounding (%.1e)\n", kernels->name, c % 3,
                      checked, tensors - too_small, too_small, rounding);
        /* the convolutions, the linear layer and most of the head */
        assert_true(tensors - too_small >= 6);
        free(grads);
        amil_mil_work_free(&w);
        amil_mil_free(&m);
    }
}

/* The gated attention network by central differences, every entry of
 * attention_V, attention_U (the gate, sigmoid(U H), multiplied into
 * tanh(V H)) and the scoring layer's weight.  In
 * whole_model_finite_differences they are under the loss's rounding: the
 * features of its four smooth patches differ little, so where the
 * attention falls hardly moves the loss, and a wrong gate gradient passed
 * (the PyTorch fixture alone caught one).  Here the four patches are
 * unlike one another (stripes of their own frequency and direction), the
 * linear layer's weights are 10 times PyTorch's initialization (features
 * that differ), the attention's first layers twice, the scoring layer and
 * the head 8 times: attention from 0.18 to 0.31, and 61 of attention_U's
 * 96 weight gradients and 5 of its 6 bias gradients over ten times the
 * rounding.  Every entry whose analytic or numeric gradient is over ten
 * times the rounding is held to 3 %; the counts say the check bites. */
static void gated_attention_finite_differences(void **state)
{
    (void)state;
    struct amil_mil m;
    assert_int_equal(amil_mil_init(&m, AMIL_MIL_GATED, 3, 28, 2, 16, 6, 1), 0);
    amil_params_randomize(&m.params, 7);
    uint8_t patches[4 * 28 * 28 * 3];
    for (size_t i = 0; i < sizeof patches; i++) {   /* HWC, patch k's own stripes */
        size_t k = i / (28 * 28 * 3), y = i / 84 % 28, x = i / 3 % 28, c = i % 3;
        patches[i] = (uint8_t)(128 + 120 * sin((double)(k + 1) * 0.3 * (double)x +
                                               (double)(3 - k) * 0.2 * (double)y +
                                               (double)(c * k)));
    }
    const struct {
        const char *name;
        double gain;
        int at_least;   /* entries over ten times the rounding, or 0: not checked */
    } scaled[] = {
        {"feature_extractor_part2.0.weight", 10, 0},
        {"attention_V.0.weight", 2, 32}, {"attention_V.0.bias", 2, 2},
        {"attention_U.0.weight", 2, 32}, {"attention_U.0.bias", 2, 2},
        {"attention_weights.weight", 8, 3}, {"attention_weights.bias", 8, 0},
        {"classifier.0.weight", 8, 0}, {"classifier.0.bias", 8, 0},
    };
    int nscaled = (int)(sizeof scaled / sizeof scaled[0]);
    for (int s = 0; s < nscaled; s++) {
        int t = 0;
        while (t < m.params.n && strcmp(m.params.at[t].name, scaled[s].name) != 0)
            t++;
        assert_true(t < m.params.n);
        for (size_t j = 0; j < m.params.at[t].count; j++)
            m.params.at[t].data[j] *= (float)scaled[s].gain;
    }
    struct amil_mil_work w = {0};
    float *grads = calloc(m.params.nweights, sizeof *grads);
    int label = 1;
    double loss = amil_mil_step(&m, &w, patches, 4, label, grads);
    double rounding = 2 * fabs(loss) * FLT_EPSILON / fd_steps[0];
    double least = 1, most = 0;
    for (int i = 0; i < 4; i++)
        least = fmin(least, w.a[i]), most = fmax(most, w.a[i]);
    print_message("# gated     attention %.2f to %.2f, loss %.4f, rounding %.1e\n", least, most,
                  loss, rounding);
    for (int s = 0; s < nscaled; s++) {
        if (!scaled[s].at_least)
            continue;
        int t = 0;
        while (strcmp(m.params.at[t].name, scaled[s].name) != 0)
            t++;
        const struct amil_param *p = &m.params.at[t];
        int checked = 0;
        for (size_t j = 0; j < p->count; j++) {
            size_t i = p->offset + j;
            double want = grads[i], bound;
            double numeric = numeric_gradient(&m, &w, patches, 4, label, i, want, loss, &bound);
            if (fmax(fabs(want), fabs(numeric)) < 10 * rounding)
                continue;
            if (!(fabs(numeric - want) <= bound))
                fail_msg("%s[%zu]: analytic %.6g, numeric %.6g", p->name, j, want, numeric);
            checked++;
        }
        print_message("# gated     %-26s %3d of %3zu entries within 3 %%\n", p->name, checked,
                      p->count);
        if (checked < scaled[s].at_least)
            fail_msg("%s: %d entries over ten times the rounding, not %d", p->name, checked,
                     scaled[s].at_least);
    }
    free(grads);
    amil_mil_work_free(&w);
    amil_mil_free(&m);
}

/* A model file's sizes are any int64.  tests/hostile/models.py's
 * overflow.safetensors, rebuilt here: hidden × branches wraps to the
 * classifier's width, and, cut to int, the sizes make the parameter count
 * wrap to 456 floats, into which conv1's 1500 were copied.  Loading must
 * fail with a message before anything is copied (under the old loader this
 * test crashed with a corrupted heap), and sizes whose products overflow
 * must be refused by the table itself. */
static void hostile_sizes_are_refused(void **state)
{
    (void)state;
    struct amil_record r;
    amil_record_init(&r);
    const struct {
        const char *name;
        int ndim;
        int64_t shape[4];
    } tensors[] = {
        {"feature_extractor_part1.0.weight", 4, {20, 3, 5, 5}},
        {"feature_extractor_part2.0.weight", 2, {INT64_C(44987186551), 0}},
        {"attention.0.weight", 2, {1639249750, 0}},
        {"attention.2.weight", 2, {INT64_C(4930030700320910), 0}},
        {"classifier.0.weight", 2, {7, 2}},
    };
    for (size_t i = 0; i < sizeof tensors / sizeof tensors[0]; i++)
        memset(amil_record_put(&r, tensors[i].name, AMIL_F32, tensors[i].ndim, tensors[i].shape)->data,
               0x41, (size_t)(tensors[i].shape[0] * tensors[i].shape[1] *
                              (tensors[i].ndim == 4 ? 25 : 1) * 4));
    struct amil_mil m;
    assert_int_equal(amil_mil_from_record(&m, &r), -1);
    assert_non_null(strstr(amil_error(), "hidden 44987186551, outside 1..1048576"));
    assert_null(m.params.weights);
    amil_record_free(&r);

    /* within each ceiling, but too many parameters in all, or K·L over int */
    assert_int_equal(amil_mil_init(&m, AMIL_MIL_GATED, 3, 4096, 2, 1 << 20, 1 << 20, 1),
                     -1);
    assert_non_null(strstr(amil_error(), "need more than"));
    assert_int_equal(amil_mil_init(&m, AMIL_MIL_PLAIN, 3, 28, 2, 1 << 20, 1, 1 << 20), -1);
    assert_non_null(strstr(amil_error(), "is too large"));
    assert_null(m.params.weights);
}

/* Threads split a bag's groups of patches: the features are the same bytes
 * (each patch is computed alone), the gradients the same sums added in
 * another order; with two threads twice, the same bytes again. */
static void threads_agree(void **state)
{
    (void)state;
    struct amil_mil m;
    assert_int_equal(amil_mil_init(&m, AMIL_MIL_GATED, 3, 28, 2, 40, 12, 1), 0);
    amil_params_randomize(&m.params, 3);
    int n = 45;   /* groups of 16, 8 or 4 lanes, the last one partial */
    uint8_t *patches = malloc((size_t)n * 28 * 28 * 3);
    for (size_t i = 0; i < (size_t)n * 28 * 28 * 3; i++)
        patches[i] = (uint8_t)(i * 2654435761u >> 24);
    float *grads[3], *features[3];
    for (int run = 0; run < 3; run++) {
        amil_threads(run == 0 ? 1 : 2);
        struct amil_mil_work w = {0};
        grads[run] = calloc(m.params.nweights, sizeof *grads[run]);
        amil_mil_step(&m, &w, patches, n, 1, grads[run]);
        features[run] = malloc(sizeof(float) * (size_t)n * m.hidden);
        memcpy(features[run], w.h, sizeof(float) * (size_t)n * m.hidden);
        amil_mil_work_free(&w);
    }
    amil_threads(1);
    assert_memory_equal(features[0], features[1], sizeof(float) * (size_t)n * m.hidden);
    assert_memory_equal(grads[1], grads[2], sizeof(float) * m.params.nweights);
    double top = 0, err = 0;
    for (size_t i = 0; i < m.params.nweights; i++) {
        top = fmax(top, fabs(grads[0][i]));
        err = fmax(err, fabs(grads[0][i] - grads[1][i]));
    }
    print_message("# threads    1 against 2: gradients within %.2e of the largest\n", err / top);
    assert_true(top > 0 && err / top < 1e-5);
    for (int run = 0; run < 3; run++)
        free(grads[run]), free(features[run]);
    free(patches);
    amil_mil_free(&m);
}

static void partial_groups_at(int P)
{
    struct amil_mil m;
    assert_int_equal(amil_mil_init(&m, AMIL_MIL_PLAIN, 3, P, 2, 40, 12, 1), 0);
    amil_params_randomize(&m.params, 5);
    int n = 16, few = 5;
    uint8_t *patches = malloc((size_t)n * P * P * 3);
    for (size_t i = 0; i < (size_t)n * P * P * 3; i++)
        patches[i] = (uint8_t)(i * 2246822519u >> 24);
    const struct amil_kernels *sets[3];
    int nsets = amil_kernels_available(sets);
    for (int s = 0; s < nsets; s++) {
        struct amil_mil_work all = {.kernels = sets[s]}, part = {.kernels = sets[s]};
        amil_mil_featurize(&m, &all, patches, n);
        amil_mil_featurize(&m, &part, patches, few);
        double top = 0, err = 0;
        for (size_t i = 0; i < (size_t)few * m.hidden; i++) {
            top = fmax(top, fabs(all.h[i]));
            err = fmax(err, fabs(all.h[i] - part.h[i]));
        }
        print_message("# %-9s %dx%d: 5 patches alone against in a full group: features "
                      "within %.2e\n", sets[s]->name, P, P, err / top);
        assert_true(top > 0 && err / top < 4e-6);
        /* the gradient of a bag of ten patches (a partial group on every
         * set) against the same ten twice (a full group, then a partial
         * one, except with 4 lanes): attention over two copies is the same
         * distribution spread over twice the rows, so the gradients are
         * equal */
        int ten = 10;
        size_t bytes = (size_t)ten * P * P * 3;
        uint8_t *twice = malloc(2 * bytes);
        memcpy(twice, patches, bytes);
        memcpy(twice + bytes, patches, bytes);
        float *g20 = calloc(m.params.nweights, sizeof *g20);
        float *g10 = calloc(m.params.nweights, sizeof *g10);
        amil_mil_step(&m, &all, twice, 2 * ten, 1, g20);
        amil_mil_step(&m, &part, patches, ten, 1, g10);
        top = 0, err = 0;
        for (size_t i = 0; i < m.params.nweights; i++) {
            top = fmax(top, fabs(g10[i]));
            err = fmax(err, fabs(g20[i] - g10[i]));
        }
        print_message("# %-9s %dx%d: a bag of 10 against the same twice: gradients within "
                      "%.2e\n", sets[s]->name, P, P, err / top);
        assert_true(top > 0 && err / top < 1e-5);
        free(twice), free(g20), free(g10);
        amil_mil_work_free(&all);
        amil_mil_work_free(&part);
    }
    free(patches);
    amil_mil_free(&m);
}


/* A group with empty lanes against a full one, on every instruction set:
 * a patch's features in a bag of 5 agree with the same patch's in the
 * first full group of a bag of 16, and so do the weight gradients of both
 * ways.  At 28×28 both convolutions run as Winograd's, the linear layer
 * patch by patch for the partial group; at 36×36 the second convolution
 * (12×12 out) does not fit Winograd's and runs image by image
 * (mil_features.c's conv_shift path) with its direct backward, and the
 * linear layer's 1800 features are not whole vectors (its regrouped weight
 * gradient). */
static void partial_groups_agree(void **state)
{
    (void)state;
    static const int sides[2] = {28, 36};
    for (int side = 0; side < 2; side++)
        partial_groups_at(sides[side]);
}

/* featurize in chunks (amil_mil_features) gives the bits of one pass over
 * the bag on every instruction set and with two threads, and its work
 * buffers stay at a chunk's size whatever the bag. */
static void chunks_agree(void **state)
{
    (void)state;
    struct amil_mil m;
    assert_int_equal(amil_mil_init(&m, AMIL_MIL_PLAIN, 3, 28, 2, 40, 12, 1), 0);
    amil_params_randomize(&m.params, 11);
    int n = 2 * AMIL_MIL_CHUNK + 45;   /* two chunks and a part, its last group partial */
    uint8_t *patches = malloc((size_t)n * 28 * 28 * 3);
    for (size_t i = 0; i < (size_t)n * 28 * 28 * 3; i++)
        patches[i] = (uint8_t)(i * 2654435761u >> 23);
    float *features = malloc(sizeof *features * (size_t)n * m.hidden);
    const struct amil_kernels *sets[3];
    int nsets = amil_kernels_available(sets);
    for (int s = 0; s < nsets; s++)
        for (int threads = 1; threads <= 2; threads++) {
            amil_threads(threads);
            struct amil_mil_work one = {.kernels = sets[s]}, chunked = {.kernels = sets[s]};
            amil_mil_featurize(&m, &one, patches, n);
            memset(features, 0xff, sizeof *features * (size_t)n * m.hidden);
            amil_mil_features(&m, &chunked, patches, n, features);
            assert_memory_equal(features, one.h, sizeof *features * (size_t)n * m.hidden);
            assert_int_equal(chunked.capacity[0], AMIL_MIL_CHUNK);
            amil_mil_work_free(&one);
            amil_mil_work_free(&chunked);
        }
    amil_threads(1);
    free(patches), free(features);
    amil_mil_free(&m);
}

/* The paper's model has 491,828 parameters, as the issue counts them. */
static void paper_model_size(void **state)
{
    (void)state;
    struct amil_mil m;
    assert_int_equal(amil_mil_init(&m, AMIL_MIL_PLAIN, 3, 28, 2, 500, 128, 1), 0);
    size_t count = 0;
    for (int i = 0; i < m.params.n; i++) {
        count += m.params.at[i].count;
        assert_true(m.params.at[i].offset % 16 == 0);   /* on 64-byte lines */
    }
    assert_int_equal(count, 491828);
    assert_true(m.params.nweights < count + 16 * (size_t)m.params.n);
    assert_int_equal(m.flat, 800);
    amil_mil_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(against_pytorch),
        cmocka_unit_test(optimizers_against_pytorch),
        cmocka_unit_test(model_record_round_trip),
        cmocka_unit_test(whole_model_finite_differences),
        cmocka_unit_test(gated_attention_finite_differences),
        cmocka_unit_test(paper_model_size),
        cmocka_unit_test(chunks_agree),
        cmocka_unit_test(hostile_sizes_are_refused),
        cmocka_unit_test(threads_agree),
        cmocka_unit_test(partial_groups_agree),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
