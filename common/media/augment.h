/* augment.h: training-time augmentation of a bag's patches, new each bag
 * and each epoch.
 *
 * he: the H&E jitter of Tellez et al. (2018; "HED-light" in Tellez et al.
 * 2019): each pixel's optical density, OD = -ln(max(I / 255, 1e-6)) per
 * channel, deconvolved into hematoxylin, eosin and DAB concentrations by
 * Ruifrok and Johnston's matrix (scikit-image's rgb_from_hed, inverted),
 * each stain's concentration c made c · (1 + U(-sigma, sigma)) +
 * U(-bias, bias), then mixed back, exp(-OD) clipped to 1 and rounded to a
 * byte.  One scale and one shift per stain for the whole bag.  This is
 * scikit-image's rgb2hed and hed2rgb but for two things: the
 * concentrations are in OD (rgb2hed's times ln(10^6), 13.8), so a shift of
 * 0.05 dims a stain's light by about 5%; and a negative concentration is
 * kept, not set to 0 as rgb2hed does, so that with no jitter a pixel comes
 * back as it was (rgb2hed's clamp moves a BreakHis patch's green by 18
 * grey levels on average).

 * flip: each patch mirrored left to right with probability 1/2, then
 * turned by a quarter turn 0 to 3 times (counterclockwise), the eight
 * symmetries of the square equally likely.
 *
 * The draws come from the caller's generator, in this order: for flip
 * each patch's mirror and turns (gsl_rng_uniform_int), then for he the
 * three scales and the three shifts (gsl_rng_uniform), so a seeded
 * generator gives the same bag. */
#ifndef AMIL_AUGMENT_H
#define AMIL_AUGMENT_H

#include <stddef.h>
#include <stdint.h>

#include <gsl/gsl_rng.h>

#include "base/base.h"
#include "record/record.h"

struct amil_augment {
    int he, flip;           /* which: --augment he, flip, he,flip or none */
    double sigma, bias;     /* he's scale and shift ranges */
};
#define AMIL_AUGMENT_SIGMA 0.05
#define AMIL_AUGMENT_BIAS 0.05

/* Whether a augments anything. */
int amil_augmenting(const struct amil_augment *a);

/* Patches (n, P, P, C) augmented into out, the same shape; he needs
 * C = 3. */
void amil_augment_bag(const struct amil_augment *a, gsl_rng *rng, const uint8_t *patches,
                      int n, int side, int channels, uint8_t *out);

/* A bag's patches (U8 [N, P, P, C]) augmented into buffer (grown to fit,
 * the caller's to free), or the patches themselves when a augments
 * nothing. */
const uint8_t *amil_augment_patches(const struct amil_augment *a, gsl_rng *rng,
                                    const struct amil_tensor *patches, uint8_t **buffer);

/* What a augments, as model metadata (augment, he_sigma, he_bias), when
 * anything. */
void amil_augment_describe(const struct amil_augment *a, struct amil_record *r);

/* The jitter of n RGB pixels in place, each stain's concentration c made
 * c · scale + shift. */
void amil_he_jitter(uint8_t *rgb, size_t n, const double scale[3], const double shift[3]);

#endif
