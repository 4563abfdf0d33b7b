/* pixels.h: the limit every decoder holds an image to, checked before it
 * allocates anything. */
#ifndef AMIL_PIXELS_H
#define AMIL_PIXELS_H

/* The default limit on width × height: 2^28 pixels (a 16384 × 16384 image),
 * 768 MiB as RGB.  Larger images are refused before they are decoded. */
#define AMIL_MAX_PIXELS (1L << 28)

/* Checks a size against a pixel limit: 0, or -1 with a message. */
int amil_image_check_size(long width, long height, long max_pixels);

#endif
