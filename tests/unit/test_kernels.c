/* test_kernels.c: every kernel of kernels.h, on every instruction set this
 * CPU runs, against plain loops in double written here from the
 * definitions (one patch at a time, no lanes).  The sizes are awkward on
 * purpose: channel counts and widths that leave partial register tiles,
 * odd sides for the pooling, several groups with the last one partial; and
 * the paper's own shapes, which take the fast paths. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/base.h"
#include "compute/kernels.h"

static unsigned long long rng_state = 2463534242ULL;
static double uniform(void)   /* xorshift64 in [-1, 1) */
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (rng_state >> 11) * (2.0 / 9007199254740992.0) - 1;
}

static float *lane_buffer(size_t n)
{
    float *x = amil_xaligned(sizeof *x * n);
    for (size_t i = 0; i < n; i++)
        x[i] = (float)uniform();
    return x;
}

/* Element (patch p, flat index i) of a lane buffer of groups of `lanes`
 * patches, each patch `size` values. */
static float *at(float *buf, int lanes, size_t size, int p, size_t i)
{
    return buf + ((size_t)(p / lanes) * size + i) * lanes + p % lanes;
}

/* max |got - want| / max |want| over n values, printed and returned */
static double report(const char *isa, const char *what, const double *want,
                     const float *got, size_t n)
{
    double top = 0, err = 0;
    for (size_t i = 0; i < n; i++) {
        top = fmax(top, fabs(want[i]));
        err = fmax(err, fabs(want[i] - got[i]));
    }
    double rel = top > 0 ? err / top : err;
    printf("# %-9s %-34s relative error %.2e\n", isa, what, rel);
    return rel;
}

static void each_set(void (*check)(const struct amil_kernels *))
{
    const struct amil_kernels *sets[3];
    int n = amil_kernels_available(sets);
    assert_true(n >= 1);
    assert_string_equal(sets[n - 1]->name, "portable");
    for (int i = 0; i < n; i++)
        check(sets[i]);
}

/* ---- convolution ---------------------------------------------------------- */

struct conv_case {
    int C, H, W, OC;
};
static const struct conv_case conv_cases[] = {
    {3, 28, 28, 20},   /* the paper's conv1 */
    {20, 12, 12, 50},  /* conv2: the fast dinput path */
    {2, 13, 17, 7},    /* partial tiles everywhere */
    {1, 5, 9, 1},
};

static void conv_check(const struct amil_kernels *k)
{
    int lanes = k->lanes;
    for (size_t t = 0; t < sizeof conv_cases / sizeof *conv_cases; t++) {
        struct conv_case cc = conv_cases[t];
        int OH = cc.H - 4, OW = cc.W - 4, groups = 2, patches = 2 * lanes - 1;
        size_t in_size = (size_t)cc.C * cc.H * cc.W, out_size = (size_t)cc.OC * OH * OW;
        float *in = lane_buffer(groups * in_size * lanes);
        float *dout = lane_buffer(groups * out_size * lanes);
        float *weight = lane_buffer((size_t)cc.OC * cc.C * 25);
        float *out = amil_xaligned(sizeof *out * out_size * lanes);
        float *din = lane_buffer(in_size * lanes);   /* added to: starts at noise */
        float *dweight = calloc(cc.OC * cc.C * 25, sizeof *dweight);
        for (int p = patches; p < groups * lanes; p++)   /* a partial last group */
            for (size_t i = 0; i < out_size; i++)
                *at(dout, lanes, out_size, p, i) = 0;
        double *want = calloc(in_size > out_size ? in_size * lanes : out_size * lanes,
                              sizeof *want);
        double *want_dw = calloc(cc.OC * cc.C * 25, sizeof *want_dw);
        float *got = malloc(sizeof *got * (in_size > out_size ? in_size : out_size) * lanes);
        char what[64];

        /* forward and input gradient of group 0; weight gradient of both */
        for (size_t i = 0; i < in_size * lanes; i++)
            want[i] = din[i];
        k->conv5(out, in, weight, cc.C, cc.H, cc.W, cc.OC);
        k->conv5_dinput(din, dout, weight, cc.C, cc.H, cc.W, cc.OC);
        k->conv5_dweight(dweight, dout, in, groups, out_size * lanes, in_size * lanes, cc.C,
                         cc.H, cc.W, cc.OC);
        for (int p = 0; p < groups * lanes; p++)
            for (int o = 0; o < cc.OC; o++)
                for (int y = 0; y < OH; y++)
                    for (int x = 0; x < OW; x++) {
                        double sum = 0;
                        size_t oi = ((size_t)o * OH + y) * OW + x;
                        double d = *at(dout, lanes, out_size, p, oi);
                        for (int c = 0; c < cc.C; c++)
                            for (int i = 0; i < 5; i++)
                                for (int j = 0; j < 5; j++) {
                                    size_t ii = ((size_t)c * cc.H + y + i) * cc.W + x + j;
                                    size_t wi = (((size_t)o * cc.C + c) * 5 + i) * 5 + j;
                                    double v = *at(in, lanes, in_size, p, ii);
                                    sum += weight[wi] * v;
                                    want_dw[wi] += d * v;
                                    if (p < lanes)
                                        want[ii * lanes + p] += weight[wi] * d;
                                }
                        if (p < lanes)
                            got[oi * lanes + p] = (float)sum;
                    }
        /* out against the forward sums just stored in got, as doubles */
        double *fwd = calloc(out_size * lanes, sizeof *fwd);
        for (size_t i = 0; i < out_size * lanes; i++)
            fwd[i] = got[i];
        snprintf(what, sizeof what, "conv5 %dx%dx%d -> %d", cc.C, cc.H, cc.W, cc.OC);
        assert_true(report(k->name, what, fwd, out, out_size * lanes) < 1e-5);
        snprintf(what, sizeof what, "conv5_dinput %dx%dx%d <- %d", cc.C, cc.H, cc.W, cc.OC);
        assert_true(report(k->name, what, want, din, in_size * lanes) < 1e-5);
        snprintf(what, sizeof what, "conv5_dweight %dx%dx%d, 2 groups", cc.C, cc.H, cc.W);
        assert_true(report(k->name, what, want_dw, dweight, (size_t)cc.OC * cc.C * 25) < 1e-5);
        free(fwd), free(in), free(dout), free(weight), free(out), free(din), free(dweight);
        free(want), free(want_dw), free(got);
    }
}

static void convolution(void **state)
{
    (void)state;
    each_set(conv_check);
}

/* ---- Winograd F(4×4, 5×5) ----------------------------------------------------- */

/* The backward's kernels on the forward's U and V (winograd5_check's
 * case): the input's and the weights' gradients of a random dout against
 * the direct sums in double. */
static void winograd5_backward_check(const struct amil_kernels *k, struct conv_case cc,
                                     const float *in, const float *weight, const float *U,
                                     const float *V, float *m)
{
    int lanes = k->lanes, S = cc.H - 4, tiles = S / 4, T = tiles * tiles;
    size_t in_size = (size_t)cc.C * cc.H * cc.H, out_size = (size_t)cc.OC * S * S;
    size_t pairs = (size_t)cc.OC * cc.C, K = (size_t)T * lanes;
    float *dout = lane_buffer(out_size * lanes);
    float *dM = amil_xaligned(sizeof *dM * 64 * cc.OC * K);
    float *dU = calloc(64 * pairs, sizeof *dU), *Ut = malloc(sizeof *Ut * 64 * pairs);
    float *dgt = malloc(sizeof *dgt * 25 * pairs), *din = amil_xaligned(sizeof *din * in_size * lanes);
    memset(din, 0, sizeof *din * in_size * lanes);
    float *dweight = malloc(sizeof *dweight * pairs * 25);
    double *want_din = calloc(in_size * lanes, sizeof *want_din);
    double *want_dw = calloc(pairs * 25, sizeof *want_dw);
    for (int o = 0; o < cc.OC; o++)
        for (int c = 0; c < cc.C; c++)
            for (int i = 0; i < 25; i++) {
                size_t wi = ((size_t)o * cc.C + c) * 25 + i;
                for (int y = 0; y < S; y++)
                    for (int x = 0; x < S; x++)
                        for (int p = 0; p < lanes; p++) {
                            double d = dout[(((size_t)o * S + y) * S + x) * lanes + p];
                            size_t ii = (((size_t)c * cc.H + y + i / 5) * cc.H + x + i % 5) *
                                            lanes + p;
                            want_dw[wi] += d * in[ii];
                            want_din[ii] += d * weight[wi];
                        }
            }
    k->winograd5_doutput(dM, dout, cc.OC, S);
    k->dots(dU, pairs, dM, cc.OC * K, V, cc.C * K, cc.OC, cc.C, K, 64);
    k->winograd5_dweights(dgt, dU, pairs);
    for (size_t q = 0; q < pairs; q++)
        for (int i = 0; i < 25; i++)
            dweight[q * 25 + i] = dgt[i * pairs + q];
    for (int p = 0; p < 64; p++)   /* (OC, C) to (C, OC) */
        for (int o = 0; o < cc.OC; o++)
            for (int c = 0; c < cc.C; c++)
                Ut[(p * cc.C + c) * cc.OC + o] = U[(p * cc.OC + o) * cc.C + c];
    k->winograd5_dinput(din, m, Ut, dM, cc.C, cc.OC, S);
    char what[64];
    snprintf(what, sizeof what, "winograd5 dweight %dx%dx%d <- %d", cc.C, cc.H, cc.H, cc.OC);
    assert_true(report(k->name, what, want_dw, dweight, pairs * 25) < 2e-5);
    snprintf(what, sizeof what, "winograd5 dinput %dx%dx%d <- %d", cc.C, cc.H, cc.H, cc.OC);
    assert_true(report(k->name, what, want_din, din, in_size * lanes) < 2e-5);
    free(dout), free(dM), free(dU), free(Ut), free(dgt), free(din), free(dweight);
    free(want_din), free(want_dw);
}

/* The three kernels together against the direct sum in double: the
 * paper's conv2, more tiles than one accumulator block holds (T = 16) with
 * output channels that leave a partial block, and one channel. */
static void winograd5_check(const struct amil_kernels *k)
{
    static const struct conv_case cases[] = {{20, 12, 12, 50}, {3, 20, 20, 7}, {1, 12, 12, 1}};
    int lanes = k->lanes;
    for (size_t t = 0; t < sizeof cases / sizeof *cases; t++) {
        struct conv_case cc = cases[t];
        int S = cc.H - 4, tiles = S / 4;
        size_t in_size = (size_t)cc.C * cc.H * cc.H, out_size = (size_t)cc.OC * S * S;
        size_t pairs = (size_t)cc.OC * cc.C;
        float *in = lane_buffer(in_size * lanes), *weight = lane_buffer(pairs * 25);
        float *gt = malloc(sizeof *gt * pairs * 25), *U = malloc(sizeof *U * 64 * pairs);
        float *V = amil_xaligned(sizeof *V * 64 * cc.C * tiles * tiles * lanes);
        float *m = amil_xaligned(sizeof *m * 64 * 4 * 6 * lanes);
        float *out = amil_xaligned(sizeof *out * out_size * lanes);
        double *want = calloc(out_size * lanes, sizeof *want);
        for (size_t q = 0; q < pairs; q++)
            for (int i = 0; i < 25; i++)
                gt[i * pairs + q] = weight[q * 25 + i];
        k->winograd5_weights(U, gt, pairs);
        k->winograd5_input(V, in, cc.C, cc.H);
        k->winograd5_output(out, m, U, V, cc.C, cc.OC, S);
        for (int p = 0; p < lanes; p++)
            for (int o = 0; o < cc.OC; o++)
                for (int y = 0; y < S; y++)
                    for (int x = 0; x < S; x++) {
                        double sum = 0;
                        for (int c = 0; c < cc.C; c++)
                            for (int i = 0; i < 5; i++)
                                for (int j = 0; j < 5; j++)
                                    sum += (double)weight[(((size_t)o * cc.C + c) * 5 + i) * 5 + j] *
                                           in[(((size_t)c * cc.H + y + i) * cc.H + x + j) * lanes + p];
                        want[(((size_t)o * S + y) * S + x) * lanes + p] = sum;
                    }
        char what[64];
        snprintf(what, sizeof what, "winograd5 %dx%dx%d -> %d", cc.C, cc.H, cc.H, cc.OC);
        assert_true(report(k->name, what, want, out, out_size * lanes) < 2e-5);
        winograd5_backward_check(k, cc, in, weight, U, V, m);
        free(in), free(weight), free(gt), free(U), free(V), free(m), free(out), free(want);
    }
}

static void winograd5(void **state)
{
    (void)state;
    each_set(winograd5_check);
}

/* ---- pooling ---------------------------------------------------------------- */

static void pool_check(const struct amil_kernels *k)
{
    int lanes = k->lanes;
    const int sizes[][3] = {{20, 24, 24}, {3, 9, 7}};
    for (int t = 0; t < 2; t++) {
        int C = sizes[t][0], H = sizes[t][1], W = sizes[t][2], OH = H / 2, OW = W / 2;
        size_t in_size = (size_t)C * H * W, out_size = (size_t)C * OH * OW;
        float *in = lane_buffer(in_size * lanes), *dout = lane_buffer(out_size * lanes);
        float *bias = lane_buffer(C), *out = amil_xaligned(sizeof *out * out_size * lanes);
        float *din = lane_buffer(in_size * lanes);   /* written over: starts at noise */
        uint8_t *arg = amil_xaligned(out_size * lanes);
        /* ties and NaN: PyTorch's first maximum in scan order, and NaN wins */
        for (size_t i = 0; i < in_size * lanes; i += 7)
            in[i] = in[i + lanes < in_size * lanes ? i + lanes : i];
        in[5 * lanes + 1] = NAN;
        float dbias[20] = {0};
        double *want_out = calloc(out_size * lanes, sizeof *want_out);
        double *want_din = calloc(in_size * lanes, sizeof *want_din);
        k->pool_bias_relu(out, arg, in, bias, C, H, W);
        k->unpool_relu(din, dbias, dout, out, arg, C, H, W);
        double want_db[20] = {0};
        int args_agree = 1;
        for (int p = 0; p < lanes; p++)
            for (int c = 0; c < C; c++)
                for (int y = 0; y < OH; y++)
                    for (int x = 0; x < OW; x++) {
                        size_t o = ((size_t)c * OH + y) * OW + x;
                        float best = NAN;
                        int win = -1;
                        for (int q = 0; q < 4; q++) {
                            size_t i = ((size_t)c * H + 2 * y + q / 2) * W + 2 * x + q % 2;
                            float v = in[i * lanes + p];
                            if (win < 0 || (best == best && (v > best || v != v)))
                                best = v, win = q;
                        }
                        float v = best + bias[c];
                        want_out[o * lanes + p] = v > 0 || v != v ? v : 0;
                        args_agree &= arg[o * lanes + p] == win;
                        double g = out[o * lanes + p] > 0 ? dout[o * lanes + p] : 0;
                        want_db[c] += g;
                        size_t i = ((size_t)c * H + 2 * y + win / 2) * W + 2 * x + win % 2;
                        want_din[i * lanes + p] = g;
                    }
        assert_true(args_agree);
        /* NaN compares unequal: check it apart, then as zero */
        int nans = 0;
        for (size_t i = 0; i < out_size * lanes; i++)
            if (want_out[i] != want_out[i]) {
                nans++;
                assert_true(out[i] != out[i]);
                want_out[i] = out[i] = 0;
            }
        assert_int_equal(nans, 1);   /* the NaN planted at patch 1, value 5 */
        assert_true(report(k->name, "pool_bias_relu", want_out, out, out_size * lanes) == 0);
        assert_true(report(k->name, "unpool_relu din", want_din, din, in_size * lanes) == 0);
        float db[20];
        for (int c = 0; c < C; c++)
            db[c] = dbias[c];
        assert_true(report(k->name, "unpool_relu dbias", want_db, db, C) < 1e-6);
        free(in), free(dout), free(bias), free(out), free(din), free(arg);
        free(want_out), free(want_din);
    }
}

static void pooling(void **state)
{
    (void)state;
    each_set(pool_check);
}

/* ---- dense ------------------------------------------------------------------ */

static void dense_check(const struct amil_kernels *k)
{
    int lanes = k->lanes;
    const int sizes[][3] = {{500, 800, 7}, {13, 9, 5}, {1, 3, 1}};
    for (int t = 0; t < 3; t++) {
        int M = sizes[t][0], K = sizes[t][1], groups = sizes[t][2];
        float *x = lane_buffer((size_t)groups * K * lanes);
        float *y = lane_buffer((size_t)groups * M * lanes);
        float *a = lane_buffer((size_t)M * K), *bias = lane_buffer(M);
        float *out = amil_xaligned(sizeof *out * groups * M * lanes);
        float *back = lane_buffer((size_t)groups * K * lanes);   /* added to */
        float *d = calloc((size_t)M * K, sizeof *d);
        double *want = calloc((size_t)groups * M * lanes, sizeof *want);
        double *want_back = calloc((size_t)groups * K * lanes, sizeof *want_back);
        double *want_d = calloc((size_t)M * K, sizeof *want_d);
        for (size_t i = 0; i < (size_t)groups * K * lanes; i++)
            want_back[i] = back[i];
        k->dense(out, x, a, K, 1, bias, 1, 0, groups, M, K);
        k->dense(back, y, a, 1, K, NULL, 0, 1, groups, K, M);   /* by the transpose, added */
        k->dense_dweight(d, y, x, groups, M, K);
        for (int p = 0; p < groups * lanes; p++)
            for (int m = 0; m < M; m++) {
                double sum = bias[m];
                for (int j = 0; j < K; j++) {
                    double xv = *at(x, lanes, K, p, j), yv = *at(y, lanes, M, p, m);
                    sum += (double)a[(size_t)m * K + j] * xv;
                    want_back[((size_t)(p / lanes) * K + j) * lanes + p % lanes] +=
                        (double)a[(size_t)m * K + j] * yv;
                    want_d[(size_t)m * K + j] += yv * xv;
                }
                want[((size_t)(p / lanes) * M + m) * lanes + p % lanes] = sum > 0 ? sum : 0;
            }
        char what[64];
        snprintf(what, sizeof what, "dense %dx%d, %d groups, ReLU", M, K, groups);
        assert_true(report(k->name, what, want, out, (size_t)groups * M * lanes) < 1e-5);
        snprintf(what, sizeof what, "dense, transposed and added, %dx%d", K, M);
        assert_true(report(k->name, what, want_back, back, (size_t)groups * K * lanes) < 1e-5);
        snprintf(what, sizeof what, "dense_dweight %dx%d", M, K);
        assert_true(report(k->name, what, want_d, d, (size_t)M * K) < 1e-5);
        free(x), free(y), free(a), free(bias), free(out), free(back), free(d);
        free(want), free(want_back), free(want_d);
    }
}

static void dense(void **state)
{
    (void)state;
    each_set(dense_check);
}

/* ---- convolution as shifted products (the CNN baselines) ------------------ */

/* A stride-1 convolution of a zero-padded image laid out as conv_shift
 * reads it, against a double loop over the unpadded image: channel counts
 * past one channel block (64) and not a multiple of the output tile, a
 * position range starting past 0, 3×3 and 1×1 and 7×7 taps. */
static void shift_check(const struct amil_kernels *k)
{
    const int cases[][5] = {{70, 9, 11, 6, 3}, {3, 17, 5, 13, 7}, {5, 4, 4, 4, 1}};
    for (int t = 0; t < 3; t++) {
        int C = cases[t][0], H = cases[t][1], W = cases[t][2], OC = cases[t][3];
        int K = cases[t][4], pad = K / 2, Wp = W + 2 * pad;
        size_t block = (size_t)k->shift_block;
        size_t positions = ((size_t)H * Wp + block - 1) / block * block + block;
        size_t in_stride = positions + (size_t)(K - 1) * (Wp + 1);
        float *in = calloc((size_t)C * in_stride, sizeof *in);
        float *image = lane_buffer((size_t)C * H * W);
        float *weight = lane_buffer((size_t)OC * C * K * K), *bias = lane_buffer(OC);
        float *out = calloc((size_t)OC * positions, sizeof *out);
        for (int c = 0; c < C; c++)
            for (int y = 0; y < H; y++)
                memcpy(in + c * in_stride + (size_t)(y + pad) * Wp + pad,
                       image + ((size_t)c * H + y) * W, sizeof *in * W);
        int off[49];
        for (int i = 0; i < K * K; i++)
            off[i] = i / K * Wp + i % K;
        /* the first block is left to a second call, as a second thread would */
        k->conv_shift(out, positions, in, in_stride, weight, bias, off, K * K, C, OC, 0, block,
                      positions);
        k->conv_shift(out, positions, in, in_stride, weight, bias, off, K * K, C, OC, 0, 0,
                      block);
        double *want = calloc((size_t)OC * H * W, sizeof *want);
        float *got = malloc(sizeof *got * OC * H * W);
        for (int o = 0; o < OC; o++)
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++) {
                    double sum = bias[o];
                    for (int c = 0; c < C; c++)
                        for (int ki = 0; ki < K; ki++)
                            for (int kj = 0; kj < K; kj++) {
                                int yy = y + ki - pad, xx = x + kj - pad;
                                if (yy >= 0 && yy < H && xx >= 0 && xx < W)
                                    sum += (double)weight[((o * C + c) * K + ki) * K + kj] *
                                           image[((size_t)c * H + yy) * W + xx];
                            }
                    size_t i = ((size_t)o * H + y) * W + x;
                    want[i] = sum;
                    got[i] = out[(size_t)o * positions + (size_t)y * Wp + x];
                }
        char what[64];
        snprintf(what, sizeof what, "conv_shift %d→%d, %d×%d, %d×%d", C, OC, H, W, K, K);
        assert_true(report(k->name, what, want, got, (size_t)OC * H * W) < 1e-5);
        free(in), free(image), free(weight), free(bias), free(out), free(want), free(got);
    }
}

static void shifted_convolution(void **state)
{
    (void)state;
    each_set(shift_check);
}

/* The weight gradient of shifted products against a double loop: several
 * items with strides longer than their data, a tap count and a channel
 * count that are not multiples of the tile, offsets along rows and down,
 * position counts past whole vectors; and rows of dot products (one item,
 * one tap: the linear layers' use). */
static void shift_dweight_check(const struct amil_kernels *k)
{
    /* C, OC, K, vectors, items, positions past the last whole vector */
    const int cases[][6] = {{20, 50, 5, 3, 4, 0}, {3, 7, 3, 2, 1, 5}, {1, 20, 5, 4, 10, 3},
                            {500, 10, 1, 31, 1, 4}};
    for (int t = 0; t < 4; t++) {
        int C = cases[t][0], OC = cases[t][1], K = cases[t][2], T = K * K, n = cases[t][4];
        size_t P = (size_t)cases[t][3] * k->lanes + (size_t)cases[t][5], width = 8;
        int off[25];
        for (int i = 0; i < T; i++)
            off[i] = (int)((size_t)i / K * width + (size_t)(i % K) * 3);
        size_t dout_stride = P + 5, dout_item = (size_t)OC * dout_stride + 2;
        size_t in_stride = P + (size_t)off[T - 1] + 1, in_item = (size_t)C * in_stride + 7;
        float *dout = lane_buffer((size_t)n * dout_item), *in = lane_buffer((size_t)n * in_item);
        float *dweight = lane_buffer((size_t)OC * C * T);
        double *want = malloc(sizeof *want * OC * C * T);
        for (int o = 0; o < OC; o++)
            for (int q = 0; q < C * T; q++) {
                double sum = dweight[(size_t)o * C * T + q];
                for (int i = 0; i < n; i++)
                    for (size_t p = 0; p < P; p++)
                        sum += (double)dout[i * dout_item + o * dout_stride + p] *
                               in[i * in_item + (size_t)(q / T) * in_stride + p + off[q % T]];
                want[(size_t)o * C * T + q] = sum;
            }
        k->conv_shift_dweight(dweight, dout, dout_stride, dout_item, in, in_stride, in_item,
                              off, T, C, OC, P, n);
        char what[64];
        snprintf(what, sizeof what, "conv_shift_dweight %d→%d, %d taps, %d", C, OC, T, n);
        assert_true(report(k->name, what, want, dweight, (size_t)OC * C * T) < 1e-5);
        free(dout), free(in), free(dweight), free(want);
    }
}

static void shifted_dweight(void **state)
{
    (void)state;
    each_set(shift_dweight_check);
}

/* Lane layout to planes and back, exactly: tiles along a buffer with rows
 * longer than a tile. */
static void transpose_check(const struct amil_kernels *k)
{
    size_t L = (size_t)k->lanes, tiles = 5, row = tiles * L + 3;
    float *lanes = lane_buffer(tiles * L * L), *planes = lane_buffer(L * row);
    float *back = lane_buffer(tiles * L * L), *sum = lane_buffer(tiles * L * L);
    float *start = malloc(sizeof *start * tiles * L * L);
    memcpy(start, sum, sizeof *start * tiles * L * L);
    k->transpose(planes, row, L, lanes, L, L * L, tiles, 0);
    for (size_t e = 0; e < tiles * L; e++)
        for (size_t l = 0; l < L; l++)
            assert_true(planes[l * row + e] == lanes[e * L + l]);
    k->transpose(back, L, L * L, planes, row, L, tiles, 0);
    assert_memory_equal(back, lanes, sizeof *back * tiles * L * L);
    k->transpose(sum, L, L * L, planes, row, L, tiles, 1);   /* added to what was there */
    for (size_t i = 0; i < tiles * L * L; i++)
        assert_true(sum[i] == start[i] + lanes[i]);
    free(lanes), free(planes), free(back), free(sum), free(start);
}

static void transposes(void **state)
{
    (void)state;
    each_set(transpose_check);
}

/* ---- products with the outputs in lanes (Winograd's) ---------------------- */

/* The product against a double loop: row counts not a multiple of the
 * tile, channel counts one vector and several, a row range starting past 0
 * in a second call, as a second thread would; x read down its columns
 * (without a bias) and along its rows (with one). */
static void product_check(const struct amil_kernels *k)
{
    const int sizes[][3] = {{13, 70, 3}, {7, 5, 1}, {40, 64, 5}};   /* N, C, OC vectors */
    for (int t = 0; t < 6; t++) {
        int N = sizes[t % 3][0], C = sizes[t % 3][1], OC = sizes[t % 3][2] * k->lanes;
        int by_rows = t >= 3;
        /* x's rows (or columns) are longer than they need be */
        size_t stride = by_rows ? (size_t)C + 3 : (size_t)N + 3;
        size_t x_c = by_rows ? 1 : stride, x_n = by_rows ? stride : 1;
        float *x = lane_buffer((size_t)(by_rows ? N : C) * stride);
        float *a = lane_buffer((size_t)C * OC), *bias = by_rows ? lane_buffer(OC) : NULL;
        float *out = amil_xaligned(sizeof *out * N * OC);
        double *want = calloc((size_t)N * OC, sizeof *want);
        k->product(out, OC, x, x_c, x_n, a, bias, C, OC, 0, N / 2);
        k->product(out, OC, x, x_c, x_n, a, bias, C, OC, N / 2, N);
        for (int n = 0; n < N; n++)
            for (int o = 0; o < OC; o++) {
                want[(size_t)n * OC + o] = bias ? bias[o] : 0;
                for (int c = 0; c < C; c++)
                    want[(size_t)n * OC + o] +=
                        (double)x[c * x_c + n * x_n] * a[(size_t)c * OC + o];
            }
        char what[64];
        snprintf(what, sizeof what, "product %dx%d by %dx%d%s", N, C, C, OC,
                 by_rows ? ", rows" : "");
        assert_true(report(k->name, what, want, out, (size_t)N * OC) < 1e-5);
        /* product_add: the same sum (without bias) added to an unaligned
         * output that holds something already */
        float *held = malloc(sizeof *held * ((size_t)N * OC + 1)), *added = held + 1;
        for (size_t i = 0; i < (size_t)N * OC; i++) {
            added[i] = (float)i / (float)OC;
            want[i] += added[i] - (bias ? bias[i % OC] : 0);
        }
        k->product_add(added, OC, x, x_c, x_n, a, C, OC, 0, N / 2);
        k->product_add(added, OC, x, x_c, x_n, a, C, OC, N / 2, N);
        snprintf(what, sizeof what, "product_add %dx%d by %dx%d%s", N, C, C, OC,
                 by_rows ? ", rows" : "");
        assert_true(report(k->name, what, want, added, (size_t)N * OC) < 1e-5);
        free(x), free(a), free(bias), free(out), free(want), free(held);
    }
}

static void products(void **state)
{
    (void)state;
    each_set(product_check);
}

/* ---- products in bfloat16 ------------------------------------------------- */

static double bf16_value(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* pairs_bf16 against to_bf16 of each row (a length past a whole vector);
 * product_bf16 against a double loop over the rounded values (their
 * products are exact in float32: only the order of the sums differs), x's
 * pairs along its rows (with a bias) and down its columns (without), the
 * rows in two calls as two threads make them. */
static int bf16_checked;
static void bf16_check(const struct amil_kernels *k)
{
    if (!k->product_bf16)   /* only the AVX-512 set has it */
        return;
    enum { N = 37 };
    float *rows = lane_buffer(2 * N);
    uint16_t pairs[2 * N], each[2 * N];
    k->pairs_bf16(pairs, rows, rows + N, N);
    k->to_bf16(each, rows, 2 * N);
    for (int j = 0; j < N; j++) {
        assert_int_equal(pairs[2 * j], each[j]);
        assert_int_equal(pairs[2 * j + 1], each[N + j]);
        assert_true(fabs(bf16_value(each[j]) - rows[j]) <= fabs(rows[j]) / 256);
    }
    const int sizes[][3] = {{13, 70, 3}, {7, 4, 1}, {40, 64, 5}};   /* N, C, OC vectors */
    for (int t = 0; t < 6; t++) {
        int n_rows = sizes[t % 3][0], C = sizes[t % 3][1], OC = sizes[t % 3][2] * 16;
        int by_rows = t < 3;
        /* x (n_rows, C + 2) as pairs along its rows, or (C/2, n_rows + 3, 2) */
        size_t x_p = by_rows ? 2 : 2 * ((size_t)n_rows + 3), x_n = by_rows ? (size_t)C + 2 : 2;
        size_t x_size = by_rows ? (size_t)n_rows * x_n : (size_t)C / 2 * x_p;
        float *xf = lane_buffer(x_size), *af = lane_buffer((size_t)C * OC);
        float *bias = by_rows ? lane_buffer(OC) : NULL;
        uint16_t *x = malloc(sizeof *x * x_size), *a = malloc(sizeof *a * C * OC);
        k->to_bf16(x, xf, x_size), k->to_bf16(a, af, (size_t)C * OC);
        float *out = amil_xaligned(sizeof *out * n_rows * OC);
        double *want = calloc((size_t)n_rows * OC, sizeof *want);
        k->product_bf16(out, OC, x, x_p, x_n, a, 2 * (size_t)OC, bias, C / 2, OC, 0, n_rows / 2);
        k->product_bf16(out, OC, x, x_p, x_n, a, 2 * (size_t)OC, bias, C / 2, OC, n_rows / 2,
                        n_rows);
        for (int n = 0; n < n_rows; n++)
            for (int o = 0; o < OC; o++) {
                double sum = bias ? bias[o] : 0;
                for (int p = 0; p < C / 2; p++)
                    for (int h = 0; h < 2; h++)
                        sum += bf16_value(x[n * x_n + p * x_p + h]) *
                               bf16_value(a[(size_t)p * 2 * OC + 2 * o + h]);
                want[(size_t)n * OC + o] = sum;
            }
        char what[64];
        snprintf(what, sizeof what, "product_bf16 %dx%d by %dx%d%s", n_rows, C, C, OC,
                 by_rows ? ", rows" : ", columns");
        assert_true(report(k->name, what, want, out, (size_t)n_rows * OC) < 1e-5);
        free(xf), free(af), free(bias), free(x), free(a), free(out), free(want);
    }
    free(rows);
    bf16_checked++;
}

static void bf16_products(void **state)
{
    (void)state;
    if (!amil_cpu_has_bf16())
        skip();
    each_set(bf16_check);
    assert_int_equal(bf16_checked, 1);   /* the AVX-512 set ran */
}

/* ---- a transformer's elementwise work ------------------------------------- */

/* GELU and softmax against double libm: values over the range that matters
 * (and past e^x's clamp), a length not a multiple of any set's lanes, and
 * each value's error relative to itself, not only to the largest. */
static void elementwise_check(const struct amil_kernels *k)
{
    enum { N = 203 };
    float x[N];
    double want[N], worst = 0;
    for (int i = 0; i < N; i++)
        x[i] = -12 + 24.0f * i / (N - 1);
    for (int i = 0; i < N; i++)
        want[i] = 0.5 * x[i] * (1 + erf(x[i] / sqrt(2)));
    k->gelu(x, N);
    for (int i = 0; i < N; i++)   /* to 1e-7 of |x|, where GELU is about x or 0 */
        worst = fmax(worst, fabs(x[i] - want[i]) / fmax(fabs(want[i]), 1e-7 * 12));
    printf("# %-9s %-34s worst error %.2e\n", k->name, "gelu, 203 values", worst);
    assert_true(worst < 2e-6);
    /* two rows of scores: ordinary ones, and -200 to 2 (e^x underflows to 0
     * at its start); the reference in double from each row's maximum */
    float rows[2][N];
    double e[2][N], sums[2] = {0}, top[2] = {-1e9, -1e9};
    for (int i = 0; i < N; i++) {
        rows[0][i] = (float)sin(i * 0.37) * 6, rows[1][i] = -200.0f + i;
        for (int r = 0; r < 2; r++)
            top[r] = fmax(top[r], rows[r][i]);
    }
    for (int r = 0; r < 2; r++)
        for (int i = 0; i < N; i++)
            sums[r] += e[r][i] = exp((double)rows[r][i] - top[r]);
    k->softmax(&rows[0][0], 2, N);
    worst = 0;
    for (int r = 0; r < 2; r++)
        for (int i = 0; i < N; i++) {
            double p = e[r][i] / sums[r];
            worst = fmax(worst, fabs(rows[r][i] - p) / fmax(p, 1e-30));
        }
    printf("# %-9s %-34s worst error %.2e\n", k->name, "softmax, 2 rows of 203", worst);
    assert_true(worst < 1e-5);
}

static void elementwise(void **state)
{
    (void)state;
    each_set(elementwise_check);
}

/* AMIL_ISA picks a set; an unknown name is an error, not a silent default. */
static void choice(void **state)
{
    (void)state;
    const struct amil_kernels *sets[3];
    int n = amil_kernels_available(sets);
    const struct amil_kernels *k = amil_kernels();
    assert_non_null(k);
    const char *wanted = getenv("AMIL_ISA");
    assert_string_equal(k->name, wanted && *wanted ? wanted : sets[0]->name);
    (void)n;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(convolution),
        cmocka_unit_test(winograd5),
        cmocka_unit_test(pooling),
        cmocka_unit_test(dense),
        cmocka_unit_test(shifted_convolution),
        cmocka_unit_test(shifted_dweight),
        cmocka_unit_test(transposes),
        cmocka_unit_test(products), cmocka_unit_test(bf16_products),
        cmocka_unit_test(elementwise),
        cmocka_unit_test(choice),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
