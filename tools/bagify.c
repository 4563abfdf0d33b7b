/* bagify: cut images into bags of square patches, one record per image.
 *
 * The paper's geometry by default: 28×28 patches at stride 28, the image
 * centre-cropped to the largest whole number of patches (torchvision's
 * CenterCrop offset), patches in row-major order.  Each record carries
 * `patches` U8 [N, P, P, C], `coords` I32 [N, 2] (y, x in the original
 * image) and the metadata of amil-stream(5).
 */
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/base.h"
#include "media/breakhis.h"
#include "media/image.h"
#include "media/slide.h"
#include "media/tissue.h"
#include "record/record.h"
#include "record/stream.h"
#include "tool/cli.h"

enum crop { CROP_CENTER, CROP_NONE, CROP_PAD };
static const char *const crop_names[] = {"center", "none", "pad", NULL};
enum label_from { LABEL_NONE, LABEL_FIXED, LABEL_DIR, LABEL_BREAKHIS };

struct cmdline {
    long patch, stride;
    enum crop crop;
    long pad_value;
    int channels;
    enum label_from label_from;
    long label;
    double background;          /* least tissue fraction a patch keeps; 0 off */
    int background_given;       /* -b was given (slides default to SLIDE_BACKGROUND) */
    long saturation;            /* tissue above it; -1: Otsu's, capped */
    const char *mask;           /* a picture of the tissue mask, or NULL */
    enum amil_slide_unit unit;  /* slides: the resolution asked for, in */
    double resolution;          /* a level, µm per pixel or a magnification */
    long part_size;             /* slides: patches per record; 0: 64 MiB of them */
    double speck, hole;         /* slides: areas in patches, of tissue dropped, of holes filled */
    long max_pixels;
    int whole;                  /* the image itself, for the CNN baselines */
    int keep_going;
    int force;                  /* records to a terminal */
    char **files;
    int nfiles;
};

static const char usage_text[] =
    "usage: bagify [-k] [-l LABEL | -L dir|breakhis] [-p PATCH] [-s STRIDE]\n"
    "              [-c center|none|pad] [--pad-value V] [-g] [-b FRACTION]\n"
    "              [--tissue-saturation T] [--mask FILE] [--max-pixels N] [--force]\n"
    "              [--level N | --mpp X | --magnification M] [--part-size N]\n"
    "              [--speck AREA] [--hole AREA] [FILE...]\n"
    "       bagify -w [-k] [-l LABEL | -L dir|breakhis] [-g] [--max-pixels N] [FILE...]\n"
    "  -p, --patch N        patch side in pixels [28]\n"
    "  -s, --stride N       step between patches [PATCH]\n"
    "  -c, --crop POLICY    center: centre crop to whole patches [center]\n"
    "                       none: from the top left, partial patches dropped\n"
    "                       pad: cover the whole image, padding right and bottom\n"
    "      --pad-value V    pixel value of the padding [255]\n"
    "  -g, --gray           one gray channel instead of RGB\n"
    "  -l, --label N        the label of every image\n"
    "  -L, --label-from SRC label from the parent folder's name (dir) or from\n"
    "                       a BreakHis file name, B 0 and M 1 (breakhis)\n"
    "      --tissue-saturation T  a pixel is tissue above saturation T, 0..254\n"
    "                       [Otsu's threshold, at most 26]\n"
    "      --mask FILE      a PNG of the tissue mask (one image only)\n"
    "  -b, --background F   drop patches with less than F tissue (Otsu on\n"
    "                       saturation) [0: keep all]\n"
    "  -w, --whole          the whole image as `image`, no patches (for the\n"
    "                       CNN baselines)\n"
    "      --max-pixels N   refuse larger images [268435456]\n"
    "whole-slide images (read through OpenSlide):\n"
    "      --level N        read level N [0]\n"
    "      --mpp X          at X micrometres per pixel\n"
    "      --magnification M  at M× (from the objective power)\n"
    "      --part-size N    patches per record [as many as fill 64 MiB]\n"
    "      --speck AREA     drop tissue pieces under AREA patches [1]\n"
    "      --hole AREA      fill holes under AREA patches [4]\n"
    "  -k, --keep-going     after a bad image, go on with the next\n"
    "      --force          write records even to a terminal\n"
    "  -h, --help           this help\n";

/* -l and -L: one source of labels, given once. */
static void read_label(void *to, const char *option, const char *arg)
{
    static const char *const sources[] = {"dir", "breakhis", NULL};
    struct cmdline *cl = to;
    if (cl->label_from != LABEL_NONE)
        amil_misuse("give one of -l and -L, once");
    if (strcmp(option, "--label") == 0) {
        cl->label_from = LABEL_FIXED;
        cl->label = amil_option_long(option, arg, 0, 1000000);
    } else {
        cl->label_from = LABEL_DIR + amil_option_choice(option, arg, sources);
    }
}

/* --level, --mpp or --magnification: a slide's resolution, given once. */
static void read_resolution(void *to, const char *option, const char *arg)
{
    struct cmdline *cl = to;
    if (cl->unit != AMIL_SLIDE_LEVEL0)
        amil_misuse("give one of --level, --mpp and --magnification, once");
    if (strcmp(option, "--level") == 0) {
        cl->unit = AMIL_SLIDE_BY_LEVEL;
        cl->resolution = amil_option_long(option, arg, 0, 31);
    } else {
        cl->unit = strcmp(option, "--mpp") == 0 ? AMIL_SLIDE_BY_MPP : AMIL_SLIDE_BY_MAGNIFICATION;
        cl->resolution = amil_option_double(option, arg, 1e-3, 1e3);
    }
}

static struct cmdline parse_args(int argc, char **argv)
{
    amil_usage_is(usage_text);
    struct cmdline cl = {.patch = 28, .stride = 0, .crop = CROP_CENTER,
                         .pad_value = 255, .channels = 3, .max_pixels = AMIL_MAX_PIXELS,
                         .saturation = -1, .speck = 1, .hole = 4};
    int gray = 0;
    struct amil_opt options[] = {
        AMIL_LONG("patch", 'p', &cl.patch, 1, 65536),
        AMIL_LONG("stride", 's', &cl.stride, 1, 65536),
        AMIL_CHOICE("crop", 'c', &cl.crop, crop_names),
        AMIL_LONG("pad-value", 0, &cl.pad_value, 0, 255),
        AMIL_FLAG("gray", 'g', &gray),
        AMIL_READ("label", 'l', &cl, read_label),
        AMIL_READ("label-from", 'L', &cl, read_label),
        AMIL_DOUBLE("background", 'b', &cl.background, 0, 1),
        AMIL_LONG("tissue-saturation", 0, &cl.saturation, 0, 254),
        AMIL_STRING("mask", 0, &cl.mask),
        AMIL_LONG("max-pixels", 0, &cl.max_pixels, 1, 1L << 40),
        AMIL_FLAG("whole", 'w', &cl.whole),
        AMIL_FLAG("keep-going", 'k', &cl.keep_going),
        AMIL_FLAG("force", 0, &cl.force),
        AMIL_READ("level", 0, &cl, read_resolution),
        AMIL_READ("mpp", 0, &cl, read_resolution),
        AMIL_READ("magnification", 0, &cl, read_resolution),
        AMIL_LONG("part-size", 0, &cl.part_size, 1, INT32_MAX),
        AMIL_DOUBLE("speck", 0, &cl.speck, 0, 1e9),
        AMIL_DOUBLE("hole", 0, &cl.hole, 0, 1e9),
        AMIL_OPTIONS_END};
    optind = amil_options(argc, argv, options);
    static const char *const cutting[] = {"patch", "stride", "crop", "pad-value", "background",
                                          "tissue-saturation", "mask", NULL};
    if (cl.whole && amil_option_last(options, cutting))   /* any of them */
        amil_misuse("--whole keeps the image whole: no patches to size, crop or filter");
    if (cl.stride == 0)
        cl.stride = cl.patch;
    if (gray)
        cl.channels = 1;
    cl.background_given = amil_option_given(options, "background");
    cl.files = argv + optind;
    cl.nfiles = argc - optind;
    if ((cl.saturation >= 0 || cl.mask) && cl.background_given && cl.background == 0)
        amil_misuse("--tissue-saturation and --mask are of the background filter: -b 0 "
                    "turns it off");
    if (cl.mask && cl.nfiles > 1)
        amil_misuse("--mask draws one image's mask: give one file");
    return cl;
}

/* Where the patches lie along one axis of `size` pixels: the first at
 * *offset, *count of them, covering *extent pixels from the offset. */
static int place(const struct cmdline *cl, long size, long *offset, long *count,
                 long *extent)
{
    long p = cl->patch, s = cl->stride;
    if (cl->crop == CROP_PAD) {
        /* Enough patches to reach the last pixel, the overhang padding; but
         * none that starts past the image (with a stride over the patch
         * size, such a patch would be all padding). */
        long reach = size <= p ? 1 : (size - p + s - 1) / s + 1, inside = (size + s - 1) / s;
        *count = reach < inside ? reach : inside;
        *offset = 0;
    } else {
        if (size < p)
            return -1;
        *count = (size - p) / s + 1;
        long spare = size - (p + (*count - 1) * s);
        /* torchvision: int(round(spare / 2.)), Python 3's round, which
         * takes a half to the even neighbour. */
        *offset = cl->crop == CROP_NONE ? 0 : spare / 2 + (spare % 4 == 3);
    }
    *extent = p + (*count - 1) * s;
    return 0;
}

/* The record's label, as -l or -L says: 0, or -1 with a message (for a
 * name that is not BreakHis's, amil_breakhis_parse's). */
static int set_label(const struct cmdline *cl, const char *path,
                     const struct amil_breakhis *bh, int is_breakhis, struct amil_record *r)
{
    long label = cl->label;
    if (cl->label_from == LABEL_BREAKHIS) {
        if (!is_breakhis)
            return -1;
        label = bh->tumor_class == 'M';
    } else if (cl->label_from == LABEL_DIR && amil_folder_label(path, &label) < 0) {
        return -1;
    }
    if (cl->label_from != LABEL_NONE)
        amil_record_set_metaf(r, "label", "%ld", label);
    return 0;
}

/* Where the patches are: the crop's corner and size, patches down and
 * across it. */
struct grid {
    long y0, x0, height, width, rows, cols;
};

/* The record's metadata before any pixel: where the image came from, its
 * label, its sizes and its BreakHis name's parts.  Returns 0, or -1 with a
 * message (a label that is not one). */
static int describe(const struct cmdline *cl, const char *path, long width, long height,
                    long index, struct amil_record *r)
{
    struct amil_breakhis bh;
    int is_breakhis = amil_breakhis_parse(path, &bh) == 0;
    amil_record_init(r);
    amil_record_set_meta(r, "kind", cl->whole ? "image" : "bag");
    amil_record_set_meta(r, "source", path);
    char here[4096];
    if (path[0] != '/' && strcmp(path, "-") != 0 && getcwd(here, sizeof here))
        amil_record_set_meta(r, "source_dir", here);   /* stitch and gradcam look there too */
    if (index > 0)   /* the second image of a stream on: stitch finds it by this */
        amil_record_set_metaf(r, "image_index", "%ld", index);
    if (set_label(cl, path, &bh, is_breakhis, r) < 0) {
        amil_record_free(r);
        return -1;
    }
    amil_record_set_metaf(r, "image_height", "%ld", height);
    amil_record_set_metaf(r, "image_width", "%ld", width);
    amil_record_set_metaf(r, "channels", "%d", cl->channels);
    if (is_breakhis)
        amil_breakhis_describe(&bh, r);
    return 0;
}

/* The grid's metadata: patch, stride, crop, and the crop's corner and size
 * in the image's pixels (a slide's level 0), of which a grid pixel is scale. */
static void describe_grid(const struct cmdline *cl, const struct grid *g, double scale,
                          struct amil_record *r)
{
    amil_record_set_metaf(r, "patch", "%ld", cl->patch);
    amil_record_set_metaf(r, "stride", "%ld", cl->stride);
    amil_record_set_meta(r, "crop", crop_names[cl->crop]);
    const char *keys[4] = {"crop_y", "crop_x", "crop_height", "crop_width"};
    long crop[4] = {g->y0, g->x0, g->height, g->width};
    for (int k = 0; k < 4; k++)
        amil_record_set_metaf(r, keys[k], "%lld", llround(crop[k] * scale));
}

/* bagify -w: the whole image as one tensor. */
static void put_image(const struct cmdline *cl, const struct amil_image *img,
                      struct amil_record *r)
{
    int64_t shape[3] = {img->height, img->width, cl->channels};
    unsigned char *out = amil_record_put(r, "image", AMIL_U8, 3, shape)->data;
    size_t pixels = (size_t)img->width * img->height;
    if (cl->channels == 3)
        memcpy(out, img->pixels, pixels * 3);
    for (size_t i = 0; cl->channels == 1 && i < pixels; i++)
        out[i] = amil_luma(img->pixels + 3 * i);
}

/* The patch at (top, left) into out (P, P, C), padded past the image's
 * edge; returns its tissue pixels (0 without a mask). */
static long cut_patch(const struct cmdline *cl, const struct amil_image *img,
                      const unsigned char *tissue, long top, long left, unsigned char *out)
{
    long p = cl->patch, C = cl->channels, tissue_pixels = 0;
    for (long y = top; y < top + p; y++) {
        size_t i = (size_t)y * img->width + left;
        if (C == 3 && y < img->height && left + p <= img->width) {
            memcpy(out, img->pixels + 3 * i, (size_t)p * 3);   /* fast path */
            out += p * 3;
            for (long x = 0; tissue && x < p; x++)
                tissue_pixels += tissue[i + x];
            continue;
        }
        for (long x = left; x < left + p; x++, i++, out += C) {
            if (y >= img->height || x >= img->width) {   /* padding */
                memset(out, (int)cl->pad_value, (size_t)C);
                continue;
            }
            const unsigned char *px = img->pixels + 3 * i;
            if (tissue)
                tissue_pixels += tissue[i];
            if (C == 3)
                out[0] = px[0], out[1] = px[1], out[2] = px[2];
            else
                out[0] = amil_luma(px);
        }
    }
    return tissue_pixels;
}

/* The grid's patches, row by row, into patches (N, P, P, C) and coords
 * (N, 2), less those with too little tissue (tissue NULL: all kept);
 * returns how many were kept. */
static long cut_grid(const struct cmdline *cl, const struct amil_image *img,
                     const unsigned char *tissue, const struct grid *g,
                     unsigned char *patches, int32_t *coords)
{
    long p = cl->patch, kept = 0;
    double min_tissue = cl->background * p * p;   /* a fraction, compared exactly */
    for (long row = 0; row < g->rows; row++)
        for (long col = 0; col < g->cols; col++) {
            long top = g->y0 + row * cl->stride, left = g->x0 + col * cl->stride;
            long tissue_pixels = cut_patch(cl, img, tissue, top, left,
                                           patches + (size_t)kept * p * p * cl->channels);
            if (tissue && tissue_pixels < min_tissue)
                continue;
            coords[2 * kept] = (int32_t)top;
            coords[2 * kept + 1] = (int32_t)left;
            kept++;
        }
    return kept;
}

/* Cuts image number index of file path (img, which it frees) into r.
 * Returns 0, or -1 with a message. */
static int bagify_one(const struct cmdline *cl, const char *path, struct amil_image img,
                      long index, struct amil_record *r)
{
    struct grid g = {0};
    if (!cl->whole && (place(cl, img.height, &g.y0, &g.rows, &g.height) < 0 ||
                       place(cl, img.width, &g.x0, &g.cols, &g.width) < 0)) {
        amil_fail("image of %d×%d is smaller than one %ld×%ld patch", img.width,
                  img.height, cl->patch, cl->patch);
        amil_image_free(&img);
        return -1;
    }
    if ((cl->saturation >= 0 || cl->mask) && cl->background == 0) {
        amil_image_free(&img);
        return amil_fail("--tissue-saturation and --mask are of the background filter: "
                         "give -b");
    }
    if (describe(cl, path, img.width, img.height, index, r) < 0) {
        amil_image_free(&img);
        return -1;
    }
    if (cl->whole) {
        put_image(cl, &img, r);
        amil_image_free(&img);
        return 0;
    }
    describe_grid(cl, &g, 1, r);
    long p = cl->patch, C = cl->channels, total = g.rows * g.cols;
    if ((double)total * p * p * C > (double)AMIL_MAX_DATA) {
        amil_image_free(&img);
        amil_record_free(r);
        return amil_fail("%ld patches of %ld×%ld would make a record over the limit of "
                         "%llu bytes", total, p, p, AMIL_MAX_DATA);
    }
    int threshold = 0;
    unsigned char *tissue =
        cl->background > 0 ? amil_tissue_mask_of(&img, cl->saturation, &threshold) : NULL;
    if (tissue) {
        amil_record_set_metaf(r, "background", "%g", cl->background);
        amil_record_set_metaf(r, "tissue_saturation", "%d", threshold);
    }
    if (tissue && cl->mask && amil_mask_save(cl->mask, tissue, img.width, img.height) < 0) {
        free(tissue);
        amil_image_free(&img);
        amil_record_free(r);
        return -1;
    }
    /* patches [N, P, P, C], coords [N, 2], filled in place; N shrinks at the
     * end if patches were dropped. */
    int64_t patch_shape[4] = {total, p, p, C}, coord_shape[2] = {total, 2};
    struct amil_tensor *patch_tensor = amil_record_put(r, "patches", AMIL_U8, 4, patch_shape);
    struct amil_tensor *coord_tensor = amil_record_put(r, "coords", AMIL_I32, 2, coord_shape);
    long kept = cut_grid(cl, &img, tissue, &g, patch_tensor->data, coord_tensor->data);
    free(tissue);
    amil_image_free(&img);
    if (kept == 0) {
        amil_record_free(r);
        return amil_fail("no patch has %g tissue or more", cl->background);
    }
    amil_record_set_metaf(r, "patches_dropped", "%ld", total - kept);
    patch_tensor->shape[0] = coord_tensor->shape[0] = kept;
    patch_tensor->nbytes = (size_t)kept * p * p * C;
    coord_tensor->nbytes = (size_t)kept * 2 * sizeof(int32_t);
    return 0;
}

/* Writes r to standard output and frees it; a failed write ends the run. */
static void emit(const char *path, struct amil_record *r)
{
    if (amil_record_write(stdout, r) < 0)
        amil_die("writing the record of %s:", path);
    amil_record_free(r);
}

/* ---- whole-slide images ------------------------------------------------ */

/* Least tissue fraction a slide's patch keeps when -b is not given: read
 * at full resolution, glass would cost more than all the tissue. */
#define SLIDE_BACKGROUND 0.5
/* The tissue mask's pixels at most (a 4096² picture): its scores and
 * cleaning then take under 100 MB whatever the slide. */
#define MASK_PIXELS (16L << 20)
/* A part's patches when --part-size is not given: as many as fill 64 MiB. */
#define PART_BYTES (64L << 20)
/* A band of the slide read at once: 64 MiB of RGB at most. */
#define BAND_BYTES (64L << 20)

/* A slide being cut: its resolution, the grid at it, which patches go. */
struct slide_cut {
    struct amil_slide slide;
    double d;                /* the patches' downsample (slide.h) */
    int level;               /* the level they are read from */
    long width, height;      /* the slide at d */
    struct grid g;           /* in pixels at d */
    uint8_t *keep;           /* [rows · cols]: cut this patch */
    long kept, threshold;
};

/* Which patches hold enough tissue, judged on the slide's tissue mask at a
 * coarse resolution (slide.h); --mask draws it. */
static int slide_mask(const struct cmdline *cl, struct slide_cut *sc, double background)
{
    const struct amil_slide *s = &sc->slide;
    long rows = sc->g.rows, cols = sc->g.cols, p = cl->patch, stride = cl->stride;
    sc->keep = amil_xmalloc((size_t)rows * cols);
    if (background == 0) {
        memset(sc->keep, 1, (size_t)rows * cols);
        sc->kept = rows * cols;
        return 0;
    }
    /* each patch about 8 mask pixels a side, the mask at most MASK_PIXELS */
    double m = fmax(sc->d, fmax(p * sc->d / 8, sqrt((double)s->width[0] * s->height[0] /
                                                    MASK_PIXELS)));
    double patch_area = (p * sc->d / m) * (p * sc->d / m);   /* in mask pixels */
    int mw, mh, used;
    uint8_t *mask = amil_slide_mask(s, m, cl->saturation, (long)ceil(cl->speck * patch_area),
                                    (long)ceil(cl->hole * patch_area), &mw, &mh, &used);
    if (!mask)
        return -1;
    sc->threshold = used;
    sc->kept = 0;
    for (long row = 0; row < rows; row++)
        for (long col = 0; col < cols; col++) {
            /* the mask pixels the patch overlaps */
            double top = (sc->g.y0 + row * stride) * sc->d;
            double left = (sc->g.x0 + col * stride) * sc->d;
            long y0 = (long)(top / m), y1 = (long)ceil((top + p * sc->d) / m);
            long x0 = (long)(left / m), x1 = (long)ceil((left + p * sc->d) / m);
            y1 = y1 < mh ? y1 : mh, x1 = x1 < mw ? x1 : mw;
            long tissue = 0, all = (y1 - y0) * (x1 - x0);
            for (long y = y0; y < y1; y++)
                for (long x = x0; x < x1; x++)
                    tissue += mask[(size_t)y * mw + x];
            uint8_t keep = all > 0 && tissue >= background * all;
            sc->keep[row * cols + col] = keep;
            sc->kept += keep;
        }
    int status = cl->mask ? amil_mask_save(cl->mask, mask, mw, mh) : 0;
    free(mask);
    return status;
}

/* Part `part` of `parts` of a slide's bag: its metadata and room for
 * count patches. */
static int slide_record(const struct cmdline *cl, const char *path, const struct slide_cut *sc,
                        double background, long part, long parts, long count,
                        struct amil_record *r)
{
    const struct amil_slide *s = &sc->slide;
    if (describe(cl, path, (long)s->width[0], (long)s->height[0], 0, r) < 0)
        return -1;
    amil_slide_describe(s, sc->level, sc->d, r);
    describe_grid(cl, &sc->g, sc->d, r);
    if (background > 0) {
        amil_record_set_metaf(r, "background", "%g", background);
        amil_record_set_metaf(r, "tissue_saturation", "%ld", sc->threshold);
    }
    amil_record_set_metaf(r, "patches_dropped", "%ld", sc->g.rows * sc->g.cols - sc->kept);
    if (parts > 1) {
        amil_record_set_metaf(r, "part", "%ld", part);
        amil_record_set_metaf(r, "parts", "%ld", parts);
    }
    int64_t patch_shape[4] = {count, cl->patch, cl->patch, cl->channels};
    int64_t coord_shape[2] = {count, 2};
    amil_record_put(r, "patches", AMIL_U8, 4, patch_shape);
    amil_record_put(r, "coords", AMIL_I32, 2, coord_shape);
    return 0;
}

/* The records a slide's patches go into, one part at a time. */
struct parts {
    struct amil_record r;
    long size, total, part, filled, count;   /* count: the open part's patches */
    unsigned char *patches;                  /* its tensors' data */
    int32_t *coords;
    int open;
};

/* The patch at (y, x) of band, grid position (row, col), into the part
 * being filled, which is written when full.  0, or -1 with a message. */
static int put_patch(const struct cmdline *cl, const char *path, const struct slide_cut *sc,
                     double background, struct parts *o, const struct amil_image *band,
                     long y, long x, long row, long col)
{
    long p = cl->patch;
    if (!o->open) {
        long count = sc->kept - o->part * o->size;
        count = count < o->size ? count : o->size;
        if (slide_record(cl, path, sc, background, o->part, o->total, count, &o->r) < 0)
            return -1;
        o->patches = amil_record_find(&o->r, "patches")->data;
        o->coords = amil_record_find(&o->r, "coords")->data;
        o->open = 1, o->filled = 0, o->count = count;
    }
    cut_patch(cl, band, NULL, y, x, o->patches + (size_t)o->filled * p * p * cl->channels);
    o->coords[2 * o->filled] = (int32_t)llround((sc->g.y0 + row * cl->stride) * sc->d);
    o->coords[2 * o->filled + 1] = (int32_t)llround((sc->g.x0 + col * cl->stride) * sc->d);
    if (++o->filled == o->count) {
        emit(path, &o->r);
        o->open = 0, o->part++;
    }
    return 0;
}

/* Grid columns a band of this many pixel rows can hold (at least one). */
static long band_columns(const struct cmdline *cl, long height)
{
    long fits = (BAND_BYTES / 3 / height - cl->patch) / cl->stride + 1;
    return fits < 1 ? 1 : fits;
}

/* The first and last columns with kept patches in grid rows row0 ..
 * row1-1 (*c0 > *c1: none). */
static void kept_columns(const struct slide_cut *sc, long row0, long row1, long *c0, long *c1)
{
    long cols = sc->g.cols;
    *c0 = cols, *c1 = -1;
    for (long i = row0 * cols; i < row1 * cols; i++)
        if (sc->keep[i])
            *c0 = i % cols < *c0 ? i % cols : *c0, *c1 = i % cols > *c1 ? i % cols : *c1;
}

/* The kept patches of the slide, in bands of grid rows some 512 pixels
 * high, each band read at once (so that each of the slide's tiles is
 * decoded about once) over the columns that have kept patches; a band
 * wider than BAND_BYTES holds one grid row, read in blocks of columns.
 * Into records of at most part_size patches, each written when full. */
static int slide_patches(const struct cmdline *cl, const char *path, const struct slide_cut *sc,
                         double background)
{
    long p = cl->patch, stride = cl->stride, cols = sc->g.cols;
    /* a multiple of 64 (of every lane count), so that featurize's lane
     * groups fall as in one record; 1 for patches of more than 1 MiB */
    long fill = PART_BYTES / (p * p * cl->channels) / 64 * 64;
    struct parts o = {.size = cl->part_size ? cl->part_size : fill > 0 ? fill : 1};
    o.total = (sc->kept + o.size - 1) / o.size;
    long per_band = 512 / stride < 1 ? 1 : 512 / stride;
    size_t room = (size_t)BAND_BYTES > (size_t)p * p * 3 ? (size_t)BAND_BYTES : (size_t)p * p * 3;
    struct amil_image band = {0, 0, 3, amil_xmalloc(room)};
    int status = 0;
    for (long row0 = 0; row0 < sc->g.rows && status == 0;) {
        long row1 = row0 + per_band < sc->g.rows ? row0 + per_band : sc->g.rows, c0, c1;
        kept_columns(sc, row0, row1, &c0, &c1);
        long height = (row1 - 1 - row0) * stride + p, block = band_columns(cl, height);
        if (row1 - row0 > 1 && c1 - c0 >= block) {   /* too wide: one row, in blocks */
            row1 = row0 + 1, height = p, block = band_columns(cl, height);
            kept_columns(sc, row0, row1, &c0, &c1);
        }
        for (long b0 = c0; b0 <= c1 && status == 0; b0 += block) {
            long b1 = b0 + block - 1 < c1 ? b0 + block - 1 : c1;
            long top = sc->g.y0 + row0 * stride, left = sc->g.x0 + b0 * stride;
            band.width = (int)((b1 - b0) * stride + p), band.height = (int)height;
            if (left + band.width > sc->width)   /* --crop pad: the rest is padding */
                band.width = (int)(sc->width - left);
            if (top + band.height > sc->height)
                band.height = (int)(sc->height - top);
            status = amil_slide_read(&sc->slide, sc->d, left, top, band.width, band.height,
                                     band.pixels);
            for (long row = row0; row < row1 && status == 0; row++)
                for (long col = b0; col <= b1 && status == 0; col++)
                    if (sc->keep[row * cols + col])
                        status = put_patch(cl, path, sc, background, &o, &band,
                                           (row - row0) * stride, (col - b0) * stride, row, col);
        }
        row0 = row1;
    }
    if (o.open)
        amil_record_free(&o.r);
    free(band.pixels);
    return status;
}

/* A whole-slide image: the resolution asked for, the grid at it, the
 * tissue mask, then the patches.  Returns 0, or -1 with a message. */
static int bagify_slide(const struct cmdline *cl, const char *path, struct slide_cut *sc)
{
    if (amil_slide_resolution(&sc->slide, cl->unit, cl->resolution, &sc->d, &sc->level) < 0)
        return -1;
    sc->width = (long)(sc->slide.width[0] / sc->d);
    sc->height = (long)(sc->slide.height[0] / sc->d);
    if (cl->whole) {
        if (amil_image_check_size(sc->width, sc->height, cl->max_pixels) < 0)
            return -1;
        struct amil_image img = {(int)sc->width, (int)sc->height, 3,
                                 amil_xmalloc((size_t)sc->width * sc->height * 3)};
        struct amil_record r;
        if (amil_slide_read(&sc->slide, sc->d, 0, 0, img.width, img.height, img.pixels) < 0) {
            amil_image_free(&img);
            return -1;
        }
        if (bagify_one(cl, path, img, 0, &r) < 0)   /* it frees img */
            return -1;
        amil_slide_describe(&sc->slide, sc->level, sc->d, &r);
        emit(path, &r);
        return 0;
    }
    if (place(cl, sc->height, &sc->g.y0, &sc->g.rows, &sc->g.height) < 0 ||
        place(cl, sc->width, &sc->g.x0, &sc->g.cols, &sc->g.width) < 0)
        return amil_fail("slide of %ld×%ld at downsample %g is smaller than one %ld×%ld patch",
                         sc->width, sc->height, sc->d, cl->patch, cl->patch);
    double background = cl->background_given ? cl->background : SLIDE_BACKGROUND;
    if (slide_mask(cl, sc, background) < 0)
        return -1;
    if (sc->kept == 0)
        return amil_fail("no patch has %g tissue or more", background);
    return slide_patches(cl, path, sc, background);
}

/* Every image of a file (netpbm streams and concatenated PNGs hold
 * several), a record each, written as it is made.  Returns 0, or -1 with a
 * message naming the image when it is not the first. */
static int bagify_file(const struct cmdline *cl, const char *path)
{
    struct slide_cut sc = {0};
    int slide = amil_slide_open(&sc.slide, path);
    if (slide != 0) {
        int status = slide < 0 ? -1 : bagify_slide(cl, path, &sc);
        free(sc.keep);
        amil_slide_close(&sc.slide);
        return status;
    }
    if (cl->unit != AMIL_SLIDE_LEVEL0)
        return amil_fail("not a whole-slide image: --level, --mpp and --magnification are "
                         "for slides");
    size_t len, at = 0;
    unsigned char *data = amil_slurp(path, &len);
    if (!data)
        return -1;
    int status = 0;
    for (long index = 0;; index++) {
        struct amil_image img;
        struct amil_record r;
        size_t start = at;
        int got = amil_image_next(data, len, &at, 3, cl->max_pixels, &img);
        if (got == 0)
            break;
        if (got < 0 || bagify_one(cl, path, img, index, &r) < 0) {
            char why[512];
            snprintf(why, sizeof why, "%s", amil_error());
            status = index > 0 ? amil_fail("image %ld (at byte %zu): %s", index, start, why)
                               : -1;
            break;
        }
        emit(path, &r);
    }
    free(data);
    return status;
}

int main(int argc, char **argv)
{
    amil_init(argc, argv);
    struct cmdline cl = parse_args(argc, argv);
    amil_refuse_terminal(cl.force, "redirect it to a file or a program");
    static char *stdin_only[] = {"-"};
    char **files = cl.nfiles ? cl.files : stdin_only;
    int nfiles = cl.nfiles ? cl.nfiles : 1, status = 0;
    struct amil_progress progress;
    amil_progress_start(&progress);
    for (int i = 0; i < nfiles; i++) {
        if (bagify_file(&cl, files[i]) < 0) {
            amil_warn("%s: %s", files[i], amil_error());
            status = 1;
            if (!cl.keep_going)
                break;
        }
        amil_progress_add(&progress, 1, "files");
    }
    amil_progress_end(&progress);
    return amil_close_stdout() | status;
}
