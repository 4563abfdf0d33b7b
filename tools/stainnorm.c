/* stainnorm: give H&E images the stains of a reference, so that one lab's
 * or scanner's colours look like another's (stain.h: Macenko et al. 2009,
 * Reinhard et al. 2001).
 *
 * The reference's stains are fitted once, from an image (-r) or from a
 * record that --save-stains wrote (-s).  Then each input's own stains are
 * fitted and its pixels normalized to the reference's.  An input is an
 * image (PNG, JPEG, PNM, PAM ...), written out as a PNG or PAM, or a
 * record stream: the `patches` of each bag or the `image` of each image
 * record rewritten in place, the rest passed through, so that
 *
 *   bagify x.png | stainnorm -r ref.png | featurize -m model.st
 *
 * normalizes what the network sees.
 */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/base.h"
#include "base/output.h"
#include "media/image.h"
#include "media/stain.h"
#include "media/tissue.h"
#include "record/record.h"
#include "record/stream.h"
#include "tool/cli.h"

struct cmdline {
    int method;                     /* enum amil_stain_method; -1: not given */
    const char *reference, *stains; /* -r IMAGE or -s STAINS */
    const char *save_stains;
    int tissue;                     /* fit on tissue only */
    struct amil_stain_params params;
    const char *output, *dir;
    enum amil_picture format;
    int force;
    char **inputs;                  /* NULL-terminated; none: standard input */
};

static const char usage_text[] =
    "usage: stainnorm [-m macenko|reinhard] (-r REFERENCE | -s STAINS) [--tissue]\n"
    "                 [--save-stains FILE] [--io I] [--alpha A] [--beta B]\n"
    "                 [-o FILE | -d DIR] [-f png|pam] [--force] [FILE...]\n"
    "  -m, --method M        macenko or reinhard [macenko; with -s, the file's]\n"
    "  -r, --reference IMAGE the image whose stains the inputs take\n"
    "  -s, --stains FILE     the stains --save-stains wrote, instead\n"
    "  -t, --tissue          fit each image's stains on its tissue only (bagify's\n"
    "                        background rule)\n"
    "      --save-stains FILE  write the reference's stains, for -s\n"
    "      --io I            Macenko: the light through glass, 1..255 [240]\n"
    "      --alpha A         Macenko: percentile of the extreme angles, 0..50 [1]\n"
    "      --beta B          Macenko: least optical density fitted on [0.15]\n"
    "  -o, --output FILE     where the image or records go [stdout]\n"
    "  -d, --dir DIR         one image per input image, named after it\n"
    "  -f, --format F        png or pam, for images [from the -o name, else png]\n"
    "      --force           write even to a terminal\n"
    "  -h, --help            this help\n"
    "FILE is an image or a record stream [standard input]; bags and image\n"
    "records have their patches or image normalized, the rest passed on.\n";

static struct cmdline parse_args(int argc, char **argv)
{
    amil_usage_is(usage_text);
    static const char *const methods[] = {"macenko", "reinhard", NULL};
    static const char *const formats[] = {"png", "pam", NULL};   /* enum amil_picture's order */
    struct cmdline cl = {.method = -1, .params = AMIL_STAIN_PARAMS};
    struct amil_opt options[] = {
        AMIL_CHOICE("method", 'm', &cl.method, methods),
        AMIL_STRING("reference", 'r', &cl.reference),
        AMIL_STRING("stains", 's', &cl.stains),
        AMIL_FLAG("tissue", 't', &cl.tissue),
        AMIL_STRING("save-stains", 0, &cl.save_stains),
        AMIL_DOUBLE("io", 0, &cl.params.io, 1, 255),
        AMIL_DOUBLE("alpha", 0, &cl.params.alpha, 0, 50),
        AMIL_DOUBLE("beta", 0, &cl.params.beta, 0, 5),
        AMIL_STRING("output", 'o', &cl.output),
        AMIL_STRING("dir", 'd', &cl.dir),
        AMIL_CHOICE("format", 'f', &cl.format, formats),
        AMIL_FLAG("force", 0, &cl.force),
        AMIL_OPTIONS_END};
    optind = amil_options(argc, argv, options);
    static const char *const params[] = {"io", "alpha", "beta", NULL};
    int params_given = amil_option_last(options, params) != NULL;
    if (!cl.reference == !cl.stains)
        amil_misuse("give the reference: -r IMAGE or -s STAINS, one of them");
    if (cl.stains && (cl.save_stains || params_given))
        amil_misuse("-s STAINS holds the fitted stains and their constants: no %s",
                    cl.save_stains ? "--save-stains" : "--io, --alpha or --beta");
    if (cl.method == AMIL_STAIN_REINHARD && params_given)
        amil_misuse("--io, --alpha and --beta are Macenko's");
    if (cl.output && cl.dir)
        amil_misuse("give -o FILE or -d DIR, not both");
    if (!amil_option_given(options, "format"))
        cl.format = amil_picture_of_name(cl.output);
    cl.inputs = argv + optind;
    return cl;
}

/* Whether path names a picture by its extension. */
static int is_picture_name(const char *path)
{
    static const char *const pictures[] = {".png", ".pam", ".ppm", ".pnm", ".pgm", ".jpg",
                                           ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".tga"};
    const char *dot = strrchr(path, '.');
    for (size_t i = 0; dot && i < sizeof pictures / sizeof pictures[0]; i++)
        if (strcasecmp(dot, pictures[i]) == 0)
            return 1;
    return 0;
}

/* The stains of n RGB pixels, fitted on their tissue with --tissue. */
static int fit(const struct cmdline *cl, enum amil_stain_method method,
               const struct amil_stain_params *p, const uint8_t *rgb, size_t n,
               struct amil_stains *s)
{
    uint8_t *mask = NULL;
    if (cl->tissue) {
        struct amil_tissue_scores scores;
        amil_tissue_scores_init(&scores, n);
        amil_tissue_score(&scores, 0, rgb, n);
        int used;
        mask = amil_tissue_mask(&scores, -1, &used);
        amil_tissue_scores_free(&scores);
    }
    int status = amil_stain_fit(method, p, rgb, n, mask, s);
    free(mask);
    return status;
}

/* The reference's stains and the constants they were fitted with. */
struct reference {
    struct amil_stains stains;
    struct amil_stain_params params;
};

/* Whether an input is an image (1) or records (0); -1 with a message. */
static int is_image(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return amil_fail("%s: %s", path, strerror(errno));
    struct amil_stream s;
    amil_stream_open(&s, f, path);
    int image = amil_stream_is_image(&s);
    fclose(f);
    return image;
}

static struct reference load_reference(const struct cmdline *cl)
{
    struct reference ref = {.params = cl->params};
    if (cl->stains) {
        struct amil_record r;
        if (is_image(cl->stains) == 1)
            amil_die("%s: an image, not stains: a reference image goes with -r, the stains "
                     "--save-stains wrote with -s", cl->stains);
        if (amil_record_load(cl->stains, &r) < 0)
            amil_die("%s", amil_error());
        if (amil_stains_from_record(&r, &ref.stains, &ref.params) < 0)
            amil_die("%s: %s", cl->stains, amil_error());
        amil_record_free(&r);
        if (cl->method >= 0 && (int)ref.stains.method != cl->method)
            amil_die("%s: stains fitted by %s, not by --method %s", cl->stains,
                     ref.stains.method == AMIL_STAIN_MACENKO ? "macenko" : "reinhard",
                     cl->method == AMIL_STAIN_MACENKO ? "macenko" : "reinhard");
        return ref;
    }
    struct amil_image img;
    if (amil_image_load(cl->reference, 0, 3, AMIL_MAX_PIXELS, &img) < 0)
        amil_die("%s: %s", cl->reference, amil_error());
    enum amil_stain_method method = cl->method < 0 ? AMIL_STAIN_MACENKO : cl->method;
    if (fit(cl, method, &ref.params, img.pixels, (size_t)img.width * img.height,
            &ref.stains) < 0)
        amil_die("%s: the reference: %s", cl->reference, amil_error());
    amil_image_free(&img);
    /* the stains as --save-stains keeps them, in float32, so that -s of
     * the file gives the same bytes as -r */
    struct amil_record r;
    amil_record_init(&r);
    amil_stains_to_record(&ref.stains, &ref.params, &r);
    amil_record_set_meta(&r, "source", cl->reference);
    if (amil_stains_from_record(&r, &ref.stains, &ref.params) < 0)
        amil_die("%s: the reference: %s", cl->reference, amil_error());
    if (cl->save_stains && amil_record_save(cl->save_stains, &r) < 0)
        amil_die("%s", amil_error());
    amil_input_note(cl->save_stains);   /* no later output of the run replaces it */
    amil_record_free(&r);
    return ref;
}

/* n RGB pixels fitted and normalized to the reference, in place. */
static int normalize(const struct cmdline *cl, const struct reference *ref, uint8_t *rgb,
                     size_t n)
{
    struct amil_stains own;
    if (fit(cl, ref->stains.method, &ref->params, rgb, n, &own) < 0)
        return -1;
    amil_stain_normalize(&ref->params, &own, &ref->stains, rgb, n);
    return 0;
}

/* One record: its patches or image normalized, then written. */
static int normalize_record(const struct cmdline *cl, const struct reference *ref,
                            struct amil_record *r, FILE *out)
{
    struct amil_tensor *t = amil_record_find(r, "patches");
    int ndim = 4;
    if (!t)
        t = amil_record_find(r, "image"), ndim = 3;
    if (!t)
        return amil_fail("no patches or image to normalize");
    if (t->dtype != AMIL_U8 || t->ndim != ndim)
        return amil_fail("tensor '%s' is not U8 [%s]", t->name,
                         ndim == 4 ? "N, P, P, C" : "H, W, C");
    if (t->shape[ndim - 1] != 3)
        return amil_fail("%s of %lld channel%s: stains are normalized in colour (RGB)",
                         t->name, (long long)t->shape[ndim - 1],
                         t->shape[ndim - 1] == 1 ? "" : "s");
    size_t n = t->nbytes / 3;   /* U8: a byte a value */
    if (normalize(cl, ref, t->data, n) < 0)
        return -1;
    amil_record_set_meta(r, "stain_method",
                         ref->stains.method == AMIL_STAIN_MACENKO ? "macenko" : "reinhard");
    amil_record_set_meta(r, "stain_reference", cl->reference ? cl->reference : cl->stains);
    return amil_record_write(out, r);
}

/* Each image in data (len bytes: one, or a netpbm or PNG stream of
 * several) normalized and written to -o, DIR/<name>.png (a second image
 * of a file DIR/<name>-<index>.png) or standard output; *images counts
 * those written, so that a second one without -d is refused. */
static int normalize_images(const struct cmdline *cl, const struct reference *ref,
                            const char *name, const unsigned char *data, size_t len,
                            long *images)
{
    struct amil_image img;
    size_t at = 0;
    int got;
    for (long index = 0; (got = amil_image_next(data, len, &at, 3, AMIL_MAX_PIXELS, &img)) == 1;
         index++) {
        if (++*images > 1 && !cl->dir) {
            amil_image_free(&img);
            return amil_fail("a second image: give -d DIR for several");
        }
        int status = normalize(cl, ref, img.pixels, (size_t)img.width * img.height);
        /* a name given before gets -N: the image's index in its file after
         * the first, else its number in the run (y.png b.png y.png: y-2) */
        char *path = cl->dir && status == 0
                         ? amil_output_name(cl->dir, name, index ? index : *images - 1,
                                            cl->format == AMIL_PICTURE_PAM ? "pam" : "png")
                         : NULL;
        const char *to = path ? path : cl->output;
        if (status == 0)
            status = to ? amil_picture_save(to, &img, cl->format)
                        : amil_picture_write(stdout, &img, cl->format);
        free(path);
        amil_image_free(&img);
        if (status < 0)
            return -1;
    }
    return got < 0 ? -1 : 0;
}

/* Where records go: -o's file, opened at the first one, or standard
 * output. */
static struct amil_output records_out;

static FILE *records_file(const struct cmdline *cl)
{
    FILE *f = amil_output_lazy(&records_out, cl->output);
    if (!f)
        amil_die("%s", amil_error());
    return f;
}


/* The inputs' kinds agree with the output before anything is written:
 * images or records, not both; several images need -d, records no -d. */
static void check_inputs(const struct cmdline *cl)
{
    int images = 0;
    const char *first_image = NULL, *first_records = NULL, *second_image = NULL;
    for (char **in = cl->inputs; *in; in++) {
        /* standard input, a pipe or a FIFO cannot be looked at twice: it is
         * judged when read, alone */
        struct stat st;
        if (strcmp(*in, "-") == 0 || (stat(*in, &st) == 0 && !S_ISREG(st.st_mode))) {
            if (cl->inputs[1])
                amil_die("%s: %s is read alone, not with other inputs", *in,
                         strcmp(*in, "-") == 0 ? "standard input" : "a pipe or device");
            return;
        }
        int image = is_image(*in);
        if (image < 0)
            amil_die("%s", amil_error());
        if (image && images++ == 1)
            second_image = *in;
        if (image && !first_image)
            first_image = *in;
        if (!image && !first_records)
            first_records = *in;
        if (first_image && first_records)
                amil_die("%s: %s among %s: give them apart", *in, image ? "an image" : "records",
                     image ? "records" : "images");
    }
    if (second_image && !cl->dir)
        amil_die("%s: a second image: give -d DIR for several", second_image);
    if (first_records && cl->dir)
        amil_die("%s: -d DIR is for images; records go to -o FILE or standard output",
                 first_records);
}

/* One input, an image or records, to the output. */
static void run_input(const struct cmdline *cl, const struct reference *ref, const char *path,
                      long *images)
{
    int is_stdin = !path || strcmp(path, "-") == 0;
    const char *name = is_stdin ? "<stdin>" : path;
    FILE *f = is_stdin ? stdin : fopen(path, "rb");
    if (!f)
        amil_die("%s:", path);
    struct amil_stream s;
    amil_stream_open(&s, f, name);
    int image = amil_stream_is_image(&s);
    if (image < 0)
        amil_die("%s", amil_error());
    if (image) {
        size_t len;
        unsigned char *data = amil_stream_slurp(&s, &len);
        if (!data || normalize_images(cl, ref, is_stdin ? "stdin" : path, data, len, images) < 0)
            amil_die("%s: %s", name, amil_error());
        free(data);
    } else {
        if (cl->dir)
            amil_die("%s: -d DIR is for images; records go to -o FILE or standard output",
                     name);
        if (cl->output && is_picture_name(cl->output))
            amil_die("%s: records, which would go into %s, a picture's name: give -o a "
                     "name for records (such as .bags)", name, cl->output);
        struct amil_record r;
        int got;
        while ((got = amil_record_read(&s, &r)) == 1) {
            if (normalize_record(cl, ref, &r, records_file(cl)) < 0)
                amil_die("%s: record %ld: %s", name, s.index - 1, amil_error());
            amil_record_free(&r);
        }
        if (got < 0)
            amil_die("%s", amil_error());
        /* empty is an error, unless the stains alone were the output */
        if (s.index == 0 && (cl->output || cl->dir || !cl->save_stains))
            amil_die("%s: no records", name);
    }
    if (!is_stdin)
        fclose(f);
}

int main(int argc, char **argv)
{
    amil_init(argc, argv);
    struct cmdline cl = parse_args(argc, argv);
    /* --save-stains typed at a terminal with no input: the stains alone */
    int stains_only = !*cl.inputs && cl.save_stains && isatty(STDIN_FILENO);
    if (!cl.output && !cl.dir && !stains_only)
        amil_refuse_terminal(cl.force, "give -o FILE or -d DIR, or redirect it");
    if (cl.dir && mkdir(cl.dir, 0777) < 0 && errno != EEXIST)
        amil_die("%s:", cl.dir);
    if (cl.dir && amil_output_probe_dir(cl.dir) < 0)   /* before the work */
        amil_die("%s", amil_error());
    for (char **in = cl.inputs; *in; in++)
        amil_input_note(*in);
    if (!*cl.inputs && !stains_only)
        amil_input_note("-");
    amil_input_note(cl.reference);
    amil_input_note(cl.stains);
    if (cl.output && cl.save_stains && amil_same_file(cl.output, cl.save_stains))
        amil_die("-o and --save-stains are one file (%s): the output would replace the "
                 "stains", cl.output);
    const char *outputs[2] = {cl.output, cl.save_stains};
    for (int i = 0; i < 2; i++)
        if (outputs[i] && amil_output_probe(outputs[i]) < 0)
            amil_die("%s", amil_error());
    check_inputs(&cl);
    struct reference ref = load_reference(&cl);
    long images = 0;
    if (!*cl.inputs && !stains_only)
        run_input(&cl, &ref, NULL, &images);
    for (char **in = cl.inputs; *in; in++)
        run_input(&cl, &ref, *in, &images);
    if (amil_output_finish(&records_out) < 0)
        amil_die("%s", amil_error());
    return amil_close_stdout();
}
