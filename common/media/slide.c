/* slide.c: whole-slide images through OpenSlide (slide.h). */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <openslide.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/base.h"
#include "base/output.h"
#include "media/slide.h"
#include "media/tissue.h"
#include "record/record.h"

/* A level's downsample that lies within this fraction of the one asked
 * for is taken as it: 0.50 µm/pixel on a 0.499 µm/pixel scan is level 0. */
#define SNAP 0.01
/* Source pixels read at once: 64 MiB of OpenSlide's ARGB. */
#define STRIP_PIXELS (16L << 20)

/* A positive finite number from a property, or 0 when the slide lacks it
 * or it is not one. */
static double property(openslide_t *osr, const char *name)
{
    const char *text = openslide_get_property_value(osr, name);
    if (!text)
        return 0;
    char *end;
    double v = strtod(text, &end);
    return end != text && *end == '\0' && isfinite(v) && v > 0 && v < 1e6 ? v : 0;
}

int amil_slide_open(struct amil_slide *s, const char *path)
{
    memset(s, 0, sizeof *s);
    if (strcmp(path, "-") == 0)
        return 0;
    amil_input_note(path);
    s->vendor = openslide_detect_vendor(path);
    if (!s->vendor)
        return 0;
    openslide_t *osr = openslide_open(path);
    if (!osr)
        return amil_fail("a %s slide that OpenSlide cannot open", s->vendor);
    const char *why = openslide_get_error(osr);
    if (why) {
        amil_fail("%s slide: %s", s->vendor, why);
        openslide_close(osr);
        return -1;
    }
    s->osr = osr;
    int32_t levels = openslide_get_level_count(osr);
    if (levels < 1 || levels > AMIL_SLIDE_LEVELS) {
        amil_slide_close(s);
        return amil_fail("slide of %d levels (1 to %d are read)", levels, AMIL_SLIDE_LEVELS);
    }
    s->levels = levels;
    for (int l = 0; l < levels; l++) {
        openslide_get_level_dimensions(osr, l, &s->width[l], &s->height[l]);
        s->downsample[l] = openslide_get_level_downsample(osr, l);
        /* level-0 coordinates are I32 in records: 2^31 - 1 a side at most */
        if (s->width[l] < 1 || s->height[l] < 1 || s->width[l] > INT32_MAX ||
            s->height[l] > INT32_MAX || !isfinite(s->downsample[l]) ||
            s->downsample[l] < (l ? s->downsample[l - 1] : 1) ||
            (l == 0 && s->downsample[l] != 1)) {
            amil_slide_close(s);
            return amil_fail("slide level %d: %lld×%lld pixels at downsample %g is out of "
                             "range", l, (long long)s->width[l], (long long)s->height[l],
                             s->downsample[l]);
        }
    }
    s->mpp = property(osr, OPENSLIDE_PROPERTY_NAME_MPP_X);
    s->objective = property(osr, OPENSLIDE_PROPERTY_NAME_OBJECTIVE_POWER);
    return 1;
}

void amil_slide_close(struct amil_slide *s)
{
    if (s->osr)
        openslide_close(s->osr);
    s->osr = NULL;
}

int amil_slide_resolution(const struct amil_slide *s, enum amil_slide_unit unit,
                          double value, double *downsample, int *level)
{
    double d = 1;
    switch (unit) {
    case AMIL_SLIDE_LEVEL0:
        break;
    case AMIL_SLIDE_BY_LEVEL:
        if (value < 0 || value >= s->levels)
            return amil_fail("level %g: the slide has %d (0 to %d)", value, s->levels,
                             s->levels - 1);
        d = s->downsample[(int)value];
        break;
    case AMIL_SLIDE_BY_MPP:
        if (s->mpp == 0)
            return amil_fail("the slide has no %s property: give --level or "
                             "--magnification", OPENSLIDE_PROPERTY_NAME_MPP_X);
        d = value / s->mpp;
        break;
    case AMIL_SLIDE_BY_MAGNIFICATION:
        if (s->objective == 0)
            return amil_fail("the slide has no %s property: give --level or --mpp",
                             OPENSLIDE_PROPERTY_NAME_OBJECTIVE_POWER);
        d = s->objective / value;
        break;
    }
    for (int l = 0; l < s->levels; l++)
        if (fabs(s->downsample[l] - d) <= SNAP * d)
            d = s->downsample[l];
    if (d < 1)
        return amil_fail("%g %s is finer than the slide's level 0 (%g)", value,
                         unit == AMIL_SLIDE_BY_MPP ? "µm/pixel" : "×",
                         unit == AMIL_SLIDE_BY_MPP ? s->mpp : s->objective);
    *level = 0;
    for (int l = 1; l < s->levels; l++)
        if (s->downsample[l] <= d)
            *level = l;
    *downsample = d;
    return 0;
}

/* The source pixels under output pixels 0 .. n-1 of one axis: pixel j
 * covers [origin + j·f, origin + (j+1)·f) of the source, which starts at
 * source index first[j] (relative to floor(origin)) with count[j] weights
 * from weight + at[j], each the overlap with one source pixel. */
struct axis {
    int *first, *count, *at;
    float *weight;
    long span;   /* source pixels from floor(origin) to the last one used */
};

static void axis_make(struct axis *a, double origin, double f, int n)
{
    long base = (long)floor(origin), cap = (long)ceil(f) + 1;
    a->first = amil_xmalloc(sizeof *a->first * (size_t)n);
    a->count = amil_xmalloc(sizeof *a->count * (size_t)n);
    a->at = amil_xmalloc(sizeof *a->at * (size_t)n);
    a->weight = amil_xmalloc(sizeof *a->weight * (size_t)n * (size_t)cap);
    a->span = 0;
    long used = 0;
    for (int j = 0; j < n; j++) {
        double lo = origin + j * f - base, hi = origin + (j + 1) * f - base;
        long k0 = (long)floor(lo), k1 = (long)ceil(hi);
        a->first[j] = (int)k0;
        a->at[j] = (int)used;
        a->count[j] = 0;
        for (long k = k0; k < k1 && a->count[j] < cap; k++) {
            double overlap = fmin(hi, (double)k + 1) - fmax(lo, (double)k);
            a->weight[used + a->count[j]++] = (float)(overlap > 0 ? overlap : 0);
        }
        used += a->count[j];
        if (k1 > a->span)
            a->span = k1;
    }
}

static void axis_free(struct axis *a)
{
    free(a->first), free(a->count), free(a->at), free(a->weight);
}

/* OpenSlide's premultiplied ARGB over white, as 8-bit RGB. */
static void over_white(uint8_t *rgb, uint32_t argb)
{
    unsigned a = argb >> 24;
    rgb[0] = (uint8_t)(((argb >> 16) & 255) + 255 - a);
    rgb[1] = (uint8_t)(((argb >> 8) & 255) + 255 - a);
    rgb[2] = (uint8_t)((argb & 255) + 255 - a);
}

/* Where resample reads: rows [row0, row0 + rows) and columns [col0, col0
 * + cols) of a picture into argb (OpenSlide's premultiplied ARGB; 0 past
 * the picture's edge). */
struct source {
    int (*read)(const struct source *src, long col0, long row0, long cols, long rows,
                uint32_t *argb);
    const struct amil_slide *slide;
    int level;
    const struct amil_image *image;
    long width, height;   /* the source's own pixels; past them, white */
};

static int read_level(const struct source *src, long col0, long row0, long cols, long rows,
                      uint32_t *argb)
{
    const struct amil_slide *s = src->slide;
    double ds = s->downsample[src->level];
    openslide_read_region(s->osr, argb, llround(col0 * ds), llround(row0 * ds), src->level,
                          cols, rows);
    const char *why = openslide_get_error(s->osr);
    return why ? amil_fail("reading the slide: %s", why) : 0;
}

static int read_image(const struct source *src, long col0, long row0, long cols, long rows,
                      uint32_t *argb)
{
    const struct amil_image *img = src->image;
    for (long y = 0; y < rows; y++)
        for (long x = 0; x < cols; x++) {
            long iy = row0 + y, ix = col0 + x;
            uint32_t v = 0;
            if (iy >= 0 && ix >= 0 && iy < img->height && ix < img->width) {
                const uint8_t *px = img->pixels + ((size_t)iy * img->width + ix) * img->channels;
                int g = img->channels == 3;
                v = 0xff000000u | (uint32_t)px[0] << 16 | (uint32_t)px[g] << 8 | px[2 * g];
            }
            argb[y * cols + x] = v;
        }
    return 0;
}

/* The source's own pixels, strip by strip, into rows stride bytes apart. */
static int read_direct(const struct source *src, long col0, long row0, int w, int h,
                       uint8_t *rgb, size_t stride)
{
    long band = STRIP_PIXELS / w;
    band = band < 1 ? 1 : band > h ? h : band;
    uint32_t *argb = amil_xmalloc(sizeof *argb * (size_t)band * (size_t)w);
    int status = 0;
    for (long j0 = 0; j0 < h && status == 0; j0 += band) {
        long rows = j0 + band < h ? band : h - j0;
        status = src->read(src, col0, row0 + j0, w, rows, argb);
        for (long r = 0; status == 0 && r < rows; r++)
            for (long i = 0; i < w; i++)
                over_white(rgb + (size_t)(j0 + r) * stride + (size_t)i * 3,
                           argb[(size_t)r * w + i]);
    }
    free(argb);
    return status;
}

/* Clips axis a (origin base = floor(origin)) to the source's extent
 * pixels: each output pixel keeps the weights of the source pixels that
 * exist, and past[j] is the sum of those it lost (0 when it lost none;
 * what lies past the edge is white, and is never read).  Returns the
 * source pixels used from base on. */
static long axis_clip(struct axis *a, long base, long extent, int n, float *past)
{
    long limit = extent - base, span = 0;
    for (int j = 0; j < n; j++) {
        long keep = limit - a->first[j];
        keep = keep < 0 ? 0 : keep < a->count[j] ? keep : a->count[j];
        past[j] = 0;
        for (int k = (int)keep; k < a->count[j]; k++)
            past[j] += a->weight[a->at[j] + k];
        a->count[j] = (int)keep;
        if (keep && a->first[j] + keep > span)
            span = a->first[j] + keep;
    }
    return span;
}

/* Adds to sum (w, 3) what source rows [from, to) of output row j weigh,
 * from argb, which holds cols columns of the source rows from top on. */
static void accumulate(double *sum, const uint32_t *argb, long top, long cols,
                       const struct axis *ax, const struct axis *ay, long j, int from, int to,
                       int w)
{
    for (int r = from; r < to; r++) {
        const uint32_t *row = argb + (size_t)(ay->first[j] + r - top) * cols;
        float wy = ay->weight[ay->at[j] + r];
        for (int i = 0; i < w; i++)
            for (int c = 0; c < ax->count[i]; c++) {
                uint8_t px[3];
                over_white(px, row[ax->first[i] + c]);
                double wxy = (double)wy * ax->weight[ax->at[i] + c];
                for (int k = 0; k < 3; k++)
                    sum[3 * i + k] += wxy * px[k];
            }
    }
}

/* rgb (h, w, 3), rows stride bytes apart, = the source f times coarser
 * from its pixel (x, y) at that scale on: each pixel the mean of the area
 * it covers (slide.h), white past the source's edge.  Only the source that
 * exists is read, at most about STRIP_PIXELS at a time, whatever f: a
 * picture of one pixel at f = 10^6 reads the source once, in strips. */
static int resample_block(const struct source *src, double f, int64_t x, int64_t y, int w,
                          int h, uint8_t *rgb, size_t stride)
{
    double ox = (double)x * f, oy = (double)y * f;   /* where x, y fall in the source */
    if (f == 1 && ox == floor(ox) && oy == floor(oy) && ox + w <= src->width &&
        oy + h <= src->height)
        return read_direct(src, (long)ox, (long)oy, w, h, rgb, stride);
    struct axis ax, ay;
    axis_make(&ax, ox, f, w);
    axis_make(&ay, oy, f, h);
    long col0 = (long)floor(ox), row0 = (long)floor(oy);
    float *wx = amil_xmalloc(sizeof *wx * (size_t)w), *wy = amil_xmalloc(sizeof *wy * (size_t)h);
    long cols = axis_clip(&ax, col0, src->width, w, wx);
    axis_clip(&ay, row0, src->height, h, wy);
    /* output rows per strip: their source rows times cols under the cap */
    long band = cols ? (long)(STRIP_PIXELS / cols / (f + 2)) : h;
    band = band < 1 ? 1 : band > h ? h : band;
    /* a strip's rows: band output rows' worth, or, when one output row's
     * are more than the cap, as many as fit (one at least) */
    long cap_rows = cols ? (STRIP_PIXELS + cols - 1) / cols : 1;
    long strip_rows = (long)((band + 2) * f + 2);
    strip_rows = strip_rows < cap_rows ? strip_rows : cap_rows;
    uint32_t *argb = amil_xmalloc(sizeof *argb * (size_t)strip_rows * (size_t)(cols ? cols : 1));
    /* in double: a pixel of a 5000² area sums 2.5e7 values, past float's
     * 2^24 (-D 4000 of a uniform image gave 234 for 192) */
    double *sum = amil_xmalloc(sizeof *sum * (size_t)w * 3);
    double area = f * f;
    int status = 0;
    for (long j0 = 0; j0 < h && status == 0; j0 += band) {
        long j1 = j0 + band < h ? j0 + band : h;
        long top = ay.first[j0], bottom = top;
        for (long j = j0; j < j1; j++)
            if (ay.count[j] && ay.first[j] + ay.count[j] > bottom)
                bottom = ay.first[j] + ay.count[j];
        int whole = bottom - top <= strip_rows;   /* the strip holds every row it needs */
        if (whole && cols && bottom > top)
            status = src->read(src, col0, row0 + top, cols, bottom - top, argb);
        for (long j = j0; j < j1 && status == 0; j++) {
            memset(sum, 0, sizeof *sum * (size_t)w * 3);
            for (int r = 0; r < ay.count[j] && cols; r += (int)strip_rows) {
                int to = ay.count[j] - r < strip_rows ? ay.count[j] : r + (int)strip_rows;
                long first = ay.first[j] + r;
                if (!whole)
                    status = src->read(src, col0, row0 + first, cols, to - r, argb);
                if (status == 0)   /* argb's first row: the strip's, or this chunk's */
                    accumulate(sum, argb, whole ? top : first, cols, &ax, &ay, j,
                               whole ? 0 : r, whole ? ay.count[j] : to, w);
                if (whole)
                    break;
            }
            uint8_t *out = rgb + (size_t)j * stride;
            for (long i = 0; i < (long)w * 3; i++) {
                /* the part of the pixel's area past the source's edge, white */
                double py = wy[j], px = wx[i / 3];
                double white = py || px ? 255 * (py * f + px * f - py * px) : 0;
                long v = lrint((sum[i] + white) / area);
                out[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
        }
    }
    free(argb), free(sum), free(wx), free(wy);
    axis_free(&ax), axis_free(&ay);
    return status;
}

/* resample_block over blocks of columns, so that a strip of the source
 * stays near STRIP_PIXELS however wide the region (a slide may claim 10^7
 * pixels a side). */
static int resample(const struct source *src, double f, int64_t x, int64_t y, int w, int h,
                    uint8_t *rgb)
{
    if (fabs(f - 1) < 1e-9)   /* the source itself, whatever f's last bits */
        f = 1;
    /* one output row needs f + 2 source rows of block·f + 2 columns; the
     * strips of resample_block read three output rows' worth at least */
    double most = ((double)STRIP_PIXELS / (3 * f + 2) - 2) / f;
    int block = most < 1 ? 1 : most > w ? w : (int)most;
    int status = 0;
    for (int b = 0; b < w && status == 0; b += block)
        status = resample_block(src, f, x + b, y, w - b < block ? w - b : block, h,
                                rgb + (size_t)b * 3, (size_t)w * 3);
    return status;
}

int amil_slide_read(const struct amil_slide *s, double d, int64_t x, int64_t y, int w, int h,
                    uint8_t *rgb)
{
    int l = 0;
    for (int i = 1; i < s->levels; i++)
        if (s->downsample[i] <= d * (1 + 1e-9))
            l = i;
    struct source src = {read_level, s, l, NULL, (long)s->width[l], (long)s->height[l]};
    return resample(&src, d / s->downsample[l], x, y, w, h, rgb);
}

int amil_image_resample(const struct amil_image *img, double d, int64_t x, int64_t y, int w,
                        int h, uint8_t *rgb)
{
    struct source src = {read_image, NULL, 0, img, img->width, img->height};
    return resample(&src, d, x, y, w, h, rgb);
}

uint8_t *amil_slide_mask(const struct amil_slide *s, double m, long fixed, long min_speck,
                         long max_hole, int *width, int *height, int *threshold)
{
    int mw = (int)ceil(s->width[0] / m), mh = (int)ceil(s->height[0] / m);
    /* mask rows read at once: up to 256, as many as the mask has, and no
     * more than about a million pixels (a mask of 2^31 x 2 pixels) */
    long fit = (1L << 20) / mw;
    int strip = fit < 1 ? 1 : fit < 256 ? (int)fit : 256;
    strip = strip < mh ? strip : mh;
    struct amil_tissue_scores t;
    amil_tissue_scores_init(&t, (size_t)mw * mh);
    uint8_t *rgb = amil_xmalloc((size_t)mw * 3 * strip);
    for (int y = 0; y < mh; y += strip) {
        int h = mh - y < strip ? mh - y : strip;
        if (amil_slide_read(s, m, 0, y, mw, h, rgb) < 0) {
            free(rgb);
            amil_tissue_scores_free(&t);
            return NULL;
        }
        amil_tissue_score(&t, (size_t)y * mw, rgb, (size_t)mw * h);
    }
    free(rgb);
    uint8_t *mask = amil_tissue_mask(&t, fixed, threshold);
    amil_tissue_scores_free(&t);
    amil_tissue_clean(mask, mw, mh, min_speck, max_hole);
    *width = mw, *height = mh;
    return mask;
}

void amil_slide_describe(const struct amil_slide *s, int level, double d,
                         struct amil_record *r)
{
    amil_record_set_meta(r, "slide_vendor", s->vendor);
    amil_record_set_metaf(r, "level", "%d", level);
    amil_record_set_metaf(r, "downsample", "%.9g", d);
    if (s->mpp > 0)
        amil_record_set_metaf(r, "mpp", "%.9g", s->mpp * d);
    if (s->objective > 0)
        amil_record_set_metaf(r, "magnification", "%.9g", s->objective / d);
}

int amil_record_downsample(const struct amil_record *r, double *d)
{
    const char *text = amil_record_meta(r, "downsample");
    char *end = NULL;
    *d = text ? strtod(text, &end) : 1;
    if (text && (end == text || *end || !(*d >= 1 && *d <= 1e6)))
        return amil_fail("metadata downsample '%s' is not a number from 1 to 1e6", text);
    return 0;
}

