/* test_train.c: the pieces train is built of, in common/: the sample store
 * (samples.h), checkpoints, the seeds of epochs and the command that
 * resumes (checkpoint.h), and
 * whole-or-nothing record files (amil_record_save).
 *
 * The store must give the same records by index whether it read a file
 * (indexed, read again) or a pipe (held); a checkpoint must come back as
 * it was written and be refused when it is not one. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/base.h"
#include "base/output.h"
#include "compute/metrics.h"
#include "compute/optim.h"
#include "compute/params.h"
#include "record/record.h"
#include "record/stream.h"
#include "tool/checkpoint.h"
#include "tool/samples.h"

/* Record i: a tensor "x" of i + 1 bytes, all i, and metadata "n" = i. */
static void make_record(struct amil_record *r, int i)
{
    amil_record_init(r);
    int64_t shape[1] = {i + 1};
    struct amil_tensor *t = amil_record_put(r, "x", AMIL_U8, 1, shape);
    memset(t->data, i, (size_t)i + 1);
    amil_record_set_metaf(r, "n", "%d", i);
}

/* Samples of a record: n + 1 (so that records hold different counts). */
static long count_samples(struct amil_record *r, long index, const char *name, void *context)
{
    (void)name;
    long n;
    if (amil_record_meta_long(r, "n", 0, 100, &n) != 1 || n != index)
        return amil_fail("record %ld is not the record written there", index);
    ++*(long *)context;
    return n + 1;
}

/* The records of a set, checked by index, out of order. */
static void check_set(struct amil_samples *s, int count)
{
    assert_int_equal(s->count, count);
    assert_int_equal(amil_samples_total(s), (long)count * (count + 1) / 2);
    for (int k = count - 1; k >= 0; k--) {
        struct amil_record r;
        assert_int_equal(amil_samples_get(s, k, &r), 0);
        const struct amil_tensor *t = amil_record_find(&r, "x");
        assert_non_null(t);
        assert_int_equal(t->nbytes, k + 1);
        assert_int_equal(((const unsigned char *)t->data)[k], k);
        amil_samples_put(s, &r);
        /* record k holds samples k(k+1)/2 .. k(k+1)/2 + k */
        assert_int_equal(amil_samples_record_of(s, (long)k * (k + 1) / 2), k);
        assert_int_equal(amil_samples_record_of(s, (long)k * (k + 1) / 2 + k), k);
    }
}

static void samples_from_a_file_and_a_pipe(void **state)
{
    (void)state;
    char path[] = "/tmp/test_train.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "wb");
    for (int i = 0; i < 5; i++) {
        struct amil_record r;
        make_record(&r, i);
        assert_int_equal(amil_record_write(f, &r), 0);
        amil_record_free(&r);
    }
    fclose(f);
    struct amil_samples s;
    long checked = 0;
    assert_int_equal(amil_samples_load(&s, path, count_samples, &checked), 0);
    assert_int_equal(checked, 5);
    assert_null(s.held);   /* indexed, read again */
    check_set(&s, 5);
    amil_samples_free(&s);
    /* the same bytes on standard input: held in memory */
    int saved = dup(0);
    assert_non_null(freopen(path, "rb", stdin));
    int pipe_ends[2];
    assert_int_equal(pipe(pipe_ends), 0);
    if (fork() == 0) {   /* a writer, so that stdin is a pipe */
        close(pipe_ends[0]);
        char buf[4096];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, stdin)) > 0)
            if (write(pipe_ends[1], buf, n) != (ssize_t)n)
                _exit(1);
        _exit(0);
    }
    close(pipe_ends[1]);
    dup2(pipe_ends[0], 0);
    close(pipe_ends[0]);
    clearerr(stdin);
    checked = 0;
    assert_int_equal(amil_samples_load(&s, "-", count_samples, &checked), 0);
    assert_non_null(s.held);
    check_set(&s, 5);
    amil_samples_free(&s);
    dup2(saved, 0);
    close(saved);
    wait(NULL);
    /* a check that fails fails the load, with its message: the third
     * record is record 4 */
    f = fopen(path, "wb");
    const int written[3] = {0, 1, 4};
    for (int i = 0; i < 3; i++) {
        struct amil_record r;
        make_record(&r, written[i]);
        assert_int_equal(amil_record_write(f, &r), 0);
        amil_record_free(&r);
    }
    fclose(f);
    assert_int_equal(amil_samples_load(&s, path, count_samples, &checked), -1);
    assert_string_equal(amil_error(), "record 2 is not the record written there");
    /* an empty set is refused */
    f = fopen(path, "wb");
    fclose(f);
    assert_int_equal(amil_samples_load(&s, path, count_samples, &checked), -1);
    assert_non_null(strstr(amil_error(), "no records"));
    unlink(path);
}

static void checkpoints_round_trip(void **state)
{
    (void)state;
    struct amil_params t = {0};
    int64_t shape[2] = {3, 5};
    assert_int_equal(amil_params_add(&t, "a.weight", 2, shape, 5), 0);
    assert_int_equal(amil_params_add(&t, "a.bias", 1, shape, 5), 1);
    assert_int_equal(t.at[1].offset % 16, 0);   /* on its own 64-byte line */
    amil_params_alloc(&t);
    amil_params_randomize(&t, 7);
    struct amil_optimizer o;
    amil_optim_init(&o, AMIL_RMSPROP, t.nweights);
    o.lr = 0.25, o.momentum = 0.5;
    float grads[64] = {0};
    for (size_t i = 0; i < t.nweights; i++)
        grads[i] = (float)i / 7;
    amil_optim_step(&o, t.weights, grads);
    struct amil_record r;
    amil_record_init(&r);
    amil_params_to_record(&t, &r);
    struct amil_checkpoint c = {3, 42, 32}, back;
    amil_checkpoint_to_record(&r, &c, &o, t.at, t.n);
    struct amil_optimizer o2;
    assert_int_equal(amil_checkpoint_from_record(&r, &back, &o2, 0, t.nweights, t.at, t.n), 0);
    assert_int_equal(back.epoch, 3);
    assert_int_equal(back.seed, 42);
    assert_int_equal(back.batch, 32);
    assert_int_equal(o2.kind, AMIL_RMSPROP);
    assert_true(o2.lr == 0.25 && o2.momentum == 0.5 && o2.step == 1);
    for (int i = 0; i < t.n; i++)
        assert_memory_equal(o2.m + t.at[i].offset, o.m + t.at[i].offset,
                            sizeof(float) * t.at[i].count);
    amil_optim_free(&o2);
    /* a model is not a checkpoint; nor is one without its optimizer */
    amil_record_set_meta(&r, "kind", "model");
    assert_int_equal(amil_checkpoint_from_record(&r, &back, &o2, 0, t.nweights, t.at, t.n), -1);
    assert_string_equal(amil_error(), "not a checkpoint of train");
    amil_record_set_meta(&r, "kind", "checkpoint");
    amil_record_set_meta(&r, "lr", "fast");
    assert_int_equal(amil_checkpoint_from_record(&r, &back, &o2, 0, t.nweights, t.at, t.n), -1);
    assert_string_equal(amil_error(), "bad or missing lr");
    amil_record_free(&r);
    amil_optim_free(&o);
    amil_params_free(&t);
}

static void epoch_seeds_differ(void **state)
{
    (void)state;
    unsigned long seen[64];
    int n = 0;
    for (long seed = 0; seed < 8; seed++)
        for (long epoch = 1; epoch <= 8; epoch++) {
            unsigned long s = amil_epoch_seed((unsigned long)seed, epoch) & 0xffffffffUL;
            for (int i = 0; i < n; i++)
                assert_true(seen[i] != s);   /* mt19937 keeps 32 bits */
            seen[n++] = s;
        }
    assert_true(amil_epoch_seed(1, 2) == amil_epoch_seed(1, 2));
}

static void resume_commands(void **state)
{
    (void)state;
    char *args[] = {"-o", "m.st", "--resume", "old.ckpt", "-e", "5", "--resume=x", "-r", "y",
                    "bags"};
    char buf[128];
    amil_resume_command(buf, sizeof buf, "train", 10, args, "m.st.ckpt");
    assert_string_equal(buf, "train -o m.st -e 5 bags --resume m.st.ckpt\n");
    /* too small: cut short, terminated, nothing written past it */
    char small[16];
    memset(small, 'x', sizeof small);
    amil_resume_command(small, 12, "train", 10, args, "m.st.ckpt");
    assert_int_equal(strlen(small), 11);
    assert_true(small[12] == 'x');
}

static void records_are_saved_whole(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_train_dir.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof path, "%s/model.st", dir);
    struct amil_record r, back;
    make_record(&r, 3);
    assert_int_equal(amil_output_probe(path), 0);
    assert_int_equal(amil_record_save(path, &r), 0);
    assert_int_equal(amil_record_load(path, &back), 0);
    assert_memory_equal(amil_record_find(&back, "x")->data, amil_record_find(&r, "x")->data, 4);
    amil_record_free(&back);
    snprintf(path, sizeof path, "%s/no/such/dir/model.st", dir);
    assert_int_equal(amil_output_probe(path), -1);
    assert_int_equal(amil_record_save(path, &r), -1);
    assert_non_null(strstr(amil_error(), "No such file"));
    amil_record_free(&r);
    snprintf(path, sizeof path, "%s/model.st", dir);
    unlink(path);
    rmdir(dir);
}

/* The AUC by ranks: ties count one half, and a NaN score (not ordered:
 * its tie group once never advanced) gives NaN at once. */
static void auc_ties_and_nan(void **state)
{
    (void)state;
    const double tied[] = {0.5, 0.5, 0.5, 0.5}, ordered[] = {0.1, 0.3, 0.35, 0.8};
    const int positive[] = {0, 1, 0, 1};
    assert_true(amil_auc(tied, positive, 4) == 0.5);
    assert_true(amil_auc(ordered, positive, 4) == 0.75);
    const double with_nan[] = {0.1, NAN, 0.35, 0.8}, first_nan[] = {NAN, 0.4, 0.35, 0.8};
    assert_true(isnan(amil_auc(with_nan, positive, 4)));
    assert_true(isnan(amil_auc(first_nan, positive, 4)));
    const int one_class[] = {1, 1, 1, 1};
    assert_true(isnan(amil_auc(ordered, one_class, 4)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(samples_from_a_file_and_a_pipe),
        cmocka_unit_test(checkpoints_round_trip),
        cmocka_unit_test(epoch_seeds_differ),
        cmocka_unit_test(resume_commands),
        cmocka_unit_test(records_are_saved_whole),
        cmocka_unit_test(auc_ties_and_nan),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
