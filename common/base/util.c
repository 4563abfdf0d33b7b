/* util.c: error messages, the program's name, allocation that cannot fail
 * silently, and strict number parsing. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <gsl/gsl_errno.h>

#include "base/base.h"

const char *amil_progname = "amil";
static char error_message[1024];

const char *amil_error(void) { return error_message; }

int amil_fail(const char *fmt, ...)
{
    /* formatted apart first: an argument may be the message itself */
    char message[sizeof error_message];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    memcpy(error_message, message, sizeof message);
    return -1;
}

int amil_fail_in(const char *where)
{
    char why[sizeof error_message];
    snprintf(why, sizeof why, "%s", error_message);   /* not into itself */
    return amil_fail("%s: %s", where, why);
}

void amil_init(int argc, char **argv)
{
    gsl_set_error_handler_off();   /* its default aborts; we check statuses */
    if (argc > 0 && argv[0]) {
        const char *slash = strrchr(argv[0], '/');
        amil_progname = slash ? slash + 1 : argv[0];
    }
}

/* Whether a progress line is on the terminal now: a message erases it
 * first, and the next update draws it again below. */
static int progress_drawn;

static void erase_progress(void)
{
    if (progress_drawn)
        fputs("\r\033[K", stderr);
    progress_drawn = 0;
}

void amil_vwarn(const char *fmt, va_list ap)
{
    int saved = errno;
    erase_progress();
    fprintf(stderr, "%s: ", amil_progname);
    vfprintf(stderr, fmt, ap);
    size_t n = strlen(fmt);
    if (n > 0 && fmt[n - 1] == ':')
        fprintf(stderr, " %s", strerror(saved));
    fputc('\n', stderr);
}

void amil_warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    amil_vwarn(fmt, ap);
    va_end(ap);
}

void amil_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    amil_vwarn(fmt, ap);
    va_end(ap);
    exit(1);
}

int amil_close_stdout(void)
{
    if (fflush(stdout) != 0 || ferror(stdout)) {
        amil_warn("write error on standard output:");
        return 1;
    }
    if (fclose(stdout) != 0) {
        amil_warn("closing standard output:");
        return 1;
    }
    return 0;
}

double amil_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

void amil_progress_start(struct amil_progress *p)
{
    *p = (struct amil_progress){.on = isatty(STDERR_FILENO)};
    p->start = p->last = amil_seconds();
}

void amil_progress_add(struct amil_progress *p, long units, const char *unit)
{
    p->records++;
    amil_progress_within(p, units, unit);
}

void amil_progress_within(struct amil_progress *p, long units, const char *unit)
{
    p->units += units;
    double t = amil_seconds();
    if (!p->on || t - p->last < 0.5)
        return;
    p->last = t;
    progress_drawn = 1;
    fprintf(stderr, "\r%s: %ld records, %.0f %s/s ", amil_progname, p->records,
            p->units / (t - p->start), unit);
}

void amil_progress_end(struct amil_progress *p)
{
    (void)p;
    erase_progress();
}

void amil_refuse_terminal(int force, const char *hint)
{
    if (!force && isatty(STDOUT_FILENO))
        amil_die("will not write binary to a terminal: %s (or give --force)", hint);
}

void *amil_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        amil_die("out of memory (%zu bytes)", n);
    return p;
}

void *amil_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        amil_die("out of memory (%zu × %zu bytes)", n, size);
    return p;
}

void *amil_xaligned(size_t n)
{
    /* a large buffer on 2 MiB pages where the kernel has them: its first
     * touch then faults every 2 MiB, not every 4 KiB (a slide's patches in
     * bagify, a backbone's buffers and transformed weights: a first ResNet18
     * tile took 430 ms, the next ones 21) */
    size_t align = n >= AMIL_HUGE_PAGE ? AMIL_HUGE_PAGE : 64;
    size_t rounded = (n + align - 1) / align * align;   /* aligned_alloc wants a multiple */
    void *p = rounded >= n ? aligned_alloc(align, rounded ? rounded : 64) : NULL;
    if (!p)
        amil_die("out of memory (%zu bytes)", n);
#ifdef MADV_HUGEPAGE
    if (align == AMIL_HUGE_PAGE)
        madvise(p, rounded, MADV_HUGEPAGE);   /* advice: failing it changes nothing */
#endif
    return p;
}

void *amil_xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p)
        amil_die("out of memory (%zu bytes)", n);
    return p;
}

char *amil_xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    return memcpy(amil_xmalloc(n), s, n);
}

int amil_name_index(const char *const *names, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (strcmp(name, names[i]) == 0)
            return i;
    return -1;
}

int amil_parse_long(const char *s, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end != '\0' || errno == ERANGE)
        return amil_fail("'%s' is not an integer", s);
    if (v < min || v > max)
        return amil_fail("%ld is out of range [%ld, %ld]", v, min, max);
    *out = v;
    return 0;
}

int amil_parse_double(const char *s, double min, double max, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || errno == ERANGE || !isfinite(v))
        return amil_fail("'%s' is not a number", s);
    if (v < min || v > max)
        return amil_fail("%g is out of range [%g, %g]", v, min, max);
    *out = v;
    return 0;
}

int amil_folder_label(const char *path, long *label)
{
    /* The folder holding the file: a/b/1/x.png -> "1". */
    const char *end = strrchr(path, '/'), *start = end;
    while (start && start > path && start[-1] != '/')
        start--;
    char dir[32];
    if (!end || end == start || (size_t)(end - start) >= sizeof dir)
        return amil_fail("no folder name to take a label from");
    snprintf(dir, sizeof dir, "%.*s", (int)(end - start), start);
    if (amil_parse_long(dir, 0, 1000000, label) < 0)
        return amil_fail("folder '%s' is not a class number", dir);
    return 0;
}
