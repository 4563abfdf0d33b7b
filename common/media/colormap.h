/* colormap.h: colour maps for heatmaps (jet, viridis, gray). */
#ifndef AMIL_COLORMAP_H
#define AMIL_COLORMAP_H

/* The 256-entry RGB table of a map by name, or NULL if there is none. */
const unsigned char (*amil_colormap(const char *name))[3];
/* The colour of v in [0, 1] (clipped): entry floor(256 v), at most 255. */
const unsigned char *amil_colormap_lookup(const unsigned char (*map)[3], double v);/* out (3) = (1 - alpha) · px + alpha · colour, rounded: a colour laid over
 * an RGB pixel (out may be px). */
void amil_blend(unsigned char *out, const unsigned char *px, const unsigned char *colour,
                double alpha);

#endif
