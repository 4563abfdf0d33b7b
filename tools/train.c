/* train: fit an attention-MIL model to labelled bags.
 *
 * Reads bag records (bagify's, with a `label`) from a file, indexed once and
 * read again each epoch, or from standard input, held in memory; visits
 * every bag once an epoch in a seeded random order, one bag per step (the
 * paper's loader drew bags with replacement; see train(1)); and writes the
 * model.  The paper's settings are the defaults: the amil network, 20
 * epochs, Adam with lr 1e-4, betas 0.9/0.999 and L2 decay 1e-4, seed 1.
 *
 * Each epoch ends with a checkpoint (weights and optimizer state, written to
 * a temporary file and renamed, so that it is never half written) and a line
 * of the TSV log on stdout; --resume continues from a checkpoint to the same
 * bytes as a run that was never interrupted.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>

#include "amil.h"
#include "metrics.h"
#include "model.h"
#include "nn.h"
#include "optim.h"

struct cmdline {
    const char *output, *input, *test, *resume, *checkpoint;
    enum amil_arch arch;
    enum amil_optim_kind optimizer;
    enum amil_norm norm;
    long epochs, seed, classes, hidden, attention, branches, threads;
    double lr, decay, momentum;
    int quiet;
};

static const char usage_text[] =
    "usage: train -o MODEL [--arch amil|gated] [--epochs N] [--lr X] [--decay X]\n"
    "             [--seed S] [--test FILE] [--resume CHECKPOINT] [options] [FILE]\n"
    "  -o, --output MODEL      where the model goes\n"
    "  -a, --arch ARCH         amil (the paper's) or gated [amil]\n"
    "  -e, --epochs N          passes over the training bags [20]\n"
    "      --lr X              learning rate [1e-4]\n"
    "      --decay X           weight decay [1e-4]\n"
    "      --optimizer NAME    adam (L2 decay), adamw, sgd, rmsprop [adam]\n"
    "      --momentum X        for sgd and rmsprop [0]\n"
    "  -s, --seed S            initial weights and the order of bags [1]\n"
    "  -c, --classes N         classes; labels run 0..N-1 [2]\n"
    "      --hidden L          features per patch [500]\n"
    "      --attention-dim D   width of the attention network [128]\n"
    "      --branches K        attention branches [1]\n"
    "      --normalize N       none (x/255, the paper's), mnist or imagenet [none]\n"
    "  -t, --test FILE         bags to score after each epoch\n"
    "  -r, --resume CKPT       continue from a checkpoint\n"
    "      --checkpoint PATH   where checkpoints go [MODEL.ckpt]\n"
    "  -j, --threads N         threads for the matrix products [1]\n"
    "  -q, --quiet             no log lines or progress on stderr\n"
    "  -h, --help              this help\n"
    "FILE holds the training bags [stdin]; the TSV log goes to stdout.\n";

static _Noreturn void usage(int status)
{
    fputs(usage_text, status ? stderr : stdout);
    exit(status);
}

static void number(const char *option, const char *arg, double min, double max, double *out)
{
    if (amil_parse_double(arg, min, max, out) < 0) {
        amil_warn("%s: %s", option, amil_error());
        usage(2);
    }
}

static void integer(const char *option, const char *arg, long min, long max, long *out)
{
    if (amil_parse_long(arg, min, max, out) < 0) {
        amil_warn("%s: %s", option, amil_error());
        usage(2);
    }
}

static struct cmdline parse_args(int argc, char **argv)
{
    enum { LR = 256, DECAY, OPTIMIZER, MOMENTUM, HIDDEN, ATTENTION, BRANCHES, CHECKPOINT,
           NORMALIZE };
    static const struct option options[] = {
        {"output", required_argument, 0, 'o'}, {"arch", required_argument, 0, 'a'},
        {"epochs", required_argument, 0, 'e'}, {"lr", required_argument, 0, LR},
        {"decay", required_argument, 0, DECAY},
        {"optimizer", required_argument, 0, OPTIMIZER},
        {"momentum", required_argument, 0, MOMENTUM}, {"seed", required_argument, 0, 's'},
        {"classes", required_argument, 0, 'c'}, {"hidden", required_argument, 0, HIDDEN},
        {"attention-dim", required_argument, 0, ATTENTION},
        {"branches", required_argument, 0, BRANCHES}, {"test", required_argument, 0, 't'},
        {"resume", required_argument, 0, 'r'},
        {"checkpoint", required_argument, 0, CHECKPOINT},
        {"normalize", required_argument, 0, NORMALIZE},
        {"threads", required_argument, 0, 'j'}, {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    struct cmdline cl = {.epochs = 20, .seed = 1, .classes = 2, .hidden = 500,
                         .attention = 128, .branches = 1, .threads = 1, .lr = 1e-4,
                         .decay = 1e-4};
    int c, kind;
    while ((c = getopt_long(argc, argv, "o:a:e:s:c:t:r:j:qh", options, NULL)) != -1) {
        switch (c) {
        case 'o': cl.output = optarg; break;
        case 'a':
            if ((kind = amil_arch_parse(optarg)) < 0) {
                amil_warn("--arch: '%s' is not amil or gated", optarg);
                usage(2);
            }
            cl.arch = kind;
            break;
        case 'e': integer("--epochs", optarg, 0, 1000000, &cl.epochs); break;
        case LR: number("--lr", optarg, 0, 1e3, &cl.lr); break;
        case DECAY: number("--decay", optarg, 0, 1e3, &cl.decay); break;
        case OPTIMIZER:
            if ((kind = amil_optim_parse(optarg)) < 0) {
                amil_warn("--optimizer: '%s' is not adam, adamw, sgd or rmsprop", optarg);
                usage(2);
            }
            cl.optimizer = kind;
            break;
        case MOMENTUM: number("--momentum", optarg, 0, 1, &cl.momentum); break;
        case 's': integer("--seed", optarg, 0, 4294967295L, &cl.seed); break;
        case 'c': integer("--classes", optarg, 2, 1000, &cl.classes); break;
        case HIDDEN: integer("--hidden", optarg, 1, 65536, &cl.hidden); break;
        case ATTENTION: integer("--attention-dim", optarg, 1, 65536, &cl.attention); break;
        case BRANCHES: integer("--branches", optarg, 1, 64, &cl.branches); break;
        case 't': cl.test = optarg; break;
        case 'r': cl.resume = optarg; break;
        case CHECKPOINT: cl.checkpoint = optarg; break;
        case NORMALIZE:
            if ((kind = amil_norm_parse(optarg)) < 0) {
                amil_warn("--normalize: '%s' is not none, mnist or imagenet", optarg);
                usage(2);
            }
            cl.norm = kind;
            break;
        case 'j': integer("--threads", optarg, 1, 1024, &cl.threads); break;
        case 'q': cl.quiet = 1; break;
        case 'h': usage(0);
        default: usage(2);
        }
    }
    if (!cl.output) {
        amil_warn("no output: give -o MODEL");
        usage(2);
    }
    if (argc - optind > 1)
        usage(2);
    cl.input = optind < argc ? argv[optind] : NULL;
    if (cl.test && strcmp(cl.test, "-") == 0) {
        amil_warn("--test needs a file: stdin holds the training bags");
        usage(2);
    }
    return cl;
}

/* ---- the bags ------------------------------------------------------------ */

/* A set of bags: a file read again when needed (offsets of its records), or
 * records held in memory (stdin). */
struct bags {
    struct amil_stream stream;
    long count;
    off_t *offsets;                 /* file: where each record starts */
    struct amil_record *held;       /* stdin: the records */
};

/* Reads a set through once: every record must be a labelled bag that fits
 * the model (made from the first bag if *m has no weights yet). */
static void load_bags(const struct cmdline *cl, struct bags *b, const char *path,
                      struct amil_model *m)
{
    memset(b, 0, sizeof *b);
    if (amil_stream_open_path(&b->stream, path) < 0)
        amil_die("%s", amil_error());
    /* A regular file is read again each epoch; stdin, a pipe or a FIFO
     * cannot be, so its bags are held in memory. */
    struct stat st;
    int from_file = fstat(fileno(b->stream.file), &st) == 0 && S_ISREG(st.st_mode);
    long capacity = 0;
    for (;;) {
        off_t at = from_file ? ftello(b->stream.file) : 0;
        struct amil_record r;
        int got = amil_read(&b->stream, &r);
        if (got < 0)
            amil_die("%s", amil_error());
        if (got == 0)
            break;
        const struct amil_tensor *p = amil_find(&r, "patches");
        if (!m->weights && p && p->dtype == AMIL_U8 && p->ndim == 4 &&
            amil_model_init(m, cl->arch, (int)p->shape[3], (int)p->shape[1],
                            (int)cl->classes, (int)cl->hidden, (int)cl->attention,
                            (int)cl->branches) < 0)
            amil_die("%s: record %ld: %s", b->stream.name, b->count, amil_error());
        if (m->weights && b->count == 0 && !cl->resume) {
            if (cl->norm == AMIL_NORM_IMAGENET && m->channels != 3)
                amil_die("--normalize imagenet needs RGB bags, not %d channel%s",
                         m->channels, m->channels == 1 ? "" : "s");
            m->norm = cl->norm;
        }
        long label;
        int has = 0;
        if (!amil_bag_patches(m, &r) || (has = amil_bag_label(m, &r, &label)) < 0)
            amil_die("%s: record %ld: %s", b->stream.name, b->count, amil_error());
        if (!has)
            amil_die("%s: record %ld: no label (bagify -l or -L gives one)",
                     b->stream.name, b->count);
        if (b->count == capacity) {
            capacity = capacity ? 2 * capacity : 256;
            if (from_file)
                b->offsets = amil_xrealloc(b->offsets, sizeof *b->offsets * capacity);
            else
                b->held = amil_xrealloc(b->held, sizeof *b->held * capacity);
        }
        if (from_file) {
            b->offsets[b->count] = at;
            amil_record_free(&r);
        } else {
            b->held[b->count] = r;
        }
        b->count++;
    }
    if (b->count == 0)
        amil_die("%s: no bags", b->stream.name);
}

/* Bag i of the set; *r is to be freed with free_bag(). */
static void get_bag(struct bags *b, long i, struct amil_record *r)
{
    if (b->held) {
        *r = b->held[i];
        return;
    }
    if (fseeko(b->stream.file, b->offsets[i], SEEK_SET) != 0)
        amil_die("%s: cannot seek:", b->stream.name);
    b->stream.index = i;
    int got = amil_read(&b->stream, r);
    if (got < 0)
        amil_die("%s", amil_error());
    if (got == 0)
        amil_die("%s: record %ld changed since it was first read (the file is shorter)",
                 b->stream.name, i);
}

/* Bag i's patches and label, checked again: a file read each epoch may have
 * changed under us since load_bags() checked it. */
static const struct amil_tensor *bag_of(const struct amil_model *m, struct bags *b, long i,
                                        struct amil_record *r, long *label)
{
    get_bag(b, i, r);
    const struct amil_tensor *p = amil_bag_patches(m, r);
    if (!p || amil_bag_label(m, r, label) != 1)
        amil_die("%s: record %ld changed since it was first read", b->stream.name, i);
    return p;
}

static void free_bags(struct bags *b)
{
    for (long i = 0; b->held && i < b->count; i++)
        amil_record_free(&b->held[i]);
    free(b->held);
    free(b->offsets);
    amil_stream_close(&b->stream);
}

static void free_bag(const struct bags *b, struct amil_record *r)
{
    if (!b->held)
        amil_record_free(r);
}

/* ---- one epoch ----------------------------------------------------------- */

struct score {
    double loss, error, accuracy, auc;
};

static double now(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + tv.tv_usec / 1e6;
}

/* Loss, error and AUC of the model on a set, without training. */
static struct score evaluate_set(const struct amil_model *m, struct amil_work *w,
                                 struct bags *b)
{
    struct score s = {0};
    double *score = amil_xmalloc(sizeof *score * b->count);
    int *positive = amil_xmalloc(sizeof *positive * b->count);
    for (long i = 0; i < b->count; i++) {
        struct amil_record r;
        long label;
        const struct amil_tensor *p = bag_of(m, b, i, &r, &label);
        s.loss += amil_model_step(m, w, p->data, (int)p->shape[0], (int)label, NULL);
        s.error += amil_model_predict(m, w->prob) != label;
        /* AUC of class 1 against the rest: for two classes, the usual */
        score[i] = w->prob[1];
        positive[i] = label == 1;
        free_bag(b, &r);
    }
    s.loss /= b->count;
    s.error /= b->count;
    s.accuracy = 1 - s.error;
    s.auc = amil_auc(score, positive, (size_t)b->count);
    free(score);
    free(positive);
    return s;
}

static void progress(const struct cmdline *cl, long epoch, long i, long n, double loss)
{
    static double last;
    if (cl->quiet || !isatty(STDERR_FILENO))
        return;
    double t = now();
    if (i + 1 < n && t - last < 0.2)
        return;
    last = t;
    fprintf(stderr, "\repoch %ld/%ld  bag %ld/%ld  mean loss %.4f ", epoch, cl->epochs,
            i + 1, n, loss / (i + 1));
    if (i + 1 == n)
        fputs("\r\033[K", stderr);
}

/* Dies now, not after an epoch of work, if path cannot be written: makes
 * and removes a file beside it. */
static void check_writable(const char *path)
{
    size_t size = strlen(path) + 32;
    char *probe = amil_xmalloc(size);
    snprintf(probe, size, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(probe, "wb");
    if (!f)
        amil_die("cannot write %s:", path);
    fclose(f);
    unlink(probe);
    free(probe);
}

/* Writes a record to path through a temporary file and a rename, so that
 * path holds either the old bytes or the new, never a part. */
static void write_atomically(const char *path, const struct amil_record *r)
{
    size_t size = strlen(path) + 32;
    char *temporary = amil_xmalloc(size);
    snprintf(temporary, size, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(temporary, "wb");
    if (!f)
        amil_die("%s:", temporary);
    if (amil_write(f, r) < 0 || fflush(f) != 0 || fsync(fileno(f)) != 0) {
        int saved = errno;
        fclose(f);
        unlink(temporary);
        errno = saved;
        amil_die("writing %s:", path);
    }
    if (fclose(f) != 0 || rename(temporary, path) != 0) {
        unlink(temporary);
        amil_die("writing %s:", path);
    }
    free(temporary);
}

static void save_checkpoint(const struct cmdline *cl, const char *path,
                            const struct amil_model *m, const struct amil_optimizer *o,
                            long epoch)
{
    struct amil_record r;
    amil_model_to_record(m, &r);
    amil_meta_set(&r, "kind", "checkpoint");
    amil_meta_setf(&r, "epoch", "%ld", epoch);
    amil_meta_setf(&r, "seed", "%ld", cl->seed);
    amil_optim_to_record(o, m->params, m->nparams, &r);
    write_atomically(path, &r);
    amil_record_free(&r);
}

/* Restores model, optimizer and the epochs done from a checkpoint. */
static long resume(struct cmdline *cl, struct amil_model *m, struct amil_optimizer *o)
{
    struct amil_stream s;
    struct amil_record r;
    if (amil_stream_open_path(&s, cl->resume) < 0)
        amil_die("%s", amil_error());
    int got = amil_read(&s, &r);
    amil_stream_close(&s);
    if (got < 0)
        amil_die("%s", amil_error());
    if (got == 0)
        amil_die("%s: empty, not a checkpoint", cl->resume);
    const char *kind = amil_meta_get(&r, "kind");
    long epoch, seed;
    if (!kind || strcmp(kind, "checkpoint") != 0 ||
        amil_meta_long(&r, "epoch", 0, 1000000, &epoch) != 1 ||
        amil_meta_long(&r, "seed", 0, 4294967295L, &seed) != 1)
        amil_die("%s: not a checkpoint of train", cl->resume);
    if (amil_model_from_record(m, &r) < 0)
        amil_die("%s: %s", cl->resume, amil_error());
    const char *name = amil_meta_get(&r, "optimizer");
    int optimizer = name ? amil_optim_parse(name) : -1;
    if (optimizer < 0)
        amil_die("%s: no optimizer state", cl->resume);
    amil_optim_init(o, optimizer, m->nweights);
    if (amil_optim_from_record(o, m->params, m->nparams, &r) < 0)
        amil_die("%s: %s", cl->resume, amil_error());
    double *settings[] = {&o->lr, &o->beta1, &o->beta2, &o->eps, &o->decay, &o->momentum,
                          &o->alpha};
    const char *keys[] = {"lr", "beta1", "beta2", "eps", "decay", "momentum", "alpha"};
    for (int i = 0; i < 7; i++) {
        const char *v = amil_meta_get(&r, keys[i]);
        if (!v || amil_parse_double(v, 0, 1e6, settings[i]) < 0)
            amil_die("%s: bad or missing %s", cl->resume, keys[i]);
    }
    cl->seed = seed;   /* the run's order of bags goes on as it began */
    cl->arch = m->arch;
    amil_record_free(&r);
    return epoch;
}

int main(int argc, char **argv)
{
    amil_init(argc, argv);
    struct cmdline cl = parse_args(argc, argv);
    amil_threads((int)cl.threads);
    char *checkpoint = NULL;
    if (cl.checkpoint) {
        checkpoint = amil_xstrdup(cl.checkpoint);
    } else {
        checkpoint = amil_xmalloc(strlen(cl.output) + 6);
        sprintf(checkpoint, "%s.ckpt", cl.output);
    }

    check_writable(cl.output);
    check_writable(checkpoint);
    struct amil_model m = {0};
    struct amil_optimizer o;
    long done = 0;
    const char *last_good = "none";   /* for the message of a NaN loss */
    if (cl.resume) {
        done = resume(&cl, &m, &o);
        last_good = cl.resume;
    }
    struct bags train, test = {0};
    load_bags(&cl, &train, cl.input, &m);
    if (cl.test)
        load_bags(&cl, &test, cl.test, &m);
    if (!cl.resume) {
        amil_model_randomize(&m, (unsigned long)cl.seed);
        amil_optim_init(&o, cl.optimizer, m.nweights);
        o.lr = cl.lr;
        o.decay = cl.decay;
        o.momentum = cl.momentum;
    }

    /* The order of bags: one shuffle an epoch from one generator, so that a
     * resumed run replays the shuffles of the epochs it skips. */
    gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(rng, (unsigned long)cl.seed);
    long *order = amil_xmalloc(sizeof *order * train.count);
    for (long i = 0; i < train.count; i++)
        order[i] = i;

    struct amil_work w = {0};
    float *grads = amil_xmalloc(sizeof *grads * m.nweights);
    printf("epoch\ttrain_loss\ttrain_error\ttrain_accuracy\ttest_loss\ttest_error\t"
           "test_accuracy\ttest_auc\tseconds\n");
    for (long epoch = 1; epoch <= cl.epochs; epoch++) {
        gsl_ran_shuffle(rng, order, (size_t)train.count, sizeof *order);
        if (epoch <= done)
            continue;
        double start = now(), loss = 0, errors = 0;
        for (long k = 0; k < train.count; k++) {
            struct amil_record r;
            long label;
            const struct amil_tensor *p = bag_of(&m, &train, order[k], &r, &label);
            memset(grads, 0, sizeof *grads * m.nweights);
            double l = amil_model_step(&m, &w, p->data, (int)p->shape[0], (int)label, grads);
            if (!isfinite(l))
                amil_die("epoch %ld, bag %ld (%s): the loss is %s; the last "
                         "checkpoint is %s", epoch, order[k],
                         amil_meta_get(&r, "source") ? amil_meta_get(&r, "source") : "?",
                         isnan(l) ? "nan" : l > 0 ? "inf" : "-inf", last_good);
            loss += l;
            errors += amil_model_predict(&m, w.prob) != label;
            amil_optim_step(&o, m.weights, grads);
            free_bag(&train, &r);
            progress(&cl, epoch, k, train.count, loss);
        }
        struct score tr = {loss / train.count, errors / train.count,
                           1 - errors / train.count, NAN};
        struct score te = {NAN, NAN, NAN, NAN};
        if (cl.test)
            te = evaluate_set(&m, &w, &test);
        save_checkpoint(&cl, checkpoint, &m, &o, epoch);
        last_good = checkpoint;
        done = epoch;
        if (!cl.quiet) {
            fprintf(stderr, "Epoch: %ld, Loss: %.4f, Train error: %.4f\n", epoch, tr.loss,
                    tr.error);
            if (cl.test)
                fprintf(stderr, "Test Set, Loss: %.4f, Test error: %.4f\n", te.loss,
                        te.error);
        }
        printf("%ld\t%.6f\t%.6f\t%.6f\t%.6f\t%.6f\t%.6f\t%.6f\t%.3f\n", epoch, tr.loss,
               tr.error, tr.accuracy, te.loss, te.error, te.accuracy, te.auc,
               now() - start);
        fflush(stdout);
    }

    struct amil_record r;
    amil_model_to_record(&m, &r);
    amil_meta_setf(&r, "epochs", "%ld", done);   /* trained, resumed ones too */
    amil_meta_setf(&r, "seed", "%ld", cl.seed);
    write_atomically(cl.output, &r);
    amil_record_free(&r);
    free_bags(&train);
    if (cl.test)
        free_bags(&test);
    free(grads);
    free(order);
    free(checkpoint);
    gsl_rng_free(rng);
    amil_work_free(&w);
    amil_optim_free(&o);
    amil_model_free(&m);
    return amil_close_stdout();
}
