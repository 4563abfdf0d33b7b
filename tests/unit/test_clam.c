/* test_clam.c: CLAM's attention head (clam.h) against PyTorch 1.13 on a
 * committed fixture (tests/data/clam-fixture.safetensors, made by
 * tests/torch/clam_fixture.py), and by finite differences with its dropout
 * on.
 *
 * For each case (gated, two classes and the paper's loss; gated, three
 * classes and a softmax; plain, CLAM's own two-class softmax), on a bag of
 * 37 cached feature vectors: the same attention, embedding, probabilities,
 * loss and every parameter's gradient, and the same parameters after three
 * Adam steps, each within a relative error of 1e-4 of PyTorch in float64.
 * A CLAM state_dict, instance classifiers and all, loads. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/base.h"
#include "compute/optim.h"
#include "models/clam.h"
#include "record/record.h"
#include "record/stream.h"
#include "torch_check.h"

static const char *fixture_path(void) { return test_data("clam-fixture.safetensors"); }

static long meta(const struct amil_record *r, const char *key)
{
    long v;
    assert_int_equal(amil_record_meta_long(r, key, 0, 100000, &v), 1);
    return v;
}

static void one_case(const struct amil_record *r)
{
    struct amil_clam m;
    assert_int_equal(amil_clam_init(&m, (int)meta(r, "gated"), (int)meta(r, "features"),
                                    (int)meta(r, "hidden"), (int)meta(r, "attention"),
                                    (int)meta(r, "classes"), (int)meta(r, "outputs"), NULL),
                     0);
    hash_weights(&m.params, "attention_net.3");
    int label = (int)meta(r, "label");
    print_message("# case: %s, %d classes, %d outputs\n", m.gated ? "gated" : "plain",
                  m.classes, m.outputs);
    const struct amil_tensor *x = amil_record_expect(r, "features", AMIL_F32, 2);
    assert_non_null(x);
    int n = (int)x->shape[0];
    struct amil_clam_work w = {0};
    float *grads = calloc(m.params.nweights, sizeof *grads);
    float loss = (float)amil_clam_step(&m, &w, x->data, n, label, grads, NULL);
    expect_close("forward", w.a, r, "attention", 1e-4);
    expect_close("forward", w.m, r, "embedding", 1e-4);
    expect_close("forward", w.prob, r, "prob", 1e-4);
    expect_close("forward", &loss, r, "loss", 1e-4);
    int last_bias = m.params.n - 3;   /* the scores' bias: zero by the softmax's shift */
    for (int i = 0; i < m.params.n; i++) {
        char name[96];
        snprintf(name, sizeof name, "grad.%s", m.params.at[i].name);
        if (i == last_bias) {
            assert_true(fabsf(grads[m.params.at[i].offset]) < 1e-7);
            continue;
        }
        expect_close("gradient", grads + m.params.at[i].offset, r, name, 1e-4);
    }
    struct amil_optimizer o;
    amil_optim_init(&o, AMIL_ADAM, m.params.nweights);
    o.lr = 2e-4, o.decay = 1e-5;
    for (int step = 0; step < 3; step++) {
        memset(grads, 0, sizeof *grads * m.params.nweights);
        amil_clam_step(&m, &w, x->data, n, label, grads, NULL);
        amil_optim_step(&o, m.params.weights, grads);
    }
    for (int i = 0; i < m.params.n; i++) {
        char name[96];
        snprintf(name, sizeof name, "adam3.%s", m.params.at[i].name);
        expect_close("adam x3", m.params.weights + m.params.at[i].offset, r, name, 1e-4);
    }
    amil_optim_free(&o);
    free(grads);
    amil_clam_work_free(&w);
    amil_clam_free(&m);
}

/* A state_dict as torch saves it: loaded by names and shapes, the
 * instance classifiers left out, the weights as stored; then our own
 * file of it comes back the same. */
static void state_dict(const struct amil_record *r)
{
    struct amil_clam m, again;
    assert_int_equal(amil_clam_is_model(r), 1);
    assert_int_equal(amil_clam_from_record(&m, r), 0);
    assert_true(m.gated && m.features == 24 && m.hidden == 16 && m.attention == 8);
    assert_int_equal(m.outputs, 2);
    assert_int_equal(m.classes, 2);
    for (int i = 0; i < m.params.n; i++) {
        const struct amil_tensor *t = amil_record_find(r, m.params.at[i].name);
        assert_non_null(t);
        assert_memory_equal(m.params.at[i].data, t->data, t->nbytes);
    }
    struct amil_record ours;
    amil_clam_to_record(&m, &ours);
    assert_null(amil_record_find(&ours, "instance_classifiers.0.weight"));
    assert_int_equal(amil_clam_from_record(&again, &ours), 0);
    assert_memory_equal(again.params.weights, m.params.weights,
                        sizeof(float) * m.params.nweights);
    amil_record_free(&ours);
    amil_clam_free(&again);
    amil_clam_free(&m);
}

static void against_pytorch(void **state)
{
    (void)state;
    FILE *f = fopen(fixture_path(), "rb");
    if (!f)
        fail_msg("cannot open %s", fixture_path());
    struct amil_stream s;
    struct amil_record r;
    int cases = 0, dicts = 0, got;
    amil_stream_open(&s, f, fixture_path());
    while ((got = amil_record_read(&s, &r)) == 1) {
        const char *kind = amil_record_meta(&r, "kind");
        if (kind && strcmp(kind, "state_dict") == 0)
            state_dict(&r), dicts++;
        else
            one_case(&r), cases++;
        amil_record_free(&r);
    }
    fclose(f);
    assert_int_equal(got, 0);
    assert_int_equal(cases, 3);
    assert_int_equal(dicts, 1);
}

/* With dropout on (the same draws each time: the generator seeded anew),
 * every parameter's gradient against central differences in double. */
static void finite_differences_with_dropout(void **state)
{
    (void)state;
    for (int gated = 0; gated <= 1; gated++) {
        struct amil_clam m;
        assert_int_equal(amil_clam_init(&m, gated, 6, 5, 4, 3, 3, NULL), 0);
        amil_params_randomize(&m.params, 7);
        for (size_t i = 0; i < m.params.nweights; i++)
            m.params.weights[i] *= 3;   /* attention far from uniform */
        float x[9 * 6];
        for (int i = 0; i < 9 * 6; i++)
            x[i] = (float)fabs(sin(1.7 * i + 0.3));
        struct amil_clam_work w = {0};
        gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
        float *grads = calloc(m.params.nweights, sizeof *grads);
        gsl_rng_set(rng, 11);
        amil_clam_step(&m, &w, x, 9, 1, grads, rng);
        int dropped = 0;
        for (int i = 0; i < 9 * 5; i++)
            dropped += w.mask[i] == 0;
        assert_true(dropped > 0);   /* the dropout did drop */
        double worst = 0;
        for (size_t i = 0; i < m.params.nweights; i++) {
            float keep = m.params.weights[i], h = 1e-2f;
            m.params.weights[i] = keep + h;
            gsl_rng_set(rng, 11);
            double up = amil_clam_step(&m, &w, x, 9, 1, NULL, rng);
            m.params.weights[i] = keep - h;
            gsl_rng_set(rng, 11);
            double down = amil_clam_step(&m, &w, x, 9, 1, NULL, rng);
            m.params.weights[i] = keep;
            double fd = (up - down) / (2 * h);
            worst = fmax(worst, fabs(fd - grads[i]) / fmax(1e-2, fabs(fd)));
        }
        print_message("# %s: gradients within %.2e of central differences\n",
                      gated ? "gated" : "plain", worst);
        assert_true(worst < 5e-3);
        free(grads);
        gsl_rng_free(rng);
        amil_clam_work_free(&w);
        amil_clam_free(&m);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(against_pytorch),
        cmocka_unit_test(finite_differences_with_dropout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
