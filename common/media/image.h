/* image.h: images in and out.  PNG, JPEG, BMP, TGA and GIF come in through
 * stb_image, PBM/PGM/PPM/PAM through libnetpbm (so `tifftopnm x.tif | bagify
 * -` works); PNG goes out through png.c (libdeflate), PAM through
 * libnetpbm.
 * Pixels are 8-bit, row-major, channels interleaved (HWC). */
#ifndef AMIL_IMAGE_H
#define AMIL_IMAGE_H

#include "media/pixels.h"

#include <stddef.h>
#include <stdio.h>


struct amil_image {
    int width, height, channels;   /* channels: 1 (gray) or 3 (RGB) */
    unsigned char *pixels;         /* [height][width][channels] */
};

/* Gray level of an RGB pixel as PIL's convert("L") computes it. */
static inline unsigned char amil_luma(const unsigned char *rgb)
{
    return (unsigned char)((19595u * rgb[0] + 38470u * rgb[1] + 7471u * rgb[2] +
                            0x8000u) >> 16);
}

/* Decodes the first image held in memory into 1 or 3 channels.  Color to
 * gray is PIL's convert("L"): (19595 R + 38470 G + 7471 B + 2^15) >> 16;
 * gray to color repeats the value; alpha is dropped; netpbm maxvals other
 * than 255 are scaled to 0..255.  *used: the image's bytes (a PNG to its
 * IEND, a netpbm image to its last row; other formats the whole buffer),
 * where a stream of several images has its next.  A header that claims
 * more pixels than the bytes can hold (a PNG's compressed data at
 * deflate's largest ratio, uncompressed BMP, TGA and netpbm rasters
 * exactly) is refused before anything is allocated.  Returns 0, or -1 with
 * a message (not an image, truncated, too large, empty). */
int amil_image_decode(const unsigned char *data, size_t len, int channels,
                      long max_pixels, struct amil_image *img, size_t *used);
/* The image at *at of a buffer that may hold several (netpbm streams,
 * concatenated PNGs): 1 and *at moved past it, 0 when only padding is left
 * (never for *at = 0), -1 with a message. */
int amil_image_next(const unsigned char *data, size_t len, size_t *at, int channels,
                    long max_pixels, struct amil_image *img);
/* Reads a whole file ("-" is stdin) into memory: returns the buffer and its
 * length, or NULL with a message. */
unsigned char *amil_slurp(const char *path, size_t *len);
/* Image number index (0: the first) of a file ("-" is stdin). */
int amil_image_load(const char *path, long index, int channels, long max_pixels,
                    struct amil_image *img);
void amil_image_free(struct amil_image *img);


int amil_image_write_png(FILE *f, const struct amil_image *img);
int amil_image_write_pam(FILE *f, const struct amil_image *img);

/* The formats stitch and gradcam draw pictures in, as -f names them (in
 * this order); without -f, the output's name says: ".pam" is PAM,
 * anything else (or standard output) PNG. */
enum amil_picture { AMIL_PICTURE_PNG, AMIL_PICTURE_PAM };
enum amil_picture amil_picture_of_name(const char *path);
/* img to f in that format: 0, or -1 with a message. */
int amil_picture_write(FILE *f, const struct amil_image *img, enum amil_picture format);
/* img to the file path, whole or not at all (amil_output_open): 0, or -1
 * with a message. */
int amil_picture_save(const char *path, const struct amil_image *img, enum amil_picture format);
/* A mask (width × height, 0 or not) as a gray PNG at path, what is not 0
 * white, the rest black; whole or not at all.  0, or -1 with a message. */
int amil_mask_save(const char *path, const unsigned char *mask, int width, int height);

#endif
