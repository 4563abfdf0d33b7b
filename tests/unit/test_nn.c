/* test_nn.c: every layer of nn.h against finite differences, and each
 * BLAS-backed layer against its plain-loop reference.
 *
 * A layer's output `out` is reduced to the scalar f = Σ out ⊙ R for a fixed
 * random R, so backward runs with dout = R and the gradient of f with
 * respect to any input or parameter value is checked by central
 * differences, (f(x + h) - f(x - h)) / 2h, with f summed in double.  A value
 * whose check fails is checked again with h / 10 before it counts: that
 * rules out a difference that straddles a ReLU kink or a max-pool switch.
 *
 * Every backward adds its input gradient (nn.h's convention): each test
 * starts that buffer at random values and takes them away after, so that
 * a backward that wrote instead of adding fails. */
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

static unsigned long long rng_state = 88172645463325252ULL;
static double uniform01(void)   /* xorshift64, so tests need no library */
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (rng_state >> 11) * (1.0 / 9007199254740992.0);
}

static float *random_floats(size_t n, float scale)
{
    float *x = malloc(sizeof *x * (n ? n : 1));
    for (size_t i = 0; i < n; i++)
        x[i] = (float)((2 * uniform01() - 1) * scale);
    return x;
}

/* The layer under test, as f(x) = Σ out ⊙ R. */
typedef double (*objective)(void *ctx);

/* Checks analytic[i] = df/dx[i] at up to 60 indices spread over x: within
 * 1 % of it plus the rounding of f (float outputs summed in double: a few
 * ulps of float of f's terms, through the difference), not an absolute
 * floor, which had let small gradients pass whatever their value.  The
 * difference is over the step the float really took, Richardson-
 * extrapolated from h and h/2; a miss is retried at a tenth of the step (a
 * kink of ReLU or max-pool between the two sides), within the same bound. */
static void check_gradient(const char *what, objective f, void *ctx, float *x,
                           const float *analytic, size_t n)
{
    size_t step = n > 60 ? n / 60 : 1;
    for (size_t i = 0; i < n; i += step) {
        float saved = x[i];
        double numeric = 0, error = 0, bound = 0;
        for (double h = 1e-2; h > 1e-4; h /= 10) {
            double d[2], size = 0;
            for (int half = 0; half < 2; half++) {
                float up = (float)(saved + (half ? h / 2 : h));
                float down = (float)(saved - (half ? h / 2 : h));
                x[i] = up;
                double plus = f(ctx);
                x[i] = down;
                double minus = f(ctx);
                d[half] = (plus - minus) / ((double)up - down);
                size = fmax(size, fmax(fabs(plus), fabs(minus)));
            }
            x[i] = saved;
            numeric = (4 * d[1] - d[0]) / 3;
            error = fabs(numeric - analytic[i]);
            /* the rounding at the first step: a retry at a smaller one
             * must not loosen the bound */
            bound = 1e-2 * fabs(analytic[i]) + 16 * FLT_EPSILON * size / 1e-2;
            if (error <= bound)
                break;
        }
        if (error > bound)
            fail_msg("%s: d/dx[%zu]: analytic %.6g, numeric %.6g", what, i,
                     (double)analytic[i], numeric);
    }
}

static double dot(const float *a, const float *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)a[i] * b[i];
    return s;
}

static void assert_close(const float *a, const float *b, size_t n, double tolerance)
{
    for (size_t i = 0; i < n; i++)
        if (fabs(a[i] - b[i]) > tolerance * (1 + fabs(b[i])))
            fail_msg("index %zu: %.8g vs %.8g", i, (double)a[i], (double)b[i]);
}

/* An input gradient's buffer at random values (start keeps them), for a
 * backward to add to. */
static float *prefilled(size_t n, float **start)
{
    float *d = random_floats(n, 1);
    *start = malloc(sizeof **start * (n ? n : 1));
    memcpy(*start, d, sizeof *d * n);
    return d;
}

/* d (n) -= start: what the backward added. */
static void added(float *d, float *start, size_t n)
{
    for (size_t i = 0; i < n; i++)
        d[i] -= start[i];
    free(start);
}

/* ---- convolution -------------------------------------------------------- */

struct conv {
    int N, C, H, W, OC, K, stride, pad, OH, OW;
    float *inp, *weight, *bias, *out, *cols, *R;
};

static double conv_objective(void *ctx)
{
    struct conv *c = ctx;
    amil_conv2d_forward(c->out, c->cols, c->inp, c->weight, c->bias, c->N, c->C, c->H,
                        c->W, c->OC, c->K, c->stride, c->pad);
    return dot(c->out, c->R, (size_t)c->OC * c->N * c->OH * c->OW);
}

static void conv_case(int N, int C, int H, int W, int OC, int K, int stride, int pad)
{
    struct conv c = {N, C, H, W, OC, K, stride, pad, amil_conv_out(H, K, stride, pad),
                     amil_conv_out(W, K, stride, pad), 0, 0, 0, 0, 0, 0};
    size_t in_n = (size_t)C * N * H * W, w_n = (size_t)OC * C * K * K;
    size_t out_n = (size_t)OC * N * c.OH * c.OW, cols_n = (size_t)C * K * K * N * c.OH * c.OW;
    c.inp = random_floats(in_n, 1);
    c.weight = random_floats(w_n, 0.5f);
    c.bias = random_floats(OC, 0.5f);
    c.R = random_floats(out_n, 1);
    c.out = malloc(sizeof *c.out * out_n);
    c.cols = malloc(sizeof *c.cols * cols_n);
    float *reference = malloc(sizeof *reference * out_n);
    conv_objective(&c);
    amil_conv2d_forward_reference(reference, c.inp, c.weight, c.bias, N, C, H, W, OC, K,
                                  stride, pad);
    assert_close(c.out, reference, out_n, 1e-5);

    float *start, *dinp = prefilled(in_n, &start), *dweight = calloc(w_n, sizeof *dweight);
    float *dbias = calloc(OC, sizeof *dbias), *dcols = malloc(sizeof *dcols * cols_n);
    amil_conv2d_backward(dinp, dweight, dbias, dcols, c.R, c.cols, c.weight, N, C, H, W,
                         OC, K, stride, pad);
    added(dinp, start, in_n);
    check_gradient("conv input", conv_objective, &c, c.inp, dinp, in_n);
    check_gradient("conv weight", conv_objective, &c, c.weight, dweight, w_n);
    check_gradient("conv bias", conv_objective, &c, c.bias, dbias, OC);
    free(c.inp), free(c.weight), free(c.bias), free(c.R), free(c.out), free(c.cols);
    free(reference), free(dinp), free(dweight), free(dbias), free(dcols);
}

static void conv2d(void **state)
{
    (void)state;
    conv_case(3, 3, 12, 12, 4, 5, 1, 0);    /* the paper's conv1, smaller */
    conv_case(2, 4, 9, 7, 3, 3, 2, 1);      /* stride and padding */
    conv_case(1, 2, 6, 6, 5, 3, 1, 1);      /* the baselines' 3×3, pad 1 */
}

/* A convolution of one image on packed panels (amil_conv2d_panels) against
 * the plain loop, on every instruction set this CPU runs, its panels in
 * two calls as two threads would split them; out is filled with NaN first,
 * so that a position no panel writes fails.  With relu, the loop's output
 * then max(·, 0).  In bfloat16 too, where the set and the CPU have it and
 * C·K·K is even: against the loop over the inputs and weights rounded to
 * bfloat16 (their products exact in float, only the order of the sums
 * differs). */
static void panels_case(int C, int H, int W, int OC, int K, int stride, int pad, int bias,
                        int relu)
{
    int OH = amil_conv_out(H, K, stride, pad), OW = amil_conv_out(W, K, stride, pad);
    size_t in_n = (size_t)C * H * W, out_n = (size_t)OC * OH * OW, w_n = (size_t)OC * C * K * K;
    float *inp = random_floats(in_n, 1), *weight = random_floats(w_n, 0.5f);
    float *b = bias ? random_floats(OC, 0.5f) : NULL;
    float *reference = malloc(sizeof *reference * out_n);
    float *out = amil_xaligned(sizeof *out * out_n);
    float *scratch = amil_xaligned(sizeof *scratch * amil_conv2d_panel_scratch(C, K, OC));
    float *rounded_in = malloc(sizeof *rounded_in * in_n);
    float *rounded_w = malloc(sizeof *rounded_w * w_n);
    uint16_t *in16 = malloc(sizeof *in16 * in_n), *w16 = malloc(sizeof *w16 * w_n);
    const struct amil_kernels *sets[3];
    int nsets = amil_kernels_available(sets), panels = amil_conv2d_panel_count(OH, OW);
    for (int k = 0; k < nsets; k++)
        for (int bf16 = 0; bf16 < 2; bf16++) {
            if (bf16 && (!sets[k]->product_bf16 || !amil_cpu_has_bf16() || C * K * K % 2))
                continue;
            const float *x = inp, *wt = weight;
            if (bf16) {   /* the values bfloat16 holds, as floats */
                sets[k]->to_bf16(in16, inp, in_n), sets[k]->to_bf16(w16, weight, w_n);
                for (size_t j = 0; j < in_n; j++)
                    memcpy(&rounded_in[j], &(uint32_t){(uint32_t)in16[j] << 16}, 4);
                for (size_t j = 0; j < w_n; j++)
                    memcpy(&rounded_w[j], &(uint32_t){(uint32_t)w16[j] << 16}, 4);
                x = rounded_in, wt = rounded_w;
            }
            amil_conv2d_forward_reference(reference, x, wt, b, 1, C, H, W, OC, K, stride, pad);
            for (size_t j = 0; relu && j < out_n; j++)
                reference[j] = reference[j] > 0 ? reference[j] : 0;
            for (size_t j = 0; j < out_n; j++)
                out[j] = NAN;
            for (int half = 0; half < 2; half++) {
                int first = half ? panels / 2 : 0, end = half ? panels : panels / 2;
                if (bf16)
                    amil_conv2d_panels_bf16(sets[k], out, scratch, inp, w16, b, relu, C, H, W,
                                            OC, K, stride, pad, first, end);
                else
                    amil_conv2d_panels(sets[k], out, scratch, inp, weight, b, relu, C, H, W, OC,
                                       K, stride, pad, first, end);
            }
            assert_close(out, reference, out_n, 1e-5);
        }
    free(inp), free(weight), free(b), free(reference), free(out), free(scratch);
    free(rounded_in), free(rounded_w), free(in16), free(w16);
}

static void conv2d_panels(void **state)
{
    (void)state;
    panels_case(5, 16, 16, 7, 1, 1, 0, 0, 0);    /* a 1×1: whole aligned panels */
    panels_case(4, 16, 16, 7, 1, 1, 0, 1, 1);    /* in bfloat16 too, a ReLU folded */
    panels_case(3, 14, 14, 20, 1, 1, 0, 1, 0);   /* 196 positions: a short last panel */
    panels_case(4, 14, 14, 20, 1, 1, 0, 1, 1);   /* the same in bfloat16 */
    panels_case(6, 15, 13, 9, 1, 2, 0, 0, 0);    /* a 1×1 of stride 2 (a downsample) */
    panels_case(4, 15, 14, 18, 3, 2, 1, 1, 1);   /* a 3×3 of stride 2, odd sides */
    panels_case(3, 23, 20, 8, 7, 2, 3, 0, 0);    /* a stem's 7×7 */
    panels_case(2, 9, 11, 5, 3, 1, 1, 1, 0);     /* stride 1, padded */
}

/* ---- pooling ------------------------------------------------------------ */

struct pool {
    int planes, H, W, K, stride, pad, OH, OW, average;
    float *inp, *out, *R;
    int32_t *argmax;
};

static double pool_objective(void *ctx)
{
    struct pool *p = ctx;
    if (p->average)
        amil_avgpool_forward(p->out, p->inp, p->planes, p->H, p->W, p->OH, p->OW);
    else
        amil_maxpool_forward(p->out, p->argmax, p->inp, p->planes, p->H, p->W, p->K,
                             p->stride, p->pad);
    return dot(p->out, p->R, (size_t)p->planes * p->OH * p->OW);
}

/* Forward, the gradient of the input against finite differences; returns
 * the pool for more checks (the caller frees it). */
static struct pool pool_case(int planes, int H, int W, int K, int stride, int pad,
                             int average, int OH, int OW)
{
    struct pool p = {planes, H, W, K, stride, pad, OH, OW, average, 0, 0, 0, 0};
    if (!average)
        p.OH = amil_conv_out(H, K, stride, pad), p.OW = amil_conv_out(W, K, stride, pad);
    size_t in_n = (size_t)planes * H * W, out_n = (size_t)planes * p.OH * p.OW;
    p.inp = random_floats(in_n, 1);
    p.out = malloc(sizeof *p.out * out_n);
    p.R = random_floats(out_n, 1);
    p.argmax = malloc(sizeof *p.argmax * out_n);
    pool_objective(&p);
    float *start, *dinp = prefilled(in_n, &start);
    if (average)
        amil_avgpool_backward(dinp, p.R, planes, H, W, p.OH, p.OW);
    else
        amil_maxpool_backward(dinp, p.R, p.argmax, planes, H, W, p.OH, p.OW);
    added(dinp, start, in_n);
    check_gradient(average ? "avgpool input" : "maxpool input", pool_objective, &p, p.inp,
                   dinp, in_n);
    free(dinp);
    return p;
}

static void pool_free(struct pool *p)
{
    free(p->inp), free(p->out), free(p->R), free(p->argmax);
}

static void pooling(void **state)
{
    (void)state;
    /* the paper's 2×2, odd width: the last column is dropped */
    struct pool p = pool_case(6, 8, 9, 2, 2, 0, 0, 0, 0);
    assert_int_equal(p.OW, 4);
    float m = fmaxf(fmaxf(p.inp[0], p.inp[1]), fmaxf(p.inp[9], p.inp[10]));
    assert_true(p.out[0] == m);   /* the first window of the first plane */
    pool_free(&p);
    /* ResNet's 3×3, stride 2, padding 1 */
    p = pool_case(3, 9, 8, 3, 2, 1, 0, 0, 0);
    assert_int_equal(p.OH, 5);
    assert_true(p.out[0] == fmaxf(fmaxf(p.inp[0], p.inp[1]), fmaxf(p.inp[8], p.inp[9])));
    /* without argmax (a forward-only pass), the same maxima, NaN winning */
    p.inp[3 * 8 + 4] = NAN;
    float *alone = malloc(sizeof *alone * 3 * p.OH * p.OW);
    amil_maxpool_forward(p.out, p.argmax, p.inp, 3, 9, 8, 3, 2, 1);
    amil_maxpool_forward(alone, NULL, p.inp, 3, 9, 8, 3, 2, 1);
    assert_memory_equal(alone, p.out, sizeof *alone * 3 * p.OH * p.OW);
    assert_true(isnan(alone[1 * p.OW + 2]));   /* rows 1..3, columns 3..5 */
    free(alone);
    pool_free(&p);
    /* ties go to the first in scan order, as PyTorch's */
    float tie[4] = {1, 1, 1, 1}, out;
    int32_t arg;
    amil_maxpool_forward(&out, &arg, tie, 1, 2, 2, 2, 2, 0);
    assert_int_equal(arg, 0);
    /* adaptive average pooling to a size that does not divide: windows
     * overlap (7 → 3: [0, 3), [2, 5), [4, 7)) */
    p = pool_case(4, 7, 5, 0, 0, 0, 1, 3, 2);
    assert_true(fabs(p.out[0] - (p.inp[0] + p.inp[1] + p.inp[2] + p.inp[5] + p.inp[6] +
                                 p.inp[7] + p.inp[10] + p.inp[11] + p.inp[12]) / 9) < 1e-6);
    pool_free(&p);
}

/* ---- batch norm ----------------------------------------------------------- */

struct norm {
    float *inp, *out, *R, *weight, *bias, *mean, *var;
};

static double norm_objective(void *ctx)
{
    struct norm *b = ctx;
    amil_batchnorm_forward(b->out, b->inp, b->weight, b->bias, b->mean, b->var, 2, 3, 10);
    return dot(b->out, b->R, 60);
}

static void batchnorm(void **state)
{
    (void)state;
    struct norm b = {random_floats(60, 2), malloc(sizeof(float) * 60), random_floats(60, 1),
                     random_floats(3, 1), random_floats(3, 1), random_floats(3, 1),
                     random_floats(3, 1)};
    for (int c = 0; c < 3; c++)
        b.var[c] = 0.5f + b.var[c] * b.var[c];
    norm_objective(&b);
    /* image 1, channel 2, value 4: (x - mean) / √(var + eps) · weight + bias */
    size_t at = (1 * 3 + 2) * 10 + 4;
    double want = (b.inp[at] - b.mean[2]) / sqrt(b.var[2] + 1e-5) * b.weight[2] + b.bias[2];
    assert_true(fabs(b.out[at] - want) < 1e-5);
    float *start, *dinp = prefilled(60, &start);
    amil_batchnorm_backward(dinp, b.R, b.weight, b.bias, b.mean, b.var, 2, 3, 10);
    added(dinp, start, 60);
    check_gradient("batch norm input", norm_objective, &b, b.inp, dinp, 60);
    free(b.inp), free(b.out), free(b.R), free(b.weight), free(b.bias), free(b.mean);
    free(b.var), free(dinp);
}

/* ---- pointwise ---------------------------------------------------------- */

struct pointwise {
    int kind;   /* 0 relu, 1 leaky, 2 tanh, 3 sigmoid, 4 dropout, 5 add */
    size_t n;
    float *x, *y, *R, *mask;
    double *uniform;
};

static void pointwise_forward(struct pointwise *p)
{
    memcpy(p->y, p->x, sizeof *p->y * p->n);
    switch (p->kind) {
    case 0: amil_relu_forward(p->y, p->n); break;
    case 1: amil_leaky_relu_forward(p->y, p->n, 0.01f); break;
    case 2: amil_tanh_forward(p->y, p->n); break;
    case 3: amil_sigmoid_forward(p->y, p->n); break;
    case 4: amil_dropout_forward(p->y, p->mask, p->uniform, p->n, 0.5f); break;
    default: amil_add_forward(p->y, p->x, p->mask, p->n); break;   /* x + a constant */
    }
}

static double pointwise_objective(void *ctx)
{
    struct pointwise *p = ctx;
    pointwise_forward(p);
    return dot(p->y, p->R, p->n);
}

static void pointwise(void **state)
{
    (void)state;
    const char *names[6] = {"relu", "leaky relu", "tanh", "sigmoid", "dropout", "add"};
    for (int kind = 0; kind < 6; kind++) {
        struct pointwise p = {kind, 200, random_floats(200, 3), malloc(800),
                              random_floats(200, 1), malloc(800), malloc(1600)};
        for (size_t i = 0; i < p.n; i++) {
            p.uniform[i] = uniform01();
            p.mask[i] = (float)uniform01();   /* add's other term; dropout's is its own */
        }
        pointwise_forward(&p);
        float *start, *dx = prefilled(p.n, &start);
        switch (kind) {
        case 0: amil_relu_backward(dx, p.R, p.y, p.n); break;
        case 1: amil_leaky_relu_backward(dx, p.R, p.y, p.n, 0.01f); break;
        case 2: amil_tanh_backward(dx, p.R, p.y, p.n); break;
        case 3: amil_sigmoid_backward(dx, p.R, p.y, p.n); break;
        case 4: amil_dropout_backward(dx, p.R, p.mask, p.n); break;
        default: amil_add_backward(dx, NULL, p.R, p.n); break;
        }
        added(dx, start, p.n);
        check_gradient(names[kind], pointwise_objective, &p, p.x, dx, p.n);
        if (kind <= 1) {   /* guided: what the (leaky) ReLU passes, at least 0 */
            float *guided = calloc(p.n, sizeof *guided);
            amil_guided_relu_backward(guided, p.R, p.y, p.n, kind ? 0.01f : 0);
            for (size_t i = 0; i < p.n; i++)   /* dx: less the start, so not exact */
                assert_true(fabsf(guided[i] - (dx[i] > 0 ? dx[i] : 0)) < 1e-6f);
            free(guided);
        }
        if (kind == 4) {   /* about half kept, each scaled by 2 */
            int kept = 0;
            for (size_t i = 0; i < p.n; i++) {
                assert_true(p.mask[i] == 0 || p.mask[i] == 2);
                kept += p.mask[i] != 0;
            }
            assert_in_range(kept, 70, 130);
        }
        free(p.x), free(p.y), free(p.R), free(p.mask), free(p.uniform), free(dx);
    }
}

/* ---- dense -------------------------------------------------------------- */

struct dense {
    int N, C, OC;
    float *inp, *weight, *bias, *out, *R;
};

static double dense_objective(void *ctx)
{
    struct dense *d = ctx;
    amil_linear_forward(d->out, d->inp, d->weight, d->bias, d->N, d->C, d->OC);
    return dot(d->out, d->R, (size_t)d->N * d->OC);
}

static void linear(void **state)
{
    (void)state;
    struct dense d = {7, 13, 5, random_floats(91, 1), random_floats(65, 0.5f),
                      random_floats(5, 0.5f), malloc(sizeof(float) * 35),
                      random_floats(35, 1)};
    float reference[35];
    dense_objective(&d);
    amil_linear_forward_reference(reference, d.inp, d.weight, d.bias, 7, 13, 5);
    assert_close(d.out, reference, 35, 1e-5);
    float *start, *dinp = prefilled(91, &start), dweight[65] = {0}, dbias[5] = {0};
    amil_linear_backward(dinp, dweight, dbias, d.R, d.inp, d.weight, 7, 13, 5);
    added(dinp, start, 91);
    check_gradient("linear input", dense_objective, &d, d.inp, dinp, 91);
    check_gradient("linear weight", dense_objective, &d, d.weight, dweight, 65);
    check_gradient("linear bias", dense_objective, &d, d.bias, dbias, 5);
    /* gradients accumulate */
    amil_linear_backward(NULL, dweight, dbias, d.R, d.inp, d.weight, 7, 13, 5);
    float twice[65] = {0}, unused[5] = {0};
    amil_linear_backward(NULL, twice, unused, d.R, d.inp, d.weight, 7, 13, 5);
    for (int i = 0; i < 65; i++)
        twice[i] *= 2;
    assert_close(dweight, twice, 65, 1e-6);
    free(d.inp), free(d.weight), free(d.bias), free(d.out), free(d.R), free(dinp);
    /* one row (GEMV): its input gradient adds too */
    float row[13] = {0}, unread[13] = {0}, dout[5] = {1, 0, 0, 0, 0}, weight[65];
    for (int i = 0; i < 65; i++)
        weight[i] = (float)i;
    row[3] = 100;
    amil_linear_backward(row, NULL, NULL, dout, unread, weight, 1, 13, 5);
    assert_true(row[3] == 103 && row[4] == 4);
    /* each way of the forward: one row (GEMV), a few (dot products on the
     * kernels, C past a whole vector), many (GEMM) */
    const int rows[] = {1, 3, 40};
    for (int i = 0; i < 3; i++) {
        int N = rows[i], C = 37, OC = 9;
        float *inp = random_floats((size_t)N * C, 1), *weight = random_floats((size_t)OC * C, 1);
        float *bias = random_floats(OC, 1), *out = malloc(sizeof *out * N * OC);
        float *want = malloc(sizeof *want * N * OC);
        amil_linear_forward(out, inp, weight, bias, N, C, OC);
        amil_linear_forward_reference(want, inp, weight, bias, N, C, OC);
        assert_close(out, want, (size_t)N * OC, 1e-5);
        free(inp), free(weight), free(bias), free(out), free(want);
    }
}

/* ---- transformer layers ---------------------------------------------------- */

static void transformer(void **state)
{
    (void)state;
    /* self-attention on BLAS against its plain loop: 3 heads of 4 columns
     * over 7 tokens */
    int T = 7, D = 12, heads = 3;
    float *qkv = random_floats((size_t)T * 3 * D, 2);
    float *scratch = amil_xaligned(sizeof(float) * amil_self_attention_scratch(T, D, heads));
    float want[84], *out = amil_xaligned(sizeof(float) * 84);
    amil_self_attention_forward(out, scratch, qkv, T, D, heads);
    amil_self_attention_forward_reference(want, qkv, T, D, heads);
    assert_close(out, want, 84, 1e-5);
    free(qkv);
    /* on the kernels' product where the heads fill the lanes (16 columns
     * a head), and on BLAS where out is not aligned */
    T = 21, D = 32, heads = 2;
    qkv = random_floats((size_t)T * 3 * D, 2);
    float *big = amil_xaligned(sizeof(float) * (T * D + 16));
    float *expect = malloc(sizeof(float) * T * D);
    free(scratch);
    scratch = amil_xaligned(sizeof(float) * amil_self_attention_scratch(T, D, heads));
    amil_self_attention_forward_reference(expect, qkv, T, D, heads);
    amil_self_attention_forward(big, scratch, qkv, T, D, heads);
    assert_close(big, expect, (size_t)T * D, 1e-5);
    amil_self_attention_forward(big + 1, scratch, qkv, T, D, heads);
    assert_close(big + 1, expect, (size_t)T * D, 1e-5);
    free(qkv), free(big), free(expect), free(scratch), free(out);
    /* LayerNorm: each row to mean 0, variance 1 (times 1, plus 0), even
     * one far from zero; then weight and bias apply per column */
    float rows[2][4] = {{1, 2, 3, 4}, {1e4f + 1, 1e4f + 2, 1e4f + 3, 1e4f + 4}}, normed[2][4];
    float ones[4] = {1, 1, 1, 1}, zeros[4] = {0}, weight[4] = {1, 2, 3, 4}, bias[4] = {1, 0, 0, 0};
    amil_layernorm_forward(normed[0], rows[0], ones, zeros, 2, 4, 1e-6f);
    const float z[4] = {-1.3416408f, -0.4472136f, 0.4472136f, 1.3416408f};
    assert_close(normed[0], z, 4, 1e-5);
    assert_close(normed[1], z, 4, 1e-4);
    amil_layernorm_forward(normed[0], rows[0], weight, bias, 1, 4, 1e-6f);
    const float scaled[4] = {1 - 1.3416408f, -0.8944272f, 1.3416408f, 5.3665631f};
    assert_close(normed[0], scaled, 4, 1e-5);
    /* GELU: x Φ(x) (erf's values from a table) */
    float x[3] = {-1, 0, 2};
    amil_gelu_forward(x, 3);
    const float gelu[3] = {-0.15865525f, 0, 1.9544997f};
    assert_close(x, gelu, 3, 1e-6);
    /* patches of a 2-channel 4×6 image in 2×2: 2×3 of them, (c, y, x) each */
    float image[48], patches[48];
    for (int i = 0; i < 48; i++)
        image[i] = (float)i;
    amil_patchify(patches, image, 2, 4, 6, 2);
    const float second[8] = {2, 3, 8, 9, 26, 27, 32, 33};   /* row 0, column 1 */
    assert_close(patches + 8, second, 8, 0);
    const float fourth[8] = {12, 13, 18, 19, 36, 37, 42, 43};   /* row 1, column 0 */
    assert_close(patches + 24, fourth, 8, 0);
}

/* ---- softmax, layout, losses -------------------------------------------- */

struct soft {
    int K, N;
    float *x, *y, *R;
};

static double softmax_objective(void *ctx)
{
    struct soft *s = ctx;
    memcpy(s->y, s->x, sizeof *s->y * s->K * s->N);
    amil_softmax_forward(s->y, s->K, s->N);
    return dot(s->y, s->R, (size_t)s->K * s->N);
}

static void softmax(void **state)
{
    (void)state;
    struct soft s = {2, 9, random_floats(18, 4), malloc(72), random_floats(18, 1)};
    softmax_objective(&s);
    for (int k = 0; k < 2; k++) {
        double sum = 0;
        for (int i = 0; i < 9; i++)
            sum += s.y[k * 9 + i];
        assert_true(fabs(sum - 1) < 1e-6);
    }
    float *start, *dx = prefilled(18, &start);
    amil_softmax_backward(dx, s.R, s.y, 2, 9);
    added(dx, start, 18);
    check_gradient("softmax", softmax_objective, &s, s.x, dx, 18);
    /* huge scores do not overflow */
    float big[3] = {1000, 1000, -1000};
    amil_softmax_forward(big, 1, 3);
    assert_true(fabs(big[0] - 0.5) < 1e-6 && big[2] == 0);
    free(s.x), free(s.y), free(s.R), free(dx);
}

static void layout(void **state)
{
    (void)state;
    /* (C=2, N=3, HW=4) -> rows: row n is [c0 of n, c1 of n] */
    float planes[24], rows[24], back[24];
    for (int i = 0; i < 24; i++)
        planes[i] = (float)i;
    amil_chw_to_rows(rows, planes, 3, 2, 4);
    assert_true(rows[0] == 0 && rows[4] == 12 && rows[8] == 4 && rows[12] == 16);
    amil_rows_to_chw(back, rows, 3, 2, 4);
    assert_memory_equal(back, planes, sizeof planes);
}

static void losses(void **state)
{
    (void)state;
    float dp;
    double loss = amil_bernoulli_nll(0.8f, 1, &dp);
    assert_true(fabs(loss + log(0.8)) < 1e-7);
    assert_true(fabs(dp + 1 / 0.8) < 1e-5);
    loss = amil_bernoulli_nll(0.8f, 0, &dp);
    assert_true(fabs(loss + log(0.2)) < 1e-6);
    assert_true(fabs(dp - 1 / 0.2) < 1e-4);
    /* clamped: the loss stops at -log(1e-5) and the gradient is 0 */
    loss = amil_bernoulli_nll(0.0f, 1, &dp);
    assert_true(fabs(loss - 11.512925) < 1e-4);
    assert_true(dp == 0);

    float logits[4] = {0.5f, -1, 2, 0}, d[4];
    loss = amil_cross_entropy(logits, 4, 2, d);
    double z = exp(0.5) + exp(-1) + exp(2) + exp(0);
    assert_true(fabs(loss - (log(z) - 2)) < 1e-6);
    for (int c = 0; c < 4; c++) {
        float saved = logits[c];
        logits[c] = saved + 1e-3f;
        double plus = amil_cross_entropy(logits, 4, 2, NULL);
        logits[c] = saved - 1e-3f;
        double minus = amil_cross_entropy(logits, 4, 2, NULL);
        logits[c] = saved;
        assert_true(fabs((plus - minus) / 2e-3 - d[c]) < 1e-3);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(conv2d),  cmocka_unit_test(conv2d_panels), cmocka_unit_test(pooling), cmocka_unit_test(batchnorm), cmocka_unit_test(pointwise),
        cmocka_unit_test(linear),  cmocka_unit_test(softmax), cmocka_unit_test(layout),
        cmocka_unit_test(losses), cmocka_unit_test(transformer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
