/* image.c: decoding with stb_image and libnetpbm, encoding PNG and PAM.
 *
 * libnetpbm reports errors by printing and exiting unless given a jmp_buf;
 * we give it one and a message hook, so that a bad PNM is a failed call like
 * any other, not the end of the program. */
#include <ctype.h>
#include <errno.h>
#include <setjmp.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <pam.h>
#include <stb_image.h>

#include "base/base.h"
#include "base/output.h"
#include "media/image.h"
#include "media/png.h"
#include "record/stream.h"

/* libnetpbm's PAM_STRUCT_SIZE(tuple_type), written without the member
 * access through a null pointer that the macro uses. */
#define PAM_SIZE (offsetof(struct pam, tuple_type) + sizeof(((struct pam){0}).tuple_type))

void amil_image_free(struct amil_image *img)
{
    free(img->pixels);
    memset(img, 0, sizeof *img);
}

unsigned char *amil_slurp(const char *path, size_t *len)
{
    int is_stdin = strcmp(path, "-") == 0;
    FILE *f = is_stdin ? stdin : fopen(path, "rb");
    if (!f) {
        amil_fail("%s", strerror(errno));
        return NULL;
    }
    struct amil_stream s;
    amil_stream_open(&s, f, path);
    unsigned char *buf = amil_stream_slurp(&s, len);
    if (!is_stdin)
        fclose(f);
    return buf;
}

/* Converts w×h pixels of `from` channels (1..4) to `to` channels (1 or 3). */
static void convert(const unsigned char *in, int from, unsigned char *out, int to,
                    size_t count)
{
    for (size_t i = 0; i < count; i++, in += from, out += to) {
        if (from <= 2) {                  /* gray, gray+alpha */
            for (int c = 0; c < to; c++)
                out[c] = in[0];
        } else if (to == 3) {             /* RGB, RGBA */
            out[0] = in[0], out[1] = in[1], out[2] = in[2];
        } else {
            out[0] = amil_luma(in);
        }
    }
}

static char netpbm_message[512];
static void keep_netpbm_message(const char *msg)
{
    snprintf(netpbm_message, sizeof netpbm_message, "%s", msg);
}

/* libnetpbm wants its program name once, and our hook for its messages. */
static void netpbm_init(void)
{
    static int initialized;
    if (!initialized) {
        pm_init("amil", 0);
        pm_setusererrormsgfn(keep_netpbm_message);
        initialized = 1;
    }
}

/* The variables that live across setjmp are volatile or static, as C11
 * 7.13.2.1 asks. */
/* The fewest bytes a netpbm raster of this header can take: raw formats
 * exactly their size, plain ones a digit per sample (PBM) or a digit and a
 * separator (PGM, PPM). */
static double netpbm_least_bytes(const struct pam *pam)
{
    double samples = (double)pam->width * pam->height * pam->depth;
    switch (pam->format) {
    case RPBM_FORMAT:
        return ((double)pam->width + 7) / 8 * pam->height;
    case PBM_FORMAT:
        return samples;
    case PGM_FORMAT:
    case PPM_FORMAT:
        return 2 * samples - 1;
    default:
        return samples * (pam->maxval > 255 ? 2 : 1);
    }
}

/* Whether a PAM (P7) header is one libnetpbm reads safely: after the
 * magic number's line, lines of at most PAM_LINE bytes, each blank, a
 * comment, or a label it knows and its value, up to ENDHDR.  libnetpbm
 * reads a header line into a 256-byte buffer and copies its value with
 * strncpy; fuzzing found AddressSanitizer reporting overlapping strncpy
 * ranges inside it on a header line of garbage, so such a header never
 * reaches it.  0, or -1 with a message. */
#define PAM_LINE 200
static int check_pam_header(const unsigned char *data, size_t len)
{
    static const char *const labels[] = {"WIDTH", "HEIGHT", "DEPTH", "MAXVAL", "TUPLTYPE"};
    const unsigned char *end = data + len, *p = memchr(data, '\n', len);
    for (int line = 2; p && p + 1 < end; line++) {
        const unsigned char *start = p + 1;
        p = memchr(start, '\n', (size_t)(end - start));
        size_t n = (size_t)((p ? p : end) - start);
        if (n > PAM_LINE || memchr(start, '\0', n))
            return amil_fail("not a valid netpbm image: PAM header line %d is not text of at "
                             "most %d bytes", line, PAM_LINE);
        size_t word = 0;
        while (word < n && !isspace(start[word]))
            word++;
        if (n == 0 || start[0] == '#' || word == 0)
            continue;   /* blank or a comment */
        if (word == 6 && memcmp(start, "ENDHDR", 6) == 0)
            return 0;
        int known = 0;
        for (size_t i = 0; i < sizeof labels / sizeof *labels; i++)
            known |= strlen(labels[i]) == word && memcmp(start, labels[i], word) == 0;
        if (!known)
            return amil_fail("not a valid netpbm image: PAM header line %d is not one of "
                             "WIDTH, HEIGHT, DEPTH, MAXVAL, TUPLTYPE or ENDHDR", line);
    }
    return amil_fail("not a valid netpbm image: PAM header without ENDHDR");
}

static int decode_netpbm(const unsigned char *data, size_t len, int channels,
                         long max_pixels, struct amil_image *img, size_t *used)
{
    if (len >= 2 && data[0] == 'P' && data[1] == '7' && check_pam_header(data, len) < 0)
        return -1;
    netpbm_init();
    FILE *volatile f = fmemopen((void *)data, len, "rb");
    if (!f)
        return amil_fail("fmemopen: %s", strerror(errno));
    tuple *volatile row = NULL;
    unsigned char *volatile raw = NULL;
    jmp_buf jump;
    pm_setjmpbuf(&jump);
    if (setjmp(jump) != 0) {
        pm_setjmpbuf(NULL);
        fclose(f);
        free(raw);
        if (row)
            pnm_freepamrow(row);
        return amil_fail("not a valid netpbm image: %s", netpbm_message);
    }
    struct pam pam;
    pnm_readpaminit(f, &pam, PAM_SIZE);
    if (amil_image_check_size(pam.width, pam.height, max_pixels) < 0 || pam.depth < 1) {
        pm_setjmpbuf(NULL);
        fclose(f);
        return pam.depth < 1 ? amil_fail("netpbm image has depth 0") : -1;
    }
    /* a header claiming more pixels than the file can hold is refused
     * before the raster is allocated */
    long header = ftell(f);
    if (header < 0 || netpbm_least_bytes(&pam) > (double)(len - (size_t)header)) {
        pm_setjmpbuf(NULL);
        fclose(f);
        return amil_fail("truncated netpbm image: %d×%d needs %.0f bytes of pixels, the "
                         "file has %zu", pam.width, pam.height, netpbm_least_bytes(&pam),
                         header < 0 ? 0 : len - (size_t)header);
    }
    int depth = pam.depth < 4 ? (int)pam.depth : 4;
    size_t count = (size_t)pam.width * pam.height;
    raw = malloc(count * depth);
    row = pnm_allocpamrow(&pam);
    if (!raw) {
        pm_setjmpbuf(NULL);
        fclose(f);
        pnm_freepamrow(row);
        return amil_fail("out of memory");
    }
    for (int y = 0; y < pam.height; y++) {
        pnm_readpamrow(&pam, row);
        unsigned char *out = raw + (size_t)y * pam.width * depth;
        for (int x = 0; x < pam.width; x++)
            for (int c = 0; c < depth; c++)   /* to 0..255, rounded */
                *out++ = (unsigned char)((row[x][c] * 255 + pam.maxval / 2) / pam.maxval);
    }
    pm_setjmpbuf(NULL);
    pnm_freepamrow(row);
    long end = ftell(f);
    *used = end > 0 ? (size_t)end : len;
    fclose(f);
    /* PBM's 1 is black, and libnetpbm gives it as 0 (maxval 1): it already
     * reads as a gray level, so nothing special is needed. */
    img->width = pam.width;
    img->height = pam.height;
    img->channels = channels;
    img->pixels = malloc(count * channels);
    if (!img->pixels) {
        free(raw);
        return amil_fail("out of memory");
    }
    convert(raw, depth, img->pixels, channels, count);
    free(raw);
    return 0;
}

static uint32_t le16(const unsigned char *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }
static uint32_t le32(const unsigned char *p) { return le16(p) | le16(p + 2) << 16; }

/* stb_image fills pixels missing from a short BMP or TGA with zeros, and a
 * TGA has no magic number: a 48-byte file had become 680 MB of pixels.  So
 * for these formats the size a header claims is checked against the file
 * first: uncompressed data exactly; run-length TGA at its largest
 * expansion (a packet of 1 + B bytes gives at most 128 pixels).  stb_image
 * reads BMPs without compression only.  Returns 0, or -1 with a message. */
static int check_bmp(const unsigned char *d, size_t len)
{
    if (len < 34)
        return 0;   /* stb_image refuses it */
    uint32_t offset = le32(d + 10), info = le32(d + 14);
    int64_t w, h;
    uint32_t bpp, compression = 0;
    if (info == 12) {   /* OS/2 */
        w = le16(d + 18), h = le16(d + 20), bpp = le16(d + 24);
    } else {
        w = (int32_t)le32(d + 18), h = (int32_t)le32(d + 22), bpp = le16(d + 28);
        compression = le32(d + 30);
    }
    if (compression != 0 && compression != 3)
        return 0;
    h = h < 0 ? -h : h;   /* negative: rows top down */
    w = w < 0 ? -w : w;
    double need = (double)((w * bpp + 31) / 32 * 4) * (double)h;   /* rows of whole words */
    if (offset > len || need > (double)(len - offset))
        return amil_fail("truncated BMP: %lld×%lld at %u bits needs %.0f bytes of pixels, "
                         "the file has %zu", (long long)w, (long long)h, bpp, need,
                         offset > len ? 0 : len - offset);
    return 0;
}

static int check_tga(const unsigned char *d, size_t len)
{
    if (len < 18)
        return 0;
    int type = d[2];
    uint32_t w = le16(d + 12), h = le16(d + 14), bytes = (d[16] + 7u) / 8;
    size_t start = 18 + (size_t)d[0] + (d[1] ? (size_t)le16(d + 5) * ((d[7] + 7u) / 8) : 0);
    if (start > len)
        return amil_fail("truncated TGA: its header and colour map need %zu bytes, the "
                         "file has %zu", start, len);
    double pixels = (double)w * h, have = (double)(len - start);
    if ((type >= 1 && type <= 3 && pixels * bytes > have) ||
        (type >= 9 && type <= 11 && pixels > 128 * have / (1 + bytes)))
        return amil_fail("truncated TGA: %u×%u pixels cannot come from %zu bytes", w, h,
                         len - start);
    return 0;
}

/* Which of stb_image's formats, by the magic numbers stb_image tests; a
 * TGA is what has none of them. */
static int is_magic(const unsigned char *d, size_t len, const char *magic, size_t n)
{
    return len >= n && memcmp(d, magic, n) == 0;
}

static int check_claimed_size(const unsigned char *d, size_t len)
{
    if (is_magic(d, len, "BM", 2))
        return check_bmp(d, len);
    if (is_magic(d, len, "\x89PNG", 4))
        return 0;   /* checked by amil_png_decode */
    if (is_magic(d, len, "\xff\xd8", 2) || is_magic(d, len, "GIF8", 4) ||
        is_magic(d, len, "8BPS", 4) || is_magic(d, len, "\x53\x80\xf6\x34", 4) ||
        is_magic(d, len, "#?", 2))
        return 0;   /* JPEG, GIF, PSD, PIC, HDR: compressed; --max-pixels bounds them */
    return check_tga(d, len);
}

int amil_image_decode(const unsigned char *data, size_t len, int channels,
                      long max_pixels, struct amil_image *img, size_t *used)
{
    memset(img, 0, sizeof *img);
    if (len == 0)
        return amil_fail("empty file");
    *used = len;   /* stb_image's formats: the whole buffer */
    if (len >= 2 && data[0] == 'P' && data[1] >= '1' && data[1] <= '7')
        return decode_netpbm(data, len, channels, max_pixels, img, used);
    int width, height, comp;
    unsigned char *native;
    int png = amil_png_decode(data, len, max_pixels, &native, &width, &height, &comp, used);
    if (png < 0)
        return -1;
    if (png == 0) {
        size_t count = (size_t)width * height;
        img->width = width, img->height = height, img->channels = channels;
        if (comp == channels) {
            img->pixels = native;
            return 0;
        }
        img->pixels = malloc(count * channels);
        if (img->pixels)
            convert(native, comp, img->pixels, channels, count);
        free(native);
        return img->pixels ? 0 : amil_fail("out of memory");
    }
    if (len > INT32_MAX)
        return amil_fail("file too large for stb_image");
    if (!stbi_info_from_memory(data, (int)len, &width, &height, &comp))
        return amil_fail("not an image (%s)", stbi_failure_reason());
    if (amil_image_check_size(width, height, max_pixels) < 0 ||
        check_claimed_size(data, len) < 0)
        return -1;
    unsigned char *rgb = stbi_load_from_memory(data, (int)len, &width, &height, &comp, 3);
    if (!rgb)
        return amil_fail("cannot decode: %s", stbi_failure_reason());
    size_t count = (size_t)width * height;
    img->width = width;
    img->height = height;
    img->channels = channels;
    if (channels == 3) {
        img->pixels = rgb;
        return 0;
    }
    img->pixels = malloc(count);
    if (img->pixels)
        convert(rgb, 3, img->pixels, 1, count);
    stbi_image_free(rgb);
    return img->pixels ? 0 : amil_fail("out of memory");
}

/* Whether the bytes from `from` on hold nothing but padding (whitespace
 * or NULs), which some writers leave after an image. */
static int only_padding(const unsigned char *data, size_t from, size_t len)
{
    for (size_t i = from; i < len; i++)
        if (data[i] != 0 && data[i] != ' ' && data[i] != '\n' && data[i] != '\r' &&
            data[i] != '\t')
            return 0;
    return 1;
}

int amil_image_next(const unsigned char *data, size_t len, size_t *at, int channels,
                    long max_pixels, struct amil_image *img)
{
    memset(img, 0, sizeof *img);
    if (*at > 0 && only_padding(data, *at, len))
        return 0;
    size_t used;
    if (amil_image_decode(data + *at, len - *at, channels, max_pixels, img, &used) < 0)
        return -1;
    *at += used;
    return 1;
}

int amil_image_load(const char *path, long index, int channels, long max_pixels,
                    struct amil_image *img)
{
    if (index < 0)   /* a malformed index: the message is set */
        return -1;
    size_t len, at = 0;
    unsigned char *data = amil_slurp(path, &len);
    if (!data)
        return -1;
    int status;
    for (long i = 0;; i++) {
        status = amil_image_next(data, len, &at, channels, max_pixels, img);
        if (status <= 0 || i == index)
            break;
        amil_image_free(img);
    }
    free(data);
    if (status == 0)
        return amil_fail("holds no image %ld", index);
    return status < 0 ? -1 : 0;
}

int amil_image_write_png(FILE *f, const struct amil_image *img)
{
    /* a PNG's IDAT is one chunk, of at most 2^31 - 1 bytes */
    if ((double)img->width * img->channels * img->height >= INT32_MAX / 2)
        return amil_fail("%d×%d is too large for a PNG here; write PAM", img->width,
                         img->height);
    unsigned char *png;
    size_t len;
    if (amil_png_encode(img->pixels, img->width, img->height, img->channels, &png, &len) < 0)
        return -1;
    size_t written = fwrite(png, 1, len, f);
    free(png);
    return written != len || ferror(f) ? amil_fail("write error: %s", strerror(errno ? errno : EIO))
                                       : 0;
}

int amil_image_write_pam(FILE *f, const struct amil_image *img)
{
    static struct pam pam;   /* static: it lives across setjmp */
    tuple *volatile row = NULL;
    memset(&pam, 0, sizeof pam);
    pam.size = sizeof pam;
    pam.len = PAM_SIZE;
    pam.file = f;
    pam.format = PAM_FORMAT;
    pam.plainformat = 0;
    pam.width = img->width;
    pam.height = img->height;
    pam.depth = (unsigned)img->channels;
    pam.maxval = 255;
    strcpy(pam.tuple_type, img->channels == 1 ? PAM_PGM_TUPLETYPE : PAM_PPM_TUPLETYPE);
    netpbm_init();
    /* libnetpbm exits on a write error unless it has somewhere to jump */
    jmp_buf jump;
    pm_setjmpbuf(&jump);
    if (setjmp(jump) != 0) {
        pm_setjmpbuf(NULL);
        if (row)
            pnm_freepamrow(row);
        return amil_fail("write error: %s", netpbm_message);
    }
    pnm_writepaminit(&pam);
    row = pnm_allocpamrow(&pam);
    for (int y = 0; y < img->height; y++) {
        const unsigned char *in = img->pixels + (size_t)y * img->width * img->channels;
        for (int x = 0; x < img->width; x++)
            for (int c = 0; c < img->channels; c++)
                row[x][c] = *in++;
        pnm_writepamrow(&pam, row);
    }
    pm_setjmpbuf(NULL);
    pnm_freepamrow(row);
    return ferror(f) ? amil_fail("write error: %s", strerror(errno ? errno : EIO)) : 0;
}

enum amil_picture amil_picture_of_name(const char *path)
{
    const char *dot = path ? strrchr(path, '.') : NULL;
    return dot && strcmp(dot, ".pam") == 0 ? AMIL_PICTURE_PAM : AMIL_PICTURE_PNG;
}

int amil_picture_write(FILE *f, const struct amil_image *img, enum amil_picture format)
{
    return format == AMIL_PICTURE_PAM ? amil_image_write_pam(f, img)
                                      : amil_image_write_png(f, img);
}

int amil_picture_save(const char *path, const struct amil_image *img, enum amil_picture format)
{
    struct amil_output o;
    if (amil_output_open(&o, path) < 0)
        return -1;
    if (amil_picture_write(o.file, img, format) < 0) {
        amil_fail_in(path);
        amil_output_abort(&o);
        return -1;
    }
    return amil_output_commit(&o);
}

int amil_mask_save(const char *path, const unsigned char *mask, int width, int height)
{
    struct amil_image picture = {width, height, 1, amil_xmalloc((size_t)width * height)};
    for (size_t i = 0; i < (size_t)width * height; i++)
        picture.pixels[i] = mask[i] ? 255 : 0;
    int status = amil_picture_save(path, &picture, AMIL_PICTURE_PNG);
    free(picture.pixels);
    return status;
}
