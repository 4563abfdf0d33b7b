/* train: fit an attention-MIL model to labelled bags, or one of the
 * paper's CNN baselines to labelled images.
 *
 * Reads bag records (bagify's, with a `label`) from a file, indexed once and
 * read again each epoch, or from standard input, held in memory; visits
 * every bag once an epoch in a seeded random order, one bag per step (the
 * paper's loader drew bags with replacement; see train(1)); and writes the
 * model.  The paper's settings are the defaults: the amil network, 20
 * epochs, Adam with lr 1e-4, betas 0.9/0.999 and L2 decay 1e-4, seed 1.
 *
 * The CNN baselines (--arch net, vgg19, resnet18; cnn.h) read image records
 * (bagify -w), or for a frozen backbone the tiles' features featurize
 * cached; their defaults are the paper's baselines': 10 epochs, RMSprop
 * with lr 3e-4 and momentum 0.4, batches of 32 samples.  A sample of net is
 * a random 128×128 crop of an image (a new one each epoch); of vgg19 and
 * resnet18, one of the image's tiles with the image's label, whose
 * features come from the frozen backbone in evaluation mode, computed here
 * or read from the cache: the same bytes either way.
 *
 * Each epoch ends with a checkpoint (weights and optimizer state, written to
 * a temporary file and renamed, so that it is never half written) and a line
 * of the TSV log on stdout; --resume continues from a checkpoint to the same
 * bytes as a run that was never interrupted.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>

#include "amil.h"
#include "cnn.h"
#include "metrics.h"
#include "model.h"
#include "nn.h"
#include "optim.h"

/* Options whose defaults depend on the kind of network: which were given. */
enum { GIVEN_EPOCHS = 1, GIVEN_LR = 2, GIVEN_DECAY = 4, GIVEN_OPTIMIZER = 8,
       GIVEN_MOMENTUM = 16, GIVEN_MIL = 32, GIVEN_BATCH = 64, GIVEN_NORMALIZE = 128 };

struct cmdline {
    const char *output, *input, *test, *resume, *checkpoint, *weights;
    int cnn;                /* a CNN baseline, cnn_arch; else arch */
    enum amil_cnn_arch cnn_arch;
    enum amil_arch arch;
    unsigned given;
    long batch;
    enum amil_optim_kind optimizer;
    enum amil_norm norm;
    long epochs, seed, classes, hidden, attention, branches, threads;
    double lr, decay, momentum;
    int quiet;
};

static const char usage_text[] =
    "usage: train -o MODEL [--arch amil|gated|net|vgg19|resnet18] [--epochs N]\n"
    "             [--lr X] [--decay X] [--seed S] [--test FILE]\n"
    "             [--resume CHECKPOINT] [options] [FILE]\n"
    "  -o, --output MODEL      where the model goes\n"
    "  -a, --arch ARCH         amil (the paper's) or gated; or a CNN baseline:\n"
    "                          net, vgg19, resnet18 [amil]\n"
    "  -e, --epochs N          passes over the training set [20; CNNs 10]\n"
    "      --lr X              learning rate [1e-4; CNNs 3e-4]\n"
    "      --decay X           weight decay [1e-4; CNNs 0]\n"
    "      --optimizer NAME    adam (L2 decay), adamw, sgd, rmsprop\n"
    "                          [adam; CNNs rmsprop]\n"
    "      --momentum X        for sgd and rmsprop [0; CNNs 0.4]\n"
    "  -b, --batch N           samples a step: attention-MIL 1 bag; CNNs [32]\n"
    "  -w, --weights FILE      a CNN's starting weights (torchvision's state_dict\n"
    "                          names); the last layer is new unless it fits\n"
    "  -s, --seed S            initial weights and the order of bags [1]\n"
    "  -c, --classes N         classes; labels run 0..N-1 [2]\n"
    "      --hidden L          attention-MIL: features per patch [500]\n"
    "      --attention-dim D   width of the attention network [128]\n"
    "      --branches K        attention branches [1]\n"
    "      --normalize N       none (x/255, the paper's), mnist or imagenet [none]\n"
    "  -t, --test FILE         bags to score after each epoch\n"
    "  -r, --resume CKPT       continue from a checkpoint\n"
    "      --checkpoint PATH   where checkpoints go [MODEL.ckpt]\n"
    "  -j, --threads N         threads for the matrix products [1]\n"
    "  -q, --quiet             no log lines or progress on stderr\n"
    "  -h, --help              this help\n"
    "FILE holds the training bags, or images (bagify -w) or their cached features\n"
    "(featurize) for a CNN [stdin]; the TSV log goes to stdout.\n";

static struct cmdline parse_args(int argc, char **argv)
{
    amil_usage_is(usage_text);
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
        {"batch", required_argument, 0, 'b'}, {"weights", required_argument, 0, 'w'},
        {"threads", required_argument, 0, 'j'}, {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    struct cmdline cl = {.epochs = 20, .seed = 1, .classes = 2, .hidden = 500,
                         .attention = 128, .branches = 1, .threads = 1, .lr = 1e-4,
                         .decay = 1e-4, .batch = 1};
    int c, kind;
    while ((c = getopt_long(argc, argv, "o:a:e:s:c:t:r:b:w:j:qh", options, NULL)) != -1) {
        cl.given |= c == 'e' ? GIVEN_EPOCHS : c == LR ? GIVEN_LR : c == DECAY ? GIVEN_DECAY
                  : c == OPTIMIZER ? GIVEN_OPTIMIZER : c == MOMENTUM ? GIVEN_MOMENTUM
                  : c == 'b' ? GIVEN_BATCH : c == NORMALIZE ? GIVEN_NORMALIZE
                  : c == HIDDEN || c == ATTENTION || c == BRANCHES ? GIVEN_MIL : 0;
        switch (c) {
        case 'o': cl.output = optarg; break;
        case 'a':
            if ((kind = amil_arch_parse(optarg)) >= 0)
                cl.arch = kind, cl.cnn = 0;
            else if ((kind = amil_cnn_arch_parse(optarg)) >= 0)
                cl.cnn_arch = kind, cl.cnn = 1;
            else
                amil_misuse("--arch: '%s' is not amil, gated, net, vgg19 or resnet18", optarg);
            break;
        case 'e': cl.epochs = amil_option_long("--epochs", optarg, 0, 1000000); break;
        case LR: cl.lr = amil_option_double("--lr", optarg, 0, 1e3); break;
        case DECAY: cl.decay = amil_option_double("--decay", optarg, 0, 1e3); break;
        case 'b': cl.batch = amil_option_long("--batch", optarg, 1, 4096); break;
        case 'w': cl.weights = optarg; break;
        case OPTIMIZER:
            if ((kind = amil_optim_parse(optarg)) < 0)
                amil_misuse("--optimizer: '%s' is not adam, adamw, sgd or rmsprop", optarg);
            cl.optimizer = kind;
            break;
        case MOMENTUM: cl.momentum = amil_option_double("--momentum", optarg, 0, 1); break;
        case 's': cl.seed = amil_option_long("--seed", optarg, 0, 4294967295L); break;
        case 'c': cl.classes = amil_option_long("--classes", optarg, 2, 1000); break;
        case HIDDEN: cl.hidden = amil_option_long("--hidden", optarg, 1, 65536); break;
        case ATTENTION: cl.attention = amil_option_long("--attention-dim", optarg, 1, 65536); break;
        case BRANCHES: cl.branches = amil_option_long("--branches", optarg, 1, 64); break;
        case 't': cl.test = optarg; break;
        case 'r': cl.resume = optarg; break;
        case CHECKPOINT: cl.checkpoint = optarg; break;
        case NORMALIZE:
            if ((kind = amil_norm_parse(optarg)) < 0)
                amil_misuse("--normalize: '%s' is not none, mnist or imagenet", optarg);
            cl.norm = kind;
            break;
        case 'j': cl.threads = amil_option_long("--threads", optarg, 1, 1024); break;
        case 'q': cl.quiet = 1; break;
        case 'h': amil_usage(0);
        default: amil_usage(2);
        }
    }
    if (!cl.output)
        amil_misuse("no output: give -o MODEL");
    if (argc - optind > 1)
        amil_usage(2);
    cl.input = optind < argc ? argv[optind] : NULL;
    if (cl.test && strcmp(cl.test, "-") == 0)
        amil_misuse("--test needs a file: stdin holds the training bags");
    if (!cl.cnn && (cl.batch != 1 || cl.weights)) {
        amil_warn("%s: an attention-MIL model trains on one bag a step, from its own "
                  "initialization", cl.weights ? "--weights" : "--batch");
        amil_usage(2);
    }
    if (cl.cnn && (cl.given & GIVEN_MIL))
        amil_misuse("--hidden, --attention-dim and --branches are attention-MIL's");
    if (cl.cnn) {   /* the paper's baselines: RMSprop, lr 3e-4, momentum 0.4 */
        cl.epochs = cl.given & GIVEN_EPOCHS ? cl.epochs : 10;
        cl.lr = cl.given & GIVEN_LR ? cl.lr : 3e-4;
        cl.decay = cl.given & GIVEN_DECAY ? cl.decay : 0;
        cl.momentum = cl.given & GIVEN_MOMENTUM ? cl.momentum : 0.4;
        cl.optimizer = cl.given & GIVEN_OPTIMIZER ? cl.optimizer : AMIL_RMSPROP;
        cl.batch = cl.given & GIVEN_BATCH ? cl.batch : 32;
    }
    return cl;
}

/* ---- the bags ------------------------------------------------------------ */

/* A set of bags (or images): a file read again when needed (offsets of its
 * records), or records held in memory (stdin).  Record i holds samples
 * first[i] to first[i + 1] - 1: one bag, one image to crop, or an image's
 * tiles. */
struct bags {
    struct amil_stream stream;
    long count;
    off_t *offsets;                 /* file: where each record starts */
    struct amil_record *held;       /* stdin: the records */
    long *first;                    /* count + 1 */
};

/* Checks record `index` of set `name` (dying if it does not do) and
 * returns how many samples it holds. */
typedef long check_fn(struct amil_record *r, long index, const char *name, void *context);

/* Reads a set through once, every record checked. */
static void load_bags(struct bags *b, const char *path, check_fn *check, void *context)
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
        long samples = check(&r, b->count, b->stream.name, context);
        if (b->count == capacity) {
            capacity = capacity ? 2 * capacity : 256;
            if (from_file)
                b->offsets = amil_xrealloc(b->offsets, sizeof *b->offsets * capacity);
            else
                b->held = amil_xrealloc(b->held, sizeof *b->held * capacity);
            b->first = amil_xrealloc(b->first, sizeof *b->first * (capacity + 1));
        }
        if (from_file) {
            b->offsets[b->count] = at;
            amil_record_free(&r);
        } else {
            b->held[b->count] = r;
        }
        b->first[b->count + 1] = (b->count ? b->first[b->count] : 0) + samples;
        b->first[0] = 0;
        b->count++;
    }
    if (b->count == 0)
        amil_die("%s: no bags", b->stream.name);
}

/* ---- attention-MIL bags ---------------------------------------------------- */

struct mil_context {
    const struct cmdline *cl;
    struct amil_model *m;   /* made from the first bag if it has no weights */
};

static long check_bag(struct amil_record *r, long index, const char *name, void *context)
{
    const struct cmdline *cl = ((struct mil_context *)context)->cl;
    struct amil_model *m = ((struct mil_context *)context)->m;
    const struct amil_tensor *p = amil_find(r, "patches");
    if (!m->weights && p && p->dtype == AMIL_U8 && p->ndim == 4 &&
        amil_model_init(m, cl->arch, (int)p->shape[3], (int)p->shape[1], (int)cl->classes,
                        (int)cl->hidden, (int)cl->attention, (int)cl->branches) < 0)
        amil_die("%s: record %ld: %s", name, index, amil_error());
    if (m->weights && index == 0 && !cl->resume) {
        if (cl->norm == AMIL_NORM_IMAGENET && m->channels != 3)
            amil_die("--normalize imagenet needs RGB bags, not %d channel%s", m->channels,
                     m->channels == 1 ? "" : "s");
        m->norm = cl->norm;
    }
    long label;
    int has = 0;
    if (!amil_bag_patches(m, r) || (has = amil_bag_label(m, r, &label)) < 0)
        amil_die("%s: record %ld: %s", name, index, amil_error());
    if (!has)
        amil_die("%s: record %ld: no label (bagify -l or -L gives one)", name, index);
    return 1;
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
    free(b->first);
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

/* What a model makes of one record of a set, for score_set(). */
struct verdict {
    long label;
    int predicted;
    double loss, score;     /* score: the probability of class 1 */
};
typedef struct verdict judge_fn(struct bags *b, long i, void *context);

/* Loss, error and AUC of a model on a set, without training: judge says
 * what it makes of each record. */
static struct score score_set(struct bags *b, judge_fn *judge, void *context)
{
    struct score s = {0};
    double *score = amil_xmalloc(sizeof *score * b->count);
    int *positive = amil_xmalloc(sizeof *positive * b->count);
    for (long i = 0; i < b->count; i++) {
        struct verdict v = judge(b, i, context);
        s.loss += v.loss;
        s.error += v.predicted != v.label;
        /* AUC of class 1 against the rest: for two classes, the usual */
        score[i] = v.score;
        positive[i] = v.label == 1;
    }
    s.loss /= b->count;
    s.error /= b->count;
    s.accuracy = 1 - s.error;
    s.auc = amil_auc(score, positive, (size_t)b->count);
    free(score);
    free(positive);
    return s;
}

struct mil_judge {
    const struct amil_model *m;
    struct amil_work *w;
};

static struct verdict judge_bag(struct bags *b, long i, void *context)
{
    const struct mil_judge *c = context;
    struct amil_record r;
    struct verdict v;
    const struct amil_tensor *p = bag_of(c->m, b, i, &r, &v.label);
    v.loss = amil_model_step(c->m, c->w, p->data, (int)p->shape[0], (int)v.label, NULL);
    v.predicted = amil_model_predict(c->m, c->w->prob);
    v.score = c->w->prob[1];
    free_bag(b, &r);
    return v;
}

static void progress(const struct cmdline *cl, long epoch, long i, long n, double loss)
{
    const char *unit = cl->cnn ? "sample" : "bag";
    static double last;
    if (cl->quiet || !isatty(STDERR_FILENO))
        return;
    double t = now();
    if (i + 1 < n && t - last < 0.2)
        return;
    last = t;
    fprintf(stderr, "\repoch %ld/%ld  %s %ld/%ld  mean loss %.4f ", epoch, cl->epochs, unit,
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
    struct amil_output o;
    if (amil_output_open(&o, path) < 0)
        amil_die("%s", amil_error());
    if (amil_write(o.file, r) < 0) {
        char why[512];
        snprintf(why, sizeof why, "%s", amil_error());
        amil_output_abort(&o);
        amil_die("writing %s: %s", path, why);
    }
    if (amil_output_commit(&o) < 0)
        amil_die("writing %s", amil_error());
}

/* A checkpoint: the model's record r (freed here), the epochs done, the
 * seed, the batch and the optimizer's state of params. */
/* What an interrupt prints: where the last checkpoint is and how to go on
 * (made ready outside the handler, which only writes it). */
static char interrupted[8192] = "train: interrupted before the first checkpoint: nothing to "
                                "resume from\n";

static void on_interrupt(int sig)
{
    amil_output_cleanup();   /* a checkpoint being written stays as it was */
    ssize_t ignored = write(STDERR_FILENO, interrupted, strlen(interrupted));
    (void)ignored;
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Prints the interrupt message on SIGINT and SIGTERM; argv is the command
 * to repeat with --resume. */
static void catch_interrupts(void)
{
    struct sigaction action = {0};
    action.sa_handler = on_interrupt;
    sigaction(SIGINT, &action, NULL);
    sigaction(SIGTERM, &action, NULL);
}

static int saved_argc;
static char **saved_argv;

static void save_checkpoint(const struct cmdline *cl, const char *path, struct amil_record *r,
                            const struct amil_optimizer *o, const struct amil_param *params,
                            int nparams, long epoch)
{
    amil_meta_set(r, "kind", "checkpoint");
    amil_meta_setf(r, "epoch", "%ld", epoch);
    amil_meta_setf(r, "seed", "%ld", cl->seed);
    amil_meta_setf(r, "batch", "%ld", cl->batch);
    amil_optim_to_record(o, params, nparams, r);
    /* An interrupt waits until the file and the message agree: between the
     * rename and the new message it had named the epoch before (measured:
     * CI's resume test found the checkpoint an epoch ahead of what it said). */
    sigset_t interrupts, before;
    sigemptyset(&interrupts);
    sigaddset(&interrupts, SIGINT);
    sigaddset(&interrupts, SIGTERM);
    sigprocmask(SIG_BLOCK, &interrupts, &before);
    write_atomically(path, r);
    amil_record_free(r);
    /* the same command with --resume (an earlier --resume replaced) */
    int n = snprintf(interrupted, sizeof interrupted,
                     "train: interrupted; epoch %ld is saved in %s; to go on:\n  train", epoch,
                     path);
    for (int i = 1; i < saved_argc && n < (int)sizeof interrupted; i++) {
        const char *a = saved_argv[i];
        if (strcmp(a, "--resume") == 0 || strcmp(a, "-r") == 0) {
            i++;
            continue;
        }
        if (strncmp(a, "--resume=", 9) == 0)
            continue;
        n += snprintf(interrupted + n, sizeof interrupted - n, " %s", a);
    }
    if (n < (int)sizeof interrupted)
        snprintf(interrupted + n, sizeof interrupted - n, " --resume %s\n", path);
    sigprocmask(SIG_SETMASK, &before, NULL);
}

/* The model's record r, with the epochs done (resumed ones too) and the
 * seed, to the output; then r and the sets are freed. */
static void save_model(const struct cmdline *cl, struct amil_record *r, long done,
                       struct bags *train, struct bags *test)
{
    amil_meta_setf(r, "epochs", "%ld", done);
    amil_meta_setf(r, "seed", "%ld", cl->seed);
    write_atomically(cl->output, r);
    amil_record_free(r);
    free_bags(train);
    if (cl->test)
        free_bags(test);
}

/* Reads what resume() and resume_cnn() share: the epoch and seed, and the
 * optimizer's kind and settings (its state is the caller's to read). */
static long resume_common(struct cmdline *cl, const struct amil_record *r,
                          struct amil_optimizer *o, size_t n)
{
    const char *kind = amil_meta_get(r, "kind");
    long epoch, seed;
    if (!kind || strcmp(kind, "checkpoint") != 0 ||
        amil_meta_long(r, "epoch", 0, 1000000, &epoch) != 1 ||
        amil_meta_long(r, "seed", 0, 4294967295L, &seed) != 1)
        amil_die("%s: not a checkpoint of train", cl->resume);
    const char *name = amil_meta_get(r, "optimizer");
    int optimizer = name ? amil_optim_parse(name) : -1;
    if (optimizer < 0)
        amil_die("%s: no optimizer state", cl->resume);
    amil_optim_init(o, optimizer, n);
    double *settings[] = {&o->lr, &o->beta1, &o->beta2, &o->eps, &o->decay, &o->momentum,
                          &o->alpha};
    const char *keys[] = {"lr", "beta1", "beta2", "eps", "decay", "momentum", "alpha"};
    for (int i = 0; i < 7; i++) {
        const char *v = amil_meta_get(r, keys[i]);
        if (!v || amil_parse_double(v, 0, 1e6, settings[i]) < 0)
            amil_die("%s: bad or missing %s", cl->resume, keys[i]);
    }
    cl->seed = seed;   /* the run goes on as it began */
    return epoch;
}

/* Restores model, optimizer and the epochs done from a checkpoint. */
static long resume(struct cmdline *cl, struct amil_model *m, struct amil_optimizer *o)
{
    struct amil_record r;
    if (amil_record_load(cl->resume, &r) < 0)
        amil_die("%s", amil_error());
    if (amil_cnn_is_model(&r))
        amil_die("%s: a checkpoint of a CNN, not of an attention-MIL model", cl->resume);
    if (amil_model_from_record(m, &r) < 0)
        amil_die("%s: %s", cl->resume, amil_error());
    long epoch = resume_common(cl, &r, o, m->nweights);
    if (amil_optim_from_record(o, m->params, m->nparams, &r) < 0)
        amil_die("%s: %s", cl->resume, amil_error());
    cl->arch = m->arch;
    amil_record_free(&r);
    return epoch;
}

static void log_header(void)
{
    printf("epoch\ttrain_loss\ttrain_error\ttrain_accuracy\ttest_loss\ttest_error\t"
           "test_accuracy\ttest_auc\tseconds\n");
}

/* An epoch's line of the TSV log, and the paper's lines on stderr. */
static void log_epoch(const struct cmdline *cl, long epoch, struct score tr, struct score te,
                      double seconds)
{
    if (!cl->quiet) {
        fprintf(stderr, "Epoch: %ld, Loss: %.4f, Train error: %.4f\n", epoch, tr.loss,
                tr.error);
        if (cl->test)
            fprintf(stderr, "Test Set, Loss: %.4f, Test error: %.4f\n", te.loss, te.error);
    }
    printf("%ld\t%.6f\t%.6f\t%.6f\t%.6f\t%.6f\t%.6f\t%.6f\t%.3f\n", epoch, tr.loss,
           tr.error, tr.accuracy, te.loss, te.error, te.accuracy, te.auc, seconds);
    fflush(stdout);
}

static void train_mil(struct cmdline cl, const char *checkpoint)
{
    struct amil_model m = {0};
    struct amil_optimizer o;
    long done = 0;
    const char *last_good = "none";   /* for the message of a NaN loss */
    if (cl.resume) {
        done = resume(&cl, &m, &o);
        last_good = cl.resume;
    }
    struct bags train, test = {0};
    struct mil_context context = {&cl, &m};
    load_bags(&train, cl.input, check_bag, &context);
    if (cl.test)
        load_bags(&test, cl.test, check_bag, &context);
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
    log_header();
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
            te = score_set(&test, judge_bag, &(struct mil_judge){&m, &w});
        struct amil_record r;
        amil_model_to_record(&m, &r);
        save_checkpoint(&cl, checkpoint, &r, &o, m.params, m.nparams, epoch);
        last_good = checkpoint;
        done = epoch;
        log_epoch(&cl, epoch, tr, te, now() - start);
    }

    struct amil_record r;
    amil_model_to_record(&m, &r);
    save_model(&cl, &r, done, &train, &test);
    free(grads);
    free(order);
    gsl_rng_free(rng);
    amil_work_free(&w);
    amil_optim_free(&o);
    amil_model_free(&m);
}

/* ---- CNN baselines -------------------------------------------------------- */

struct cnn_context {
    const struct cmdline *cl;
    const struct amil_cnn *m;
    int cached;             /* the set's records hold features, not images;
                               -1 until the first record says */
};

/* An image (or its cached features) with a label: one sample for net (a
 * crop), one per tile for the frozen backbones. */
static long check_image(struct amil_record *r, long index, const char *name, void *context)
{
    struct cnn_context *c = context;
    const struct amil_cnn *m = c->m;
    long label;
    int has = amil_meta_long(r, "label", 0, m->classes - 1, &label);
    if (has < 0)
        amil_die("%s: record %ld: label '%s' is not a class of the model (0 to %d)", name,
                 index, amil_meta_get(r, "label"), m->classes - 1);
    if (!has)
        amil_die("%s: record %ld: no label (bagify -l or -L gives one)", name, index);
    /* a frozen backbone reads cached features when a record has them, as
     * classify does; net always the image */
    int cached = amil_find(r, "features") && (m->trained || !amil_find(r, "image"));
    if (cached && !m->trained)
        amil_die("%s: record %ld: net trains on images (bagify -w), not cached features",
                 name, index);
    if (c->cached >= 0 && cached != c->cached)
        amil_die("%s: record %ld: %s, but the records before it hold %s", name, index,
                 cached ? "cached features" : "an image", cached ? "images" : "features");
    c->cached = cached;
    const struct amil_tensor *t = cached ? amil_cnn_cached(m, r) : amil_cnn_image(m, r);
    if (!t)
        amil_die("%s: record %ld: %s", name, index, amil_error());
    if (cached)
        return (long)t->shape[0];
    int tiles;
    free(amil_cnn_tile_coords(m, (int)t->shape[0], (int)t->shape[1], &tiles));
    return m->trained ? tiles : 1;
}

/* The record that holds sample k: the last i with first[i] <= k. */
static long record_of(const struct bags *b, long k)
{
    long lo = 0, hi = b->count - 1;
    while (lo < hi) {
        long mid = (lo + hi + 1) / 2;
        if (b->first[mid] <= k)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

/* What a step reads: net's crops (B, T, T, 3) or the head's features (B, F). */
struct cnn_batch {
    uint8_t *crops;
    float *features;
    long *labels;
    float *dscores;
};

/* Gathers samples[0..B) from the set: net's a random crop of the image
 * (its corner drawn from rng), the backbones' a tile's features, from the
 * cache or through the backbone (w1, one tile at a time). */
static void gather(const struct amil_cnn *m, struct amil_cnn_work *w1, struct bags *b,
                   int cached, const long *samples, int B, gsl_rng *rng, struct cnn_batch *batch)
{
    int T = m->size, F = amil_cnn_feature_size(m);
    for (int k = 0; k < B; k++) {
        long i = record_of(b, samples[k]);
        int tile = (int)(samples[k] - b->first[i]);
        struct amil_record r;
        get_bag(b, i, &r);
        const struct amil_tensor *t = cached ? amil_cnn_cached(m, &r) : amil_cnn_image(m, &r);
        if (!t || amil_meta_long(&r, "label", 0, m->classes - 1, &batch->labels[k]) != 1 ||
            (cached && tile >= t->shape[0]))
            amil_die("%s: record %ld changed since it was first read", b->stream.name, i);
        int H = (int)t->shape[0], W = (int)t->shape[1];
        if (cached) {
            memcpy(batch->features + (size_t)k * F, (const float *)t->data + (size_t)tile * F,
                   sizeof(float) * F);
        } else if (!m->trained) {
            int y = (int)gsl_rng_uniform_int(rng, (unsigned long)(H - T + 1));
            int x = (int)gsl_rng_uniform_int(rng, (unsigned long)(W - T + 1));
            amil_cnn_cut(batch->crops + (size_t)k * T * T * 3, t->data, W, y, x, T);
        } else {
            int n;
            int32_t *coords = amil_cnn_tile_coords(m, H, W, &n);
            if (tile >= n)
                amil_die("%s: record %ld changed since it was first read", b->stream.name, i);
            amil_cnn_featurize(m, w1, t->data, W, coords + 2 * tile, 1,
                               batch->features + (size_t)k * F);
            free(coords);
        }
        free_bag(b, &r);
    }
}

struct cnn_judge {
    const struct amil_cnn *m;
    struct amil_cnn_work *w;
    int cached;
};

/* An image classified as classify does it (the mean of its tiles'
 * softmax); the loss is the cross-entropy of that mean. */
static struct verdict judge_image(struct bags *b, long i, void *context)
{
    const struct cnn_judge *c = context;
    const struct amil_cnn *m = c->m;
    struct amil_record r;
    struct verdict v;
    float prob[AMIL_CNN_MAX_CLASSES];
    get_bag(b, i, &r);
    const struct amil_tensor *t = c->cached ? amil_cnn_cached(m, &r) : amil_cnn_image(m, &r);
    if (!t || amil_meta_long(&r, "label", 0, m->classes - 1, &v.label) != 1)
        amil_die("%s: record %ld changed since it was first read", b->stream.name, i);
    if (c->cached)
        amil_cnn_classify(m, c->w, NULL, 0, 0, t->data, (int)t->shape[0], prob);
    else
        amil_cnn_classify(m, c->w, t->data, (int)t->shape[0], (int)t->shape[1], NULL, 0, prob);
    v.loss = -log(fmax(prob[v.label], 1e-30));
    v.predicted = amil_cnn_predict(m, prob);
    v.score = prob[1];
    free_bag(b, &r);
    return v;
}

/* The starting weights of --weights: every tensor of the network by its
 * name; the last layer's only when both its tensors fit the model (not
 * torchvision's 1000 ImageNet classes), else it keeps its fresh
 * initialization.  The file's normalization is the model's unless
 * --normalize says otherwise. */
static void load_weights(const struct cmdline *cl, struct amil_cnn *m)
{
    struct amil_record r;
    if (amil_record_load(cl->weights, &r) < 0)
        amil_die("%s", amil_error());
    amil_cnn_rename_paper(&r);
    int head = m->nparams - 2, fits = 1;
    for (int i = 0; i < m->nparams; i++) {
        const struct amil_param *p = &m->params[i];
        const struct amil_tensor *t = amil_find(&r, p->name);
        int same = t && t->dtype == AMIL_F32 && t->ndim == p->ndim;
        for (int d = 0; same && d < p->ndim; d++)
            same = t->shape[d] == p->shape[d];
        if (!same && i < head)
            amil_die("%s: tensor '%s' is missing or not F32 of the shape %s needs",
                     cl->weights, p->name, amil_cnn_arch_name(m->arch));
        fits &= i < head || same;
    }
    for (int i = 0; i < m->nparams; i++)
        if (i < head || fits)
            amil_cnn_take_param(m, i, &r);
    const char *norm = amil_meta_get(&r, "normalization");
    if (norm && !(cl->given & GIVEN_NORMALIZE)) {
        int n = amil_norm_parse(norm);
        if (n < 0)
            amil_die("%s: normalization '%s' is not x/255, mnist or imagenet", cl->weights,
                     norm);
        m->norm = n;
    }
    amil_record_free(&r);
}

static long resume_cnn(struct cmdline *cl, struct amil_cnn *m, struct amil_optimizer *o)
{
    struct amil_record r;
    if (amil_record_load(cl->resume, &r) < 0)
        amil_die("%s", amil_error());
    if (!amil_cnn_is_model(&r) || amil_cnn_from_record(m, &r) < 0)
        amil_die("%s: %s", cl->resume, amil_cnn_is_model(&r) ? amil_error()
                                                             : "not a checkpoint of a CNN");
    if (m->arch != cl->cnn_arch)
        amil_die("%s: a checkpoint of %s, not %s", cl->resume, amil_cnn_arch_name(m->arch),
                 amil_cnn_arch_name(cl->cnn_arch));
    size_t base = m->params[m->trained].offset;
    long epoch = resume_common(cl, &r, o, m->nweights - base);
    o->base = base;
    if (amil_optim_from_record(o, m->params + m->trained, m->nparams - m->trained, &r) < 0)
        amil_die("%s: %s", cl->resume, amil_error());
    if (amil_meta_long(&r, "batch", 1, 4096, &cl->batch) != 1)
        amil_die("%s: no batch size", cl->resume);
    amil_record_free(&r);
    return epoch;
}

/* The seed of an epoch's generator: splitmix64 of (seed, epoch), so that
 * no two (seed, epoch) pairs share one in practice (GSL's mt19937 keeps 32
 * bits of it). */
static unsigned long epoch_seed(uint64_t seed, uint64_t epoch)
{
    uint64_t z = (seed << 32 ^ epoch) + 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return (unsigned long)(z ^ (z >> 31));
}

static void train_cnn(struct cmdline cl, const char *checkpoint)
{
    struct amil_cnn m;
    struct amil_optimizer o;
    long done = 0;
    const char *last_good = "none";
    if (cl.resume) {
        done = resume_cnn(&cl, &m, &o);
        last_good = cl.resume;
    } else {
        if (amil_cnn_init(&m, cl.cnn_arch, (int)cl.classes, 0, 0) < 0)
            amil_die("%s", amil_error());
        amil_cnn_randomize(&m, (unsigned long)cl.seed);
        m.norm = cl.norm;
        if (cl.weights)
            load_weights(&cl, &m);
        size_t base = m.params[m.trained].offset;
        amil_optim_init(&o, cl.optimizer, m.nweights - base);
        o.base = base, o.lr = cl.lr, o.decay = cl.decay, o.momentum = cl.momentum;
    }
    struct bags train, test = {0};
    struct cnn_context train_context = {&cl, &m, -1}, test_context = {&cl, &m, -1};
    load_bags(&train, cl.input, check_image, &train_context);
    if (cl.test)
        load_bags(&test, cl.test, check_image, &test_context);

    long samples = train.first[train.count];
    long *order = amil_xmalloc(sizeof *order * samples);
    int B = (int)cl.batch, T = m.size, F = amil_cnn_feature_size(&m);
    struct cnn_batch batch = {
        .crops = m.trained ? NULL : amil_xmalloc((size_t)B * T * T * 3),
        .features = amil_xmalloc(sizeof(float) * B * F),
        .labels = amil_xmalloc(sizeof(long) * B),
        .dscores = amil_xmalloc(sizeof(float) * B * m.classes)};
    float *grads = amil_xcalloc(m.nweights, sizeof *grads);
    size_t base = o.base, trained = m.nweights - base;
    struct amil_cnn_work w = {0}, backbone = {0};
    gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
    log_header();
    for (long epoch = done + 1; epoch <= cl.epochs; epoch++) {
        /* Each epoch's order, crops and dropout come from a generator
         * seeded from (seed, epoch): a resumed run needs no replay. */
        gsl_rng_set(rng, epoch_seed((uint64_t)cl.seed, (uint64_t)epoch));
        for (long k = 0; k < samples; k++)
            order[k] = k;
        gsl_ran_shuffle(rng, order, (size_t)samples, sizeof *order);
        double start = now(), loss = 0, errors = 0;
        for (long k = 0; k < samples; k += B) {
            int n = (int)(samples - k < B ? samples - k : B);
            gather(&m, &backbone, &train, train_context.cached, order + k, n, rng, &batch);
            if (m.trained)
                amil_cnn_forward_head(&m, &w, batch.features, n, rng);
            else
                amil_cnn_forward(&m, &w, batch.crops, n, rng);
            const float *scores = w.out[m.nlayers - 1];
            double l = amil_cnn_loss(&m, scores, batch.labels, n, batch.dscores);
            if (!isfinite(l))
                amil_die("epoch %ld, samples %ld to %ld: the loss is %s; the last checkpoint "
                         "is %s", epoch, k, k + n - 1, isnan(l) ? "nan" : "inf", last_good);
            memset(grads + base, 0, sizeof *grads * trained);
            amil_cnn_backward(&m, &w, batch.dscores, n, m.trained ? m.features : 0,
                              AMIL_BACKWARD_PLAIN, grads);
            amil_optim_step(&o, m.weights + base, grads + base);
            loss += l * n;
            for (int j = 0; j < n; j++)
                errors += amil_cnn_predict(&m, scores + (size_t)j * m.classes) !=
                          batch.labels[j];
            progress(&cl, epoch, k + n - 1, samples, loss);
        }
        struct score tr = {loss / samples, errors / samples, 1 - errors / samples, NAN};
        struct score te = {NAN, NAN, NAN, NAN};
        if (cl.test)
            te = score_set(&test, judge_image,
                           &(struct cnn_judge){&m, &backbone, test_context.cached});
        struct amil_record r;
        amil_cnn_to_record(&m, &r);
        save_checkpoint(&cl, checkpoint, &r, &o, m.params + m.trained, m.nparams - m.trained,
                        epoch);
        last_good = checkpoint;
        done = epoch;
        log_epoch(&cl, epoch, tr, te, now() - start);
    }
    struct amil_record r;
    amil_cnn_to_record(&m, &r);
    save_model(&cl, &r, done, &train, &test);
    free(order), free(grads);
    free(batch.crops), free(batch.features), free(batch.labels), free(batch.dscores);
    gsl_rng_free(rng);
    amil_cnn_work_free(&w);
    amil_cnn_work_free(&backbone);
    amil_optim_free(&o);
    amil_cnn_free(&m);
}

int main(int argc, char **argv)
{
    amil_init(argc, argv);
    struct cmdline cl = parse_args(argc, argv);
    saved_argc = argc, saved_argv = argv;
    catch_interrupts();
    amil_threads((int)cl.threads);
    char *checkpoint = NULL;
    if (cl.checkpoint) {
        checkpoint = amil_xstrdup(cl.checkpoint);
    } else {
        checkpoint = amil_xmalloc(strlen(cl.output) + 6);
        sprintf(checkpoint, "%s.ckpt", cl.output);
    }
    /* the model and its checkpoint never replace an input (the checkpoint
     * may be the one resumed from: it is read whole before it is written) */
    const char *inputs[] = {cl.input, cl.test, cl.weights, cl.resume};
    const char *outputs[] = {cl.output, checkpoint};
    for (int i = 0; i < 2; i++) {
        for (int j = 0; j < 4 - i; j++)
            if (inputs[j] && strcmp(inputs[j], "-") != 0 && amil_same_file(outputs[i], inputs[j]))
                amil_die("%s is also an input (%s): it would be overwritten", outputs[i],
                         inputs[j]);
        if (!cl.input && amil_same_as_stdin(outputs[i]))
            amil_die("%s is also the input (standard input): it would be overwritten",
                     outputs[i]);
    }
    check_writable(cl.output);
    check_writable(checkpoint);
    if (cl.cnn)
        train_cnn(cl, checkpoint);
    else
        train_mil(cl, checkpoint);
    free(checkpoint);
    return amil_close_stdout();
}
