/* cli.c: a program's command line: its usage, misuse, long options and
 * the readers of option values that are misuse when wrong. */
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
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
