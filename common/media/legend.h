/* legend.h: the legend of a heat map (stitch, gradcam): the colour map as
 * a bar in a white box, the values its two ends stand for under them,
 * sized with the picture and put in the corner where it hides least. */
#ifndef AMIL_LEGEND_H
#define AMIL_LEGEND_H

#include "media/image.h"

/* The fewest significant digits, at least `least`, with which %.*g prints
 * lo and hi differently (0.0204056 and 0.0204153: 4, "0.02041" and
 * "0.02042"); `least` when no count does (lo equal to hi). */
int amil_legend_digits(double lo, double hi, int least);

/* Draws the legend of map (colour 0 at the bar's left end, 1 at its right)
 * for values lo..hi into img (RGB, width W, height H).
 *
 * Its font pixel is s = min(W, H) / 200 picture pixels, 1 to 16, so the
 * box is 16 s high (a 700 × 460 picture: 32 pixels; 2220 × 2967: 176) and
 * the bar a quarter of W long, or as long as its two labels need, lo and
 * hi at amil_legend_digits(lo, hi, 2).  Where that box does not fit, or
 * would take more than a tenth of the picture, s is made smaller; a
 * picture too small for s = 1 (an MNIST bag's 28-pixel strip) gets none,
 * and 0 is returned.
 *
 * The corner, 2 s in from the edges: the one whose box covers the fewest
 * pixels of the keep squares (n_keep × 3: top, left, side of each, what
 * the picture must show, such as the outlined patches), then the fewest
 * pixels that covers (H × W, or NULL) counts a patch over; ties in the
 * order bottom right, bottom left, top right, top left.  Returns 1. */
int amil_legend_draw(struct amil_image *img, const unsigned char (*map)[3], double lo,
                     double hi, const unsigned *covers, const long *keep, long n_keep);

#endif
