/* mnist-bags: MNIST-bags (Ilse et al. 2018) as images, one PNG per bag.
 *
 * Ilse et al.'s MnistBags (dataloader.py) with their random numbers: from
 * numpy.random.RandomState(seed), each bag's length is
 * int(normal(mean, sd)), at least 1, and its digits are randint(0, count)
 * indices into the MNIST set given (train for training bags, test for test
 * bags), drawn with replacement; a bag is positive when it holds the target
 * digit.  The generator is numpy's legacy one, reproduced here draw for
 * draw (MT19937, the polar Box-Muller with its cached second value, the
 * masked rejection of randint), so the same seed gives Ilse et al.'s bags.
 *
 * Each bag is a strip, one 28×28 digit per cell left to right, written to
 * DIR/<label>/bag-NNNNN.png (gray), so `bagify -g -c none -L dir` cuts it
 * back into its instances; DIR/bags.tsv lists file, label, length, the
 * digits and their indices in the MNIST files.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <libdeflate.h>

#include "base/base.h"
#include "base/output.h"
#include "media/image.h"
#include "tool/cli.h"

struct cmdline {
    const char *dir, *images, *labels;
    long bags, target, seed;
    double mean, sd;
};

static const char usage_text[] =
    "usage: mnist-bags -o DIR [-n BAGS] [-m MEAN] [-s SD] [-t DIGIT] [-r SEED]\n"
    "                  IMAGES LABELS\n"
    "  -o, --output DIR    where the bags go: DIR/<label>/bag-NNNNN.png, DIR/bags.tsv\n"
    "  -n, --bags N        bags to make [200]\n"
    "  -m, --mean X        mean bag length [10]\n"
    "  -s, --sd X          standard deviation of the bag length [2]\n"
    "  -t, --target D      the digit that makes a bag positive [9]\n"
    "  -r, --seed S        numpy RandomState seed [1]\n"
    "  -h, --help          this help\n"
    "IMAGES and LABELS are MNIST's IDX files (idx3, idx1), plain or gzipped.\n";

static struct cmdline parse_args(int argc, char **argv)
{
    amil_usage_is(usage_text);
    struct cmdline cl = {.bags = 200, .target = 9, .seed = 1, .mean = 10, .sd = 2};
    struct amil_opt options[] = {
        AMIL_STRING("output", 'o', &cl.dir),
        AMIL_LONG("bags", 'n', &cl.bags, 1, 10000000),
        AMIL_DOUBLE("mean", 'm', &cl.mean, 0, 1000),
        AMIL_DOUBLE("sd", 's', &cl.sd, 0, 1000),
        AMIL_LONG("target", 't', &cl.target, 0, 9),
        AMIL_LONG("seed", 'r', &cl.seed, 0, 4294967295.0),
        AMIL_OPTIONS_END};
    /* its tests name an option by its letter, "-n: ..." */
    optind = amil_options_as(argc, argv, options, AMIL_OPTS_BY_LETTER);
    if (!cl.dir || argc - optind != 2)
        amil_misuse(!cl.dir ? "no output: give -o DIR" : "give the IMAGES and LABELS files");
    cl.images = argv[optind];
    cl.labels = argv[optind + 1];
    amil_input_note(cl.images);
    amil_input_note(cl.labels);
    return cl;
}

/* ---- numpy's legacy RandomState --------------------------------------- */

struct mt {
    uint32_t state[624];
    int index;
    int has_gauss;
    double gauss;
};

static void mt_seed(struct mt *r, uint32_t seed)   /* init_genrand */
{
    r->state[0] = seed;
    for (int i = 1; i < 624; i++)
        r->state[i] = 1812433253u * (r->state[i - 1] ^ (r->state[i - 1] >> 30)) + (uint32_t)i;
    r->index = 624;
    r->has_gauss = 0;
}

static uint32_t mt_next(struct mt *r)
{
    if (r->index >= 624) {
        for (int i = 0; i < 624; i++) {
            uint32_t y = (r->state[i] & 0x80000000u) | (r->state[(i + 1) % 624] & 0x7fffffffu);
            r->state[i] = r->state[(i + 397) % 624] ^ (y >> 1) ^ (y & 1 ? 0x9908b0dfu : 0);
        }
        r->index = 0;
    }
    uint32_t y = r->state[r->index++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    return y ^ (y >> 18);
}

static double mt_double(struct mt *r)   /* 53 bits, as random_double */
{
    uint32_t a = mt_next(r) >> 5, b = mt_next(r) >> 6;
    return (a * 67108864.0 + b) / 9007199254740992.0;
}

static double legacy_gauss(struct mt *r)   /* the polar method, one cached */
{
    if (r->has_gauss) {
        r->has_gauss = 0;
        return r->gauss;
    }
    double x1, x2, r2;
    do {
        x1 = 2.0 * mt_double(r) - 1.0;
        x2 = 2.0 * mt_double(r) - 1.0;
        r2 = x1 * x1 + x2 * x2;
    } while (r2 >= 1.0 || r2 == 0.0);
    double f = sqrt(-2.0 * log(r2) / r2);
    r->gauss = f * x1;
    r->has_gauss = 1;
    return f * x2;
}

static uint32_t legacy_randint(struct mt *r, uint32_t count)   /* [0, count) */
{
    uint32_t range = count - 1, mask = range;
    if (range == 0)   /* numpy draws nothing for a range of one value */
        return 0;
    for (int s = 1; s < 32; s *= 2)   /* the smallest 2^k - 1 covering range */
        mask |= mask >> s;
    uint32_t v;
    while ((v = mt_next(r) & mask) > range)
        ;
    return v;
}

/* ---- MNIST ------------------------------------------------------------- */

/* Reads an IDX file, gunzipping it if needed; checks its magic number and
 * returns the data after the header, with the item count. */
static unsigned char *read_idx(const char *path, int dims, long *count,
                               unsigned char **whole)
{
    size_t len;
    unsigned char *data = amil_slurp(path, &len);
    if (!data)
        amil_die("%s: %s", path, amil_error());
    if (len >= 2 && data[0] == 0x1f && data[1] == 0x8b) {
        size_t cap = len * 8 + (1 << 20), out_len;
        struct libdeflate_decompressor *d = libdeflate_alloc_decompressor();
        unsigned char *out = NULL;
        enum libdeflate_result result = LIBDEFLATE_INSUFFICIENT_SPACE;
        while (d && result == LIBDEFLATE_INSUFFICIENT_SPACE && cap < (1u << 31)) {
            out = amil_xrealloc(out, cap);
            result = libdeflate_gzip_decompress(d, data, len, out, cap, &out_len);
            cap *= 2;
        }
        libdeflate_free_decompressor(d);
        if (result != LIBDEFLATE_SUCCESS)
            amil_die("%s: not a valid gzip file", path);
        free(data);
        data = out, len = out_len;
    }
    size_t header = 4 + 4 * (size_t)dims;
    if (len < header || data[0] || data[1] || data[2] != 8 || data[3] != dims)
        amil_die("%s: not an MNIST IDX file of unsigned bytes with %d dimension%s", path,
                 dims, dims > 1 ? "s" : "");
    size_t items = 1;
    for (int d = 0; d < dims; d++) {
        const unsigned char *p = data + 4 + 4 * d;
        size_t n = (size_t)p[0] << 24 | (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3];
        if (d == 0)
            *count = (long)n;
        else if (n != 28)
            amil_die("%s: images are not 28×28", path);
        items *= n;
    }
    if (*count < 1)
        amil_die("%s: no items", path);
    if (len - header < items)
        amil_die("%s: truncated (%zu bytes of data for %zu)", path, len - header, items);
    *whole = data;
    return data + header;
}

/* mkdir -p */
static void make_dir(const char *path)
{
    char *copy = amil_xstrdup(path);
    for (char *p = copy + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            if (mkdir(copy, 0777) < 0 && errno != EEXIST)
                amil_die("%s:", copy);
            *p = '/';
        }
    if (mkdir(copy, 0777) < 0 && errno != EEXIST)
        amil_die("%s:", copy);
    free(copy);
}

int main(int argc, char **argv)
{
    amil_init(argc, argv);
    struct cmdline cl = parse_args(argc, argv);
    long count, labels_count;
    unsigned char *images_file, *labels_file;
    const unsigned char *images = read_idx(cl.images, 3, &count, &images_file);
    const unsigned char *labels = read_idx(cl.labels, 1, &labels_count, &labels_file);
    if (labels_count != count)
        amil_die("%s has %ld images, %s %ld labels", cl.images, count, cl.labels,
                 labels_count);
    for (long i = 0; i < count; i++)
        if (labels[i] > 9)
            amil_die("%s: label %ld is %d, not a digit", cl.labels, i, labels[i]);

    size_t size = strlen(cl.dir) + 64;
    char *path = amil_xmalloc(size);
    make_dir(cl.dir);
    for (int label = 0; label < 2; label++) {
        snprintf(path, size, "%s/%d", cl.dir, label);
        make_dir(path);
    }
    snprintf(path, size, "%s/bags.tsv", cl.dir);
    struct amil_output table_out;   /* whole or not at all, never over an input */
    if (amil_output_open(&table_out, path) < 0)
        amil_die("%s", amil_error());
    FILE *table = table_out.file;
    fprintf(table, "file\tlabel\tlength\tdigits\tindices\n");

    struct mt r;
    mt_seed(&r, (uint32_t)cl.seed);
    long positives = 0;
    for (long b = 0; b < cl.bags; b++) {
        /* dataloader.py: np.int(self.r.normal(mean, var, 1)), at least 1 */
        double length_draw = cl.mean + cl.sd * legacy_gauss(&r);
        long length = length_draw < 1 ? 1 : (long)length_draw;
        uint32_t *index = amil_xmalloc(sizeof *index * length);
        int positive = 0;
        for (long i = 0; i < length; i++) {
            index[i] = legacy_randint(&r, (uint32_t)count);
            positive |= labels[index[i]] == cl.target;
        }
        positives += positive;
        /* the strip: 28 rows, 28 × length columns */
        int width = (int)(28 * length);
        unsigned char *strip = amil_xmalloc((size_t)28 * width);
        for (long i = 0; i < length; i++)
            for (int y = 0; y < 28; y++)
                memcpy(strip + (size_t)y * width + 28 * i, images + (size_t)index[i] * 784 + 28 * y,
                       28);
        snprintf(path, size, "%s/%d/bag-%05ld.png", cl.dir, positive, b);
        struct amil_image picture = {width, 28, 1, strip};
        if (amil_picture_save(path, &picture, AMIL_PICTURE_PNG) < 0)
            amil_die("%s", amil_error());
        fprintf(table, "%s\t%d\t%ld\t", path, positive, length);
        for (long i = 0; i < length; i++)
            fprintf(table, "%s%d", i ? "," : "", labels[index[i]]);
        fputc('\t', table);
        for (long i = 0; i < length; i++)
            fprintf(table, "%s%u", i ? "," : "", index[i]);
        fputc('\n', table);
        free(strip);
        free(index);
    }
    if (amil_output_commit(&table_out) < 0)
        amil_die("%s", amil_error());
    fprintf(stderr, "mnist-bags: %ld bags (%ld positive) in %s\n", cl.bags, positives, cl.dir);
    free(path);
    free(images_file);
    free(labels_file);
    return 0;
}
