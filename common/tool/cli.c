/* cli.c: a program's command line: its usage, misuse, long options and
 * the readers of option values that are misuse when wrong. */
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "base/base.h"
#include "tool/cli.h"

static const char *usage_text = "";

void amil_usage_is(const char *text) { usage_text = text; }

/* The usage's synopsis (the lines before its options' list) and where the
 * options are, on standard error: what misuse prints after its reason. */
static void synopsis(void)
{
    const char *options = strstr(usage_text, "\n  -");
    fprintf(stderr, "%.*s", options ? (int)(options - usage_text + 1) : (int)strlen(usage_text),
            usage_text);
    if (options)
        fprintf(stderr, "(%s --help lists the options)\n", amil_progname);
}

void amil_usage(int status)
{
    if (status)   /* after getopt's own message: the synopsis, not every option */
        synopsis();
    else
        fputs(usage_text, stdout);
    exit(status);
}

void amil_misuse(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    amil_vwarn(fmt, ap);
    va_end(ap);
    synopsis();   /* the options' list would bury the reason */
    exit(2);
}

int amil_getopt(int argc, char **argv, const char *shorts, const struct option *longs)
{
    /* "-model m.st" is -m "odel" to getopt: a long option's name (or the
     * start of one, three letters or more) after one dash is said before
     * it is read so; an option's value ("-o -io") is not looked at */
    for (int i = 1; optind == 1 && i < argc && strcmp(argv[i], "--") != 0; i++) {
        const char *a = argv[i];
        if (a[0] != '-' || !a[1])
            continue;
        if (a[1] == '-') {   /* --name VALUE: skip the value */
            size_t n = strcspn(a + 2, "=");
            for (const struct option *o = longs; o->name; o++)
                if (a[2 + n] == '\0' && strlen(o->name) == n &&
                    strncmp(o->name, a + 2, n) == 0 && o->has_arg == required_argument)
                    i++;
            continue;
        }
        size_t n = strcspn(a + 1, "=");
        for (const struct option *o = longs; n >= 3 && o->name; o++)
            if (strlen(o->name) >= n && strncmp(o->name, a + 1, n) == 0)
                amil_misuse("%s: a long option takes two dashes (--%s)", a, o->name);
        /* -x VALUE: skip the value when x takes one and it is not attached */
        const char *spec = strchr(shorts, a[1]);
        if (a[2] == '\0' && spec && spec[1] == ':')
            i++;
    }
    return getopt_long(argc, argv, shorts, longs, NULL);
}

long amil_option_long(const char *option, const char *arg, long min, long max)
{
    long v = 0;
    if (amil_parse_long(arg, min, max, &v) < 0)
        amil_misuse("%s: %s", option, amil_error());
    return v;
}

double amil_option_double(const char *option, const char *arg, double min, double max)
{
    double v = 0;
    if (amil_parse_double(arg, min, max, &v) < 0)
        amil_misuse("%s: %s", option, amil_error());
    return v;
}

int amil_option_choice(const char *option, const char *arg, const char *const *names)
{
    int n = 0;
    for (; names[n]; n++)
        if (strcmp(arg, names[n]) == 0)
            return n;
    char list[512] = "";   /* "a, b or c" */
    for (int i = 0, at = 0; i < n && at < (int)sizeof list; i++)
        at += snprintf(list + at, sizeof list - at, "%s%s", i == 0 ? "" : i < n - 1 ? ", " : " or ",
                       names[i]);
    amil_misuse("%s: unknown value '%s' (%s)", option, arg, list);
}

int amil_options_as(int argc, char **argv, struct amil_opt *table, int manner)
{
    int n = 0;
    while (table[n].name)
        n++;
    /* getopt's tables: the short letters (':' after one that takes an
     * argument), and every long name, which returns 256 + its entry */
    char *shorts = amil_xmalloc(2 * (size_t)n + 2);
    struct option *longs = amil_xcalloc((size_t)n + 2, sizeof *longs);
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        int takes = table[i].kind != AMIL_OPT_FLAG;
        if (table[i].letter) {
            shorts[at++] = (char)table[i].letter;
            if (takes)
                shorts[at++] = ':';
        }
        longs[i] = (struct option){table[i].name, takes ? required_argument : no_argument, 0,
                                   table[i].letter ? table[i].letter : 256 + i};
    }
    shorts[at++] = 'h';
    shorts[at] = '\0';
    longs[n] = (struct option){"help", no_argument, 0, 'h'};
    if (manner & AMIL_OPTS_SAY_UNKNOWN)
        opterr = 0;   /* our message, not getopt's */
    int c, read = 0;
    while ((c = amil_getopt(argc, argv, shorts, longs)) != -1) {
        if (c == 'h')
            amil_usage(0);
        int i = c >= 256 ? c - 256 : -1;
        for (int k = 0; i < 0 && k < n; k++)
            if (table[k].letter == c)
                i = k;
        if (i < 0 && !(manner & AMIL_OPTS_SAY_UNKNOWN))
            amil_usage(2);
        if (i < 0) {   /* getopt's optopt: the option short of its value, 0 for a name unknown */
            int k = optopt - 256;
            if (k >= 0 && k < n)
                amil_misuse("unknown option or missing value: --%s", table[k].name);
            if (optopt)
                amil_misuse("unknown option or missing value: -%c", optopt);
            amil_misuse("unknown option %s", argv[optind - 1]);
        }
        struct amil_opt *o = &table[i];
        char option[64];
        if ((manner & AMIL_OPTS_BY_LETTER) && o->letter)
            snprintf(option, sizeof option, "-%c", o->letter);
        else
            snprintf(option, sizeof option, "--%s", o->name);
        o->given++;
        o->last = ++read;
        switch (o->kind) {
        case AMIL_OPT_FLAG: *(int *)o->to = 1; break;
        case AMIL_OPT_STRING: *(const char **)o->to = optarg; break;
        case AMIL_OPT_LONG:
            *(long *)o->to = amil_option_long(option, optarg, (long)o->min, (long)o->max);
            break;
        case AMIL_OPT_DOUBLE:
            *(double *)o->to = amil_option_double(option, optarg, o->min, o->max);
            break;
        case AMIL_OPT_CHOICE: *(int *)o->to = amil_option_choice(option, optarg, o->names); break;
        case AMIL_OPT_READ: o->read(o->to, option, optarg); break;
        }
    }
    free(shorts);
    free(longs);
    return optind;
}

int amil_options(int argc, char **argv, struct amil_opt *table)
{
    return amil_options_as(argc, argv, table, 0);
}

int amil_option_given(const struct amil_opt *table, const char *name)
{
    for (; table->name; table++)
        if (strcmp(table->name, name) == 0)
            return table->given;
    return 0;
}

const char *amil_option_last(const struct amil_opt *table, const char *const *names)
{
    const char *last = NULL;
    int place = 0;
    for (; table->name; table++)
        for (const char *const *name = names; *name; name++)
            if (strcmp(table->name, *name) == 0 && table->last > place)
                last = table->name, place = table->last;
    return last;
}
