/* gradcam: Grad-CAM (Selvaraju et al. 2017) of an attention-MIL model,
 * laid back onto the image, to set beside the model's attention (stitch) as
 * the paper does.
 *
 * Reads bag records (bagify's `patches` and `coords`) and, for each, takes
 * the gradient of the bag's score for a class at the model's second
 * convolution, patch by patch: alpha_k = the mean of d score / d A_k over
 * each map, cam = ReLU(sum of alpha_k A_k), an 8×8 map for a 28×28 patch.
 * Each map is scaled up to its patch (bilinear, as torch's
 * F.interpolate(align_corners=False)), laid at the patch's place, averaged
 * where patches overlap, and the image's map min-max normalized.  Out: a
 * heat map over the image (PNG or PAM), or (-f record) the record with
 * `cam` F32 [H, W], the raw map before normalization, 0 outside patches.
 *
 * The CNN baselines' Grad-CAM and Guided Backpropagation are issue 4's
 * next step; this program takes attention-MIL models only.
 */
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "amil.h"
#include "colormap.h"
#include "image.h"
#include "model.h"
#include "nn.h"

enum format { FORMAT_PNG, FORMAT_PAM, FORMAT_RECORD };

struct cmdline {
    const char *model, *output, *image;
    long target;            /* -1: the predicted class */
    enum format format;
    const unsigned char (*colormap)[3];
    double alpha;
};

static const char usage_text[] =
    "usage: gradcam -m MODEL [--class N] [-f png|pam|record] [-o FILE]\n"
    "               [--cmap jet|viridis|gray] [--alpha A] [IMAGE]\n"
    "  -m, --model MODEL   an attention-MIL model\n"
    "  -c, --class N       the class whose score is explained [the predicted one]\n"
    "  -f, --format F      png, pam, or record (the raw map as a tensor)\n"
    "                      [from the -o name, else png]\n"
    "  -o, --output FILE   where it goes [stdout]\n"
    "      --cmap MAP      jet, viridis or gray [jet]\n"
    "  -a, --alpha A       weight of the colour over the image, 0..1 [0.5]\n"
    "  -h, --help          this help\n"
    "Bag records (bagify's) come on stdin, one; IMAGE is the image they were cut\n"
    "from [the record's source].\n";

static _Noreturn void usage(int status)
{
    fputs(usage_text, status ? stderr : stdout);
    exit(status);
}

static struct cmdline parse_args(int argc, char **argv)
{
    enum { CMAP = 256 };
    static const struct option options[] = {
        {"model", required_argument, 0, 'm'},  {"class", required_argument, 0, 'c'},
        {"format", required_argument, 0, 'f'}, {"output", required_argument, 0, 'o'},
        {"cmap", required_argument, 0, CMAP},  {"alpha", required_argument, 0, 'a'},
        {"help", no_argument, 0, 'h'},         {0, 0, 0, 0}};
    struct cmdline cl = {.target = -1, .alpha = 0.5, .colormap = amil_colormap("jet")};
    int c, format_given = 0;
    while ((c = getopt_long(argc, argv, "m:c:f:o:a:h", options, NULL)) != -1) {
        switch (c) {
        case 'm': cl.model = optarg; break;
        case 'c':
            if (amil_parse_long(optarg, 0, 1000, &cl.target) < 0) {
                amil_warn("--class: %s", amil_error());
                usage(2);
            }
            break;
        case 'f':
            format_given = 1;
            if (strcmp(optarg, "png") == 0)
                cl.format = FORMAT_PNG;
            else if (strcmp(optarg, "pam") == 0)
                cl.format = FORMAT_PAM;
            else if (strcmp(optarg, "record") == 0)
                cl.format = FORMAT_RECORD;
            else {
                amil_warn("--format: '%s' is not png, pam or record", optarg);
                usage(2);
            }
            break;
        case 'o': cl.output = optarg; break;
        case CMAP:
            if (!(cl.colormap = amil_colormap(optarg))) {
                amil_warn("--cmap: unknown map '%s'", optarg);
                usage(2);
            }
            break;
        case 'a':
            if (amil_parse_double(optarg, 0, 1, &cl.alpha) < 0) {
                amil_warn("--alpha: %s", amil_error());
                usage(2);
            }
            break;
        case 'h': usage(0);
        default: usage(2);
        }
    }
    if (!cl.model) {
        amil_warn("no model: give -m MODEL");
        usage(2);
    }
    if (argc - optind > 1)
        usage(2);
    cl.image = optind < argc ? argv[optind] : NULL;
    if (cl.image && cl.format == FORMAT_RECORD) {
        amil_warn("-f record draws nothing: no IMAGE");
        usage(2);
    }
    if (!format_given && cl.output) {   /* as stitch: .pam means PAM */
        const char *dot = strrchr(cl.output, '.');
        if (dot && strcmp(dot, ".pam") == 0)
            cl.format = FORMAT_PAM;
    }
    return cl;
}

/* Bilinear scaling of a side×side map to size×size, as torch's
 * F.interpolate(mode="bilinear", align_corners=False): the source of output
 * pixel d is max(0, (d + 0.5) · side / size - 0.5). */
static void upsample(float *out, const float *map, int side, int size)
{
    double scale = (double)side / size;
    for (int y = 0; y < size; y++) {
        double sy = fmax(0, (y + 0.5) * scale - 0.5);
        int y0 = (int)sy, y1 = y0 + (y0 < side - 1);
        double ly = sy - y0;
        for (int x = 0; x < size; x++) {
            double sx = fmax(0, (x + 0.5) * scale - 0.5);
            int x0 = (int)sx, x1 = x0 + (x0 < side - 1);
            double lx = sx - x0;
            out[y * size + x] =
                (float)((1 - ly) * ((1 - lx) * map[y0 * side + x0] + lx * map[y0 * side + x1]) +
                        ly * ((1 - lx) * map[y1 * side + x0] + lx * map[y1 * side + x1]));
        }
    }
}

/* The image's map: each patch's cam scaled up and laid at its coords,
 * averaged where patches overlap; covers (H·W) counts the patches over each
 * pixel. */
static float *lay_out(const float *cams, int side, const int32_t *coords, int n, int patch,
                      int height, int width, unsigned *covers)
{
    float *map = amil_xcalloc((size_t)height * width, sizeof *map);
    float *scaled = amil_xmalloc(sizeof *scaled * (size_t)patch * patch);
    for (int i = 0; i < n; i++) {
        upsample(scaled, cams + (size_t)i * side * side, side, patch);
        for (int y = 0; y < patch; y++)
            for (int x = 0; x < patch; x++) {
                long py = coords[2 * i] + y, px = coords[2 * i + 1] + x;
                if (py < 0 || px < 0 || py >= height || px >= width)
                    continue;
                map[py * width + px] += scaled[y * patch + x];
                covers[py * width + px]++;
            }
    }
    for (size_t j = 0; j < (size_t)height * width; j++)
        if (covers[j])
            map[j] /= (float)covers[j];
    free(scaled);
    return map;
}

/* The heat map: min-max normalized over the covered pixels, through the
 * colour map, blended over the image; pixels of no patch keep the image's. */
static void blend(const struct cmdline *cl, const float *map, const unsigned *covers,
                  struct amil_image *img)
{
    size_t count = (size_t)img->width * img->height;
    float lo = INFINITY, hi = -INFINITY;
    for (size_t j = 0; j < count; j++)
        if (covers[j])
            lo = fminf(lo, map[j]), hi = fmaxf(hi, map[j]);
    for (size_t j = 0; j < count; j++) {
        if (!covers[j])
            continue;
        double v = hi > lo ? (map[j] - lo) / (hi - lo) : 0;
        const unsigned char *colour = amil_colormap_lookup(cl->colormap, v);
        unsigned char *px = img->pixels + 3 * j;
        for (int c = 0; c < 3; c++)
            px[c] = (unsigned char)((1 - cl->alpha) * px[c] + cl->alpha * colour[c] + 0.5);
    }
}

/* The output, opened at the first write, so that a run that fails before
 * it leaves no empty file behind. */
static FILE *output(const struct cmdline *cl)
{
    static FILE *out;
    if (!out && !(out = cl->output ? fopen(cl->output, "wb") : stdout))
        amil_die("%s:", cl->output);
    return out;
}

static int explain(const struct cmdline *cl, const struct amil_model *m,
                   struct amil_work *w, struct amil_record *r)
{
    const struct amil_tensor *patches = amil_bag_patches(m, r);
    const struct amil_tensor *xy = amil_expect(r, "coords", AMIL_I32, 2);
    if (!patches || !xy)
        return -1;
    int n = (int)patches->shape[0];
    if (xy->shape[0] != n || xy->shape[1] != 2)
        return amil_fail("coords do not match the %d patches", n);
    long height, width;
    int has_height = amil_meta_long(r, "image_height", 1, INT32_MAX, &height);
    int has_width = has_height < 0 ? 0 : amil_meta_long(r, "image_width", 1, INT32_MAX, &width);
    if (has_height < 0 || has_width < 0)
        return -1;
    if (!has_height || !has_width)
        return amil_fail("no image_height and image_width: not a bag of bagify's");
    for (int i = 0; i < n; i++)
        if (((const int32_t *)xy->data)[2 * i] < 0 || ((const int32_t *)xy->data)[2 * i + 1] < 0)
            return amil_fail("coords of patch %d are negative", i);
    if (amil_image_check_size(width, height, AMIL_MAX_PIXELS) < 0)
        return -1;
    int target = (int)cl->target;
    if (target >= m->classes)
        return amil_fail("--class %d: the model has %d classes", target, m->classes);
    if (target < 0) {   /* the predicted class */
        amil_featurize(m, w, patches->data, n);
        amil_attend(m, w, w->h, n);
        amil_classify(m, w, w->m);
        target = amil_model_predict(m, w->prob);
    }
    int side = amil_model_gradcam_side(m);
    float *cams = amil_xmalloc(sizeof *cams * (size_t)n * side * side);
    amil_model_gradcam(m, w, patches->data, n, target, cams);
    unsigned *covers = amil_xcalloc((size_t)height * width, sizeof *covers);
    float *map = lay_out(cams, side, xy->data, n, m->patch, (int)height, (int)width, covers);
    free(cams);
    int status = 0;
    if (cl->format == FORMAT_RECORD) {
        int64_t shape[2] = {height, width};
        memcpy(amil_put(r, "cam", AMIL_F32, 2, shape)->data, map,
               sizeof *map * (size_t)height * width);
        amil_meta_setf(r, "cam_class", "%d", target);
        amil_meta_set(r, "cam_layer", "feature_extractor_part1.3");
        amil_remove(r, "patches");
        status = amil_write(output(cl), r);
    } else {
        const char *source = amil_meta_get(r, "source");
        const char *path = cl->image ? cl->image : source;
        struct amil_image img;
        if (!path || strcmp(path, "-") == 0)
            status = amil_fail("no image to draw on: give IMAGE");
        else if (amil_image_load(path, 3, AMIL_MAX_PIXELS, &img) < 0) {
            char why[512];
            snprintf(why, sizeof why, "%s", amil_error());
            status = amil_fail("%s: %s", path, why);
        } else if (img.width != width || img.height != height) {
            status = amil_fail("%s is %d×%d, but the record was cut from a %ld×%ld image",
                               path, img.width, img.height, width, height);
            amil_image_free(&img);
        } else {
            blend(cl, map, covers, &img);
            status = cl->format == FORMAT_PAM ? amil_image_write_pam(output(cl), &img)
                                              : amil_image_write_png(output(cl), &img);
            amil_image_free(&img);
        }
    }
    free(map);
    free(covers);
    return status;
}

int main(int argc, char **argv)
{
    amil_init(argc, argv);
    struct cmdline cl = parse_args(argc, argv);
    struct amil_model m;
    if (amil_model_load(&m, cl.model) < 0)
        amil_die("%s", amil_error());
    struct amil_stream s;
    struct amil_record r;
    amil_stream_open(&s, stdin, "<stdin>");
    int got = amil_read(&s, &r);
    if (got < 0)
        amil_die("%s", amil_error());
    if (got == 0)
        amil_die("no records on standard input");
    struct amil_record next;
    int more = amil_read(&s, &next);   /* one picture: one record */
    if (more == 1 && cl.format != FORMAT_RECORD)
        amil_die("<stdin>: record 1: more than one record; gradcam draws one picture "
                 "(-f record takes a stream)");
    struct amil_work w = {0};
    long index = 0;
    for (;;) {
        if (explain(&cl, &m, &w, &r) < 0)
            amil_die("<stdin>: record %ld: %s", index, amil_error());
        amil_record_free(&r);
        if (more < 0)
            amil_die("%s", amil_error());
        if (more == 0)
            break;
        r = next, index++;
        more = amil_read(&s, &next);
    }
    amil_work_free(&w);
    amil_model_free(&m);
    FILE *out = output(&cl);
    if (out != stdout && fclose(out) != 0)
        amil_die("%s:", cl.output);
    return amil_close_stdout();
}
