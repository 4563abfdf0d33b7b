/* slide.h: whole-slide images (Aperio SVS, Hamamatsu NDPI, MIRAX, tiled
 * TIFF pyramids...) through OpenSlide, read region by region at any
 * resolution, so that memory is set by the region, not by the slide.
 *
 * Coordinates are level-0 pixels (the slide's full resolution), as
 * OpenSlide's, CLAM's and QuPath's are.  A *downsample* d is a resolution:
 * one pixel at d covers d × d level-0 pixels.  Pixels come out RGB; where
 * the scanner recorded nothing (OpenSlide's transparent pixels) they are
 * white, as glass is. */
#ifndef AMIL_SLIDE_H
#define AMIL_SLIDE_H

#include <stdint.h>

#include "base/base.h"
#include "media/image.h"
#include "record/record.h"

#define AMIL_SLIDE_LEVELS 32

struct amil_slide {
    void *osr;                               /* openslide_t */
    const char *vendor;                      /* "aperio", "generic-tiff", ... */
    int levels;
    int64_t width[AMIL_SLIDE_LEVELS], height[AMIL_SLIDE_LEVELS];
    double downsample[AMIL_SLIDE_LEVELS];    /* level 0: 1 */
    double mpp;         /* level 0's micrometres per pixel (openslide.mpp-x), 0: none */
    double objective;   /* the scan's objective power (openslide.objective-power), 0: none */
};

/* Opens path as a slide: 1, 0 when OpenSlide does not recognise the file
 * (not a slide: read it as an image), -1 with a message (a slide OpenSlide
 * cannot read, or one with sizes out of range). */
int amil_slide_open(struct amil_slide *s, const char *path);
void amil_slide_close(struct amil_slide *s);

/* How the user asks for a resolution (bagify's --level, --mpp,
 * --magnification; none: level 0). */
enum amil_slide_unit { AMIL_SLIDE_LEVEL0, AMIL_SLIDE_BY_LEVEL, AMIL_SLIDE_BY_MPP,
                       AMIL_SLIDE_BY_MAGNIFICATION };
/* The downsample asked for, *level the level it is read from (the
 * coarsest at least as fine); -1 with a message naming the missing
 * property (a slide without mpp or objective power), or a level or a
 * resolution the slide does not have (finer than level 0). */
int amil_slide_resolution(const struct amil_slide *s, enum amil_slide_unit unit,
                          double value, double *downsample, int *level);

/* rgb (h, w, 3) = the slide at downsample d (at least 1) from its pixel
 * (x, y) at d on (level-0 (x·d, y·d)): read from the coarsest level at least as
 * fine as d and, where d is coarser than that level, averaged over the
 * area each output pixel covers (a box filter, exact for whole factors:
 * the rounded mean of f × f pixels).  Reads in strips, so that memory
 * stays near 16 M source pixels whatever w × h.  Pixels past the slide's
 * edge are white.  0, or -1 with a message. */
int amil_slide_read(const struct amil_slide *s, double d, int64_t x, int64_t y, int w, int h,
                    uint8_t *rgb);

/* The same of an image (1 or 3 channels) held in memory, as if it were a
 * slide of one level: rgb (h, w, 3) at downsample d (at least 1) from its
 * pixel (x, y) at d on. */
int amil_image_resample(const struct amil_image *img, double d, int64_t x, int64_t y, int w,
                        int h, uint8_t *rgb);

/* A record's `downsample` (bagify's, of a slide read at a lower
 * resolution): level-0 pixels per patch pixel into *d, 1 when it has none.
 * 0, or -1 with a message when it is not a number from 1 to 1e6. */
int amil_record_downsample(const struct amil_record *r, double *d);

/* The metadata of patches read from level at downsample d:
 * slide_vendor, level, downsample, and when the slide says, mpp and
 * magnification at d. */
void amil_slide_describe(const struct amil_slide *s, int level, double d,
                         struct amil_record *r);

/* The tissue mask (tissue.h) of the slide at downsample m, (*width,
 * *height) = its size (the slide's level 0 over m, rounded up), read in
 * strips from the coarsest level that serves (so that glass is never read
 * at full resolution), cleaned of pieces under min_speck and holes under
 * max_hole mask pixels; fixed and *threshold as amil_tissue_mask's.
 * Returns the mask (the caller's to free), or NULL with a message. */
uint8_t *amil_slide_mask(const struct amil_slide *s, double m, long fixed, long min_speck,
                         long max_hole, int *width, int *height, int *threshold);

#endif
