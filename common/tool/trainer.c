/* trainer.c: train's loop over any family's table (trainer.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>

#include "base/base.h"
#include "base/output.h"
#include "compute/metrics.h"
#include "compute/optim.h"
#include "models/model.h"
#include "record/record.h"
#include "record/stream.h"
#include "tool/checkpoint.h"
#include "tool/samples.h"
#include "tool/trainer.h"

/* A set of records, and its form (amil_train_ops's check). */
struct set {
    struct amil_samples samples;
    int form;
};

/* What changes as the program runs; the command line does not. */
struct run {
    const struct amil_training *asked;
    long seed, batch;       /* the command line's, or the resumed checkpoint's */
    long done;              /* epochs done, resumed ones too */
    const char *last_good;  /* the last checkpoint, for the message of a NaN loss */
    struct amil_model m;
    const struct amil_train_ops *ops;
    struct amil_optimizer o;
    struct set train, test;
    long *order;            /* (samples) the epoch's order */
    float *grads;           /* (nweights) */
    struct amil_record *held;    /* (batch) the step's records, a bag family's */
    gsl_rng *rng;           /* the epoch's: its order, crops, augmentation, dropout */
};

struct checking {
    struct amil_model *m;
    int *form;
};

static long check_record(struct amil_record *r, long index, const char *name, void *context)
{
    struct checking *c = context;
    long samples = c->m->ops->train->check(c->m, r, c->form);
    if (samples < 0)
        amil_die("%s: record %ld: %s", name, index, amil_error());
    return samples;
}

static void load_set(struct run *run, struct set *s, const char *path)
{
    s->form = -1;
    if (amil_samples_load(&s->samples, path, check_record,
                          &(struct checking){&run->m, &s->form}) < 0)
        amil_die("%s", amil_error());
}

struct judging {
    struct amil_model *m;
    int form;
};

static int judge_record(void *context, struct amil_record *r, struct amil_verdict *v)
{
    struct judging *j = context;
    return j->m->ops->train->judge(j->m, r, j->form, v);
}

/* Loss, error and AUC of the model on a set, without training. */
static struct amil_score score_set(struct run *run, struct set *s)
{
    struct amil_score score;
    if (amil_samples_score(&s->samples, judge_record, &(struct judging){&run->m, s->form},
                           &score) < 0)
        amil_die("%s", amil_error());
    return score;
}

static void progress(const struct run *run, long epoch, long i, long n, double loss)
{
    static double last;
    if (run->asked->quiet || !isatty(STDERR_FILENO))
        return;
    double t = amil_seconds();
    if (i + 1 < n && t - last < 0.2)
        return;
    last = t;
    fprintf(stderr, "\repoch %ld/%ld  %s %ld/%ld  mean loss %.4f ", epoch, run->asked->epochs,
            run->ops->unit, i + 1, n, loss / (i + 1));
    if (i + 1 == n)
        fputs("\r\033[K", stderr);
}

/* The model's parameters; *first the first trained, *base where its
 * floats begin in the buffer. */
static struct amil_params *trained(struct run *run, int *first, size_t *base)
{
    struct amil_params *p = run->ops->params(&run->m, first);
    *base = p->at[*first].offset;
    return p;
}

/* The model's record as the checkpoint of epoch, with the optimizer's
 * state of the trained parameters. */
static void save_checkpoint(struct run *run, long epoch)
{
    struct amil_record r;
    run->ops->to_record(&run->m, &r);
    int first;
    size_t base;
    const struct amil_params *p = trained(run, &first, &base);
    struct amil_checkpoint c = {epoch, run->seed, run->batch};
    if (amil_checkpoint_save(run->asked->checkpoint, &r, &c, &run->o, p->at + first,
                             p->n - first) < 0)
        amil_die("%s", amil_error());
    run->last_good = run->asked->checkpoint;
    run->done = epoch;
}

/* The model, with the epochs done (resumed ones too) and the seed, to the
 * output. */
static void save_model(const struct run *run)
{
    struct amil_record r;
    run->ops->to_record(&run->m, &r);
    amil_augment_describe(run->asked->spec.augment, &r);
    amil_record_set_metaf(&r, "epochs", "%ld", run->done);
    amil_record_set_metaf(&r, "seed", "%ld", run->seed);
    if (amil_record_save(run->asked->output, &r) < 0)
        amil_die("%s", amil_error());
    amil_record_free(&r);
}

static void log_header(void)
{
    printf("epoch\ttrain_loss\ttrain_error\ttrain_accuracy\ttest_loss\ttest_error\t"
           "test_accuracy\ttest_auc\tseconds\n");
}

/* An epoch's line of the TSV log, and the paper's lines on stderr. */
static void log_epoch(const struct run *run, long epoch, struct amil_score tr,
                      struct amil_score te, double seconds)
{
    if (!run->asked->quiet) {
        fprintf(stderr, "Epoch: %ld, Loss: %.4f, Train error: %.4f\n", epoch, tr.loss,
                tr.error);
        if (run->asked->test)
            fprintf(stderr, "Test Set, Loss: %.4f, Test error: %.4f\n", te.loss, te.error);
    }
    printf("%ld\t%.6f\t%.6f\t%.6f\t%.6f\t%.6f\t%.6f\t%.6f\t%.3f\n", epoch, tr.loss,
           tr.error, tr.accuracy, te.loss, te.error, te.accuracy, te.auc, seconds);
    fflush(stdout);
}

/* The model: a checkpoint's, or a new one as the command line asks (a
 * bag family's made by the first bag, when the set is loaded). */
static void start_model(struct run *run)
{
    const struct amil_training *t = run->asked;
    struct amil_checkpoint c;
    if (t->spec.resume) {
        if (amil_checkpoint_load(t->spec.resume, t->family, &run->m, &run->o, &c) < 0)
            amil_die("%s", amil_error());
        run->seed = c.seed;   /* the run goes on as it began */
        run->batch = c.batch && (t->family->train->takes & AMIL_TRAIN_BATCH) ? c.batch
                                                                             : run->batch;
        run->done = c.epoch;
        run->last_good = t->spec.resume;
        if (amil_same_file(t->spec.resume, t->checkpoint))
            amil_input_forget(t->spec.resume);   /* read whole: the next checkpoint replaces it */
    } else {
        run->m.ops = t->family;
    }
    int random_backbone = 0;
    if (run->ops->start(&run->m, &t->spec, &random_backbone) < 0) {
        if (t->spec.resume)
            amil_die("%s: %s", t->spec.resume, amil_error());
        amil_die("%s", amil_error());
    }
    if (random_backbone)
        amil_warn("warning: no -w: %s's frozen backbone is random, which is for tests; "
                  "give torchvision's weights with -w FILE", t->spec.arch);
}

/* Says where a step's loss went to nan or inf, and dies. */
static void die_of_loss(const struct run *run, long epoch, long k, int n, double loss)
{
    const char *what = isnan(loss) ? "nan" : loss > 0 ? "inf" : "-inf";
    if (run->ops->holds) {
        const char *source = amil_record_meta(&run->held[0], "source");
        amil_die("epoch %ld, bag %ld (%s): the loss is %s; the last checkpoint is %s", epoch,
                 run->order[k], source ? source : "?", what, run->last_good);
    }
    amil_die("epoch %ld, samples %ld to %ld: the loss is %s; the last checkpoint is %s", epoch,
             k, k + n - 1, what, run->last_good);
}

/* Samples order[0..n) into the step: a bag family's records held until
 * the step is done, a batch family's given back at once. */
static void take(struct run *run, const long *order, int n)
{
    struct amil_samples *s = &run->train.samples;
    for (int k = 0; k < n; k++) {
        long i = amil_samples_record_of(s, order[k]);
        struct amil_record *r = &run->held[k];
        if (amil_samples_get(s, i, r) < 0)
            amil_die("%s", amil_error());
        if (run->ops->take(&run->m, r, order[k] - s->first[i], run->train.form, run->rng,
                           k) < 0)
            amil_die("%s: record %ld changed since it was first read", s->stream.name, i);
        if (!run->ops->holds)
            amil_samples_put(s, r);
    }
}

/* One epoch over the training set in steps of run->batch samples: the
 * training loss and error. */
static struct amil_score epoch_of(struct run *run, long epoch)
{
    long samples = amil_samples_total(&run->train.samples);
    int B = (int)run->batch;
    int first;
    size_t base;
    struct amil_params *p = trained(run, &first, &base);
    for (long k = 0; k < samples; k++)
        run->order[k] = k;
    gsl_ran_shuffle(run->rng, run->order, (size_t)samples, sizeof *run->order);
    double loss = 0, errors = 0;
    for (long k = 0; k < samples; k += B) {
        int n = (int)(samples - k < B ? samples - k : B), wrong;
        take(run, run->order + k, n);
        double l = run->ops->step(&run->m, n, run->grads, run->rng, &wrong);
        if (!isfinite(l))
            die_of_loss(run, epoch, k, n, l);
        /* the gradients were zero (calloc'd, then zeroed by each step) */
        amil_optim_step_and_zero(&run->o, p->weights + base, run->grads + base);
        for (int j = 0; run->ops->holds && j < n; j++)
            amil_samples_put(&run->train.samples, &run->held[j]);
        loss += l * n;
        errors += wrong;
        progress(run, epoch, k + n - 1, samples, loss);
    }
    return (struct amil_score){loss / samples, errors / samples, 1 - errors / samples, NAN};
}

void amil_train(const struct amil_training *t)
{
    struct run run = {.asked = t, .seed = (long)t->spec.seed, .batch = t->batch,
                      .last_good = "none", .ops = t->family->train};
    start_model(&run);
    load_set(&run, &run.train, t->input);
    if (t->test)
        load_set(&run, &run.test, t->test);
    int first;
    size_t base;
    struct amil_params *p = trained(&run, &first, &base);
    if (!t->spec.resume) {
        amil_optim_init(&run.o, t->optimizer, p->nweights - base);
        run.o.base = base, run.o.lr = t->lr, run.o.decay = t->decay;
        run.o.momentum = t->momentum;
    }
    run.order = amil_xmalloc(sizeof(long) * amil_samples_total(&run.train.samples));
    run.grads = amil_xcalloc(p->nweights, sizeof(float));
    run.held = amil_xcalloc((size_t)run.batch, sizeof *run.held);
    run.rng = gsl_rng_alloc(gsl_rng_mt19937);
    log_header();
    for (long epoch = run.done + 1; epoch <= t->epochs; epoch++) {
        double start = amil_seconds();
        /* Each epoch's order, crops, augmentation and dropout come from a
         * generator seeded from (seed, epoch): a resumed run needs no
         * replay. */
        gsl_rng_set(run.rng, amil_epoch_seed((unsigned long)run.seed, epoch));
        struct amil_score tr = epoch_of(&run, epoch), te = {NAN, NAN, NAN, NAN};
        if (t->test)
            te = score_set(&run, &run.test);
        save_checkpoint(&run, epoch);
        log_epoch(&run, epoch, tr, te, amil_seconds() - start);
    }
    save_model(&run);
    amil_samples_free(&run.train.samples);
    if (t->test)
        amil_samples_free(&run.test.samples);
    free(run.order), free(run.grads), free(run.held);
    gsl_rng_free(run.rng);
    amil_optim_free(&run.o);
    amil_model_free(&run.m);
}
