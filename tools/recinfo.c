/* recinfo: describe the records of an amil stream, as pamfile describes
 * images: for each record its index, metadata and tensors (name, dtype,
 * shape).  Every record is checked as any amil program checks it, so
 * `recinfo < x.bags` is also a validator. */
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "record/record.h"
#include "record/stream.h"
#include "tool/cli.h"

struct cmdline {
    int json;
    const char *values;         /* print this tensor's values instead */
    char **files;
    int nfiles;
};

static const char usage_text[] =
    "usage: recinfo [-j | -t TENSOR] [FILE...]\n"
    "  -j, --json          one JSON object per record: index, metadata, tensors\n"
    "  -t, --tensor NAME   the values of tensor NAME, a line per row\n"
    "  -h, --help          this help\n";

static struct cmdline parse_args(int argc, char **argv)
{
    amil_usage_is(usage_text);
    struct cmdline cl = {0};
    struct amil_opt options[] = {
        AMIL_FLAG("json", 'j', &cl.json),
        AMIL_STRING("tensor", 't', &cl.values),
        AMIL_OPTIONS_END};
    optind = amil_options(argc, argv, options);
    if (cl.json && cl.values)
        amil_misuse("give -j or -t, not both");
    cl.files = argv + optind;
    cl.nfiles = argc - optind;
    return cl;
}

/* Prints s as a JSON string. */
static void put_json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            printf("\\%c", ch);
        else if (ch < 0x20)
            printf("\\u%04x", ch);
        else
            putchar(ch);
    }
    putchar('"');
}

/* Prints a tensor's values, tab-separated, one line per index of all but
 * the last dimension (a scalar or vector is one line). */
static int print_values(const struct amil_tensor *t)
{
    int64_t count = 1, row = t->ndim ? t->shape[t->ndim - 1] : 1;
    for (int d = 0; d < t->ndim; d++)
        count *= t->shape[d];
    for (int64_t i = 0; i < count; i++) {
        const unsigned char *p = (const unsigned char *)t->data + i * amil_dtype_size(t->dtype);
        switch (t->dtype) {
        case AMIL_U8: printf("%u", *p); break;
        case AMIL_I32: printf("%" PRId32, *(const int32_t *)p); break;
        case AMIL_I64: printf("%" PRId64, *(const int64_t *)p); break;
        case AMIL_F32: printf("%.9g", *(const float *)p); break;
        case AMIL_F64: printf("%.17g", *(const double *)p); break;
        default: return amil_fail("cannot print %s values", amil_dtype_name(t->dtype));
        }
        putchar(row && (i + 1) % row == 0 ? '\n' : '\t');
    }
    return 0;
}

static void describe(const struct cmdline *cl, const char *name, long index,
                     const struct amil_record *r)
{
    if (cl->values) {
        const struct amil_tensor *t = amil_record_find(r, cl->values);
        if (!t)
            amil_die("%s: record %ld: no tensor '%s'", name, index, cl->values);
        if (print_values(t) < 0)
            amil_die("%s: record %ld: %s", name, index, amil_error());
        return;
    }
    if (cl->json) {
        printf("{\"stream\":");
        put_json_string(name);
        printf(",\"index\":%ld,\"metadata\":{", index);
        for (size_t i = 0; i < r->nmeta; i++) {
            printf(i ? "," : "");
            put_json_string(r->meta[i].key);
            putchar(':');
            put_json_string(r->meta[i].value);
        }
        printf("},\"tensors\":{");
        for (size_t i = 0; i < r->ntensors; i++) {
            const struct amil_tensor *t = &r->tensors[i];
            printf(i ? "," : "");
            put_json_string(t->name);
            printf(":{\"dtype\":\"%s\",\"shape\":[", amil_dtype_name(t->dtype));
            for (int d = 0; d < t->ndim; d++)
                printf("%s%lld", d ? "," : "", (long long)t->shape[d]);
            printf("]}");
        }
        printf("}}\n");
        return;
    }
    printf("%s: record %ld\n", name, index);
    for (size_t i = 0; i < r->nmeta; i++)
        printf("  %s = %s\n", r->meta[i].key, r->meta[i].value);
    for (size_t i = 0; i < r->ntensors; i++) {
        const struct amil_tensor *t = &r->tensors[i];
        printf("  tensor %s %s [", t->name, amil_dtype_name(t->dtype));
        for (int d = 0; d < t->ndim; d++)
            printf("%s%lld", d ? ", " : "", (long long)t->shape[d]);
        printf("]\n");
    }
}

int main(int argc, char **argv)
{
    amil_init(argc, argv);
    struct cmdline cl = parse_args(argc, argv);
    static char *stdin_only[] = {"-"};
    char **files = cl.nfiles ? cl.files : stdin_only;
    int nfiles = cl.nfiles ? cl.nfiles : 1;
    for (int i = 0; i < nfiles; i++) {
        int is_stdin = strcmp(files[i], "-") == 0;
        const char *name = is_stdin ? "<stdin>" : files[i];
        FILE *f = is_stdin ? stdin : fopen(files[i], "rb");
        if (!f)
            amil_die("%s:", files[i]);
        struct amil_stream s;
        struct amil_record r;
        int got;
        amil_stream_open(&s, f, name);
        while ((got = amil_record_read(&s, &r)) == 1) {
            describe(&cl, name, s.index - 1, &r);
            amil_record_free(&r);
        }
        if (got < 0)
            amil_die("%s", amil_error());
        if (s.index == 0)
            amil_die("%s: no records", name);
        if (!is_stdin)
            fclose(f);
    }
    return amil_close_stdout();
}
