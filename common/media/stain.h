/* stain.h: stain normalization of H&E images, to make one lab's or
 * scanner's colours another's.
 *
 * Macenko et al. 2009 ("A method for normalizing histology slides for
 * quantitative analysis", ISBI): each pixel's optical density
 * OD = -ln((I + 1) / Io) per channel (Io the light through glass; + 1 keeps
 * 0 finite, as the authors' reference code has it) is a mix of two stains'
 * OD vectors, hematoxylin's and eosin's.  The stains are found in the
 * plane of the two largest eigenvectors of the covariance of the ODs of
 * at least beta in every channel, as the directions at the alpha-th and
 * (100 - alpha)-th percentiles of the pixels' angles in it; a pixel's
 * concentrations are the least-squares mix of the two, and each stain's
 * 99th percentile is its maximum.  Normalizing gives each pixel the
 * reference's stain vectors and its concentrations scaled by the
 * reference's maxima over its own.
 *
 * Reinhard et al. 2001 ("Color transfer between images", IEEE CG&A), in CIE
 * L*a*b* as it is used on histology: each channel's mean and standard
 * deviation made the reference's.  sRGB (IEC 61966-2-1, 8 bits) is
 * linearized, taken to XYZ under D65 and to L*a*b* with D65's white
 * (0.95047, 1, 1.08883); and back. */
#ifndef AMIL_STAIN_H
#define AMIL_STAIN_H

#include <stddef.h>
#include <stdint.h>

#include "base/base.h"
#include "record/record.h"

enum amil_stain_method { AMIL_STAIN_MACENKO, AMIL_STAIN_REINHARD };

/* Macenko's constants; Reinhard has none. */
struct amil_stain_params {
    double io;              /* the light through glass, 240 */
    double alpha;           /* percentile of the extreme angles, 1 */
    double beta;            /* least OD of a pixel the plane is fitted on, 0.15 */
};
#define AMIL_STAIN_PARAMS {240, 1, 0.15}

/* Fewest pixels a fit takes: the percentiles need them. */
#define AMIL_STAIN_MIN_PIXELS 100

/* An image's stains, as fitted. */
struct amil_stains {
    enum amil_stain_method method;
    double he[2][3];        /* Macenko: unit OD vectors (R, G, B) of H, then E */
    double max_c[2];        /* Macenko: the 99th percentile of each concentration */
    double mean[3], sd[3];  /* Reinhard: per L*, a*, b* channel */
};

/* Fits the stains of n RGB pixels (n × 3 bytes), those where mask is
 * nonzero when mask is not NULL.  0, or -1 with a message: too few pixels
 * (fewer than AMIL_STAIN_MIN_PIXELS, or for Macenko fewer of OD beta and
 * more), or a degenerate fit (one colour, or the ODs on a line: not an H&E
 * image). */
int amil_stain_fit(enum amil_stain_method method, const struct amil_stain_params *p,
                   const uint8_t *rgb, size_t n, const uint8_t *mask, struct amil_stains *s);

/* Normalizes n RGB pixels in place from their own stains `own` (fitted on
 * them) to the reference's, each channel rounded to 0..255. */
void amil_stain_normalize(const struct amil_stain_params *p, const struct amil_stains *own,
                          const struct amil_stains *ref, uint8_t *rgb, size_t n);

/* The stains as a record of kind `stains` (method, io, alpha, beta in the
 * metadata; Macenko: tensors stains F32 [2, 3] and max_concentrations F32
 * [2]; Reinhard: lab_mean and lab_sd F32 [3]) and back; reading checks
 * every value.  0, or -1 with a message. */
void amil_stains_to_record(const struct amil_stains *s, const struct amil_stain_params *p,
                           struct amil_record *r);
int amil_stains_from_record(const struct amil_record *r, struct amil_stains *s,
                            struct amil_stain_params *p);

/* sRGB bytes to L*a*b* and back (rounded, clipped), one pixel. */
void amil_rgb_to_lab(const uint8_t rgb[3], double lab[3]);
void amil_lab_to_rgb(const double lab[3], uint8_t rgb[3]);

/* inv = m⁻¹, a 3×3 matrix inverted by cofactors. */
void amil_inverse3(const double (*m)[3], double (*inv)[3]);

#endif
