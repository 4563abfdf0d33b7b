/* recinfo: describe the records of an amil stream, as pamfile describes
 * images: for each record its index, metadata and tensors (name, dtype,
 * shape).  Every record is checked as any amil program checks it, so
 * `recinfo < x.bags` is also a validator. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "amil.h"

struct cmdline {
    int json;
    char **files;
    int nfiles;
};

static const char usage_text[] =
    "usage: recinfo [-j] [FILE...]\n"
    "  -j, --json   one JSON object per record: index, metadata, tensors\n"
    "  -h, --help   this help\n";

static _Noreturn void usage(int status)
{
    fputs(usage_text, status ? stderr : stdout);
    exit(status);
}

static struct cmdline parse_args(int argc, char **argv)
{
    static const struct option options[] = {
        {"json", no_argument, 0, 'j'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    struct cmdline cl = {0};
    int c;
    while ((c = getopt_long(argc, argv, "jh", options, NULL)) != -1) {
        switch (c) {
        case 'j': cl.json = 1; break;
        case 'h': usage(0);
        default: usage(2);
        }
    }
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

static void describe(const struct cmdline *cl, const char *name, long index,
                     const struct amil_record *r)
{
    if (cl->json) {
        printf("{\"source\":");
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
        while ((got = amil_read(&s, &r)) == 1) {
            describe(&cl, name, s.index - 1, &r);
            amil_record_free(&r);
        }
        if (got < 0)
            amil_die("%s", amil_error());
        if (!is_stdin)
            fclose(f);
    }
    return amil_close_stdout();
}
