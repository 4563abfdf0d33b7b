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
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>

#include "base/base.h"
#include "base/output.h"
#include "compute/metrics.h"
#include "compute/nn.h"
#include "compute/optim.h"
#include "compute/parallel.h"
#include "media/augment.h"
#include "models/cnn.h"
#include "models/mil.h"
#include "record/record.h"
#include "record/stream.h"
#include "tool/checkpoint.h"
#include "tool/cli.h"
#include "tool/options.h"
#include "tool/samples.h"

/* Options whose defaults depend on the kind of network: which were given. */
enum { GIVEN_EPOCHS = 1, GIVEN_LR = 2, GIVEN_DECAY = 4, GIVEN_OPTIMIZER = 8,
       GIVEN_MOMENTUM = 16, GIVEN_MIL = 32, GIVEN_BATCH = 64, GIVEN_NORMALIZE = 128 };

struct cmdline {
    const char *output, *input, *test, *resume, *checkpoint, *weights;
    int cnn;                /* a CNN baseline, cnn_arch; else arch */
    int clam;               /* a CLAM head: 1 gated, 2 plain (clam.h) */
    enum amil_cnn_arch cnn_arch;
    enum amil_mil_arch arch;
    unsigned given;
    long batch;
    enum amil_optim_kind optimizer;
    enum amil_norm norm;
    long epochs, seed, classes, hidden, attention, branches, threads;
    double lr, decay, momentum;
    int quiet;
    struct amil_augment augment;   /* attention-MIL bags, new each epoch */
};

/* What changes as the program runs; the command line does not. */
struct run {
    const char *checkpoint; /* where checkpoints go */
    long seed, batch;       /* the command line's, or the resumed checkpoint's */
    long done;              /* epochs done, resumed ones too */
    const char *last_good;  /* the last checkpoint, for the message of a NaN loss */
};

static const char usage_text[] =
    "usage: train -o MODEL [--arch amil|gated|clam|clam-plain|net|vgg19|resnet18]\n"
    "             [--epochs N]\n"
    "             [--lr X] [--decay X] [--seed S] [--test FILE]\n"
    "             [--resume CHECKPOINT] [options] [FILE]\n"
    "  -o, --output MODEL      where the model goes\n"
    "  -a, --arch ARCH         amil (the paper's) or gated; clam or clam-plain,\n"
    "                          CLAM's head on cached features; or a CNN\n"
    "                          baseline: net, vgg19, resnet18 [amil]\n"
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
    "      --hidden L          attention-MIL: features per patch [500; clam 512]\n"
    "      --attention-dim D   width of the attention network [128; clam 256]\n"
    "      --branches K        attention branches [1]\n"
    "      --normalize N       none (x/255, the paper's), mnist or imagenet [none]\n"
    "      --augment A         attention-MIL: he (stain jitter), flip (mirror and\n"
    "                          quarter turns), he,flip or none [none]\n"
    "      --he-sigma S, --he-bias B  the jitter's scale and shift ranges [0.05]\n"
    "  -t, --test FILE         bags to score after each epoch\n"
    "  -r, --resume CKPT       continue from a checkpoint\n"
    "      --checkpoint PATH   where checkpoints go [MODEL.ckpt]\n"
    "  -j, --threads N         threads for the matrix products [1]\n"
    "  -q, --quiet             no log lines or progress on stderr\n"
    "  -h, --help              this help\n"
    "FILE holds the training bags, or images (bagify -w) or their cached features\n"
    "(featurize) for a CNN [stdin]; the TSV log goes to stdout.\n";

/* Conflicts between options, and the defaults of a CNN baseline (the
 * paper's: RMSprop, lr 3e-4, momentum 0.4, batches of 32, 10 epochs). */
static void settle_args(struct cmdline *cl)
{
    if (cl->test && strcmp(cl->test, "-") == 0)
        amil_misuse("--test needs a file: stdin holds the training bags");
    if (!cl->cnn && (cl->batch != 1 || cl->weights)) {
        amil_misuse("%s: an attention-MIL model trains on one bag a step, from its own "
                    "initialization", cl->weights ? "--weights" : "--batch");
    }
    if (cl->cnn && (cl->given & GIVEN_MIL))
        amil_misuse("--hidden, --attention-dim and --branches are attention-MIL's");
    if ((cl->cnn || cl->clam) && amil_augmenting(&cl->augment))
        amil_misuse("--augment changes a bag's patches: attention-MIL models only");
    if (cl->clam && cl->branches != 1)
        amil_misuse("a CLAM head has one attention branch");
    if (cl->clam && !(cl->given & GIVEN_MIL))   /* CLAM's sizes and optimizer */
        cl->hidden = 512, cl->attention = 256;
    if (cl->clam) {
        cl->lr = cl->given & GIVEN_LR ? cl->lr : 2e-4;
        cl->decay = cl->given & GIVEN_DECAY ? cl->decay : 1e-5;
    }
    if (cl->cnn) {
        cl->epochs = cl->given & GIVEN_EPOCHS ? cl->epochs : 10;
        cl->lr = cl->given & GIVEN_LR ? cl->lr : 3e-4;
        cl->decay = cl->given & GIVEN_DECAY ? cl->decay : 0;
        cl->momentum = cl->given & GIVEN_MOMENTUM ? cl->momentum : 0.4;
        cl->optimizer = cl->given & GIVEN_OPTIMIZER ? cl->optimizer : AMIL_RMSPROP;
        cl->batch = cl->given & GIVEN_BATCH ? cl->batch : 32;
    }
}

/* --arch: which network, and of which family. */
static void read_arch(void *to, const char *option, const char *arg)
{
    struct cmdline *cl = to;
    int kind;
    cl->clam = strcmp(arg, "clam") == 0 ? 1 : strcmp(arg, "clam-plain") == 0 ? 2 : 0;
    if (cl->clam)
        cl->cnn = 0;
    else if ((kind = amil_mil_arch_parse(arg)) >= 0)
        cl->arch = kind, cl->cnn = 0;
    else if ((kind = amil_cnn_arch_parse(arg)) >= 0)
        cl->cnn_arch = kind, cl->cnn = 1;
    else
        amil_misuse("%s: '%s' is not amil, gated, clam, clam-plain, net, vgg19 or resnet18",
                    option, arg);
}

static void read_optimizer(void *to, const char *option, const char *arg)
{
    int kind = amil_optim_parse(arg);
    if (kind < 0)
        amil_misuse("%s: '%s' is not adam, adamw, sgd or rmsprop", option, arg);
    *(enum amil_optim_kind *)to = kind;
}

static void read_norm(void *to, const char *option, const char *arg)
{
    int kind = amil_norm_parse(arg);
    if (kind < 0)
        amil_misuse("%s: '%s' is not none, mnist or imagenet", option, arg);
    *(enum amil_norm *)to = kind;
}

static void read_augment(void *to, const char *option, const char *arg)
{
    amil_option_augment(to, option, arg);
}

static struct cmdline parse_args(int argc, char **argv)
{
    amil_usage_is(usage_text);
    struct cmdline cl = {.epochs = 20, .seed = 1, .classes = 2, .hidden = 500,
                         .attention = 128, .branches = 1, .threads = 1, .lr = 1e-4,
                         .decay = 1e-4, .batch = 1,
                         .augment = {0, 0, AMIL_AUGMENT_SIGMA, AMIL_AUGMENT_BIAS}};
    struct amil_opt options[] = {
        AMIL_STRING("output", 'o', &cl.output),
        AMIL_READ("arch", 'a', &cl, read_arch),
        AMIL_LONG("epochs", 'e', &cl.epochs, 0, 1000000),
        AMIL_DOUBLE("lr", 0, &cl.lr, 0, 1e3),
        AMIL_DOUBLE("decay", 0, &cl.decay, 0, 1e3),
        AMIL_READ("optimizer", 0, &cl.optimizer, read_optimizer),
        AMIL_DOUBLE("momentum", 0, &cl.momentum, 0, 1),
        AMIL_LONG("seed", 's', &cl.seed, 0, 4294967295.0),
        AMIL_LONG("classes", 'c', &cl.classes, 2, 1000),
        AMIL_LONG("hidden", 0, &cl.hidden, 1, 65536),
        AMIL_LONG("attention-dim", 0, &cl.attention, 1, 65536),
        AMIL_LONG("branches", 0, &cl.branches, 1, 64),
        AMIL_STRING("test", 't', &cl.test),
        AMIL_STRING("resume", 'r', &cl.resume),
        AMIL_STRING("checkpoint", 0, &cl.checkpoint),
        AMIL_READ("normalize", 0, &cl.norm, read_norm),
        AMIL_READ("augment", 0, &cl.augment, read_augment),
        AMIL_READ("he-sigma", 0, &cl.augment, read_augment),
        AMIL_READ("he-bias", 0, &cl.augment, read_augment),
        AMIL_LONG("batch", 'b', &cl.batch, 1, 4096),
        AMIL_STRING("weights", 'w', &cl.weights),
        AMIL_LONG("threads", 'j', &cl.threads, 1, 1024),
        AMIL_FLAG("quiet", 'q', &cl.quiet),
        AMIL_OPTIONS_END};
    optind = amil_options(argc, argv, options);
    /* the options whose defaults depend on the kind of network */
    static const struct { const char *name; unsigned bit; } marks[] = {
        {"epochs", GIVEN_EPOCHS}, {"lr", GIVEN_LR}, {"decay", GIVEN_DECAY},
        {"optimizer", GIVEN_OPTIMIZER}, {"momentum", GIVEN_MOMENTUM}, {"batch", GIVEN_BATCH},
        {"normalize", GIVEN_NORMALIZE}, {"hidden", GIVEN_MIL}, {"attention-dim", GIVEN_MIL},
        {"branches", GIVEN_MIL}};
    for (size_t i = 0; i < sizeof marks / sizeof *marks; i++)
        if (amil_option_given(options, marks[i].name))
            cl.given |= marks[i].bit;
    if (!cl.output)
        amil_misuse("no output: give -o MODEL");
    if (argc - optind > 1)
        amil_misuse("%s: one FILE of training bags at most (test bags go with --test)",
                    argv[optind + 1]);
    cl.input = optind < argc ? argv[optind] : NULL;
    settle_args(&cl);
    return cl;
}

/* ---- attention-MIL bags ---------------------------------------------------- */

struct mil_context {
    const struct cmdline *cl;
    struct amil_mil *m;   /* made from the first bag if it has no weights */
    struct amil_clam *clam;   /* or, with --arch clam, this */
};

/* A bag with a label; the first one makes the model (or the CLAM head)
 * when it has no weights. */
static long check_bag(struct amil_record *r, long index, const char *name, void *context)
{
    const struct cmdline *cl = ((struct mil_context *)context)->cl;
    struct amil_mil *m = ((struct mil_context *)context)->m;
    struct amil_clam *clam = cl->clam ? ((struct mil_context *)context)->clam : NULL;
    const struct amil_tensor *p = amil_record_find(r, "patches");
    if (!clam && !p && amil_record_find(r, "features"))
        amil_die("%s: record %ld: features, not patches: CLAM's head trains on a frozen "
                 "backbone's features (--arch clam); the attention-MIL model on patches",
                 name, index);
    if (clam && !clam->params.weights &&
        amil_clam_for_bag(clam, r, cl->clam == 1, (int)cl->hidden, (int)cl->attention,
                          (int)cl->classes) < 0)
        amil_die("%s: record %ld: %s", name, index, amil_error());
    if (!clam && !m->params.weights && p && p->dtype == AMIL_U8 && p->ndim == 4 &&
        amil_mil_init(m, cl->arch, (int)p->shape[3], (int)p->shape[1], (int)cl->classes,
                      (int)cl->hidden, (int)cl->attention, (int)cl->branches) < 0)
        amil_die("%s: record %ld: %s", name, index, amil_error());
    if (!clam && cl->augment.he && m->params.weights && m->channels != 3)
        amil_die("%s: record %ld: --augment he needs RGB bags, not %d channel", name, index,
                 m->channels);
    if (!clam && m->params.weights && index == 0 && !cl->resume) {
        if (cl->norm == AMIL_NORM_IMAGENET && m->channels != 3)
            amil_die("--normalize imagenet needs RGB bags, not %d channel%s", m->channels,
                     m->channels == 1 ? "" : "s");
        m->norm = cl->norm;
    }
    long label;
    int has = 0;
    if (!(clam ? amil_clam_bag_features(clam, r) : amil_mil_bag_patches(m, r)) ||
        (has = clam ? amil_clam_bag_label(clam, r, &label) : amil_mil_bag_label(m, r, &label)) < 0)
        amil_die("%s: record %ld: %s", name, index, amil_error());
    if (!has)
        amil_die("%s: record %ld: no label (bagify -l or -L gives one)", name, index);
    /* a CLAM head learns one backbone's features: the first bag that says
     * which (or the resumed head) sets them, and the head keeps them */
    uint64_t by;
    int says = clam ? amil_record_fingerprint(r, "features_by", &by) : 0;
    if (says < 0)
        amil_die("%s: record %ld: %s", name, index, amil_error());
    char made[4200];
    if (says && clam->knows_features && by != clam->features_by)
        amil_die("%s: record %ld: its features were made by %s, the head's by %016llx: a "
                 "CLAM head learns one backbone's features", name, index,
                 amil_record_made_by(r, "features_by", by, made, sizeof made),
                 (unsigned long long)clam->features_by);
    if (says && !clam->knows_features)
        clam->features_by = by, clam->knows_features = 1;
    return 1;
}

/* Bag i's patches and label, checked again: a file read each epoch may have
 * changed under us since load_bags() checked it. */
static const struct amil_tensor *bag_of(const struct amil_mil *m, const struct amil_clam *clam,
                                        struct amil_samples *s, long i, struct amil_record *r,
                                        long *label)
{
    if (amil_samples_get(s, i, r) < 0)
        amil_die("%s", amil_error());
    const struct amil_tensor *p = clam ? amil_clam_bag_features(clam, r)
                                       : amil_mil_bag_patches(m, r);
    if (!p || (clam ? amil_clam_bag_label(clam, r, label) : amil_mil_bag_label(m, r, label)) != 1)
        amil_die("%s: record %ld changed since it was first read", s->stream.name, i);
    return p;
}

/* ---- one epoch ----------------------------------------------------------- */

/* The model a test set is scored with: attention-MIL's, or a CNN's
 * (cached: the set holds features). */
struct judge {
    const struct amil_mil *mil;
    struct amil_mil_work *mil_work;
    const struct amil_clam *clam;
    struct amil_clam_work *clam_work;
    const struct amil_cnn *cnn;
    struct amil_cnn_work *cnn_work;
    int cached;
};

/* What the judge makes of record r (amil_samples_score). */
static int judge_record(void *context, struct amil_record *r, struct amil_verdict *v)
{
    const struct judge *j = context;
    return j->cnn    ? amil_cnn_judge(j->cnn, j->cnn_work, r, j->cached, v)
           : j->clam ? amil_clam_judge(j->clam, j->clam_work, r, v)
                     : amil_mil_judge(j->mil, j->mil_work, r, v);
}

/* Loss, error and AUC of a model on a set, without training. */
static struct amil_score score_set(struct amil_samples *set, struct judge *j)
{
    struct amil_score s;
    if (amil_samples_score(set, judge_record, j, &s) < 0)
        amil_die("%s", amil_error());
    return s;
}

static void progress(const struct cmdline *cl, long epoch, long i, long n, double loss)
{
    const char *unit = cl->cnn ? "sample" : "bag";
    static double last;
    if (cl->quiet || !isatty(STDERR_FILENO))
        return;
    double t = amil_seconds();
    if (i + 1 < n && t - last < 0.2)
        return;
    last = t;
    fprintf(stderr, "\repoch %ld/%ld  %s %ld/%ld  mean loss %.4f ", epoch, cl->epochs, unit,
            i + 1, n, loss / (i + 1));
    if (i + 1 == n)
        fputs("\r\033[K", stderr);
}

/* The model's record r (freed here) as the checkpoint of epoch, with the
 * optimizer's state of params (the trained ones). */
static void save_checkpoint(struct run *run, struct amil_record *r,
                            const struct amil_optimizer *o, const struct amil_param *params,
                            int nparams, long epoch)
{
    struct amil_checkpoint c = {epoch, run->seed, run->batch};
    if (amil_checkpoint_save(run->checkpoint, r, &c, o, params, nparams) < 0)
        amil_die("%s", amil_error());
    run->last_good = run->checkpoint;
    run->done = epoch;
}

/* The model's record r (freed here), with the epochs done (resumed ones
 * too) and the seed, to the output. */
static void save_model(const struct cmdline *cl, const struct run *run, struct amil_record *r)
{
    amil_augment_describe(&cl->augment, r);
    amil_record_set_metaf(r, "epochs", "%ld", run->done);
    amil_record_set_metaf(r, "seed", "%ld", run->seed);
    if (amil_record_save(cl->output, r) < 0)
        amil_die("%s", amil_error());
    amil_record_free(r);
}

/* The run of checkpoint c, resumed from. */
static void resume_run(const struct cmdline *cl, const struct amil_checkpoint *c,
                       struct run *run)
{
    run->seed = c->seed;   /* the run goes on as it began */
    run->batch = c->batch ? c->batch : run->batch;
    run->done = c->epoch;
    run->last_good = cl->resume;
    if (amil_same_file(cl->resume, run->checkpoint))
        amil_input_forget(cl->resume);   /* read whole: the next checkpoint replaces it */
}

static void log_header(void)
{
    printf("epoch\ttrain_loss\ttrain_error\ttrain_accuracy\ttest_loss\ttest_error\t"
           "test_accuracy\ttest_auc\tseconds\n");
}

/* An epoch's line of the TSV log, and the paper's lines on stderr. */
static void log_epoch(const struct cmdline *cl, long epoch, struct amil_score tr,
                      struct amil_score te, double seconds)
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

/* Reads a set, or dies. */
static void load_set(struct amil_samples *s, const char *path, amil_samples_check *check,
                     void *context)
{
    if (amil_samples_load(s, path, check, context) < 0)
        amil_die("%s", amil_error());
}

/* The optimizer the command line asks for, over n floats from base on. */
static void start_optimizer(const struct cmdline *cl, struct amil_optimizer *o, size_t base,
                            size_t n)
{
    amil_optim_init(o, cl->optimizer, n);
    o->base = base, o->lr = cl->lr, o->decay = cl->decay, o->momentum = cl->momentum;
}

/* What an attention-MIL epoch works with. */
struct mil_trainer {
    const struct cmdline *cl;
    struct run *run;
    struct amil_mil *m;
    struct amil_optimizer *o;
    struct amil_samples *set;
    struct amil_mil_work w;
    long *order;            /* (bags) the epoch's order */
    float *grads;           /* (nweights) */
    struct amil_clam *clam; /* --arch clam: this instead of m */
    struct amil_clam_work cw;
    gsl_rng *rng;           /* the epoch's: its order, then the dropout or augmentation */
    uint8_t *augmented;     /* a bag's patches, augmented */
};

/* One epoch: each bag of t->order one step; the training loss and error. */
static struct amil_score mil_epoch(struct mil_trainer *t, long epoch)
{
    const struct amil_mil *m = t->m;
    struct amil_params *params = t->clam ? &t->clam->params : &t->m->params;
    long count = t->set->count;
    double loss = 0, errors = 0;
    for (long k = 0; k < count; k++) {
        struct amil_record r;
        long label;
        const struct amil_tensor *p = bag_of(m, t->clam, t->set, t->order[k], &r, &label);
        memset(t->grads, 0, sizeof *t->grads * params->nweights);
        double l = t->clam ? amil_clam_step(t->clam, &t->cw, p->data, (int)p->shape[0],
                                            (int)label, t->grads, t->rng)
                           : amil_mil_step(m, &t->w, amil_augment_patches(&t->cl->augment,
                                           t->rng, p, &t->augmented), (int)p->shape[0],
                                           (int)label, t->grads);
        if (!isfinite(l))
            amil_die("epoch %ld, bag %ld (%s): the loss is %s; the last checkpoint is %s",
                     epoch, t->order[k],
                     amil_record_meta(&r, "source") ? amil_record_meta(&r, "source") : "?",
                     isnan(l) ? "nan" : l > 0 ? "inf" : "-inf", t->run->last_good);
        loss += l;
        errors += (t->clam ? amil_clam_predict(t->clam, t->cw.prob)
                           : amil_mil_predict(m, t->w.prob)) != label;
        amil_optim_step(t->o, params->weights, t->grads);
        amil_samples_put(t->set, &r);
        progress(t->cl, epoch, k, count, loss);
    }
    return (struct amil_score){loss / count, errors / count, 1 - errors / count, NAN};
}

static void train_mil(const struct cmdline *cl, struct run *run)
{
    struct amil_mil m = {0};
    struct amil_clam clam = {0};
    struct amil_optimizer o;
    struct amil_checkpoint c;
    if (cl->resume && (cl->clam ? amil_checkpoint_load_clam(cl->resume, &clam, &o, &c)
                                : amil_checkpoint_load_mil(cl->resume, &m, &o, &c)) < 0)
        amil_die("%s", amil_error());
    if (cl->resume)
        resume_run(cl, &c, run);
    struct amil_samples train, test = {0};
    struct mil_context context = {cl, &m, &clam};
    load_set(&train, cl->input, check_bag, &context);
    if (cl->test)
        load_set(&test, cl->test, check_bag, &context);
    struct amil_params *params = cl->clam ? &clam.params : &m.params;
    if (!cl->resume) {
        amil_params_randomize(params, (unsigned long)run->seed);
        start_optimizer(cl, &o, 0, params->nweights);
    }
    struct mil_trainer t = {cl, run, &m, &o, &train, {0},
                            amil_xmalloc(sizeof(long) * train.count),
                            amil_xmalloc(sizeof(float) * params->nweights),
                            cl->clam ? &clam : NULL, {0}, gsl_rng_alloc(gsl_rng_mt19937), NULL};
    log_header();
    for (long epoch = run->done + 1; epoch <= cl->epochs; epoch++) {
        double start = amil_seconds();
        /* The epoch's order of bags (then a CLAM head's dropout) comes from a
         * generator seeded from (seed, epoch), as a CNN's: a resumed run
         * needs no replay. */
        gsl_rng_set(t.rng, amil_epoch_seed((unsigned long)run->seed, epoch));
        for (long i = 0; i < train.count; i++)
            t.order[i] = i;
        gsl_ran_shuffle(t.rng, t.order, (size_t)train.count, sizeof *t.order);
        struct amil_score tr = mil_epoch(&t, epoch), te = {NAN, NAN, NAN, NAN};
        if (cl->test)
            te = score_set(&test, &(struct judge){.mil = &m, .mil_work = &t.w, .clam = t.clam,
                                                  .clam_work = &t.cw});
        struct amil_record r;
        cl->clam ? amil_clam_to_record(&clam, &r) : amil_mil_to_record(&m, &r);
        save_checkpoint(run, &r, &o, params->at, params->n, epoch);
        log_epoch(cl, epoch, tr, te, amil_seconds() - start);
    }
    struct amil_record r;
    cl->clam ? amil_clam_to_record(&clam, &r) : amil_mil_to_record(&m, &r);
    save_model(cl, run, &r);
    amil_samples_free(&train);
    amil_samples_free(&test);
    free(t.grads), free(t.order), free(t.augmented);
    gsl_rng_free(t.rng);
    amil_mil_work_free(&t.w);
    amil_clam_work_free(&t.cw);
    amil_optim_free(&o);
    amil_mil_free(&m);
    amil_clam_free(&clam);
}

/* ---- CNN baselines -------------------------------------------------------- */

struct cnn_context {
    const struct amil_cnn *m;
    int cached;             /* the set's records hold features, not images;
                               -1 until the first record says */
    uint64_t features_by;   /* the frozen backbone's fingerprint */
    const char *backbone;   /* its file, for messages */
};

/* An image (or its cached features) with a label: one sample for net (a
 * crop), one per tile for the frozen backbones. */
static long check_image(struct amil_record *r, long index, const char *name, void *context)
{
    struct cnn_context *c = context;
    long samples = amil_cnn_samples(c->m, r, &c->cached);
    if (samples < 0 ||
        (c->cached == 1 && amil_check_stage(r, "features_by", c->features_by, c->backbone) < 0))
        amil_die("%s: record %ld: %s", name, index, amil_error());
    return samples;
}

static void start_cnn(const struct cmdline *cl, struct run *run, struct amil_cnn *m,
                      struct amil_optimizer *o)
{
    if (cl->resume) {
        struct amil_checkpoint c;
        if (amil_checkpoint_load_cnn(cl->resume, cl->cnn_arch, m, o, &c) < 0)
            amil_die("%s", amil_error());
        resume_run(cl, &c, run);
        return;
    }
    if (amil_cnn_init(m, cl->cnn_arch, (int)cl->classes, 0, 0) < 0)
        amil_die("%s", amil_error());
    amil_cnn_randomize(m, (unsigned long)run->seed);
    m->norm = cl->norm;
    if (cl->weights && amil_cnn_load_weights(m, cl->weights, cl->given & GIVEN_NORMALIZE) < 0)
        amil_die("%s", amil_error());
    if (!cl->weights && m->trained > 0)   /* a frozen backbone of random weights */
        amil_warn("warning: no -w: %s's frozen backbone is random, which is for tests; "
                  "give torchvision's weights with -w FILE", amil_cnn_arch_name(m->arch));
    size_t base = m->params.at[m->trained].offset;
    start_optimizer(cl, o, base, m->params.nweights - base);
}

/* Gathers samples[0..B) of set s into the batch (amil_cnn_take): 0, or
 * -1 with a message (a file that changed since it was read first). */
static int cnn_gather(const struct amil_cnn *m, struct amil_cnn_work *backbone,
                      struct amil_samples *s, int cached, const long *samples, int B,
                      gsl_rng *rng, struct amil_cnn_batch *batch)
{
    for (int k = 0; k < B; k++) {
        long i = amil_samples_record_of(s, samples[k]);
        struct amil_record r;
        if (amil_samples_get(s, i, &r) < 0)
            return -1;
        int status = amil_cnn_take(m, backbone, &r, samples[k] - s->first[i], cached, rng,
                                   batch, k);
        amil_samples_put(s, &r);
        if (status < 0)
            return amil_fail("%s: record %ld changed since it was first read",
                             s->stream.name, i);
    }
    return 0;
}

/* What a CNN's epoch works with. */
struct cnn_trainer {
    const struct cmdline *cl;
    struct run *run;
    struct amil_cnn *m;
    struct amil_optimizer *o;
    struct amil_samples *set;
    int cached;             /* the set holds features */
    struct amil_cnn_work w, backbone;
    struct amil_cnn_batch batch;
    long *order;            /* (samples) */
    float *grads;           /* (nweights) */
};

/* One epoch over the set in batches, its order, crops and dropout drawn
 * from rng; the training loss and error. */
static struct amil_score cnn_epoch(struct cnn_trainer *t, long epoch, gsl_rng *rng)
{
    const struct amil_cnn *m = t->m;
    long samples = amil_samples_total(t->set);
    int B = (int)t->run->batch;
    size_t base = t->o->base, trained = m->params.nweights - base;
    for (long k = 0; k < samples; k++)
        t->order[k] = k;
    gsl_ran_shuffle(rng, t->order, (size_t)samples, sizeof *t->order);
    double loss = 0, errors = 0;
    for (long k = 0; k < samples; k += B) {
        int n = (int)(samples - k < B ? samples - k : B);
        if (cnn_gather(m, &t->backbone, t->set, t->cached, t->order + k, n, rng,
                            &t->batch) < 0)
            amil_die("%s", amil_error());
        if (m->trained)
            amil_cnn_forward_head(m, &t->w, t->batch.features, n, rng);
        else
            amil_cnn_forward(m, &t->w, t->batch.crops, n, rng);
        const float *scores = t->w.out[m->nlayers - 1];
        double l = amil_cnn_loss(m, scores, t->batch.labels, n, t->batch.dscores);
        if (!isfinite(l))
            amil_die("epoch %ld, samples %ld to %ld: the loss is %s; the last checkpoint "
                     "is %s", epoch, k, k + n - 1, isnan(l) ? "nan" : "inf",
                     t->run->last_good);
        memset(t->grads + base, 0, sizeof *t->grads * trained);
        amil_cnn_backward(m, &t->w, t->batch.dscores, n, m->trained ? m->features : 0,
                          AMIL_BACKWARD_PLAIN, t->grads);
        amil_optim_step(t->o, m->params.weights + base, t->grads + base);
        loss += l * n;
        for (int j = 0; j < n; j++)
            errors += amil_cnn_predict(m, scores + (size_t)j * m->classes) !=
                      t->batch.labels[j];
        progress(t->cl, epoch, k + n - 1, samples, loss);
    }
    return (struct amil_score){loss / samples, errors / samples, 1 - errors / samples, NAN};
}

static void train_cnn(const struct cmdline *cl, struct run *run)
{
    struct amil_cnn m;
    struct amil_optimizer o;
    start_cnn(cl, run, &m, &o);
    struct amil_samples train, test = {0};
    uint64_t backbone = amil_cnn_features_fingerprint(&m);
    const char *from = cl->weights ? cl->weights : cl->resume ? cl->resume : "a random backbone";
    struct cnn_context train_context = {&m, -1, backbone, from},
                       test_context = {&m, -1, backbone, from};
    load_set(&train, cl->input, check_image, &train_context);
    if (cl->test)
        load_set(&test, cl->test, check_image, &test_context);
    int B = (int)run->batch, T = m.size, F = amil_cnn_feature_size(&m);
    struct cnn_trainer t = {
        cl, run, &m, &o, &train, train_context.cached, {0}, {0},
        {.crops = m.trained ? NULL : amil_xmalloc((size_t)B * T * T * 3),
         .features = amil_xmalloc(sizeof(float) * B * F),
         .labels = amil_xmalloc(sizeof(long) * B),
         .dscores = amil_xmalloc(sizeof(float) * B * m.classes)},
        amil_xmalloc(sizeof(long) * amil_samples_total(&train)),
        amil_xcalloc(m.params.nweights, sizeof(float))};
    gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
    log_header();
    for (long epoch = run->done + 1; epoch <= cl->epochs; epoch++) {
        double start = amil_seconds();
        /* Each epoch's order, crops and dropout come from a generator
         * seeded from (seed, epoch): a resumed run needs no replay. */
        gsl_rng_set(rng, amil_epoch_seed((unsigned long)run->seed, epoch));
        struct amil_score tr = cnn_epoch(&t, epoch, rng), te = {NAN, NAN, NAN, NAN};
        if (cl->test)
            te = score_set(&test, &(struct judge){.cnn = &m, .cnn_work = &t.backbone,
                                                  .cached = test_context.cached});
        struct amil_record r;
        amil_cnn_to_record(&m, &r);
        save_checkpoint(run, &r, &o, m.params.at + m.trained, m.params.n - m.trained, epoch);
        log_epoch(cl, epoch, tr, te, amil_seconds() - start);
    }
    struct amil_record r;
    amil_cnn_to_record(&m, &r);
    save_model(cl, run, &r);
    amil_samples_free(&train);
    amil_samples_free(&test);
    free(t.order), free(t.grads);
    free(t.batch.crops), free(t.batch.features), free(t.batch.labels), free(t.batch.dscores);
    gsl_rng_free(rng);
    amil_cnn_work_free(&t.w);
    amil_cnn_work_free(&t.backbone);
    amil_optim_free(&o);
    amil_cnn_free(&m);
}

int main(int argc, char **argv)
{
    amil_init(argc, argv);
    const struct cmdline cl = parse_args(argc, argv);
    amil_checkpoint_catch_interrupts("train", argc, argv);
    amil_threads((int)cl.threads);
    char *checkpoint;
    if (cl.checkpoint) {
        checkpoint = amil_xstrdup(cl.checkpoint);
    } else {
        checkpoint = amil_xmalloc(strlen(cl.output) + 6);
        sprintf(checkpoint, "%s.ckpt", cl.output);
    }
    /* the model and its checkpoint never replace an input (the checkpoint
     * may be the one resumed from: it is read whole before it is written,
     * and resume_run lets it go) nor each other */
    amil_input_note(cl.input ? cl.input : "-");
    amil_input_note(cl.test);
    amil_input_note(cl.weights);
    if (!cl.resume || !amil_same_file(cl.resume, checkpoint))
        amil_input_note(cl.resume);
    if (amil_same_file(cl.output, checkpoint))
        amil_die("the model and the checkpoint are one file (%s): the model would replace it",
                 cl.output);
    if (amil_output_probe(cl.output) < 0 || amil_output_probe(checkpoint) < 0)
        amil_die("%s", amil_error());
    struct run run = {checkpoint, cl.seed, cl.batch, 0, "none"};
    if (cl.cnn)
        train_cnn(&cl, &run);
    else
        train_mil(&cl, &run);
    free(checkpoint);
    return amil_close_stdout();
}
