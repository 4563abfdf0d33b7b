/* png.h: the fast PNG decoder (png.c), private to image.c, which tries it
 * first and hands stb_image what it leaves. */
#ifndef AMIL_PNG_H
#define AMIL_PNG_H

#include <stddef.h>

/* 0 decoded into *pixels with *comp channels (1 gray, 2 gray+alpha, 3 RGB,
 * 4 RGBA), 1 not a PNG it handles (leave it to stb_image; *used is set if
 * it is a PNG), -1 a broken PNG, with a message. */
int amil_png_decode(const unsigned char *data, size_t len, long max_pixels,
                    unsigned char **pixels, int *width, int *height, int *comp, size_t *used);

#endif
