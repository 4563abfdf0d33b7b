/* filter.c: option parsing and model loading for the model filters
 * (filter.h). */
#include <getopt.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "base/base.h"
#include "record/record.h"
#include "record/stream.h"
#include "tool/cli.h"
#include "tool/filter.h"

static int parse(int argc, char **argv, int with_table, struct amil_filter *f)
{
    static const struct option options[] = {
        {"model", required_argument, 0, 'm'}, {"keep", no_argument, 0, 'k'},
        {"threads", required_argument, 0, 'j'}, {"table", no_argument, 0, 't'},
        {"force", no_argument, 0, 'F'},        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    *f = (struct amil_filter){.threads = 1};
    int c;
    opterr = 0;   /* our message, not getopt's */
    while ((c = amil_getopt(argc, argv, with_table ? "m:kj:th" : "m:kj:h", options)) != -1) {
        switch (c) {
        case 'm': f->model = optarg; break;
        case 'k': f->keep = 1; break;
        case 'F': f->force = 1; break;
        case 't':
            if (!with_table)
                return amil_fail("unknown option --table");
            f->table = 1;
            break;
        case 'j':
            if (amil_parse_long(optarg, 1, 1024, &f->threads) < 0)
                return amil_fail_in("--threads");
            break;
        case 'h': return 1;
        default:
            return optopt ? amil_fail("unknown option or missing value: -%c", optopt)
                          : amil_fail("unknown option %s", argv[optind - 1]);
        }
    }
    if (!f->model)
        return amil_fail("no model: give -m MODEL");
    if (f->table && f->keep)
        return amil_fail("-k keeps tensors in records; -t writes none");
    if (argc - optind > 1)
        return amil_fail("%s: one FILE at most", argv[optind + 1]);
    f->input = optind < argc ? argv[optind] : NULL;
    return 0;
}

struct amil_filter amil_filter_args(int argc, char **argv, int with_table, const char *usage)
{
    struct amil_filter f;
    amil_usage_is(usage);
    int status = parse(argc, argv, with_table, &f);
    if (status == 1)
        amil_usage(0);
    if (status < 0)
        amil_misuse("%s", amil_error());
    if (!f.table)
        amil_refuse_terminal(f.force, "redirect it to a file or a program");
    return f;
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
