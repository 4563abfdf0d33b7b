/* checkpoint.c: train's checkpoints (checkpoint.h). */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/base.h"
#include "base/output.h"
#include "record/record.h"
#include "record/stream.h"
#include "tool/checkpoint.h"

void amil_checkpoint_to_record(struct amil_record *r, const struct amil_checkpoint *c,
                               const struct amil_optimizer *o, const struct amil_param *params,
                               int nparams)
{
    amil_record_set_meta(r, "kind", "checkpoint");
    amil_record_set_metaf(r, "epoch", "%ld", c->epoch);
    amil_record_set_metaf(r, "seed", "%ld", c->seed);
    amil_record_set_metaf(r, "batch", "%ld", c->batch);
    amil_optim_to_record(o, params, nparams, r);
}

int amil_checkpoint_from_record(const struct amil_record *r, struct amil_checkpoint *c,
                                struct amil_optimizer *o, size_t base, size_t n,
                                const struct amil_param *params, int nparams)
{
    const char *kind = amil_record_meta(r, "kind");
    if (!kind || strcmp(kind, "checkpoint") != 0 ||
        amil_record_meta_long(r, "epoch", 0, 1000000, &c->epoch) != 1 ||
        amil_record_meta_long(r, "seed", 0, 4294967295L, &c->seed) != 1)
        return amil_fail("not a checkpoint of train");
    int has_batch = amil_record_meta_long(r, "batch", 1, 4096, &c->batch);
    if (has_batch < 0)
        return -1;
    c->batch = has_batch ? c->batch : 0;
    const char *name = amil_record_meta(r, "optimizer");
    int optimizer = name ? amil_optim_parse(name) : -1;
    if (optimizer < 0)
        return amil_fail("no optimizer state");
    amil_optim_init(o, optimizer, n);
    o->base = base;
    if (amil_optim_from_record(o, params, nparams, r) < 0) {
        amil_optim_free(o);
        return -1;
    }
    return 0;
}

unsigned long amil_epoch_seed(unsigned long seed, long epoch)
{
    uint64_t z = ((uint64_t)seed << 32 ^ (uint64_t)epoch) + 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return (unsigned long)(z ^ (z >> 31));
}

/* r is a checkpoint of train's (kind checkpoint), or -1 with a message
 * saying what it is instead. */
static int is_checkpoint(const struct amil_record *r)
{
    const char *kind = amil_record_meta(r, "kind");
    if (kind && strcmp(kind, "checkpoint") == 0)
        return 0;
    if (kind && strcmp(kind, "model") == 0)
        return amil_fail("a model, not a checkpoint: train resumes from the checkpoint it "
                         "wrote beside the model (MODEL.ckpt, or --checkpoint)");
    return amil_fail("not a checkpoint of train (its kind is %s)", kind ? kind : "not given");
}

int amil_checkpoint_load(const char *path, const struct amil_model_ops *family,
                         struct amil_model *m, struct amil_optimizer *o,
                         struct amil_checkpoint *c)
{
    memset(m, 0, sizeof *m);
    m->path = path;
    struct amil_record r;
    if (amil_record_load(path, &r) < 0)
        return -1;
    int status = is_checkpoint(&r);
    const struct amil_model_ops *found = status < 0 ? NULL : amil_model_family(&r);
    if (found && found != family)
        status = amil_fail("a checkpoint of %s, not of %s", found->noun, family->noun);
    if (status == 0) {
        m->ops = family;
        status = family->from_record(m, &r);
    }
    if (status == 0) {
        int first;
        const struct amil_params *p = family->train->params(m, &first);
        size_t base = p->at[first].offset;
        status = amil_checkpoint_from_record(&r, c, o, base, p->nweights - base, p->at + first,
                                             p->n - first);
        if (status == 0 && c->batch == 0 && (family->train->takes & AMIL_TRAIN_BATCH)) {
            amil_optim_free(o);
            status = amil_fail("no batch size");
        }
    }
    if (status < 0 && m->ops)
        amil_model_free(m);
    amil_record_free(&r);
    return status < 0 ? amil_fail_in(path) : 0;
}

void amil_resume_command(char *buf, size_t size, const char *program, int n,
                         char *const *args, const char *path)
{
    int at = snprintf(buf, size, "%s", program);
    for (int i = 0; i < n && at < (int)size; i++) {
        if (strcmp(args[i], "--resume") == 0 || strcmp(args[i], "-r") == 0) {
            i++;   /* and its value */
            continue;
        }
        if (strncmp(args[i], "--resume=", 9) != 0)
            at += snprintf(buf + at, size - at, " %s", args[i]);
    }
    if (at < (int)size)
        snprintf(buf + at, size - at, " --resume %s\n", path);
}

/* What an interrupt prints: where the last checkpoint is and how to go on
 * (made ready outside the handler, which only writes it). */
static char interrupted[8192];
static const char *program;
static int saved_argc;
static char **saved_argv;

static void on_interrupt(int sig)
{
    amil_output_cleanup();   /* a checkpoint being written stays as it was */
    ssize_t ignored = write(STDERR_FILENO, interrupted, strlen(interrupted));
    (void)ignored;
    signal(sig, SIG_DFL);
    raise(sig);
}

void amil_checkpoint_catch_interrupts(const char *name, int argc, char **argv)
{
    program = name, saved_argc = argc, saved_argv = argv;
    snprintf(interrupted, sizeof interrupted,
             "%s: interrupted before the first checkpoint: nothing to resume from\n", name);
    struct sigaction action = {0};
    action.sa_handler = on_interrupt;
    sigaction(SIGINT, &action, NULL);
    sigaction(SIGTERM, &action, NULL);
}

int amil_checkpoint_save(const char *path, struct amil_record *r, const struct amil_checkpoint *c,
                         const struct amil_optimizer *o, const struct amil_param *params,
                         int nparams)
{
    amil_checkpoint_to_record(r, c, o, params, nparams);
    /* An interrupt waits until the file and the message agree: between the
     * rename and the new message it had named the epoch before (measured:
     * CI's resume test found the checkpoint an epoch ahead of what it said). */
    sigset_t interrupts, before;
    sigemptyset(&interrupts);
    sigaddset(&interrupts, SIGINT);
    sigaddset(&interrupts, SIGTERM);
    sigprocmask(SIG_BLOCK, &interrupts, &before);
    int status = amil_record_save(path, r);
    amil_record_free(r);
    if (status == 0 && program) {
        int n = snprintf(interrupted, sizeof interrupted,
                         "%s: interrupted; epoch %ld is saved in %s; to go on:\n  ", program,
                         c->epoch, path);
        if (n < (int)sizeof interrupted)
            amil_resume_command(interrupted + n, sizeof interrupted - n, program,
                                saved_argc - 1, saved_argv + 1, path);
    }
    sigprocmask(SIG_SETMASK, &before, NULL);
    return status;
}
