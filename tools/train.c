/* train: fit an attention-MIL model or CLAM's head to labelled bags, or
 * one of the paper's CNN baselines to labelled images.
 *
 * Reads the training records from a file, indexed once and read again each
 * epoch, or from standard input, held in memory, and writes the model.  The
 * paper's settings are the defaults: the amil network, one bag a step in a
 * seeded random order (its loader drew bags with replacement; see
 * train(1)), 20 epochs, Adam with lr 1e-4, betas 0.9/0.999 and L2 decay
 * 1e-4, seed 1.  The CNN baselines (--arch net, vgg19, resnet18, resnet50) read image
 * records (bagify -w), or for a frozen backbone the tiles' features
 * featurize cached; their defaults are the paper's baselines': 10 epochs,
 * RMSprop with lr 3e-4 and momentum 0.4, batches of 32 samples.  Each
 * family says what it takes and its defaults (model.h's amil_train_ops);
 * this program reads the command line into them and runs the trainer
 * (trainer.h): an epoch, a checkpoint and a line of the TSV log at a
 * time, and --resume goes on from a checkpoint to the bytes of a run never
 * interrupted.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "base/output.h"
#include "compute/optim.h"
#include "compute/parallel.h"
#include "compute/params.h"
#include "media/augment.h"
#include "models/model.h"
#include "tool/checkpoint.h"
#include "tool/cli.h"
#include "tool/options.h"
#include "tool/trainer.h"

/* Options whose defaults depend on the family: which were given. */
enum { GIVEN_EPOCHS = 1, GIVEN_LR = 2, GIVEN_DECAY = 4, GIVEN_OPTIMIZER = 8,
       GIVEN_MOMENTUM = 16, GIVEN_BATCH = 32, GIVEN_NORMALIZE = 64, GIVEN_HIDDEN = 128,
       GIVEN_ATTENTION = 256, GIVEN_BRANCHES = 512,
       GIVEN_SIZES = GIVEN_HIDDEN | GIVEN_ATTENTION | GIVEN_BRANCHES };

struct cmdline {
    const char *output, *input, *test, *resume, *checkpoint, *weights;
    const struct amil_model_ops *family;   /* of --arch */
    int variant;            /* its arch, as the family numbers them */
    const char *arch;       /* --arch's word */
    unsigned given;
    long batch;
    enum amil_optim_kind optimizer;
    enum amil_norm norm;
    long epochs, seed, classes, hidden, attention, branches, threads;
    double lr, decay, momentum;
    int quiet;
    struct amil_augment augment;   /* attention-MIL bags, new each epoch */
};

static const char usage_text[] =
    "usage: train -o MODEL\n"
    "             [--arch amil|gated|clam|clam-plain|net|vgg19|resnet18|resnet50]\n"
    "             [--epochs N]\n"
    "             [--lr X] [--decay X] [--seed S] [--test FILE]\n"
    "             [--resume CHECKPOINT] [options] [FILE]\n"
    "  -o, --output MODEL      where the model goes\n"
    "  -a, --arch ARCH         amil (the paper's) or gated; clam or clam-plain,\n"
    "                          CLAM's head on cached features; or a CNN\n"
    "                          baseline: net, vgg19, resnet18, resnet50 [amil]\n"
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

/* Conflicts between options, and the defaults of the family (a CNN
 * baseline's are the paper's: RMSprop, lr 3e-4, momentum 0.4, batches of
 * 32, 10 epochs; CLAM's head its own sizes and rates). */
static void settle_args(struct cmdline *cl)
{
    const struct amil_train_ops *train = cl->family->train;
    const struct amil_train_defaults *d = &train->defaults;
    unsigned given = cl->given;
    if (cl->test && strcmp(cl->test, "-") == 0)
        amil_misuse("--test needs a file: stdin holds the training bags");
    if (!(train->takes & AMIL_TRAIN_BATCH) && (cl->batch != 1 || cl->weights)) {
        amil_misuse("%s: an attention-MIL model trains on one bag a step, from its own "
                    "initialization", cl->weights ? "--weights" : "--batch");
    }
    if (!(train->takes & AMIL_TRAIN_SIZES) && (given & GIVEN_SIZES))
        amil_misuse("--hidden, --attention-dim and --branches are attention-MIL's");
    if (!(train->takes & AMIL_TRAIN_AUGMENT) && amil_augmenting(&cl->augment))
        amil_misuse("--augment changes a bag's patches: attention-MIL models only");
    if (!(train->takes & AMIL_TRAIN_BRANCHES) && cl->branches != 1)
        amil_misuse("%s has one attention branch", cl->family->noun);
    cl->epochs = given & GIVEN_EPOCHS ? cl->epochs : d->epochs;
    cl->lr = given & GIVEN_LR ? cl->lr : d->lr;
    cl->decay = given & GIVEN_DECAY ? cl->decay : d->decay;
    cl->momentum = given & GIVEN_MOMENTUM ? cl->momentum : d->momentum;
    cl->optimizer = given & GIVEN_OPTIMIZER ? cl->optimizer : d->optimizer;
    cl->batch = given & GIVEN_BATCH ? cl->batch : d->batch;
    cl->hidden = given & GIVEN_HIDDEN ? cl->hidden : d->hidden;
    cl->attention = given & GIVEN_ATTENTION ? cl->attention : d->attention;
}

/* --arch: which network, and of which family. */
static void read_arch(void *to, const char *option, const char *arg)
{
    struct cmdline *cl = to;
    cl->family = amil_model_arch(arg, &cl->variant);
    cl->arch = arg;
    if (!cl->family)
        amil_misuse("%s: '%s' is not amil, gated, clam, clam-plain, net, vgg19, resnet18 or "
                    "resnet50",
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
    struct cmdline cl = {.seed = 1, .classes = 2, .branches = 1, .threads = 1, .batch = 1,
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
        {"normalize", GIVEN_NORMALIZE}, {"hidden", GIVEN_HIDDEN},
        {"attention-dim", GIVEN_ATTENTION}, {"branches", GIVEN_BRANCHES}};
    for (size_t i = 0; i < sizeof marks / sizeof *marks; i++)
        if (amil_option_given(options, marks[i].name))
            cl.given |= marks[i].bit;
    if (!cl.family)
        read_arch(&cl, "--arch", "amil");   /* the paper's */
    if (!cl.output)
        amil_misuse("no output: give -o MODEL");
    if (argc - optind > 1)
        amil_misuse("%s: one FILE of training bags at most (test bags go with --test)",
                    argv[optind + 1]);
    cl.input = optind < argc ? argv[optind] : NULL;
    settle_args(&cl);
    return cl;
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
     * and the trainer lets it go) nor each other */
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
    struct amil_training t = {
        cl.family,
        {cl.variant, cl.arch, (int)cl.classes, (int)cl.hidden, (int)cl.attention,
         (int)cl.branches, cl.norm, (cl.given & GIVEN_NORMALIZE) != 0, cl.weights, cl.resume,
         (unsigned long)cl.seed, &cl.augment},
        cl.input, cl.test, cl.output, checkpoint, cl.epochs, cl.batch, cl.optimizer, cl.lr,
        cl.decay, cl.momentum, cl.quiet};
    amil_train(&t);
    free(checkpoint);
    return amil_close_stdout();
}
