/* kernels_transformer.c: lane kernels (lanes.h) for a vision transformer's
 * elementwise work: GELU and the attention's softmax, on a vector e^x of
 * our own, where libm's erff and expf go one value at a time (ViT-B/16:
 * 7 M GELUs and 5.6 M exponentials a tile, 11 % of its time). */
#include <math.h>

#include "base/base.h"
#include "compute/lanes.h"

/* e^x in every lane, as Cephes' expf: x = n ln 2 + r with |r| ≤ ln 2 / 2,
 * e^r by its polynomial, 2^n put into the exponent; within 2e-7 relative
 * of e^x for x in [-87, 88] (clamped there: 0 and inf stay out) */
INLINE vf exp_lanes(vf x)
{
    x = blend(x < splat(-87.3f), splat(-87.3f), x);
    x = blend(x > splat(88.3f), splat(88.3f), x);
    vf n = x * splat(1.44269504088896341f) + splat(0.5f);
    vf t = __builtin_convertvector(__builtin_convertvector(n, vi), vf);
    t = blend(t > n, t - splat(1), t);   /* floor, for negative n too */
    vf r = x - t * splat(0.693359375f) - t * splat(-2.12194440e-4f);
    vf y = splat(1.9875691500e-4f);
    y = y * r + splat(1.3981999507e-3f);
    y = y * r + splat(8.3334519073e-3f);
    y = y * r + splat(4.1665795894e-2f);
    y = y * r + splat(1.6666665459e-1f);
    y = y * r + splat(5.0000001201e-1f);
    y = y * r * r + r + splat(1);
    vi scale = (__builtin_convertvector(t, vi) + 127) << 23;
    return y * (vf)scale;
}

/* GELU, x Φ(x) = x (1 + erf(x / √2)) / 2, from erfc(|z|), z = x / √2, by
 * the Chebyshev fit of Numerical Recipes' erfcc (within 1.2e-7 of it,
 * relative, everywhere): x erfc(|z|) / 2 for x < 0, where Φ is tiny, and
 * x (2 - erfc(z)) / 2 for x ≥ 0 */
INLINE vf gelu_lanes(vf x)
{
    vf z = x * splat((float)M_SQRT1_2);
    vf a = (vf)((vi)z & splat_int(INT32_MAX));
    vf t = splat(1) / (splat(1) + splat(0.5f) * a);
    static const float c[10] = {-1.26551223f, 1.00002368f, 0.37409196f, 0.09678418f,
                                -0.18628806f, 0.27886807f, -1.13520398f, 1.48851587f,
                                -0.82215223f, 0.17087277f};
    vf p = splat(c[9]);
    for (int i = 8; i >= 0; i--)
        p = p * t + splat(c[i]);
    vf erfc_a = t * exp_lanes(p - a * a);
    vf phi2 = blend(x < splat(0), erfc_a, splat(2) - erfc_a);   /* 2 Φ(x) */
    return splat(0.5f) * x * phi2;
}

void NAME(gelu)(float *x, size_t n)
{
    size_t i = 0;
    for (; i + LANES <= n; i += LANES)
        store_any(x + i, gelu_lanes(load_any(x + i)));
    if (i < n) {
        float rest[LANES] = {0};
        memcpy(rest, x + i, sizeof(float) * (n - i));
        vf y = gelu_lanes(load_any(rest));
        memcpy(x + i, &y, sizeof(float) * (n - i));
    }
}

void NAME(softmax)(float *x, int rows, int n)
{
    int whole = n / LANES * LANES;
    for (int r = 0; r < rows; r++) {
        float *row = x + (size_t)r * n, top = -INFINITY;
        for (int i = 0; i < n; i++)
            top = row[i] > top ? row[i] : top;
        vf sums = {0};
        float rest[LANES] = {0};
        for (int i = 0; i < whole; i += LANES) {
            vf e = exp_lanes(load_any(row + i) - splat(top));
            store_any(row + i, e);
            sums += e;
        }
        if (whole < n) {   /* the tail's unused lanes at -inf: e^-inf, 0 */
            for (int l = 0; l < LANES; l++)
                rest[l] = whole + l < n ? row[whole + l] - top : -INFINITY;
            vf e = exp_lanes(load_any(rest));
            e = blend(load_any(rest) == splat(-INFINITY), splat(0), e);
            memcpy(row + whole, &e, sizeof(float) * (n - whole));
            sums += e;
        }
        vf scale = splat(1 / sum_lanes(sums));
        for (int i = 0; i < whole; i += LANES)
            store_any(row + i, load_any(row + i) * scale);
        for (int i = whole; i < n; i++)
            row[i] *= scale[0];
    }
}
