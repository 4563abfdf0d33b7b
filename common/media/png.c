/* png.c: a fast path for the PNGs datasets are made of (8-bit, not
 * interlaced: gray, RGB, palette, with or without alpha), with libdeflate
 * for the inflate.  stb_image decodes a 700×460 BreakHis PNG in 14 ms and
 * libpng in 11 ms; this does it in about a third of that, which is what lets
 * bagify keep up with a dataset (bench/bagify.sh).  Other PNGs (16-bit,
 * 1/2/4-bit, interlaced) go to stb_image.  CRCs are not checked, as
 * stb_image does not check them either.  Writing is libdeflate's too:
 * stb_image_write's own deflate took half of stainnorm's time. */
#include <stdlib.h>
#include <string.h>

#include <libdeflate.h>

#include "base/base.h"
#include "media/pixels.h"
#include "media/png.h"

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Undoes the five PNG filters row by row, in place: raw holds height rows
 * of a filter byte and rowbytes bytes; bpp is bytes per pixel.  The first
 * row reads a zero row above it; the first pixel, zeros to its left.  The
 * Paeth predictor is written without branches (choices become cmov), since
 * on photographs its three-way choice is a coin toss for the branch
 * predictor and most rows of a BreakHis PNG use it. */
/* The Paeth predictor from the second pixel on.  The left and upper-left
 * bytes of each channel stay in registers (a[], c[]): reading them back from
 * the row just stored would put a store-to-load forward on the critical
 * path of every byte. */
static inline __attribute__((always_inline)) void
paeth(unsigned char *row, const unsigned char *prior, size_t rowbytes, size_t bpp)
{
    int a[4], c[4];
    for (size_t k = 0; k < bpp; k++)
        a[k] = row[k], c[k] = prior[k];
    for (size_t i = bpp; i + bpp <= rowbytes; i += bpp) {
#pragma GCC unroll 4
        for (size_t k = 0; k < bpp; k++) {
            int b = prior[i + k];
            int pa = abs(b - c[k]), pb = abs(a[k] - c[k]), pc = abs(a[k] + b - 2 * c[k]);
            int min_bc = pc < pb ? pc : pb, pick_bc = pc < pb ? c[k] : b;
            a[k] = (row[i + k] + (pa <= min_bc ? a[k] : pick_bc)) & 255;
            row[i + k] = (unsigned char)a[k];
            c[k] = b;
        }
    }
}

static int unfilter(unsigned char *raw, size_t height, size_t rowbytes, size_t bpp)
{
    unsigned char *zeros = calloc(rowbytes ? rowbytes : 1, 1);
    if (!zeros)
        return amil_fail("out of memory");
    const unsigned char *prior = zeros;
    for (size_t y = 0; y < height; y++) {
        unsigned char *row = raw + y * (rowbytes + 1) + 1;
        size_t i;
        switch (row[-1]) {
        case 0:
            break;
        case 1:                                   /* Sub */
            for (i = bpp; i < rowbytes; i++)
                row[i] += row[i - bpp];
            break;
        case 2:                                   /* Up */
            for (i = 0; i < rowbytes; i++)
                row[i] += prior[i];
            break;
        case 3:                                   /* Average */
            for (i = 0; i < bpp && i < rowbytes; i++)
                row[i] += prior[i] >> 1;
            for (; i < rowbytes; i++)
                row[i] += (unsigned char)((row[i - bpp] + prior[i]) >> 1);
            break;
        case 4:                                   /* Paeth; at x = 0 it is Up */
            for (i = 0; i < bpp && i < rowbytes; i++)
                row[i] += prior[i];
            switch (bpp) {   /* constants, so the channel loop unrolls */
            case 1: paeth(row, prior, rowbytes, 1); break;
            case 2: paeth(row, prior, rowbytes, 2); break;
            case 3: paeth(row, prior, rowbytes, 3); break;
            default: paeth(row, prior, rowbytes, 4); break;
            }
            break;
        default:
            free(zeros);
            return amil_fail("corrupt PNG: filter type %d", row[-1]);
        }
        prior = row;
    }
    free(zeros);
    return 0;
}

/* What the chunks say: IHDR's fields, the palette, and the compressed
 * data's length. */
struct png_header {
    uint32_t width, height;
    int color_type, depth, interlace;
    unsigned char palette[256][3];
    size_t palette_size, idat_len;
};

/* Checks every chunk's bounds up to IEND, reads IHDR and PLTE and adds up
 * the IDAT lengths.  Returns 0 (*end: the bytes through IEND), or -1 with
 * a message. */
static int read_chunks(const unsigned char *data, size_t len, long max_pixels,
                       struct png_header *hd, size_t *end)
{
    size_t pos = 8;
    hd->color_type = -1;
    for (int ended = 0; !ended;) {
        if (len - pos < 12)
            return amil_fail("truncated PNG");
        uint32_t n = be32(data + pos);
        const unsigned char *type = data + pos + 4, *body = data + pos + 8;
        if (n > len - pos - 12)
            return amil_fail("truncated PNG");
        if (pos == 8 && (memcmp(type, "IHDR", 4) != 0 || n != 13))
            return amil_fail("corrupt PNG: no IHDR");
        if (memcmp(type, "IHDR", 4) == 0) {
            if (pos != 8)
                return amil_fail("corrupt PNG: a second IHDR");
            if (body[10] != 0 || body[11] != 0)   /* compression, filter method */
                return amil_fail("corrupt PNG: unknown compression or filter method");
            hd->width = be32(body), hd->height = be32(body + 4);
            hd->depth = body[8], hd->color_type = body[9], hd->interlace = body[12];
            if (hd->width > INT32_MAX || hd->height > INT32_MAX ||
                amil_image_check_size(hd->width, hd->height, max_pixels) < 0)
                return -1;
            int t = hd->color_type, d = hd->depth;
            if (t != 0 && t != 2 && t != 3 && t != 4 && t != 6)
                return amil_fail("corrupt PNG: colour type %d", t);
            if (d != 1 && d != 2 && d != 4 && d != 8 && d != 16)
                return amil_fail("corrupt PNG: bit depth %d", d);
        } else if (memcmp(type, "PLTE", 4) == 0) {
            if (n % 3 || n > 768)
                return amil_fail("corrupt PNG: bad palette");
            hd->palette_size = n / 3;
            memcpy(hd->palette, body, n);
        } else if (memcmp(type, "IDAT", 4) == 0) {
            hd->idat_len += n;
        } else if (memcmp(type, "IEND", 4) == 0) {
            ended = 1;
        }
        pos += 12 + (size_t)n;
    }
    *end = pos;
    return 0;
}

/* raw (height, 1 + rowbytes): the IDAT chunks (checked by read_chunks)
 * gathered, inflated and unfiltered.  Returns 0, or -1 with a message. */
static int inflate_rows(const unsigned char *data, const struct png_header *hd,
                        unsigned char *raw, size_t raw_len, size_t rowbytes, size_t bpp)
{
    unsigned char *idat = malloc(hd->idat_len ? hd->idat_len : 1);
    if (!idat)
        return amil_fail("out of memory");
    size_t have = 0;
    for (size_t pos = 8;;) {
        uint32_t n = be32(data + pos);
        if (memcmp(data + pos + 4, "IDAT", 4) == 0) {
            memcpy(idat + have, data + pos + 8, n);
            have += n;
        } else if (memcmp(data + pos + 4, "IEND", 4) == 0) {
            break;
        }
        pos += 12 + (size_t)n;
    }
    struct libdeflate_decompressor *inflater = libdeflate_alloc_decompressor();
    enum libdeflate_result result = inflater
        ? libdeflate_zlib_decompress(inflater, idat, hd->idat_len, raw, raw_len, NULL)
        : LIBDEFLATE_INSUFFICIENT_SPACE;
    libdeflate_free_decompressor(inflater);
    free(idat);
    if (result != LIBDEFLATE_SUCCESS)
        return amil_fail(result == LIBDEFLATE_SHORT_OUTPUT ? "truncated PNG data"
                                                           : "corrupt PNG data");
    return unfilter(raw, hd->height, rowbytes, bpp);
}

/* out (height, width, out_comp): raw's rows without their filter bytes; a
 * palette becomes RGB.  Returns 0, or -1 with a message. */
static int pack_rows(const struct png_header *hd, const unsigned char *raw, size_t rowbytes,
                     unsigned char *out, int out_comp)
{
    size_t w = hd->width;
    for (size_t y = 0; y < hd->height; y++) {
        const unsigned char *row = raw + y * (rowbytes + 1) + 1;
        unsigned char *o = out + y * w * out_comp;
        if (hd->color_type != 3) {
            memcpy(o, row, rowbytes);
            continue;
        }
        for (size_t x = 0; x < w; x++, o += 3) {
            if (row[x] >= hd->palette_size)
                return amil_fail("corrupt PNG: palette index out of range");
            memcpy(o, hd->palette[row[x]], 3);
        }
    }
    return 0;
}

/* deflate's largest expansion: a 258-byte match in about two bits, so
 * 1032 bytes out per byte in (zlib's technical notes), plus room for the
 * stream's header and a final block */
#define INFLATE_RATIO 1032
#define INFLATE_SLACK 1024

int amil_png_decode(const unsigned char *data, size_t len, long max_pixels,
                    unsigned char **pixels, int *width, int *height, int *comp, size_t *used)
{
    static const unsigned char signature[8] = {137, 'P', 'N', 'G', '\r', '\n', 26, '\n'};
    if (len < 8 || memcmp(data, signature, 8) != 0)
        return 1;
    struct png_header hd = {0};
    if (read_chunks(data, len, max_pixels, &hd, used) < 0)
        return -1;
    /* The rows' bytes (without filter bytes, fewer than interlacing has)
     * against what the compressed data can hold at most: a PNG of a few
     * bytes claiming a gigapixel is refused before anything is allocated. */
    uint32_t w = hd.width, h = hd.height;
    int t = hd.color_type, channels = t == 2 ? 3 : t == 4 ? 2 : t == 6 ? 4 : 1;
    double least = (double)h * (((double)w * hd.depth * channels + 7) / 8);
    if (least > (double)hd.idat_len * INFLATE_RATIO + INFLATE_SLACK)
        return amil_fail("truncated PNG: %zu bytes of compressed data cannot hold %u×%u "
                         "pixels", hd.idat_len, (unsigned)w, (unsigned)h);
    if (hd.depth != 8 || hd.interlace != 0)   /* stb_image's, from here */
        return 1;
    if (t == 3 && hd.palette_size == 0)
        return amil_fail("corrupt PNG: no palette");
    size_t bpp = (size_t)channels;   /* bytes per pixel at depth 8 */
    size_t rowbytes = (size_t)w * bpp, raw_len = (size_t)h * (rowbytes + 1);
    unsigned char *raw = malloc(raw_len);
    if (!raw)
        return amil_fail("out of memory");
    if (inflate_rows(data, &hd, raw, raw_len, rowbytes, bpp) < 0) {
        free(raw);
        return -1;
    }
    int out_comp = t == 3 ? 3 : (int)bpp;
    unsigned char *out = malloc((size_t)w * h * out_comp);
    if (!out || pack_rows(&hd, raw, rowbytes, out, out_comp) < 0) {
        free(raw);
        free(out);
        return out ? -1 : amil_fail("out of memory");
    }
    free(raw);
    *pixels = out;
    *width = (int)w, *height = (int)h, *comp = out_comp;
    return 0;
}

/* ---- encoding ------------------------------------------------------------ */

static void put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24), p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8), p[3] = (unsigned char)v;
}

/* A chunk at out: length, type, data (already at out + 8), CRC. */
static size_t chunk(unsigned char *out, const char *type, size_t len)
{
    put_be32(out, (uint32_t)len);
    memcpy(out + 4, type, 4);
    put_be32(out + 8 + len, libdeflate_crc32(0, out + 4, len + 4));
    return len + 12;
}

/* Row y filtered by filter f (0 none, 1 sub, 2 up, 3 average, 4 Paeth)
 * into out (rowbytes), bpp bytes a pixel; prior is row y - 1 or NULL. */
static void filter_row(unsigned char *out, int f, const unsigned char *row,
                       const unsigned char *prior, size_t rowbytes, size_t bpp)
{
    for (size_t i = 0; i < rowbytes; i++) {
        int a = i >= bpp ? row[i - bpp] : 0, b = prior ? prior[i] : 0;
        int c = i >= bpp && prior ? prior[i - bpp] : 0, predicted = 0;
        if (f == 1)
            predicted = a;
        else if (f == 2)
            predicted = b;
        else if (f == 3)
            predicted = (a + b) / 2;
        else if (f == 4) {
            int p = a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
            predicted = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
        }
        out[i] = (unsigned char)(row[i] - predicted);
    }
}

int amil_png_encode(const unsigned char *pixels, int w, int h, int comp, unsigned char **png,
                    size_t *len)
{
    size_t bpp = (size_t)comp, rowbytes = (size_t)w * bpp;
    size_t raw_len = (rowbytes + 1) * (size_t)h;
    unsigned char *raw = malloc(raw_len), *trial = malloc(rowbytes);
    struct libdeflate_compressor *deflater = libdeflate_alloc_compressor(6);
    size_t bound = deflater ? libdeflate_zlib_compress_bound(deflater, raw_len) : 0;
    unsigned char *out = bound ? malloc(8 + 25 + 12 + bound + 12) : NULL;
    if (!raw || !trial || !out) {
        free(raw), free(trial), free(out);
        libdeflate_free_compressor(deflater);
        return amil_fail("out of memory for a PNG of %d×%d", w, h);
    }
    /* each row with the filter whose bytes, as signed, sum least in
     * absolute value */
    for (int y = 0; y < h; y++) {
        const unsigned char *row = pixels + (size_t)y * rowbytes;
        const unsigned char *prior = y ? row - rowbytes : NULL;
        unsigned char *to = raw + (size_t)y * (rowbytes + 1);
        long best = -1;
        for (int f = 0; f < 5; f++) {
            filter_row(trial, f, row, prior, rowbytes, bpp);
            long sum = 0;
            for (size_t i = 0; i < rowbytes; i++)
                sum += abs((signed char)trial[i]);
            if (best < 0 || sum < best) {
                best = sum;
                to[0] = (unsigned char)f;
                memcpy(to + 1, trial, rowbytes);
            }
        }
    }
    static const unsigned char signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    static const unsigned char types[5] = {0, 0, 4, 2, 6};   /* by channels */
    size_t at = 8;
    memcpy(out, signature, 8);
    unsigned char *ihdr = out + at + 8;
    put_be32(ihdr, (uint32_t)w), put_be32(ihdr + 4, (uint32_t)h);
    ihdr[8] = 8, ihdr[9] = types[comp], ihdr[10] = ihdr[11] = ihdr[12] = 0;
    at += chunk(out + at, "IHDR", 13);
    size_t packed = libdeflate_zlib_compress(deflater, raw, raw_len, out + at + 8, bound);
    at += chunk(out + at, "IDAT", packed);
    at += chunk(out + at, "IEND", 0);
    free(raw), free(trial);
    libdeflate_free_compressor(deflater);
    if (!packed) {
        free(out);
        return amil_fail("cannot deflate a PNG of %d×%d", w, h);
    }
    *png = out, *len = at;
    return 0;
}
