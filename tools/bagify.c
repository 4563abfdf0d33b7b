/* bagify: cut images into bags of square patches, one record per image.
 *
 * The paper's geometry by default: 28×28 patches at stride 28, the image
 * centre-cropped to the largest whole number of patches (torchvision's
 * CenterCrop offset), patches in row-major order.  Each record carries
 * `patches` U8 [N, P, P, C], `coords` I32 [N, 2] (y, x in the original
 * image) and the metadata of amil-stream(5).
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "amil.h"
#include "breakhis.h"
#include "image.h"

/* Saturation (0..255) that glass and white fat stay under: 0.1 of full. */
#define MAX_GLASS_SATURATION 26

enum crop { CROP_CENTER, CROP_NONE, CROP_PAD };
static const char *crop_names[] = {"center", "none", "pad"};
enum label_from { LABEL_NONE, LABEL_FIXED, LABEL_DIR, LABEL_BREAKHIS };

struct cmdline {
    long patch, stride;
    enum crop crop;
    long pad_value;
    int channels;
    enum label_from label_from;
    long label;
    double background;          /* least tissue fraction a patch keeps; 0 off */
    long saturation;            /* tissue above it; -1: Otsu's, capped */
    const char *mask;           /* a picture of the tissue mask, or NULL */
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
    "              [--max-pixels N] [FILE...]\n"
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
    "  -k, --keep-going     after a bad image, go on with the next\n"
    "      --force          write records even to a terminal\n"
    "  -h, --help           this help\n";

static struct cmdline parse_args(int argc, char **argv)
{
    amil_usage_is(usage_text);
    static const struct option options[] = {
        {"patch", required_argument, 0, 'p'},  {"stride", required_argument, 0, 's'},
        {"crop", required_argument, 0, 'c'},   {"pad-value", required_argument, 0, 'P'},
        {"gray", no_argument, 0, 'g'},         {"label", required_argument, 0, 'l'},
        {"label-from", required_argument, 0, 'L'},
        {"background", required_argument, 0, 'b'},
        {"tissue-saturation", required_argument, 0, 'T'},
        {"mask", required_argument, 0, 'K'},
        {"max-pixels", required_argument, 0, 'M'},
        {"whole", no_argument, 0, 'w'},
        {"keep-going", no_argument, 0, 'k'},   {"help", no_argument, 0, 'h'},
        {"force", no_argument, 0, 'F'},
        {0, 0, 0, 0},
    };
    struct cmdline cl = {.patch = 28, .stride = 0, .crop = CROP_CENTER,
                         .pad_value = 255, .channels = 3, .max_pixels = AMIL_MAX_PIXELS,
                         .saturation = -1};
    int c, cutting = 0;   /* an option about patches was given */
    while ((c = getopt_long(argc, argv, "p:s:c:gl:L:b:wkh", options, NULL)) != -1) {
        cutting |= strchr("pscPbTK", c) != NULL;
        switch (c) {
        case 'p': cl.patch = amil_option_long("--patch", optarg, 1, 65536); break;
        case 's': cl.stride = amil_option_long("--stride", optarg, 1, 65536); break;
        case 'w': cl.whole = 1; break;
        case 'F': cl.force = 1; break;
        case 'c':
            for (cl.crop = 0; cl.crop < 3; cl.crop++)
                if (strcmp(optarg, crop_names[cl.crop]) == 0)
                    break;
            if (cl.crop == 3)
                amil_misuse("--crop: '%s' is not center, none or pad", optarg);
            break;
        case 'P': cl.pad_value = amil_option_long("--pad-value", optarg, 0, 255); break;
        case 'g': cl.channels = 1; break;
        case 'l':
            if (cl.label_from != LABEL_NONE)
                amil_misuse("give one of -l and -L, once");
            cl.label_from = LABEL_FIXED;
            cl.label = amil_option_long("--label", optarg, 0, 1000000);
            break;
        case 'L':
            if (cl.label_from != LABEL_NONE)
                amil_misuse("give one of -l and -L, once");
            if (strcmp(optarg, "dir") == 0)
                cl.label_from = LABEL_DIR;
            else if (strcmp(optarg, "breakhis") == 0)
                cl.label_from = LABEL_BREAKHIS;
            else
                amil_misuse("--label-from: '%s' is not dir or breakhis", optarg);
            break;
        case 'b':
            cl.background = amil_option_double("--background", optarg, 0, 1);
            break;
        case 'M': cl.max_pixels = amil_option_long("--max-pixels", optarg, 1, 1L << 40); break;
        case 'T': cl.saturation = amil_option_long("--tissue-saturation", optarg, 0, 254); break;
        case 'K': cl.mask = optarg; break;
        case 'k': cl.keep_going = 1; break;
        case 'h': amil_usage(0);
        default: amil_usage(2);
        }
    }
    if (cl.whole && cutting)
        amil_misuse("--whole keeps the image whole: no patches to size, crop or filter");
    if (cl.stride == 0)
        cl.stride = cl.patch;
    cl.files = argv + optind;
    cl.nfiles = argc - optind;
    if ((cl.saturation >= 0 || cl.mask) && cl.background == 0)
        amil_misuse("--tissue-saturation and --mask are of the background filter: give -b");
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

/* Saturation of HSV on 0..255: 255 (max - min) / max, rounded. */
static int saturation(const unsigned char *rgb)
{
    int hi = rgb[0], lo = rgb[0];
    for (int c = 1; c < 3; c++) {
        if (rgb[c] > hi) hi = rgb[c];
        if (rgb[c] < lo) lo = rgb[c];
    }
    return hi == 0 ? 0 : (255 * (hi - lo) + hi / 2) / hi;
}

/* Otsu's threshold over a 256-bin histogram: the level t that maximizes the
 * between-class variance of {<= t} and {> t}. */
static int otsu(const size_t histogram[256])
{
    double total = 0, sum = 0;
    for (int i = 0; i < 256; i++) {
        total += (double)histogram[i];
        sum += (double)i * histogram[i];
    }
    double weight_low = 0, sum_low = 0, best = -1;
    int threshold = 0;
    for (int t = 0; t < 256; t++) {
        weight_low += (double)histogram[t];
        sum_low += (double)t * histogram[t];
        double weight_high = total - weight_low;
        if (weight_low == 0 || weight_high == 0)
            continue;
        double mean_low = sum_low / weight_low;
        double mean_high = (sum - sum_low) / weight_high;
        double between = weight_low * weight_high * (mean_low - mean_high) *
                         (mean_low - mean_high);
        if (between > best) {
            best = between;
            threshold = t;
        }
    }
    return threshold;
}

/* Marks each pixel of an RGB image as tissue (1) or background (0): Otsu's
 * threshold on saturation (stained tissue is coloured, glass is white or
 * gray), capped at MAX_GLASS_SATURATION.  Otsu alone suits a slide that is
 * mostly glass; on a BreakHis field that is mostly tissue it splits pale
 * pink stroma from purple nuclei instead (threshold 44 on the committed
 * image, dropping dense tissue), and the cap keeps it on glass.  An image
 * with no colour at all is judged on darkness instead. */
static unsigned char *tissue_mask(const struct amil_image *rgb, long fixed, int *used)
{
    size_t count = (size_t)rgb->width * rgb->height;
    unsigned char *score = amil_xmalloc(count);
    size_t histogram[256] = {0};
    int colourless = 1;
    for (size_t i = 0; i < count; i++) {
        score[i] = (unsigned char)saturation(rgb->pixels + 3 * i);
        colourless &= score[i] == 0;
    }
    for (size_t i = 0; i < count; i++) {
        if (colourless) {
            const unsigned char *px = rgb->pixels + 3 * i;
            score[i] = (unsigned char)(255 - amil_luma(px));
        }
        histogram[score[i]]++;
    }
    int threshold = otsu(histogram);
    if (threshold > MAX_GLASS_SATURATION)
        threshold = MAX_GLASS_SATURATION;
    if (fixed >= 0)   /* the user's, for pale or dark stains */
        threshold = (int)fixed;
    *used = threshold;
    for (size_t i = 0; i < count; i++)
        score[i] = score[i] > threshold;
    return score;
}

/* The mask as a gray PNG: tissue white, background black. */
static int write_mask(const char *path, const unsigned char *tissue, int width, int height)
{
    struct amil_image picture = {width, height, 1, amil_xmalloc((size_t)width * height)};
    for (size_t i = 0; i < (size_t)width * height; i++)
        picture.pixels[i] = tissue[i] ? 255 : 0;
    struct amil_output o;
    int status = amil_output_open(&o, path);
    if (status == 0 && amil_image_write_png(o.file, &picture) < 0) {
        amil_fail_in(path);
        amil_output_abort(&o);
        status = -1;
    } else if (status == 0) {
        status = amil_output_commit(&o);
    }
    free(picture.pixels);
    return status;
}

static void set_label(const struct cmdline *cl, const char *path,
                      const struct amil_breakhis *bh, int is_breakhis,
                      struct amil_record *r, int *bad)
{
    long label = cl->label;
    if (cl->label_from == LABEL_NONE)
        return;
    if (cl->label_from == LABEL_BREAKHIS) {
        if (!is_breakhis) {
            *bad = 1;
            return;
        }
        label = bh->tumor_class == 'M';
    } else if (cl->label_from == LABEL_DIR) {
        /* The folder holding the file: a/b/1/x.png -> "1". */
        const char *end = strrchr(path, '/');
        const char *start = end;
        while (start && start > path && start[-1] != '/')
            start--;
        char dir[32];
        if (!end || end == start || (size_t)(end - start) >= sizeof dir) {
            amil_fail("no folder name to take a label from");
            *bad = 1;
            return;
        }
        memcpy(dir, start, (size_t)(end - start));
        dir[end - start] = '\0';
        if (amil_parse_long(dir, 0, 1000000, &label) < 0) {
            amil_fail("folder '%s' is not a class number", dir);
            *bad = 1;
            return;
        }
    }
    amil_record_set_metaf(r, "label", "%ld", label);
}

/* The parts of a BreakHis file name as metadata; nothing for another name. */
static void set_breakhis(struct amil_record *r, const struct amil_breakhis *bh,
                         int is_breakhis)
{
    if (!is_breakhis)
        return;
    amil_record_set_meta(r, "tumor_class", bh->tumor_class == 'B' ? "benign" : "malignant");
    amil_record_set_meta(r, "tumor_type", amil_breakhis_type_name(bh->tumor_type));
    amil_record_set_meta(r, "patient", bh->patient);
    amil_record_set_metaf(r, "magnification", "%d", bh->magnification);
    amil_record_set_meta(r, "procedure", bh->procedure);
    amil_record_set_meta(r, "year", bh->year);
    amil_record_set_meta(r, "slide", bh->slide);
    amil_record_set_meta(r, "sequence", bh->sequence);
}

/* Where the patches are: the crop's corner and size, patches down and
 * across it. */
struct grid {
    long y0, x0, height, width, rows, cols;
};

/* The record's metadata before any pixel: where the image came from, its
 * label, its sizes and its BreakHis name's parts.  Returns 0, or -1 with a
 * message (a label that is not one). */
static int describe(const struct cmdline *cl, const char *path, const struct amil_image *img,
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
    int bad_label = 0;
    set_label(cl, path, &bh, is_breakhis, r, &bad_label);
    if (bad_label) {
        amil_record_free(r);
        return -1;
    }
    amil_record_set_metaf(r, "image_height", "%d", img->height);
    amil_record_set_metaf(r, "image_width", "%d", img->width);
    amil_record_set_metaf(r, "channels", "%d", cl->channels);
    set_breakhis(r, &bh, is_breakhis);
    return 0;
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
    if (describe(cl, path, &img, index, r) < 0) {
        amil_image_free(&img);
        return -1;
    }
    if (cl->whole) {
        put_image(cl, &img, r);
        amil_image_free(&img);
        return 0;
    }
    amil_record_set_metaf(r, "patch", "%ld", cl->patch);
    amil_record_set_metaf(r, "stride", "%ld", cl->stride);
    amil_record_set_meta(r, "crop", crop_names[cl->crop]);
    amil_record_set_metaf(r, "crop_y", "%ld", g.y0);
    amil_record_set_metaf(r, "crop_x", "%ld", g.x0);
    amil_record_set_metaf(r, "crop_height", "%ld", g.height);
    amil_record_set_metaf(r, "crop_width", "%ld", g.width);
    long p = cl->patch, C = cl->channels, total = g.rows * g.cols;
    if ((double)total * p * p * C > (double)AMIL_MAX_DATA) {
        amil_image_free(&img);
        amil_record_free(r);
        return amil_fail("%ld patches of %ld×%ld would make a record over the limit of "
                         "%llu bytes", total, p, p, AMIL_MAX_DATA);
    }
    int threshold = 0;
    unsigned char *tissue = cl->background > 0 ? tissue_mask(&img, cl->saturation, &threshold)
                                               : NULL;
    if (tissue) {
        amil_record_set_metaf(r, "background", "%g", cl->background);
        amil_record_set_metaf(r, "tissue_saturation", "%d", threshold);
    }
    if (tissue && cl->mask && write_mask(cl->mask, tissue, img.width, img.height) < 0) {
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

/* Every image of a file (netpbm streams and concatenated PNGs hold
 * several), a record each, written as it is made.  Returns 0, or -1 with a
 * message naming the image when it is not the first. */
static int bagify_file(const struct cmdline *cl, const char *path)
{
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
        if (amil_record_write(stdout, &r) < 0)
            amil_die("writing the record of %s:", path);
        amil_record_free(&r);
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
