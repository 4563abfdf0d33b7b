/* augment.c: Tellez et al.'s H&E jitter, flips and quarter turns
 * (augment.h). */
#include <math.h>
#include <string.h>

#include "base/base.h"
#include "media/augment.h"
#include "media/stain.h"
#include "record/record.h"

/* Ruifrok and Johnston's stains (rows: H, E, DAB; columns R, G, B), as
 * scikit-image's rgb_from_hed, and its inverse. */
static const double rgb_from_hed[3][3] = {{0.65, 0.70, 0.29},
                                          {0.07, 0.99, 0.11},
                                          {0.27, 0.57, 0.78}};

void amil_he_jitter(uint8_t *rgb, size_t n, const double scale[3], const double shift[3])
{
    /* The jitter is affine in optical density: OD' (channel k) = Σ_c OD_c
     * A[c][k] + b[k], with A = hed_from_rgb · diag(scale) · rgb_from_hed
     * and b = shift · rgb_from_hed.  So the light out, exp(-OD'), is
     * exp(-b[k]) times a product of three tables of the bytes, no exp a
     * pixel.  OD of a byte: -ln(max(v / 255, 1e-6)). */
    double hed_from_rgb[3][3], a[3][3], light[3], table[3][3][256];
    amil_inverse3(rgb_from_hed, hed_from_rgb);
    for (int k = 0; k < 3; k++) {
        double b = 0;
        for (int s = 0; s < 3; s++)
            b += shift[s] * rgb_from_hed[s][k];
        light[k] = exp(-b);
        for (int c = 0; c < 3; c++) {
            a[c][k] = 0;
            for (int s = 0; s < 3; s++)
                a[c][k] += hed_from_rgb[c][s] * scale[s] * rgb_from_hed[s][k];
        }
    }
    for (int c = 0; c < 3; c++)
        for (int k = 0; k < 3; k++)
            for (int v = 0; v < 256; v++)
                table[c][k][v] = exp(log(fmax(v / 255.0, 1e-6)) * a[c][k]);
    for (size_t i = 0; i < n; i++) {
        uint8_t *px = rgb + 3 * i, in[3] = {px[0], px[1], px[2]};
        for (int k = 0; k < 3; k++) {
            double v = light[k] * table[0][k][in[0]] * table[1][k][in[1]] * table[2][k][in[2]];
            px[k] = (uint8_t)(255 * (v > 1 ? 1 : v) + 0.5);
        }
    }
}

/* Patch in (P, P, C) into out, mirrored left to right when mirror, then
 * turned counterclockwise `turns` quarter turns: out (y, x) is in at the
 * point the inverse turn and mirror take (y, x) to. */
static void place(const uint8_t *in, uint8_t *out, int side, int channels, int mirror,
                  int turns)
{
    int last = side - 1;
    for (int y = 0; y < side; y++)
        for (int x = 0; x < side; x++) {
            int sy = y, sx = x;   /* undo the turns, one at a time: (y, x) <- (x, last - y) */
            for (int t = 0; t < turns; t++) {
                int ty = sx, tx = last - sy;
                sy = ty, sx = tx;
            }
            if (mirror)
                sx = last - sx;
            memcpy(out + ((size_t)y * side + x) * channels,
                   in + ((size_t)sy * side + sx) * channels, (size_t)channels);
        }
}

void amil_augment_bag(const struct amil_augment *a, gsl_rng *rng, const uint8_t *patches,
                      int n, int side, int channels, uint8_t *out)
{
    size_t patch = (size_t)side * side * channels;
    if (a->flip)
        for (int i = 0; i < n; i++) {
            int mirror = (int)gsl_rng_uniform_int(rng, 2);
            int turns = (int)gsl_rng_uniform_int(rng, 4);
            place(patches + i * patch, out + i * patch, side, channels, mirror, turns);
        }
    else
        memcpy(out, patches, patch * n);
    if (a->he) {
        double scale[3], shift[3];
        for (int s = 0; s < 3; s++)
            scale[s] = 1 + a->sigma * (2 * gsl_rng_uniform(rng) - 1);
        for (int s = 0; s < 3; s++)
            shift[s] = a->bias * (2 * gsl_rng_uniform(rng) - 1);
        amil_he_jitter(out, patch * n / 3, scale, shift);
    }
}

int amil_augmenting(const struct amil_augment *a) { return a->he || a->flip; }

const uint8_t *amil_augment_patches(const struct amil_augment *a, gsl_rng *rng,
                                    const struct amil_tensor *patches, uint8_t **buffer)
{
    if (!amil_augmenting(a))
        return patches->data;
    *buffer = amil_xrealloc(*buffer, patches->nbytes);
    amil_augment_bag(a, rng, patches->data, (int)patches->shape[0], (int)patches->shape[1],
                     (int)patches->shape[3], *buffer);
    return *buffer;
}

void amil_augment_describe(const struct amil_augment *a, struct amil_record *r)
{
    if (!amil_augmenting(a))
        return;
    amil_record_set_meta(r, "augment", a->he && a->flip ? "he,flip" : a->he ? "he" : "flip");
    if (a->he) {
        amil_record_set_metaf(r, "he_sigma", "%g", a->sigma);
        amil_record_set_metaf(r, "he_bias", "%g", a->bias);
    }
}
