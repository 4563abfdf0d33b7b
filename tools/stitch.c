/* stitch: lay attention weights back onto the image, as a picture.
 *
 * Reads records with `attention` F32 [K, N] and `coords` I32 [N, 2] and
 * writes one PNG or PAM per record (or a GeoJSON of the patches, for
 * QuPath).  A whole-slide image is drawn at a downsample, over the slide's
 * own pixels read at it.  Two styles:
 *
 *   heat   the attention of each patch, normalized, averaged pixel by pixel
 *          over overlapping patches, through a colour map, blended over the
 *          image; pixels of no patch (cropped away, or dropped as
 *          background) keep the image's colour.
 *   paper  the paper's picture (train_n_test.py, visualization_attention):
 *          each patch times attention / max attention on a black canvas of
 *          the crop, the canvas stretched by 255 / max as scipy's imsave did.
 */
#include <errno.h>
#include <limits.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/base.h"
#include "base/output.h"
#include "media/colormap.h"
#include "media/geojson.h"
#include "media/image.h"
#include "media/legend.h"
#include "media/slide.h"
#include "record/record.h"
#include "record/stream.h"
#include "tool/cli.h"
#include "tool/options.h"
#include "tool/view.h"

enum style { STYLE_HEAT, STYLE_PAPER };
enum norm { NORM_MINMAX, NORM_MAX, NORM_RANK };

struct cmdline {
    enum style style;
    enum norm norm;
    enum amil_picture format;
    const unsigned char (*colormap)[3];
    double alpha;
    long top, branch;
    const char *output, *dir, *image;
    int force;              /* a picture to a terminal */
    int no_legend;          /* heat: no colour bar with its values */
    int geojson;            /* -f geojson: the patches for QuPath, no picture */
    struct amil_view view;  /* --downsample or --width */
    double above;           /* geojson: only patches whose value is at least this */
};

static const char usage_text[] =
    "usage: stitch [--style heat|paper] [-o FILE | -d DIR] [-f png|pam|geojson]\n"
    "              [--cmap jet|viridis|gray] [--alpha A] [--norm minmax|max|rank]\n"
    "              [--top K] [--above V] [--branch B] [--downsample D | --width W]\n"
    "              [--no-legend] [--force] [IMAGE]\n"
    "  -S, --style S      heat: colour map over the image; paper: the paper's\n"
    "                     patches × attention picture [heat]\n"
    "  -o, --output FILE  write the picture here [stdout]\n"
    "  -d, --dir DIR      one picture per record, named after its source\n"
    "  -f, --format F     png, pam, or geojson: the patches for QuPath\n"
    "                     [from the -o name, else png]\n"
    "  -c, --cmap MAP     jet, viridis or gray [jet]\n"
    "  -a, --alpha A      weight of the colour over the image, 0..1 [0.5]\n"
    "  -n, --norm N       minmax, max or rank (percentile) [minmax]\n"
    "  -t, --top K        outline the K patches of most attention [0]\n"
    "  -b, --branch B     which attention branch, from 0 [0]\n"
    "      --above V      geojson: only patches of normalized attention >= V\n"
    "  -D, --downsample D draw at 1/D of the image's size [1; slides: to 4096]\n"
    "  -W, --width W      draw W pixels wide\n"
    "      --no-legend    no colour bar with its values (heat)\n"
    "      --force        write the picture even to a terminal\n"
    "  -h, --help         this help\n"
    "IMAGE is the image the records were cut from [the record's source]\n";

static struct cmdline parse_args(int argc, char **argv)
{
    amil_usage_is(usage_text);
    static const char *const styles[] = {"heat", "paper", NULL};
    static const char *const norms[] = {"minmax", "max", "rank", NULL};
    static const char *const formats[] = {"png", "pam", "geojson", NULL};
    struct cmdline cl = {.alpha = 0.5, .colormap = amil_colormap("jet"), .above = -1};
    int format = -1;   /* -f's name, by its index in formats */
    struct amil_opt options[] = {
        AMIL_CHOICE("style", 'S', &cl.style, styles),
        AMIL_STRING("output", 'o', &cl.output),
        AMIL_STRING("dir", 'd', &cl.dir),
        AMIL_CHOICE("format", 'f', &format, formats),
        AMIL_READ("cmap", 'c', &cl.colormap, amil_option_colormap),
        AMIL_DOUBLE("alpha", 'a', &cl.alpha, 0, 1),
        AMIL_CHOICE("norm", 'n', &cl.norm, norms),
        AMIL_LONG("top", 't', &cl.top, 0, 1L << 30),
        AMIL_LONG("branch", 'b', &cl.branch, 0, 1L << 30),
        AMIL_FLAG("force", 0, &cl.force),
        AMIL_FLAG("no-legend", 0, &cl.no_legend),
        AMIL_READ("downsample", 'D', &cl.view, amil_option_view),
        AMIL_READ("width", 'W', &cl.view, amil_option_view),
        AMIL_DOUBLE("above", 0, &cl.above, 0, 1),
        AMIL_OPTIONS_END};
    optind = amil_options(argc, argv, options);
    cl.geojson = format == 2;
    cl.format = format == 1 ? AMIL_PICTURE_PAM : AMIL_PICTURE_PNG;
    /* the last given of the options only the heat style uses: "--cmap" */
    static const char *const heat_options[] = {"cmap", "alpha", "norm", "top", "no-legend", NULL};
    const char *heat = amil_option_last(options, heat_options);
    char heat_option[32] = "";
    if (heat)
        snprintf(heat_option, sizeof heat_option, "--%s", heat);
    if (optind < argc)
        cl.image = argv[optind++];
    if (optind < argc)
        amil_misuse("%s: one IMAGE at most; records come on standard input", argv[optind]);
    if (cl.style == STYLE_PAPER && heat)
        amil_misuse("%s applies to --style heat, not paper", heat_option);
    if (cl.output && cl.dir)
        amil_misuse("give -o or -d, not both");
    amil_input_note("-");
    amil_input_note(cl.image);
    if (cl.output && amil_output_probe(cl.output) < 0)
        amil_die("%s", amil_error());
    if (format < 0) {
        const char *dot = cl.output ? strrchr(cl.output, '.') : NULL;
        cl.geojson = dot && (strcmp(dot, ".geojson") == 0 || strcmp(dot, ".json") == 0);
        cl.format = amil_picture_of_name(cl.output);
    }
    if (cl.style == STYLE_PAPER && (cl.view.downsample || cl.view.width || cl.geojson))
        amil_misuse("the paper's picture is drawn at the image's size, as a picture");
    if (cl.above >= 0 && !cl.geojson)
        amil_misuse("--above chooses the patches of -f geojson");
    int drawn = cl.view.downsample || cl.view.width ||
                (heat && strcmp(heat, "top") != 0 && strcmp(heat, "norm") != 0);
    if (cl.geojson && drawn)
        amil_misuse("-f geojson draws no picture: no %s",
                    heat ? heat_option : "--downsample or --width");
    return cl;
}

/* What stitch needs of a record, checked. */
struct bag {
    long n, patch;
    double scale;                    /* image pixels per patch pixel (a slide's downsample) */
    double side;                     /* a patch's side in image pixels: patch × scale */
    const float *attention;          /* [n], the chosen branch */
    const int32_t *coords;           /* [n][2], y then x */
    const struct amil_tensor *patches;   /* U8 [n, P, P, C], or NULL */
    long crop_y, crop_x, crop_height, crop_width;
};

static int read_bag(const struct cmdline *cl, const struct amil_record *r, struct bag *b)
{
    const struct amil_tensor *a = amil_record_expect(r, "attention", AMIL_F32, 2);
    const struct amil_tensor *xy = amil_record_expect(r, "coords", AMIL_I32, 2);
    if (!a || !xy)
        return -1;
    b->n = (long)a->shape[1];
    if (xy->shape[0] != b->n || xy->shape[1] != 2)
        return amil_fail("coords is [%lld, %lld], attention has %ld patches",
                         (long long)xy->shape[0], (long long)xy->shape[1], b->n);
    if (cl->branch >= a->shape[0])
        return amil_fail("--branch %ld: the attention has %lld branch%s", cl->branch,
                         (long long)a->shape[0], a->shape[0] == 1 ? "" : "es");
    if (b->n == 0)
        return amil_fail("the bag has no patches");
    b->attention = (const float *)a->data + cl->branch * b->n;
    b->coords = xy->data;
    b->patches = amil_record_find(r, "patches");
    if (b->patches && (b->patches->dtype != AMIL_U8 || b->patches->ndim != 4 ||
                       b->patches->shape[0] != b->n || b->patches->shape[1] < 1 ||
                       b->patches->shape[1] != b->patches->shape[2] ||
                       (b->patches->shape[3] != 1 && b->patches->shape[3] != 3)))
        return amil_fail("tensor 'patches' is not U8 [%ld, P, P, 1 or 3]", b->n);
    int has = amil_record_meta_long(r, "patch", 1, 65536, &b->patch);
    if (has < 0)
        return -1;
    if (has == 0 && !b->patches)
        return amil_fail("no patch size: neither metadata 'patch' nor tensor 'patches'");
    if (has == 0)
        b->patch = (long)b->patches->shape[1];
    if (b->patches && b->patches->shape[1] != b->patch)
        return amil_fail("metadata patch %ld disagrees with tensor 'patches'", b->patch);
    if (amil_record_downsample(r, &b->scale) < 0)
        return -1;
    b->side = (double)b->patch * b->scale;
    for (long i = 0; i < b->n; i++)   /* a softmax: finite, not negative */
        if (!isfinite(b->attention[i]) || b->attention[i] < 0)
            return amil_fail("attention of patch %ld is %g, not a weight", i,
                             (double)b->attention[i]);
    /* The crop, where bagify recorded it (all four keys); else the
     * patches' bounding box. */
    long top = LONG_MAX, left = LONG_MAX, bottom = 0, right = 0;
    for (long i = 0; i < b->n; i++) {
        long y = b->coords[2 * i], x = b->coords[2 * i + 1];
        if (y < 0 || x < 0)
            return amil_fail("coords of patch %ld are negative", i);
        long side = (long)ceil(b->side);
        top = y < top ? y : top, left = x < left ? x : left;
        bottom = y + side > bottom ? y + side : bottom;
        right = x + side > right ? x + side : right;
    }
    b->crop_y = top, b->crop_x = left;
    b->crop_height = bottom - top, b->crop_width = right - left;
    const char *keys[4] = {"crop_y", "crop_x", "crop_height", "crop_width"};
    long *values[4] = {&b->crop_y, &b->crop_x, &b->crop_height, &b->crop_width};
    long crop[4];
    int found = 0;
    for (int k = 0; k < 4; k++) {
        int got = amil_record_meta_long(r, keys[k], k < 2 ? 0 : 1, INT32_MAX, &crop[k]);
        if (got < 0)
            return -1;
        found += got;
    }
    if (found != 0 && found != 4)
        return amil_fail("the metadata has some of crop_y, crop_x, crop_height and "
                         "crop_width, not all four");
    for (int k = 0; found && k < 4; k++)
        *values[k] = crop[k];
    /* The paper's canvas is the crop: no larger than an image may be. */
    return cl->style == STYLE_PAPER
               ? amil_image_check_size(b->crop_width, b->crop_height, AMIL_MAX_PIXELS)
               : 0;
}

/* The paper's picture: patch / 255 × (a / max a), in float32 as PyTorch and
 * NumPy computed it, on a black canvas the size of the crop; then scipy's
 * bytescale with the canvas minimum, 0 (the paper's 32 black rows, which we
 * do not copy, guaranteed it), so 255 / max: (uint8)(v × 255 / max + 0.5). */
static int paper_picture(const struct bag *b, const struct amil_image *img,
                         struct amil_image *out)
{
    int C = b->patches ? (int)b->patches->shape[3] : img->channels;
    long P = b->patch;
    out->width = (int)b->crop_width, out->height = (int)b->crop_height;
    out->channels = C;
    size_t count = (size_t)out->width * out->height * C;
    float *canvas = amil_xcalloc(count, sizeof *canvas);
    float top = 0;
    for (long i = 0; i < b->n; i++)
        top = b->attention[i] > top ? b->attention[i] : top;
    for (long i = 0; i < b->n; i++) {
        float weight = top > 0 ? b->attention[i] / top : 0;
        long y0 = b->coords[2 * i] - b->crop_y, x0 = b->coords[2 * i + 1] - b->crop_x;
        /* the part of the patch on the canvas */
        long y_from = y0 < 0 ? -y0 : 0, x_from = x0 < 0 ? -x0 : 0;
        long y_to = y0 + P > out->height ? out->height - y0 : P;
        long x_to = x0 + P > out->width ? out->width - x0 : P;
        for (long y = y_from; y < y_to; y++)
            for (long x = x_from; x < x_to; x++)
                for (int c = 0; c < C; c++) {
                    long cy = y0 + y, cx = x0 + x, iy = cy + b->crop_y, ix = cx + b->crop_x;
                    unsigned char px;
                    if (b->patches)
                        px = ((const unsigned char *)b->patches->data)
                            [((i * P + y) * P + x) * C + c];
                    else if (iy < img->height && ix < img->width)
                        px = img->pixels[((size_t)iy * img->width + ix) * C + c];
                    else
                        continue;
                    canvas[((size_t)cy * out->width + cx) * C + c] = (float)px / 255.0f * weight;
                }
    }
    double high = 0;
    for (size_t i = 0; i < count; i++)
        high = canvas[i] > high ? canvas[i] : high;
    double scale = 255.0 / (high > 0 ? high : 1);
    out->pixels = amil_xmalloc(count);
    for (size_t i = 0; i < count; i++) {
        double v = canvas[i] * scale;
        out->pixels[i] = (unsigned char)((v > 255 ? 255 : v) + 0.5);
    }
    free(canvas);
    return 0;
}

static int by_value(const void *a, const void *b)
{
    double x = **(const double *const *)a, y = **(const double *const *)b;
    return (x > y) - (x < y);
}

/* Attention normalized to [0, 1]: (a - min) / (max - min), a / max, or the
 * percentile rank (r - 1) / (n - 1) with ties given their mean rank.  All
 * equal values give 0.5 under minmax and rank. */
static double *normalize(enum norm norm, const float *a, long n)
{
    double *v = amil_xmalloc((size_t)n * sizeof *v);
    double lo = INFINITY, hi = -INFINITY;
    for (long i = 0; i < n; i++) {
        v[i] = a[i];
        lo = fmin(lo, v[i]), hi = fmax(hi, v[i]);
    }
    if (norm == NORM_MAX) {
        for (long i = 0; i < n; i++)
            v[i] = hi > 0 ? v[i] / hi : 0;
    } else if (norm == NORM_MINMAX) {
        for (long i = 0; i < n; i++)
            v[i] = hi > lo ? (v[i] - lo) / (hi - lo) : 0.5;
    } else {
        double **order = amil_xmalloc((size_t)n * sizeof *order);
        double *rank = amil_xmalloc((size_t)n * sizeof *rank);
        for (long i = 0; i < n; i++)
            order[i] = &v[i];
        qsort(order, (size_t)n, sizeof *order, by_value);
        for (long i = 0; i < n;) {
            long j = i;
            while (j + 1 < n && *order[j + 1] == *order[i])
                j++;
            for (long k = i; k <= j; k++)   /* mean of ranks i..j, from 0 */
                rank[order[k] - v] = n > 1 ? (i + j) / 2.0 / (n - 1) : 0.5;
            i = j + 1;
        }
        memcpy(v, rank, (size_t)n * sizeof *v);
        free(rank);
        free(order);
    }
    return v;
}

/* Draws a 2-pixel frame in white, then black inside it, around a patch. */
static void outline(struct amil_image *out, long top, long left, long size)
{
    static const unsigned char colours[2] = {255, 0};
    for (int ring = 0; ring < 2; ring++) {
        long t = top + ring, l = left + ring, s = size - 2 * ring;
        /* only the part inside the picture: a hostile patch may claim a
         * side of 10^10 pixels at the view's scale */
        for (int edge = 0; edge < 4; edge++) {
            int across = edge < 2;   /* the top and bottom edges run across x */
            long from = across ? l : t, limit = across ? out->width : out->height;
            long k0 = from < 0 ? -from : 0, k1 = s < limit - from ? s : limit - from;
            for (long k = k0; k < k1; k++) {
                long y = across ? (edge == 0 ? t : t + s - 1) : t + k;
                long x = across ? l + k : (edge == 2 ? l : l + s - 1);
                if (y < 0 || x < 0 || y >= out->height || x >= out->width)
                    continue;
                unsigned char *px = out->pixels + ((size_t)y * out->width + x) * out->channels;
                memset(px, colours[ring], (size_t)out->channels);
            }
        }
    }
}

/* The heat map over img, the image at downsample D read from image_path:
 * patch i covers the picture's pixels [y/D, (y + side)/D) (x likewise),
 * rounded out. */
static int heat_picture(const struct cmdline *cl, const struct bag *b,
                        const struct amil_image *img, const char *image_path, double D,
                        struct amil_image *out, struct amil_progress *progress)
{
    size_t count = (size_t)img->width * img->height;
    double *sum = amil_xcalloc(count, sizeof *sum);
    unsigned *covers = amil_xcalloc(count, sizeof *covers);
    double *v = normalize(cl->norm, b->attention, b->n);
    for (long i = 0; i < b->n; i++) {
        if (i % 4096 == 4095)   /* a slide's bag takes a while */
            amil_progress_within(progress, 4096, "patches");
        long y0 = (long)(b->coords[2 * i] / D), x0 = (long)(b->coords[2 * i + 1] / D);
        long y1 = (long)ceil((b->coords[2 * i] + b->side) / D);
        long x1 = (long)ceil((b->coords[2 * i + 1] + b->side) / D);
        for (long y = y0; y < y1 && y < img->height; y++)
            for (long x = x0; x < x1 && x < img->width; x++) {
                sum[(size_t)y * img->width + x] += v[i];
                covers[(size_t)y * img->width + x]++;
            }
    }
    out->width = img->width, out->height = img->height, out->channels = 3;
    out->pixels = amil_xmalloc(count * 3);
    for (size_t i = 0; i < count; i++) {
        const unsigned char *px = img->pixels + i * 3;
        unsigned char *o = out->pixels + i * 3;
        if (!covers[i]) {
            memcpy(o, px, 3);
            continue;
        }
        amil_blend(o, px, amil_colormap_lookup(cl->colormap, sum[i] / covers[i]), cl->alpha);
    }
    /* The top K by attention, ties to the earlier patch, outlined; their
     * squares (top, left, side) kept clear of the legend. */
    char *taken = amil_xcalloc((size_t)b->n, 1);
    long top_k = cl->top < b->n ? cl->top : b->n;
    long *outlined = amil_xmalloc((size_t)(top_k ? top_k : 1) * 3 * sizeof *outlined);
    for (long k = 0; k < top_k; k++) {
        long best = -1;
        for (long i = 0; i < b->n; i++)
            if (!taken[i] && (best < 0 || b->attention[i] > b->attention[best]))
                best = i;
        long *square = outlined + 3 * k;
        square[0] = (long)(b->coords[2 * best] / D);
        square[1] = (long)(b->coords[2 * best + 1] / D);
        square[2] = (long)ceil(b->side / D);
        outline(out, square[0], square[1], square[2]);
        taken[best] = 1;
    }
    free(taken);
    double lo = INFINITY, hi = -INFINITY;
    for (long i = 0; i < b->n; i++)
        lo = fmin(lo, b->attention[i]), hi = fmax(hi, b->attention[i]);
    if (cl->norm == NORM_MINMAX && hi > lo && hi < 2 * lo) {
        int digits = amil_legend_digits(lo, hi, 3);
        amil_warn("warning: %s: attention from %.*g to %.*g, nearly uniform: min-max "
                  "stretches it over the whole colour map (the legend gives the values)",
                  image_path, digits, lo, digits, hi);
    }
    if (!cl->no_legend)
        amil_legend_draw(out, cl->colormap, cl->norm == NORM_MAX ? 0 : lo, hi, covers,
                         outlined, top_k);
    free(outlined);
    free(v);
    free(sum);
    free(covers);
    return 0;
}

/* The picture to path (stdout if NULL), whole or not at all. */
static int write_picture(const struct cmdline *cl, const struct amil_image *out,
                         const char *path)
{
    if (!path)
        return amil_picture_write(stdout, out, cl->format);
    return amil_picture_save(path, out, cl->format);
}

/* -f geojson: the patches with their attention and the bag's prediction,
 * those of --top and --above only when given. */
static int write_geojson(const struct cmdline *cl, const struct amil_record *r,
                         const struct bag *b, long index)
{
    const struct amil_tensor *a = amil_record_find(r, "attention");
    const struct amil_tensor *prob = amil_record_find(r, "prob");
    struct amil_geojson g = {b->n, b->coords, b->side, (int)a->shape[0], a->data, 0, NULL, -1,
                             amil_record_meta(r, "source")};
    if (prob && prob->dtype == AMIL_F32 && prob->ndim == 1 && prob->shape[0] <= 1000) {
        g.classes = (int)prob->shape[0], g.prob = prob->data;
        for (int c = 0; c < g.classes; c++)
            if (!isfinite(g.prob[c]))
                return amil_fail("prob %d is %g, not a probability", c, (double)g.prob[c]);
        if (amil_record_meta_long(r, "predicted", 0, g.classes - 1, &g.predicted) < 0)
            return -1;
    }
    unsigned char *keep = amil_xmalloc((size_t)b->n);
    double *v = normalize(cl->norm, b->attention, b->n);
    for (long i = 0; i < b->n; i++)
        keep[i] = v[i] >= cl->above;
    if (cl->top > 0) {   /* the top K of those, ties to the earlier patch */
        unsigned char *taken = amil_xcalloc((size_t)b->n, 1);
        for (long k = 0; k < cl->top; k++) {
            long best = -1;
            for (long i = 0; i < b->n; i++)
                if (keep[i] && !taken[i] && (best < 0 || b->attention[i] > b->attention[best]))
                    best = i;
            if (best >= 0)
                taken[best] = 1;
        }
        memcpy(keep, taken, (size_t)b->n);
        free(taken);
    }
    char *path = cl->dir ? amil_output_name(cl->dir, g.source ? g.source : "record", index,
                                            "geojson")
                         : NULL;
    const char *to = path ? path : cl->output;
    struct amil_output o = {.file = stdout};
    int status = to ? amil_output_open(&o, to) : 0;
    if (status == 0 && amil_geojson_write(o.file, &g, keep) < 0)
        status = to ? (amil_output_abort(&o), amil_fail_in(to)) : -1;
    else if (status == 0 && to)
        status = amil_output_commit(&o);
    free(path), free(keep), free(v);
    return status;
}

static int stitch_one(const struct cmdline *cl, const struct amil_record *r, long index,
                      struct amil_progress *progress)
{
    struct bag b;
    if (read_bag(cl, r, &b) < 0)
        return -1;
    const char *source = amil_record_meta(r, "source");
    char found[4096];
    const char *image_path = cl->image ? cl->image : amil_record_source_path(r, found, sizeof found);
    if (cl->image && !amil_record_is_source(r, cl->image))
        amil_warn("warning: %s is not the record's source (%s); drawing on it as asked",
                  cl->image, source);
    if (cl->geojson)
        return write_geojson(cl, r, &b, index);
    struct amil_image img = {0}, out = {0};
    int need_image = cl->style == STYLE_HEAT || !b.patches;
    double D = 1;
    if (need_image) {
        if (!image_path || strcmp(image_path, "-") == 0)
            return amil_fail("no image to draw on: give IMAGE (the record's source is %s)",
                             image_path ? "standard input" : "unknown");
        /* heat draws in colour; the paper's picture keeps the bag's channels */
        int channels = cl->style == STYLE_PAPER && b.patches ? (int)b.patches->shape[3] : 3;
        if (amil_view_read(&cl->view, image_path, cl->image ? 0 : amil_record_image_index(r),
                           channels, r, &img, &D) < 0)
            return -1;
    }
    if (cl->style == STYLE_PAPER)
        paper_picture(&b, &img, &out);
    else
        heat_picture(cl, &b, &img, image_path, D, &out, progress);
    amil_image_free(&img);
    char *path = NULL;
    if (cl->dir)
        path = amil_output_name(cl->dir, source ? source : "record", index,
                                cl->format == AMIL_PICTURE_PAM ? "pam" : "png");
    int status = write_picture(cl, &out, path ? path : cl->output);
    free(path);
    amil_image_free(&out);
    amil_progress_add(progress, cl->style == STYLE_PAPER ? b.n : b.n % 4096, "patches");
    return status;
}

int main(int argc, char **argv)
{
    amil_init(argc, argv);
    struct cmdline cl = parse_args(argc, argv);
    if (!cl.output && !cl.dir && !cl.geojson)   /* GeoJSON is text */
        amil_refuse_terminal(cl.force, "give -o FILE or -d DIR, or redirect it");
    if (cl.dir && mkdir(cl.dir, 0777) < 0 && errno != EEXIST)
        amil_die("%s:", cl.dir);
    if (cl.dir && amil_output_probe_dir(cl.dir) < 0)   /* before the work */
        amil_die("%s", amil_error());
    if (cl.dir)   /* a later record's source may be an earlier picture's name */
        amil_output_defer();
    struct amil_stream s;
    struct amil_record r, next;
    if (amil_stream_first(&s, &r) < 0)
        amil_die("%s", amil_error());
    int got = 1;
    struct amil_progress progress;
    amil_progress_start(&progress);
    /* Look one record ahead, so that without -d a second record is an
     * error before any picture is written. */
    while (got == 1) {
        long index = s.index - 1;
        int more = amil_record_read(&s, &next);
        if (more == 1 && !cl.dir)
            amil_die("<stdin>: record %ld: more than one record; use -d DIR for one "
                     "picture each", index + 1);
        if (stitch_one(&cl, &r, index, &progress) < 0)
            amil_die("<stdin>: record %ld: %s", index, amil_error());
        amil_record_free(&r);
        if (more < 0)
            amil_die("%s", amil_error());
        r = next;
        got = more;
    }
    amil_progress_end(&progress);
    if (amil_output_commit_deferred() < 0)
        amil_die("%s", amil_error());
    return amil_close_stdout();
}
