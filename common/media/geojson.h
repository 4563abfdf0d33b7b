/* geojson.h: a bag's patches as a GeoJSON FeatureCollection (RFC 7946)
 * that QuPath imports (File > Import objects): one square detection per
 * patch, in level-0 pixels, with its attention and the bag's prediction as
 * measurements. */
#ifndef AMIL_GEOJSON_H
#define AMIL_GEOJSON_H

#include <stdint.h>
#include <stdio.h>

struct amil_geojson {
    long n;                  /* patches */
    const int32_t *coords;   /* [n][2]: y, x of each patch's top left, level 0 */
    double side;             /* a patch's side in level-0 pixels */
    int branches;            /* K */
    const float *attention;  /* [K][n] */
    int classes;             /* 0: no prediction */
    const float *prob;       /* [classes] */
    long predicted;
    const char *source;      /* the slide or image, or NULL */
};

/* The features of the patches i with keep[i] (all with keep NULL), in
 * their order, to f.  0, or -1 with a message (a write error). */
int amil_geojson_write(FILE *f, const struct amil_geojson *g, const unsigned char *keep);

#endif
