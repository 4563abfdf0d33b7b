/* tissue.h: which pixels of a histology image are tissue, the rule of
 * bagify's background filter.
 *
 * Stained tissue is coloured; glass and white fat are white or gray.  A
 * pixel is tissue when its HSV saturation (0..255) is above a threshold:
 * Otsu's over the image's saturations, capped at 26 (0.1 of full).  Otsu
 * alone suits a slide that is mostly glass; on a field that is mostly
 * tissue it splits pale pink stroma from purple nuclei instead (threshold
 * 44 on a BreakHis image, dropping dense tissue), and the cap keeps it on
 * glass.  An image with no colour at all is judged on darkness (255 minus
 * its gray level) instead. */
#ifndef AMIL_TISSUE_H
#define AMIL_TISSUE_H

#include <stddef.h>
#include <stdint.h>

#include "media/image.h"

#define AMIL_MAX_GLASS_SATURATION 26

/* A picture's scores, pixel by pixel, and their histograms. */
struct amil_tissue_scores {
    uint8_t *saturation, *darkness;   /* [pixels] */
    size_t pixels;
    size_t histogram[2][256];         /* of saturation, of darkness */
};

/* Room for n pixels' scores, histograms empty. */
void amil_tissue_scores_init(struct amil_tissue_scores *t, size_t n);
void amil_tissue_scores_free(struct amil_tissue_scores *t);
/* The scores of n RGB pixels, from pixel `at` on. */
void amil_tissue_score(struct amil_tissue_scores *t, size_t at, const uint8_t *rgb, size_t n);
/* The mask (1 tissue, 0 background; [pixels], the caller's to free) by the
 * rule above, or with the fixed saturation threshold when fixed >= 0;
 * *used: the threshold applied. */
uint8_t *amil_tissue_mask(const struct amil_tissue_scores *t, long fixed, int *used);
/* The mask of a whole image. */
uint8_t *amil_tissue_mask_of(const struct amil_image *rgb, long fixed, int *used);

/* Cleans a mask (width × height) as a pathologist's eye would: pieces of
 * tissue (4-connected) under min_speck pixels become background, and holes
 * (background not connected to the border) under max_hole pixels become
 * tissue.  0 turns either off. */
void amil_tissue_clean(uint8_t *mask, int width, int height, long min_speck, long max_hole);

#endif
