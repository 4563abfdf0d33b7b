/* png.h: the fast PNG decoder and encoder (png.c), private to image.c,
 * which tries the decoder first and hands stb_image what it leaves. */
#ifndef AMIL_PNG_H
#define AMIL_PNG_H

#include <stddef.h>

/* 0 decoded into *pixels with *comp channels (1 gray, 2 gray+alpha, 3 RGB,
 * 4 RGBA), 1 not a PNG it handles (leave it to stb_image; *used is set if
 * it is a PNG), -1 a broken PNG, with a message. */
int amil_png_decode(const unsigned char *data, size_t len, long max_pixels,
                    unsigned char **pixels, int *width, int *height, int *comp, size_t *used);

/* The PNG of w × h pixels of comp channels (1 to 4), 8-bit, each row's
 * filter the one of least absolute sum (libpng's heuristic), deflated by
 * libdeflate: the bytes in *png (the caller's to free), their count in
 * *len.  0, or -1 with a message. */
int amil_png_encode(const unsigned char *pixels, int w, int h, int comp, unsigned char **png,
                    size_t *len);

#endif
