/* filter.c: option parsing and model loading for the model filters
 * (filter.h). */
#include <getopt.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "base/base.h"
#include "record/record.h"
#include "record/stream.h"
#include "models/model.h"
#include "tool/cli.h"
#include "tool/filter.h"

struct amil_filter amil_filter_args(int argc, char **argv, unsigned takes, const char *usage)
{
    amil_usage_is(usage);
    struct amil_filter f = {.threads = 1};
    static const char *const pools[] = {"token", "avg", NULL};
    static const char *const precisions[] = {"f32", "bf16", NULL};
    int pool = -1, precision = -1;
    /* every option is known to all three, so that abbreviations mean the
     * same everywhere, and refused where it does not belong */
    struct amil_opt options[] = {
        AMIL_STRING("model", 'm', &f.model),
        AMIL_FLAG("keep", 'k', &f.keep),
        AMIL_LONG("threads", 'j', &f.threads, 1, 1024),
        AMIL_FLAG("table", takes & AMIL_FILTER_TABLE ? 't' : 0, &f.table),
        AMIL_FLAG("force", 0, &f.force),
        AMIL_FLAG("trunc", 0, &f.trunc),
        AMIL_CHOICE("pool", 0, &pool, pools),
        AMIL_CHOICE("precision", 0, &precision, precisions),
        AMIL_OPTIONS_END};
    optind = amil_options_as(argc, argv, options, AMIL_OPTS_SAY_UNKNOWN);
    if (f.table && !(takes & AMIL_FILTER_TABLE))
        amil_misuse("unknown option --table");
    if (f.trunc && !(takes & AMIL_FILTER_BACKBONE))
        amil_misuse("unknown option --trunc");
    if (pool >= 0 && !(takes & AMIL_FILTER_BACKBONE))
        amil_misuse("unknown option --pool");
    f.pool = pool >= 0 ? pools[pool] : NULL;
    if (precision >= 0 && !(takes & AMIL_FILTER_BACKBONE))
        amil_misuse("unknown option --precision");
    f.precision = precision >= 0 ? precisions[precision] : NULL;
    if (!f.model)
        amil_misuse("no model: give -m MODEL");
    if (f.table && f.keep)
        amil_misuse("-k keeps tensors in records; -t writes none");
    if (argc - optind > 1)
        amil_misuse("%s: one FILE at most", argv[optind + 1]);
    f.input = optind < argc ? argv[optind] : NULL;
    if (!f.table)
        amil_refuse_terminal(f.force, "redirect it to a file or a program");
    return f;
}

void amil_filter_model(const struct amil_filter *f, struct amil_model *m)
{
    const char *const settings[] = {"trunc",     f->trunc ? "layer3" : NULL,
                                    "global_pool", f->pool,
                                    "precision", f->precision,
                                    NULL};
    if (amil_model_load_with(m, f->model, settings) < 0)
        amil_die("%s", amil_error());
}

long amil_filter_run(const struct amil_filter *f, int bags, amil_filter_each *each, void *ctx,
                     const char *unit)
{
    struct amil_stream s;
    if (amil_stream_open_path(&s, f->input) < 0)
        amil_die("%s", amil_error());
    struct amil_record r;
    struct amil_progress progress;
    amil_progress_start(&progress);
    int got;
    while ((got = bags ? amil_bag_read(&s, &r) : amil_record_read(&s, &r)) == 1) {
        const char *consumed = NULL;
        long units = each(ctx, &r, s.index - 1, &consumed);
        if (units < 0)
            amil_die("%s: record %ld: %s", s.name, s.index - 1, amil_error());
        if (!f->table) {
            if (!f->keep && consumed)
                amil_record_remove(&r, consumed);
            amil_record_set_meta(&r, "model", f->model);
            if (amil_record_write(stdout, &r) < 0)
                amil_die("write error:");
        }
        amil_record_free(&r);
        amil_progress_add(&progress, units, unit);
    }
    amil_progress_end(&progress);
    if (got < 0)
        amil_die("%s", amil_error());
    /* one rule for every program that reads records: an empty stream is an
     * error, for in a pipeline it is most often a stage that failed */
    if (s.index == 0)
        amil_die("%s: no records", s.name);
    long records = s.index;
    amil_stream_close(&s);
    return records;
}
