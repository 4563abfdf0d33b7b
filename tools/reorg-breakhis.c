/* reorg-breakhis: lays the BreakHis images out as the paper's experiments
 * read them, DST/<mag>/{train,test}/{0,1}/ (0 benign, 1 malignant).
 *
 * Two sources are understood.  A Kaggle fold, SRC/{train,test}/<mag>/
 * {B,M}_<mag>/NAME.png, is already split.  The official BreaKHis_v1 tree,
 * .../breast/{benign,malignant}/SOB/<type>/<patient>/<mag>/NAME.png, is split
 * by patient, never by image (images of one patient are near duplicates, so
 * an image split leaks the test set into training): from the official
 * Folds.csv, or at random with a seed, patients of each class apart.
 *
 * Files are hard-linked (or symlinked, or copied).  Nothing already in DST
 * is ever replaced: a different file in the way stops the run before
 * anything changes, and a second run finds everything in place and changes
 * nothing.  The split goes to DST/split.tsv; the counts per magnification,
 * split and class go to stdout and are checked against the files on disk.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gsl/gsl_errno.h>
#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>

#include "base/base.h"
#include "media/breakhis.h"
#include "tool/cli.h"

enum layout { LAYOUT_AUTO, LAYOUT_KAGGLE, LAYOUT_OFFICIAL };
enum link_mode { LINK_HARD, LINK_SYM, LINK_COPY };
/* What is at a target path before we place anything there. */
enum state { TARGET_MISSING, TARGET_SAME, TARGET_DIFFERENT, TARGET_ERROR };

#define NMAGS 4
static const char *const magnifications[NMAGS] = {"40X", "100X", "200X", "400X"};
static const char *const split_names[2] = {"train", "test"};
static const char *const class_folders[2] = {"benign", "malignant"};
static const char *const type_codes[] = {"A", "F", "PT", "TA", "DC", "LC", "MC", "PC"};
static const unsigned char png_signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
/* Deeper paths than this under SRC are not BreakHis images anyway. */
#define MAX_PARTS 64

struct cmdline {
    char *src, *dst;            /* without trailing slashes; owned */
    int dry_run, strict;
    enum link_mode link;
    enum layout layout;         /* LAYOUT_AUTO: decided from SRC */
    const char *folds;          /* Folds.csv, or NULL for a random split */
    long fold;                  /* 1..5, with folds */
    double ratio;               /* share of each class's patients for training */
    unsigned long seed;
    int random_options;         /* --ratio or --seed was given */
};

struct image {
    char *src;                  /* SRC/..., as walked; owned */
    const char *base;           /* the file name, inside src */
    char *target;               /* <mag>/<split>/<class>/<base>, under DST */
    struct amil_breakhis name;  /* the parsed file name (patient, ...) */
    int mag;                    /* index into magnifications[] */
    int cls;                    /* 0 benign, 1 malignant */
    int split;                  /* 0 train, 1 test; -1 until decided */
    int ok;                     /* no error so far: still to be placed */
    enum state state;
};

struct run {
    const struct cmdline *cl;
    enum layout layout;
    int official_dirs;          /* a histology_slides/ or breast/ was seen */
    struct stat dst_st, folds_st;
    int dst_exists;
    char **files;               /* every regular file under SRC, sorted */
    size_t nfiles, files_cap;
    struct image *images;
    size_t nimages;
    struct image **by_target;   /* the images to place, sorted by target */
    size_t nplaced_images;
    char *split_tsv;            /* the text of DST/split.tsv */
    size_t split_tsv_len;
    enum state split_state;
    size_t planned[NMAGS][2][2];
    size_t unknown, errors, conflicts, placed, already;
};

static void usage(FILE *f)
{
    fprintf(f,
        "usage: %s [-hn] [--link hard|sym|copy] [--layout kaggle|official]\n"
        "       [--folds FILE --fold N] [--ratio R] [--seed S] [--strict] SRC DST\n"
        "  -n, --dry-run      print the plan, SRC -> DST per file; change nothing\n"
        "  --link MODE        hard (a copy across file systems), sym or copy [hard]\n"
        "  --layout L         kaggle (SRC/{train,test}/...) or official\n"
        "                     (.../histology_slides/breast/...) [from SRC]\n"
        "  --folds FILE       split the official tree as the official Folds.csv does\n"
        "  --fold N           which fold of FILE, 1 to 5\n"
        "  --ratio R          share of each class's patients for training [0.7]\n"
        "  --seed S           seed of the patient shuffle [1]\n"
        "  --strict           unknown files are errors\n"
        "  -h, --help         print this help\n",
        amil_progname);
}

static _Noreturn void misuse(const char *fmt, const char *arg)
{
    fprintf(stderr, "%s: ", amil_progname);
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
    usage(stderr);
    exit(2);
}

/* A copy of path without trailing slashes ("/" stays "/"). */
static char *strip_slashes(const char *path)
{
    char *s = amil_xstrdup(path);
    for (size_t n = strlen(s); n > 1 && s[n - 1] == '/'; n--)
        s[n - 1] = '\0';
    return s;
}

static struct cmdline parse_args(int argc, char **argv)
{
    enum { OPT_LINK = 256, OPT_LAYOUT, OPT_FOLDS, OPT_FOLD, OPT_RATIO, OPT_SEED, OPT_STRICT };
    static const struct option options[] = {
        {"help", no_argument, NULL, 'h'},
        {"dry-run", no_argument, NULL, 'n'},
        {"link", required_argument, NULL, OPT_LINK},
        {"layout", required_argument, NULL, OPT_LAYOUT},
        {"folds", required_argument, NULL, OPT_FOLDS},
        {"fold", required_argument, NULL, OPT_FOLD},
        {"ratio", required_argument, NULL, OPT_RATIO},
        {"seed", required_argument, NULL, OPT_SEED},
        {"strict", no_argument, NULL, OPT_STRICT},
        {NULL, 0, NULL, 0},
    };
    struct cmdline cl = {.link = LINK_HARD, .ratio = 0.7, .seed = 1};
    long seed;
    int opt;
    while ((opt = amil_getopt(argc, argv, "hn", options)) != -1) {
        switch (opt) {
        case 'h': usage(stdout); exit(amil_close_stdout());
        case 'n': cl.dry_run = 1; break;
        case OPT_STRICT: cl.strict = 1; break;
        case OPT_FOLDS: cl.folds = optarg; break;
        case OPT_LINK:
            if (strcmp(optarg, "hard") == 0) cl.link = LINK_HARD;
            else if (strcmp(optarg, "sym") == 0) cl.link = LINK_SYM;
            else if (strcmp(optarg, "copy") == 0) cl.link = LINK_COPY;
            else misuse("--link: '%s' is not hard, sym or copy", optarg);
            break;
        case OPT_LAYOUT:
            if (strcmp(optarg, "kaggle") == 0) cl.layout = LAYOUT_KAGGLE;
            else if (strcmp(optarg, "official") == 0) cl.layout = LAYOUT_OFFICIAL;
            else misuse("--layout: '%s' is not kaggle or official", optarg);
            break;
        case OPT_FOLD:
            if (amil_parse_long(optarg, 1, 5, &cl.fold) < 0)
                misuse("--fold: %s", amil_error());
            break;
        case OPT_RATIO:
            /* Both classes need patients on both sides, so 0 and 1 are out. */
            if (amil_parse_double(optarg, 0, 1, &cl.ratio) < 0)
                misuse("--ratio: %s", amil_error());
            if (cl.ratio <= 0 || cl.ratio >= 1)
                misuse("--ratio: %s is not strictly between 0 and 1", optarg);
            cl.random_options = 1;
            break;
        case OPT_SEED:
            if (amil_parse_long(optarg, 0, 4294967295L, &seed) < 0)
                misuse("--seed: %s", amil_error());
            cl.seed = (unsigned long)seed;
            cl.random_options = 1;
            break;
        default: usage(stderr); exit(2);
        }
    }
    if (argc - optind != 2)
        misuse("%s", argc - optind < 2 ? "SRC and DST are needed" : "too many operands");
    if (cl.fold && !cl.folds)
        misuse("%s", "--fold needs --folds");
    if (cl.folds && !cl.fold)
        misuse("%s", "--folds needs --fold");
    if (cl.folds && cl.layout == LAYOUT_KAGGLE)
        misuse("%s", "--folds applies to the official layout, not kaggle");
    if (cl.folds && cl.random_options)
        misuse("%s", "--folds and --ratio/--seed are two different splits");
    if (cl.random_options && cl.layout == LAYOUT_KAGGLE)
        misuse("%s", "--ratio and --seed apply to the official layout, not kaggle");
    cl.src = strip_slashes(argv[optind]);
    cl.dst = strip_slashes(argv[optind + 1]);
    return cl;
}

static char *join(const char *dir, const char *name)
{
    size_t n = strlen(dir), m = strlen(name);
    char *s = amil_xmalloc(n + m + 2);
    memcpy(s, dir, n);
    s[n] = '/';
    memcpy(s + n + 1, name, m + 1);
    return s;
}

static int same_inode(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino;
}

static int by_string(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The directories above the one being walked, to notice symlink loops. */
struct ancestor {
    dev_t dev;
    ino_t ino;
    const struct ancestor *up;
};

/* Collects every regular file below dir into run->files, each directory's
 * entries in strcmp order so that all output is deterministic.  DST and the
 * Folds.csv file are left out when they lie inside SRC. */
static void walk(struct run *run, const char *dir, const struct ancestor *up)
{
    DIR *d = opendir(dir);
    if (!d) {
        amil_warn("%s:", dir);
        run->errors++;
        return;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((errno = 0, e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (n == cap)
            names = amil_xrealloc(names, (cap = cap ? 2 * cap : 16) * sizeof *names);
        names[n++] = amil_xstrdup(e->d_name);
    }
    if (errno) {
        amil_warn("%s:", dir);
        run->errors++;
    }
    closedir(d);
    if (n > 1)
        qsort(names, n, sizeof *names, by_string);

    for (size_t i = 0; i < n; i++) {
        char *path = join(dir, names[i]);
        struct stat st;
        const struct ancestor *a = up;
        if (stat(path, &st) < 0) {              /* e.g. a dangling symlink */
            amil_warn("%s:", path);
            run->errors++;
        } else if (S_ISDIR(st.st_mode)) {
            for (; a && !(a->dev == st.st_dev && a->ino == st.st_ino); a = a->up)
                ;
            if (a) {
                amil_warn("%s: directory loop, not followed", path);
                run->errors++;
            } else if (!(run->dst_exists && same_inode(&st, &run->dst_st))) {
                if (strcmp(names[i], "histology_slides") == 0 || strcmp(names[i], "breast") == 0)
                    run->official_dirs = 1;
                struct ancestor here = {st.st_dev, st.st_ino, up};
                walk(run, path, &here);
            }
        } else if (!S_ISREG(st.st_mode)) {
            amil_warn("%s: unknown file (not a regular file)", path);
            run->unknown++;
        } else if (!(run->cl->folds && same_inode(&st, &run->folds_st))) {
            if (run->nfiles == run->files_cap)
                run->files = amil_xrealloc(run->files, (run->files_cap = run->files_cap
                                           ? 2 * run->files_cap : 256) * sizeof *run->files);
            run->files[run->nfiles++] = path;
            path = NULL;
        }
        free(path);
        free(names[i]);
    }
    free(names);
}

/* Reads SRC, then settles the layout and the options that depend on it,
 * all before anything is written. */
static void find_files(struct run *run)
{
    const struct cmdline *cl = run->cl;
    struct stat src_st, st;
    if (stat(cl->src, &src_st) < 0)
        amil_die("%s:", cl->src);
    if (!S_ISDIR(src_st.st_mode))
        amil_die("%s: not a directory", cl->src);
    run->dst_exists = stat(cl->dst, &run->dst_st) == 0;
    if (run->dst_exists && same_inode(&src_st, &run->dst_st))
        amil_die("%s: DST is SRC", cl->dst);
    if (cl->folds && stat(cl->folds, &run->folds_st) < 0)
        amil_die("%s:", cl->folds);
    struct ancestor root = {src_st.st_dev, src_st.st_ino, NULL};
    walk(run, cl->src, &root);

    char *train = join(cl->src, "train"), *test = join(cl->src, "test");
    int kaggle = stat(train, &st) == 0 && S_ISDIR(st.st_mode) &&
                 stat(test, &st) == 0 && S_ISDIR(st.st_mode);
    free(train);
    free(test);
    run->layout = cl->layout;
    if (run->layout == LAYOUT_AUTO) {
        if (kaggle && run->official_dirs)
            amil_die("%s: both a Kaggle fold and the official tree; say which with --layout",
                     cl->src);
        if (!kaggle && !run->official_dirs)
            amil_die("%s: neither a Kaggle fold (train/, test/) nor the official tree "
                     "(histology_slides/, breast/)", cl->src);
        run->layout = kaggle ? LAYOUT_KAGGLE : LAYOUT_OFFICIAL;
    }
    if (run->layout == LAYOUT_KAGGLE && (cl->folds || cl->random_options))
        amil_die("%s: a Kaggle fold is already split: --folds, --ratio and --seed "
                 "apply to the official tree only", cl->src);
}

static int index_of(const char *s, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(s, list[i]) == 0)
            return (int)i;
    return -1;
}

static int is_type_folder(const char *s)
{
    for (size_t i = 0; i < sizeof type_codes / sizeof *type_codes; i++)
        if (strcmp(s, amil_breakhis_type_name(type_codes[i])) == 0)
            return 1;
    return 0;
}

/* 1 if the file starts with the 8-byte PNG signature, 0 if not, -1 if it
 * cannot be read (with errno). */
static int has_png_signature(const char *path)
{
    unsigned char head[8];
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, head, sizeof head);
    int saved = errno;
    close(fd);
    errno = saved;
    if (n < 0)
        return -1;
    return n == (ssize_t)sizeof head && memcmp(head, png_signature, sizeof head) == 0;
}

/* Decides what one file under SRC is: an image (added to run->images, owning
 * path), an unknown file, or an image with an error.  The folder says the
 * class and magnification (and, for Kaggle, the split); the name must agree. */
static void classify(struct run *run, char *path)
{
    const char *rel = path + strlen(run->cl->src) + 1;
    char *copy = amil_xstrdup(rel), *parts[MAX_PARTS];
    size_t n = 0;
    for (char *p = strtok(copy, "/"); p; p = strtok(NULL, "/")) {
        if (n == MAX_PARTS) {           /* far too deep: matches no layout */
            n = 0;
            break;
        }
        parts[n++] = p;
    }
    int cls = -1, mag = -1, split = -1;
    const char *folder = NULL;          /* the folder that gives the class */
    if (run->layout == LAYOUT_KAGGLE && n == 4) {
        /* train/40X/B_40X/name */
        split = index_of(parts[0], split_names, 2);
        mag = index_of(parts[1], magnifications, NMAGS);
        folder = parts[2];
        if ((folder[0] == 'B' || folder[0] == 'M') && folder[1] == '_' &&
            strcmp(folder + 2, parts[1]) == 0)
            cls = folder[0] == 'M';
    } else if (run->layout == LAYOUT_OFFICIAL && n >= 7 && strcmp(parts[n - 7], "breast") == 0 &&
               strcmp(parts[n - 5], "SOB") == 0 && is_type_folder(parts[n - 4])) {
        /* breast/benign/SOB/adenosis/SOB_B_A_14-22549AB/40X/name */
        folder = parts[n - 6];
        cls = index_of(folder, class_folders, 2);
        mag = index_of(parts[n - 2], magnifications, NMAGS);
    }
    struct amil_breakhis name;
    size_t len = strlen(rel);
    if (cls < 0 || mag < 0 || (run->layout == LAYOUT_KAGGLE && split < 0)) {
        amil_warn("%s: unknown file (not in %s)", path, run->layout == LAYOUT_KAGGLE
                  ? "{train,test}/<mag>/{B,M}_<mag>/"
                  : "breast/{benign,malignant}/SOB/<type>/<patient>/<mag>/");
        run->unknown++;
    } else if (len < 4 || strcmp(rel + len - 4, ".png") != 0) {
        amil_warn("%s: unknown file (not a .png)", path);
        run->unknown++;
    } else if (amil_breakhis_parse(path, &name) < 0) {
        amil_warn("%s: unknown file (%s)", path, amil_error());
        run->unknown++;
    } else if ((name.tumor_class == 'M') != cls) {
        amil_warn("%s: class %c in the name, but the folder is %s", path,
                  name.tumor_class, folder);
        run->errors++;
    } else if (name.magnification != atoi(magnifications[mag])) {   /* "40X" -> 40 */
        amil_warn("%s: magnification %d in the name, but the folder is %s", path,
                  name.magnification, magnifications[mag]);
        run->errors++;
    } else {
        int png = has_png_signature(path);
        if (png <= 0) {
            if (png < 0)
                amil_warn("%s:", path);
            else
                amil_warn("%s: not a PNG", path);
            run->errors++;
        } else {
            struct image *im = &run->images[run->nimages++];
            *im = (struct image){.src = path, .name = name, .mag = mag, .cls = cls,
                                 .split = split, .ok = 1};
            im->base = strrchr(path, '/') + 1;
            path = NULL;
        }
    }
    free(copy);
    free(path);
}

static int by_patient(const void *a, const void *b)
{
    return strcmp((*(struct image *const *)a)->name.patient,
                  (*(struct image *const *)b)->name.patient);
}

/* The official folds are patient-disjoint; a file that is not is followed
 * all the same (it is the reference), but each mixed patient is said. */
static void report_mixed_patients(const struct run *run)
{
    struct image **sorted = amil_xcalloc(run->nimages, sizeof *sorted);
    size_t n = 0;
    for (size_t i = 0; i < run->nimages; i++)
        if (run->images[i].ok)
            sorted[n++] = &run->images[i];
    qsort(sorted, n, sizeof *sorted, by_patient);
    for (size_t i = 0, j; i < n; i = j) {
        int splits = 0;
        for (j = i; j < n && by_patient(&sorted[i], &sorted[j]) == 0; j++)
            splits |= 1 << sorted[j]->split;
        if (splits == 3)
            amil_warn("patient %s is in both train and test in fold %ld of %s",
                      sorted[i]->name.patient, run->cl->fold, run->cl->folds);
    }
    free(sorted);
}

/* One row of Folds.csv that belongs to the chosen fold. */
struct fold_row {
    char *base;                 /* the image's file name */
    int split;
};

static int by_fold_base(const void *a, const void *b)
{
    return strcmp(((const struct fold_row *)a)->base, ((const struct fold_row *)b)->base);
}

/* Follows the official Folds.csv: "fold,mag,grp,filename" with grp train or
 * test.  Rows are matched to images by base name, which is unique in
 * BreakHis.  A bad file stops the run; nothing has been written yet. */
static void split_by_folds(struct run *run)
{
    const struct cmdline *cl = run->cl;
    FILE *f = fopen(cl->folds, "r");
    if (!f)
        amil_die("%s:", cl->folds);
    struct fold_row *rows = NULL;
    size_t nrows = 0, cap = 0, line_size = 0;
    char *line = NULL;
    long lineno = 0;
    ssize_t len;
    while ((len = getline(&line, &line_size, f)) > 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (lineno == 1) {
            if (strcmp(line, "fold,mag,grp,filename") != 0)
                amil_die("%s: line 1: not the header fold,mag,grp,filename", cl->folds);
            continue;
        }
        if (len == 0)
            continue;
        char *fold = line, *mag = strchr(fold, ','), *grp = mag ? strchr(mag + 1, ',') : NULL,
             *file = grp ? strchr(grp + 1, ',') : NULL;
        long fold_number;
        if (!file || file[1] == '\0')
            amil_die("%s: line %ld: not fold,mag,grp,filename", cl->folds, lineno);
        *mag++ = *grp++ = *file++ = '\0';
        if (amil_parse_long(fold, 1, 5, &fold_number) < 0)
            amil_die("%s: line %ld: fold: %s", cl->folds, lineno, amil_error());
        int split = index_of(grp, split_names, 2);
        if (split < 0)
            amil_die("%s: line %ld: group '%s' is not train or test", cl->folds, lineno, grp);
        if (fold_number != cl->fold)
            continue;
        if (nrows == cap)
            rows = amil_xrealloc(rows, (cap = cap ? 2 * cap : 1024) * sizeof *rows);
        const char *slash = strrchr(file, '/');
        rows[nrows++] = (struct fold_row){amil_xstrdup(slash ? slash + 1 : file), split};
    }
    if (ferror(f))
        amil_die("%s:", cl->folds);
    fclose(f);
    free(line);
    if (nrows == 0)
        amil_die("%s: no rows for fold %ld", cl->folds, cl->fold);
    qsort(rows, nrows, sizeof *rows, by_fold_base);
    for (size_t i = 1; i < nrows; i++)
        if (strcmp(rows[i - 1].base, rows[i].base) == 0 && rows[i - 1].split != rows[i].split)
            amil_die("%s: fold %ld has %s in both train and test", cl->folds, cl->fold,
                     rows[i].base);

    for (size_t i = 0; i < run->nimages; i++) {
        struct image *im = &run->images[i];
        struct fold_row key = {(char *)im->base, 0};
        struct fold_row *row = bsearch(&key, rows, nrows, sizeof *rows, by_fold_base);
        if (!row) {
            amil_warn("%s: not in fold %ld of %s", im->src, cl->fold, cl->folds);
            im->ok = 0;
            run->errors++;
        } else {
            im->split = row->split;
        }
    }
    for (size_t i = 0; i < nrows; i++)
        free(rows[i].base);
    free(rows);
    report_mixed_patients(run);
}

/* One patient of the official tree, for the random split. */
struct patient {
    const char *name;           /* "14-22549AB", inside an image */
    int classes;                /* bit c: has images of class c */
    int split;                  /* -1 until drawn */
};

static int by_patient_name(const void *key, const void *p)
{
    return strcmp(key, ((const struct patient *)p)->name);
}

/* The seeded split: the patients of each class, sorted by name, are
 * shuffled with GSL's MT19937 and the first round(ratio × n) go to train, at
 * least one and at most n - 1, so both sides see both classes.  Benign is
 * drawn first, then malignant from the same generator; a patient with images
 * of both classes keeps the split of its first draw. */
static void split_at_random(struct run *run)
{
    const struct cmdline *cl = run->cl;
    struct image **sorted = amil_xcalloc(run->nimages, sizeof *sorted);
    struct patient *patients = amil_xcalloc(run->nimages, sizeof *patients);
    size_t npatients = 0;
    for (size_t i = 0; i < run->nimages; i++)
        sorted[i] = &run->images[i];
    qsort(sorted, run->nimages, sizeof *sorted, by_patient);
    for (size_t i = 0; i < run->nimages; i++) {
        if (npatients == 0 || strcmp(patients[npatients - 1].name, sorted[i]->name.patient) != 0)
            patients[npatients++] = (struct patient){sorted[i]->name.patient, 0, -1};
        patients[npatients - 1].classes |= 1 << sorted[i]->cls;
    }

    gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
    if (!rng)
        amil_die("out of memory (random number generator)");
    gsl_rng_set(rng, cl->seed);
    size_t *order = amil_xcalloc(npatients, sizeof *order);
    for (int c = 0; c < 2; c++) {
        size_t n = 0;
        for (size_t p = 0; p < npatients; p++)
            if ((patients[p].classes & 1 << c) && patients[p].split < 0)
                order[n++] = p;
        if (n > 1)
            gsl_ran_shuffle(rng, order, n, sizeof *order);
        size_t ntrain = (size_t)lround(cl->ratio * (double)n);
        ntrain = n < 2 ? n : ntrain < 1 ? 1 : ntrain > n - 1 ? n - 1 : ntrain;
        if (n == 1)
            amil_warn("only one %s patient: it goes to train, none to test", class_folders[c]);
        for (size_t k = 0; k < n; k++)
            patients[order[k]].split = k < ntrain ? 0 : 1;
    }
    for (size_t i = 0; i < run->nimages; i++) {
        struct patient *p = bsearch(run->images[i].name.patient, patients, npatients,
                                    sizeof *patients, by_patient_name);
        run->images[i].split = p->split;
    }
    gsl_rng_free(rng);
    free(order);
    free(patients);
    free(sorted);
}

static int by_target(const void *a, const void *b)
{
    return strcmp((*(struct image *const *)a)->target, (*(struct image *const *)b)->target);
}

/* Names every image's place under DST, refuses two images with one name,
 * and writes the text of split.tsv (sorted by file, so it is the same for
 * the same split whatever the source layout). */
static void plan_targets(struct run *run)
{
    run->by_target = amil_xcalloc(run->nimages, sizeof *run->by_target);
    for (size_t i = 0; i < run->nimages; i++) {
        struct image *im = &run->images[i];
        if (!im->ok)
            continue;
        size_t n = strlen(im->base) + 32;
        im->target = amil_xmalloc(n);
        snprintf(im->target, n, "%s/%s/%d/%s", magnifications[im->mag],
                 split_names[im->split], im->cls, im->base);
        run->by_target[run->nplaced_images++] = im;
    }
    qsort(run->by_target, run->nplaced_images, sizeof *run->by_target, by_target);
    size_t kept = 0;
    for (size_t i = 0; i < run->nplaced_images; i++) {
        struct image *im = run->by_target[i];
        if (kept > 0 && strcmp(run->by_target[kept - 1]->target, im->target) == 0) {
            amil_warn("%s: same name as %s", im->src, run->by_target[kept - 1]->src);
            im->ok = 0;
            run->errors++;
        } else {
            run->by_target[kept++] = im;
        }
    }
    run->nplaced_images = kept;

    FILE *f = open_memstream(&run->split_tsv, &run->split_tsv_len);
    if (!f)
        amil_die("split.tsv:");
    fprintf(f, "file\tpatient\tsplit\tmagnification\tclass\n");
    for (size_t i = 0; i < run->nplaced_images; i++) {
        const struct image *im = run->by_target[i];
        fprintf(f, "%s\t%s\t%s\t%s\t%d\n", im->target, im->name.patient,
                split_names[im->split], magnifications[im->mag], im->cls);
    }
    if (fclose(f) != 0)
        amil_die("split.tsv:");
}

/* 1 if the two files have the same bytes, 0 if not, -1 on a read error. */
static int same_content(const char *a, const char *b)
{
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int result = -1;
    if (fa && fb) {
        char ba[65536], bb[65536];
        size_t na, nb;
        do {
            na = fread(ba, 1, sizeof ba, fa);
            nb = fread(bb, 1, sizeof bb, fb);
        } while (na == nb && na > 0 && memcmp(ba, bb, na) == 0);
        result = ferror(fa) || ferror(fb) ? -1 : na == nb && na == 0;
    }
    if (fa)
        fclose(fa);
    if (fb)
        fclose(fb);
    return result;
}

/* What is at target now, as the link mode sees it: the same file is the
 * same inode for hard links (or, across file systems, where link() fell back
 * to a copy, the same bytes), the same bytes for copies, and a symlink to
 * the same absolute path for symlinks. */
static enum state target_state(enum link_mode mode, const char *src, const char *target)
{
    struct stat t, s;
    if (lstat(target, &t) < 0) {
        if (errno == ENOENT)
            return TARGET_MISSING;
        amil_warn("%s:", target);
        return TARGET_ERROR;
    }
    if (stat(src, &s) < 0) {
        amil_warn("%s:", src);
        return TARGET_ERROR;
    }
    int same = 0;
    if (mode == LINK_SYM) {
        char *abs = realpath(src, NULL), link_text[4096];
        ssize_t n = S_ISLNK(t.st_mode) ? readlink(target, link_text, sizeof link_text - 1) : -1;
        if (n >= 0)
            link_text[n] = '\0';
        same = abs && n >= 0 && strcmp(abs, link_text) == 0;
        free(abs);
    } else if (S_ISREG(t.st_mode)) {
        same = same_inode(&s, &t) ||
               ((mode == LINK_COPY || s.st_dev != t.st_dev) && same_content(src, target) == 1);
    }
    return same ? TARGET_SAME : TARGET_DIFFERENT;
}

/* Looks at every target and at split.tsv before anything is written: a
 * different file in the way is named and stops the run, untouched. */
static void check_targets(struct run *run)
{
    const struct cmdline *cl = run->cl;
    for (size_t i = 0; i < run->nplaced_images; i++) {
        struct image *im = run->by_target[i];
        char *target = join(cl->dst, im->target);
        im->state = target_state(cl->link, im->src, target);
        if (im->state == TARGET_SAME) {
            run->already++;
        } else if (im->state == TARGET_DIFFERENT) {
            amil_warn("%s: a different file is already there (for %s)", target, im->src);
            run->conflicts++;
        } else if (im->state == TARGET_ERROR) {
            run->conflicts++;
        }
        free(target);
    }
    char *path = join(cl->dst, "split.tsv");
    FILE *f = fopen(path, "rb");
    run->split_state = TARGET_MISSING;
    if (f) {
        char *old = amil_xmalloc(run->split_tsv_len + 1);
        size_t n = fread(old, 1, run->split_tsv_len + 1, f);
        run->split_state = n == run->split_tsv_len && memcmp(old, run->split_tsv, n) == 0
                           ? TARGET_SAME : TARGET_DIFFERENT;
        fclose(f);
        free(old);
    } else if (errno != ENOENT) {
        amil_warn("%s:", path);
        run->split_state = TARGET_ERROR;
        run->conflicts++;
    }
    if (run->split_state == TARGET_DIFFERENT) {
        amil_warn("%s: a different split is already there", path);
        run->conflicts++;
    }
    free(path);
    if (run->conflicts)
        amil_die("%zu file%s in the way in %s; nothing was changed", run->conflicts,
                 run->conflicts == 1 ? "" : "s", cl->dst);
}

/* mkdir -p for the directory part of path. */
static int make_parents(const char *path)
{
    char *dir = amil_xstrdup(path);
    int status = 0;
    for (char *p = dir + 1; *p && status == 0; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(dir, 0777) < 0 && errno != EEXIST) {
            amil_warn("%s:", dir);
            status = -1;
        }
        *p = '/';
    }
    free(dir);
    return status;
}

/* Writes all n bytes, through short writes; -1 with errno set (a full disk
 * gives a short write first and ENOSPC only on the next). */
static int write_all(int fd, const char *buf, size_t n)
{
    while (n > 0) {
        ssize_t k = write(fd, buf, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            if (k == 0)
                errno = EIO;
            return -1;
        }
        buf += k, n -= (size_t)k;
    }
    return 0;
}

/* Copies src to a temporary file beside target, then links that into place:
 * link() never replaces a file, and an interrupted copy never sits under
 * the final name. */
static int copy_file(const char *src, const char *target)
{
    const char *slash = strrchr(target, '/');
    size_t dir_len = slash ? (size_t)(slash - target + 1) : 0;
    char *tmp = amil_xmalloc(dir_len + 32);
    memcpy(tmp, target, dir_len);
    strcpy(tmp + dir_len, ".reorg-breakhis.XXXXXX");
    int in = open(src, O_RDONLY), out = -1, status = -1;
    struct stat st;
    if (in < 0 || fstat(in, &st) < 0) {
        amil_warn("%s:", src);
    } else if ((out = mkstemp(tmp)) < 0) {
        amil_warn("%s:", tmp);
    } else {
        char buf[65536];
        ssize_t n;
        errno = 0;
        while ((n = read(in, buf, sizeof buf)) > 0 && write_all(out, buf, (size_t)n) == 0)
            ;
        /* n is 0 at the end of src, otherwise a read or write failed; the
         * first failure's errno is the one reported */
        int failed = n != 0 || fchmod(out, st.st_mode & 0777) < 0;
        int saved = errno;
        failed |= close(out) < 0;
        if (failed) {
            errno = saved ? saved : errno;
            amil_warn("%s: copying %s:", target, src);
        }
        else if (link(tmp, target) < 0)
            amil_warn("%s:", target);
        else
            status = 0;
        unlink(tmp);
    }
    if (in >= 0)
        close(in);
    free(tmp);
    return status;
}

static int place(enum link_mode mode, const char *src, const char *target)
{
    if (make_parents(target) < 0)
        return -1;
    if (mode == LINK_HARD) {
        if (link(src, target) == 0)
            return 0;
        if (errno != EXDEV) {
            amil_warn("%s: linking %s:", target, src);
            return -1;
        }
        /* Another file system: a copy is the closest we can do. */
        return copy_file(src, target);
    }
    if (mode == LINK_COPY)
        return copy_file(src, target);
    char *abs = realpath(src, NULL);
    int status = abs && symlink(abs, target) == 0 ? 0 : -1;
    if (status < 0)
        amil_warn("%s: symlink to %s:", target, abs ? abs : src);
    free(abs);
    return status;
}

/* Places every image that is not there yet, then split.tsv. */
static void place_all(struct run *run)
{
    const struct cmdline *cl = run->cl;
    for (size_t i = 0; i < run->nimages; i++) {
        struct image *im = &run->images[i];
        if (!im->ok || im->state == TARGET_SAME)
            continue;
        char *target = join(cl->dst, im->target);
        if (place(cl->link, im->src, target) == 0)
            run->placed++;
        else
            run->errors++;
        free(target);
    }
    /* split.tsv says the layout is whole: not after a failure */
    if (run->split_state == TARGET_SAME || run->errors > 0)
        return;
    char *path = join(cl->dst, "split.tsv");
    FILE *f = make_parents(path) == 0 ? fopen(path, "wx") : NULL;
    if (!f || fwrite(run->split_tsv, 1, run->split_tsv_len, f) != run->split_tsv_len ||
        fclose(f) != 0) {
        amil_warn("%s:", path);
        run->errors++;
    }
    free(path);
}

/* Counts the entries of DST/<mag>/<split>/<class>; missing means none. */
static size_t count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    size_t n = 0;
    if (!d)
        return 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

/* After placing: each class folder must hold exactly the planned files; an
 * extra file (say from a run with another seed) or a missing one is an
 * error. */
static void check_counts(struct run *run)
{
    char dir[64];
    for (int m = 0; m < NMAGS; m++)
        for (int s = 0; s < 2; s++)
            for (int c = 0; c < 2; c++) {
                snprintf(dir, sizeof dir, "%s/%s/%d", magnifications[m], split_names[s], c);
                char *path = join(run->cl->dst, dir);
                size_t present = count_entries(path);
                if (present != run->planned[m][s][c]) {
                    amil_warn("%s: %zu files, but %zu planned", path, present,
                              run->planned[m][s][c]);
                    run->errors++;
                }
                free(path);
            }
}

/* With -n: one "SRC -> DST" line per image, in the order of SRC. */
static void print_plan(const struct run *run)
{
    for (size_t i = 0; i < run->nimages; i++) {
        const struct image *im = &run->images[i];
        if (im->ok)
            printf("%s -> %s/%s\n", im->src, run->cl->dst, im->target);
    }
}

static void print_counts(const struct run *run)
{
    printf("magnification\tsplit\tclass\tfiles\n");
    for (int m = 0; m < NMAGS; m++)
        for (int s = 0; s < 2; s++)
            for (int c = 0; c < 2; c++)
                printf("%s\t%s\t%d\t%zu\n", magnifications[m], split_names[s], c,
                       run->planned[m][s][c]);
}

int main(int argc, char **argv)
{
    amil_init(argc, argv);
    gsl_set_error_handler_off();
    struct cmdline cl = parse_args(argc, argv);
    struct run run = {.cl = &cl};

    find_files(&run);                   /* walk SRC, decide the layout */
    run.images = amil_xcalloc(run.nfiles, sizeof *run.images);
    for (size_t i = 0; i < run.nfiles; i++)
        classify(&run, run.files[i]);   /* image, unknown or bad; takes the path */
    if (run.layout == LAYOUT_OFFICIAL && cl.folds)
        split_by_folds(&run);
    else if (run.layout == LAYOUT_OFFICIAL)
        split_at_random(&run);
    plan_targets(&run);
    check_targets(&run);                /* dies if anything different is in the way */
    for (size_t i = 0; i < run.nplaced_images; i++) {
        const struct image *im = run.by_target[i];
        run.planned[im->mag][im->split][im->cls]++;
    }

    if (cl.dry_run) {
        print_plan(&run);
    } else {
        place_all(&run);
        check_counts(&run);
    }
    print_counts(&run);
    fprintf(stderr, "%s: %s %zu, already there %zu, unknown %zu, errors %zu\n", amil_progname,
            cl.dry_run ? "to place" : "placed", cl.dry_run ? run.nplaced_images - run.already
            : run.placed, run.already, run.unknown, run.errors);

    for (size_t i = 0; i < run.nimages; i++) {
        free(run.images[i].src);
        free(run.images[i].target);
    }
    free(run.images);
    free(run.by_target);
    free(run.files);
    free(run.split_tsv);
    free(cl.src);
    free(cl.dst);
    int failed = run.errors > 0 || (cl.strict && run.unknown > 0);
    return amil_close_stdout() || failed;
}
