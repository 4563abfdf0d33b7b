/* gradcam: Grad-CAM (Selvaraju et al. 2017), Guided Backpropagation
 * (Springenberg et al. 2015) and Guided Grad-CAM of a model's decision,
 * laid onto the image, to set beside A-MIL's attention (stitch) as the
 * paper does.
 *
 * A CNN model (net, vgg19, resnet18, resnet50) explains IMAGE tile by tile, the
 * tiles it classifies the image by: the class's logit is taken back to a
 * layer (Grad-CAM: alpha_k = the mean of its gradient over map k, cam =
 * ReLU(sum alpha_k A_k), scaled up bilinearly) or to the pixels (Guided
 * Backpropagation: every ReLU passes back only positive gradients), each
 * tile's map laid at its place, averaged where tiles overlap.  Guided
 * Grad-CAM is the guided map times the min-max normalized cam.
 *
 * An attention-MIL model reads bag records (bagify's `patches` and `coords`) and, for each, takes
 * the gradient of the bag's score for a class at the model's second
 * convolution, patch by patch: alpha_k = the mean of d score / d A_k over
 * each map, cam = ReLU(sum of alpha_k A_k), an 8×8 map for a 28×28 patch.
 * Each map is scaled up to its patch (bilinear, as torch's
 * F.interpolate(align_corners=False)), laid at the patch's place, averaged
 * where patches overlap, and the image's map min-max normalized.  Out: a
 * heat map over the image (PNG or PAM), or (-f record) the record with
 * `cam` F32 [H, W], the raw map before normalization, 0 outside patches.
 *
 */
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "base/output.h"
#include "compute/nn.h"
#include "media/colormap.h"
#include "media/image.h"
#include "media/legend.h"
#include "media/slide.h"
#include "models/model.h"
#include "record/record.h"
#include "record/stream.h"
#include "tool/cli.h"
#include "tool/options.h"
#include "tool/view.h"

enum method { METHOD_GRADCAM, METHOD_GUIDED, METHOD_GUIDED_GRADCAM };
static const char *const method_names[] = {"gradcam", "guided", "guided-gradcam"};

struct cmdline {
    const char *model, *output, *image;
    const char *layer;      /* NULL: the model's default */
    enum method method;
    long target;            /* -1: the predicted class */
    int record;             /* -f record: the raw maps, not a picture */
    enum amil_picture format;
    const unsigned char (*colormap)[3];
    double alpha;
    int force;              /* binary to a terminal */
    int no_legend;          /* a Grad-CAM picture without its colour bar */
    struct amil_view view;  /* --downsample or --width: the map's resolution */
};

static const char usage_text[] =
    "usage: gradcam -m MODEL [--method gradcam|guided|guided-gradcam] [--class N]\n"
    "               [--layer NAME] [-f png|pam|record] [-o FILE]\n"
    "               [--cmap jet|viridis|gray] [--alpha A] [--no-legend] [--force]\n"
    "               [--downsample D | --width W] [IMAGE]\n"
    "  -m, --model MODEL   a CNN (net, vgg19, resnet18, resnet50) or an\n"
    "                      attention-MIL model\n"
    "  -M, --method M      gradcam, guided (Guided Backpropagation) or\n"
    "                      guided-gradcam (their product); CNNs only but gradcam\n"
    "                      [gradcam]\n"
    "  -c, --class N       the class whose score is explained [the predicted one]\n"
    "  -l, --layer NAME    Grad-CAM's layer, by its state_dict name [net: relu5,\n"
    "                      vgg19: features.35, resnets: layer4]\n"
    "  -f, --format F      png, pam, or record (the raw map as a tensor)\n"
    "                      [from the -o name, else png]\n"
    "  -o, --output FILE   where it goes [stdout]\n"
    "      --cmap MAP      jet, viridis or gray [jet]\n"
    "  -a, --alpha A       weight of the colour over the image, 0..1 [0.5]\n"
    "  -D, --downsample D  attention-MIL: the map at 1/D of the image's size\n"
    "                      [1; slides: to 4096 a side]\n"
    "  -W, --width W       attention-MIL: the map W pixels wide\n"
    "      --no-legend     no colour bar with the map's values (Grad-CAM)\n"
    "      --force         write even to a terminal\n"
    "  -h, --help          this help\n"
    "A CNN explains IMAGE.  For an attention-MIL model, bag records (bagify's)\n"
    "come on stdin, and IMAGE is the image they were cut from [the record's\n"
    "source].\n";

/* --method: a reader, not AMIL_CHOICE, for its message of its own. */
static void read_method(void *to, const char *option, const char *arg)
{
    int method = amil_name_index(method_names, 3, arg);
    if (method < 0)
        amil_misuse("%s: '%s' is not gradcam, guided or guided-gradcam", option, arg);
    *(enum method *)to = method;
}

static struct cmdline parse_args(int argc, char **argv)
{
    amil_usage_is(usage_text);
    static const char *const formats[] = {"png", "pam", "record", NULL};
    struct cmdline cl = {.target = -1, .alpha = 0.5, .colormap = amil_colormap("jet")};
    int format = -1;   /* -f's name, by its index in formats */
    struct amil_opt options[] = {
        AMIL_STRING("model", 'm', &cl.model),
        AMIL_LONG("class", 'c', &cl.target, 0, 1000),
        AMIL_READ("method", 'M', &cl.method, read_method),
        AMIL_STRING("layer", 'l', &cl.layer),
        AMIL_CHOICE("format", 'f', &format, formats),
        AMIL_STRING("output", 'o', &cl.output),
        AMIL_READ("cmap", 0, &cl.colormap, amil_option_colormap),
        AMIL_DOUBLE("alpha", 'a', &cl.alpha, 0, 1),
        AMIL_READ("downsample", 'D', &cl.view, amil_option_view),
        AMIL_READ("width", 'W', &cl.view, amil_option_view),
        AMIL_FLAG("force", 0, &cl.force),
        AMIL_FLAG("no-legend", 0, &cl.no_legend),
        AMIL_OPTIONS_END};
    optind = amil_options(argc, argv, options);
    cl.record = format == 2;
    cl.format = format == 1 ? AMIL_PICTURE_PAM : AMIL_PICTURE_PNG;
    if (!cl.model)
        amil_misuse("no model: give -m MODEL");
    if (cl.no_legend && (cl.record || cl.method != METHOD_GRADCAM))
        amil_misuse("--no-legend applies to a Grad-CAM picture: %s has no legend",
                    cl.record ? "-f record" : "--method guided or guided-gradcam");
    if (argc - optind > 1)
        amil_misuse("%s: one IMAGE at most; records come on standard input", argv[optind + 1]);
    cl.image = optind < argc ? argv[optind] : NULL;
    amil_input_note("-");
    amil_input_note(cl.image);
    amil_input_note(cl.model);
    if (cl.output && amil_output_probe(cl.output) < 0)
        amil_die("%s", amil_error());
    if (format < 0)
        cl.format = amil_picture_of_name(cl.output);
    return cl;
}

/* The map at downsample D (image pixels per map pixel) of the cams (N, S,
 * S) of patches of side `side` image pixels at coords: each map pixel whose
 * centre lies in a patch takes that patch's cam at its centre (bilinear, as
 * F.interpolate(align_corners=False) scales the cam to the patch; at D 1
 * and a side of P, exactly that), averaged over the patches that hold it;
 * covers (height, width) counts them. */
static float *lay_out(const float *cams, int S, const int32_t *coords, int n, double side,
                      double D, int height, int width, unsigned *covers)
{
    float *map = amil_xcalloc((size_t)height * width, sizeof *map);
    double per_pixel = S / side;   /* cam pixels per image pixel */
    for (int i = 0; i < n; i++) {
        const float *cam = cams + (size_t)i * S * S;
        double top = coords[2 * i], left = coords[2 * i + 1];
        /* the map pixels p with top <= (p + 0.5) D < top + side */
        long y0 = (long)ceil(top / D - 0.5), y1 = (long)ceil((top + side) / D - 0.5);
        long x0 = (long)ceil(left / D - 0.5), x1 = (long)ceil((left + side) / D - 0.5);
        for (long y = y0 < 0 ? 0 : y0; y < y1 && y < height; y++) {
            double sy = ((y + 0.5) * D - top) * per_pixel - 0.5;
            for (long x = x0 < 0 ? 0 : x0; x < x1 && x < width; x++) {
                double sx = ((x + 0.5) * D - left) * per_pixel - 0.5;
                map[y * width + x] += amil_bilinear_at(cam, S, S, sy, sx);
                covers[y * width + x]++;
            }
        }
    }
    for (size_t j = 0; j < (size_t)height * width; j++)
        if (covers[j])
            map[j] /= (float)covers[j];
    return map;
}

/* The heat map: min-max normalized over the covered pixels, through the
 * colour map, blended over the image; pixels of no patch keep the image's.
 * Then the legend, the map's least and greatest values at the colour
 * bar's ends, unless --no-legend. */
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
        unsigned char *px = img->pixels + 3 * j;
        amil_blend(px, px, amil_colormap_lookup(cl->colormap, v), cl->alpha);
    }
    if (!cl->no_legend && lo <= hi)
        amil_legend_draw(img, cl->colormap, lo, hi, covers, NULL, 0);
}

/* The output, opened at the first write and renamed into place at the
 * end (amil_output_finish), so that a run that fails leaves nothing behind and
 * -o never holds part of a picture. */
static struct amil_output out_file;

static FILE *output(const struct cmdline *cl)
{
    FILE *f = amil_output_lazy(&out_file, cl->output);
    if (!f)
        amil_die("%s", amil_error());
    return f;
}

/* A record (img NULL) or a picture to the output; a failure names -o. */
static int write_out(const struct cmdline *cl, const struct amil_record *r,
                     const struct amil_image *img)
{
    FILE *f = output(cl);
    int status = img ? amil_picture_write(f, img, cl->format) : amil_record_write(f, r);
    return status < 0 && cl->output ? amil_fail_in(cl->output) : status;
}

/* The picture of the map over the record's image at the view's downsample
 * D, written out. */
static int draw(const struct cmdline *cl, const struct amil_record *r, const float *cams,
                int side, int n, const int32_t *coords, double patch_side)
{
    char found[4096];
    const char *path = cl->image ? cl->image : amil_record_source_path(r, found, sizeof found);
    if (cl->image && !amil_record_is_source(r, cl->image))
        amil_warn("warning: %s is not the record's source (%s); drawing on it as asked",
                  cl->image, amil_record_meta(r, "source"));
    if (!path || strcmp(path, "-") == 0)
        return amil_fail("no image to draw on: give IMAGE");
    struct amil_image img = {0};
    double D;
    if (amil_view_read(&cl->view, path, cl->image ? 0 : amil_record_image_index(r), 3, r, &img,
                       &D) < 0)
        return -1;
    unsigned *covers = amil_xcalloc((size_t)img.height * img.width, sizeof *covers);
    float *map = lay_out(cams, side, coords, n, patch_side, D, img.height, img.width, covers);
    blend(cl, map, covers, &img);
    int status = write_out(cl, NULL, &img);
    amil_image_free(&img);
    free(map), free(covers);
    return status;
}

static int explain(const struct cmdline *cl, struct amil_model *m, struct amil_record *r)
{
    long n = m->ops->bag(m, r);
    const struct amil_tensor *xy = n < 0 ? NULL : amil_record_expect(r, "coords", AMIL_I32, 2);
    if (!xy)
        return -1;
    if (xy->shape[0] != n || xy->shape[1] != 2)
        return amil_fail("coords do not match the %ld patches", n);
    long height, width;
    int has_height = amil_record_meta_long(r, "image_height", 1, INT32_MAX, &height);
    int has_width =
        has_height < 0 ? 0 : amil_record_meta_long(r, "image_width", 1, INT32_MAX, &width);
    if (has_height < 0 || has_width < 0)
        return -1;
    if (!has_height || !has_width)
        return amil_fail("no image_height and image_width: not a bag of bagify's");
    const int32_t *coords = xy->data;
    for (int i = 0; i < n; i++)
        if (coords[2 * i] < 0 || coords[2 * i + 1] < 0)
            return amil_fail("coords of patch %d are negative", i);
    double scale;   /* image pixels per patch pixel: a slide's level */
    if (amil_record_downsample(r, &scale) < 0)
        return -1;
    /* the map's downsample: a slide's (its patches record its vendor) at
     * most AMIL_VIEW_SIDE a side unless the view says */
    int slide = amil_record_meta(r, "slide_vendor") != NULL;
    double D = amil_view_downsample(&cl->view, width, height, slide);
    long map_height = (long)ceil(height / D), map_width = (long)ceil(width / D);
    if (!slide && amil_image_check_size(width, height, AMIL_MAX_PIXELS) < 0)
        return -1;
    char where[64];
    snprintf(where, sizeof where, "the map at downsample %g", D);
    if (cl->record && amil_image_check_size(map_width, map_height, AMIL_MAX_PIXELS) < 0)
        return amil_fail_in(where);
    struct amil_bag_cams c;
    if (m->ops->gradcam_bag(m, r, (int)cl->target, &c) < 0)
        return -1;
    /* a slide's bag is large: its patches go before the picture is made */
    amil_record_remove(r, "patches");
    int status;
    if (cl->record) {
        unsigned *covers = amil_xcalloc((size_t)map_height * map_width, sizeof *covers);
        float *map = lay_out(c.cams, c.side, coords, c.n, c.patch * scale, D, (int)map_height,
                             (int)map_width, covers);
        int64_t shape[2] = {map_height, map_width};
        memcpy(amil_record_put(r, "cam", AMIL_F32, 2, shape)->data, map,
               sizeof *map * (size_t)map_height * map_width);
        free(map), free(covers);
        amil_record_set_metaf(r, "cam_class", "%d", c.target);
        amil_record_set_meta(r, "cam_layer", c.layer);
        if (D != 1)
            amil_record_set_metaf(r, "cam_downsample", "%.17g", D);
        status = write_out(cl, r, NULL);
    } else {
        status = draw(cl, r, c.cams, c.side, c.n, coords, c.patch * scale);
    }
    free(c.cams);
    return status;
}

/* ---- CNN models ----------------------------------------------------------- */

/* The cam min-max normalized to [0, 1], in place. */
static void normalize(float *map, size_t n)
{
    float lo = INFINITY, hi = -INFINITY;
    for (size_t j = 0; j < n; j++)
        lo = fminf(lo, map[j]), hi = fmaxf(hi, map[j]);
    for (size_t j = 0; j < n; j++)
        map[j] = hi > lo ? (map[j] - lo) / (hi - lo) : 0;
}

static int compare_floats(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* A guided map (3, H, W) as a picture, as the paper's code (Utku Ozbulak's
 * pytorch-cnn-visualizations) saved it: in colour min-max normalized over
 * all values (save_gradient_images); in grey (--cmap gray) the sum of
 * |value| over the channels, normalized from its least to its 99th
 * percentile and clipped (convert_to_grayscale). */
static void draw_guided(const struct cmdline *cl, const float *guided, struct amil_image *img)
{
    size_t pixels = (size_t)img->width * img->height;
    if (cl->colormap == amil_colormap("gray")) {
        float *sum = amil_xmalloc(sizeof *sum * pixels);
        float *sorted = amil_xmalloc(sizeof *sorted * pixels);
        for (size_t p = 0; p < pixels; p++)
            sorted[p] = sum[p] = fabsf(guided[p]) + fabsf(guided[pixels + p]) +
                                 fabsf(guided[2 * pixels + p]);
        qsort(sorted, pixels, sizeof *sorted, compare_floats);
        /* np.percentile(x, 99): linear between ranks floor(q) and ceil(q),
         * q = 0.99 (n - 1) */
        double q = 0.99 * (double)(pixels - 1), low = sorted[(size_t)q];
        double p99 = low + (q - floor(q)) * (sorted[(size_t)ceil(q)] - low), lo = sorted[0];
        for (size_t p = 0; p < pixels; p++) {
            double v = p99 > lo ? fmin(1, fmax(0, (sum[p] - lo) / (p99 - lo))) : 0;
            memset(img->pixels + 3 * p, (int)(v * 255 + 0.5), 3);
        }
        free(sum), free(sorted);
        return;
    }
    float lo = INFINITY, hi = -INFINITY;
    for (size_t j = 0; j < 3 * pixels; j++)
        lo = fminf(lo, guided[j]), hi = fmaxf(hi, guided[j]);
    for (size_t p = 0; p < pixels; p++)
        for (int c = 0; c < 3; c++) {
            double v = hi > lo ? (guided[c * pixels + p] - lo) / ((double)hi - lo) : 0;
            img->pixels[3 * p + c] = (unsigned char)(v * 255 + 0.5);
        }
}

static void explain_image(const struct cmdline *cl, struct amil_model *m)
{
    if (!cl->image)
        amil_die("%s explains an image: give IMAGE", m->ops->noun);
    if (cl->view.downsample || cl->view.width)
        amil_die("--downsample and --width scale an attention-MIL model's map over a "
                 "slide; a CNN's maps are at the image's size");
    struct amil_image img;
    if (amil_image_load(cl->image, 0, 3, AMIL_MAX_PIXELS, &img) < 0)
        amil_die("%s: %s", cl->image, amil_error());
    struct amil_image_maps maps;
    if (m->ops->gradcam_image(m, &img, cl->image, cl->layer, (int)cl->target,
                              cl->method != METHOD_GUIDED, cl->method != METHOD_GRADCAM,
                              &maps) < 0)
        amil_die("%s", amil_error());
    size_t pixels = (size_t)img.width * img.height;
    int status;
    if (cl->record) {
        struct amil_record r;
        amil_record_init(&r);
        amil_record_set_meta(&r, "kind", "gradcam");
        amil_record_set_meta(&r, "source", cl->image);
        amil_record_set_metaf(&r, "image_height", "%d", img.height);
        amil_record_set_metaf(&r, "image_width", "%d", img.width);
        amil_record_set_meta(&r, "model", maps.arch);
        amil_record_set_meta(&r, "method", method_names[cl->method]);
        amil_record_set_metaf(&r, "cam_class", "%d", maps.target);
        amil_record_set_meta(&r, "cam_layer", maps.layer);
        int64_t shape[3] = {3, img.height, img.width};
        if (maps.cam)
            memcpy(amil_record_put(&r, "cam", AMIL_F32, 2, shape + 1)->data, maps.cam,
                   sizeof *maps.cam * pixels);
        if (maps.guided)
            memcpy(amil_record_put(&r, "guided", AMIL_F32, 3, shape)->data, maps.guided,
                   sizeof *maps.guided * 3 * pixels);
        status = write_out(cl, &r, NULL);
        amil_record_free(&r);
    } else {
        if (cl->method == METHOD_GRADCAM)
            blend(cl, maps.cam, maps.covers, &img);
        else {
            if (maps.cam) {   /* Guided Grad-CAM: guided × the cam in [0, 1] */
                normalize(maps.cam, pixels);
                for (size_t p = 0; p < pixels; p++)
                    for (int c = 0; c < 3; c++)
                        maps.guided[c * pixels + p] *= maps.cam[p];
            }
            draw_guided(cl, maps.guided, &img);
        }
        status = write_out(cl, NULL, &img);
    }
    if (status < 0)
        amil_die("%s", amil_error());
    free(maps.cam), free(maps.guided), free(maps.covers);
    amil_image_free(&img);
}

/* ---- attention-MIL models ------------------------------------------------ */

static void explain_bags(const struct cmdline *cl, struct amil_model *m)
{
    if (cl->method != METHOD_GRADCAM)
        amil_die("--method %s: Guided Backpropagation is for CNN models; %s is %s",
                 method_names[cl->method], cl->model, m->ops->noun);
    if (!m->ops->cam_layer(m, cl->layer))
        amil_die("%s", amil_error());
    if (cl->image && cl->record)
        amil_die("-f record draws nothing: no IMAGE with %s", m->ops->noun);
    /* a bag at a time (a slide's parts joined); for a picture, one bag,
     * checked before it is drawn */
    struct amil_stream s;
    struct amil_record r;
    amil_stream_open(&s, stdin, "<stdin>");
    long index = s.index;
    int got = amil_bag_read(&s, &r);
    if (got == 0)
        amil_die("<stdin>: no records");
    while (got == 1) {
        if (!cl->record) {
            struct amil_record next;
            long at = s.index;
            got = amil_bag_read(&s, &next);
            if (got == 1)
                amil_die("<stdin>: record %ld: more than one record; gradcam draws one "
                         "picture (-f record takes a stream)", at);
        }
        if (got >= 0 && explain(cl, m, &r) < 0)
            amil_die("<stdin>: record %ld: %s", index, amil_error());
        amil_record_free(&r);
        if (!cl->record)
            break;
        index = s.index;
        got = amil_bag_read(&s, &r);
    }
    if (got < 0)
        amil_die("%s", amil_error());
}

int main(int argc, char **argv)
{
    amil_init(argc, argv);
    struct cmdline cl = parse_args(argc, argv);
    if (!cl.output)
        amil_refuse_terminal(cl.force, "give -o FILE, or redirect it");
    struct amil_model model;
    if (amil_model_load(&model, cl.model) < 0 || amil_model_runs(&model, AMIL_STAGE_GRADCAM) < 0)
        amil_die("%s", amil_error());
    if (model.ops->gradcam_image)
        explain_image(&cl, &model);
    else
        explain_bags(&cl, &model);
    amil_model_free(&model);
    if (amil_output_finish(&out_file) < 0)
        amil_die("%s", amil_error());
    return amil_close_stdout();
}
