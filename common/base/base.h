/* base.h: what every part of amil stands on: errors that a call leaves for
 * its caller (amil_error), the helpers a program runs with (its name,
 * dying with a message, progress on a terminal), allocation that cannot
 * fail, and strict number parsing.  Library functions return a status and
 * leave a message; they never print or exit.  Programs decide (amil_die). */
#ifndef AMIL_BASE_H
#define AMIL_BASE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* The message of the last failed call, e.g. "record 3: truncated data". */
const char *amil_error(void);
/* Sets that message, printf-style; returns -1 so callers can
 * `return amil_fail("...")`. */
int amil_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Puts "where: " in front of that message (a path, an option, a key);
 * returns -1. */
int amil_fail_in(const char *where);

/* The program's name for messages; set once from argv[0] by amil_init(). */
extern const char *amil_progname;
void amil_init(int argc, char **argv);
/* Prints "prog: message" to stderr and exits 1.  A message ending in ':'
 * gets ": strerror(errno)" appended, as sbase's eprintf does. */
_Noreturn void amil_die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Same as amil_die() but returns, for keep-going loops. */
void amil_vwarn(const char *fmt, va_list ap);
void amil_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Flushes and closes stdout; returns the exit status (1 if it failed). */
int amil_close_stdout(void);
/* A progress line on standard error when it is a terminal (never on a pipe
 * or a file): records done and units (patches, images) per second,
 * redrawn at most twice a second, erased by amil_progress_end. */
struct amil_progress {
    int on;
    double start, last;
    long records, units;
};
/* Seconds on a monotonic clock: for durations. */
double amil_seconds(void);
void amil_progress_start(struct amil_progress *p);
void amil_progress_add(struct amil_progress *p, long units, const char *unit);
/* Units done within a record not yet finished (a big image's patches). */
void amil_progress_within(struct amil_progress *p, long units, const char *unit);
void amil_progress_end(struct amil_progress *p);

/* Dies, as gzip does, when standard output is a terminal and not forced:
 * records and pictures are binary.  hint says where to send them. */
void amil_refuse_terminal(int force, const char *hint);

void *amil_xmalloc(size_t n);   /* dies on failure, never returns NULL */
void *amil_xcalloc(size_t n, size_t size);
/* 64-byte aligned, for vectors (from 4 MiB up, on 2 MiB pages where the
 * kernel has them); free() frees it */
void *amil_xaligned(size_t n);
#define AMIL_HUGE_PAGE ((size_t)2 << 20)
void *amil_xrealloc(void *p, size_t n);
char *amil_xstrdup(const char *s);

/* The index of name among n names, or -1: how option values and metadata
 * words (amil, adam, x/255, ...) become enums. */
int amil_name_index(const char *const *names, int n, const char *name);

/* Strict number parsing for options: the whole string must be a number in
 * [min, max].  Return 0 and store it, or -1 with a message. */
int amil_parse_long(const char *s, long min, long max, long *out);
/* The class named by the folder that holds path (a/b/1/x.png: 1, 0 to
 * 1000000), as bagify -L dir takes it: 0, or -1 with a message. */
int amil_folder_label(const char *path, long *label);
int amil_parse_double(const char *s, double min, double max, double *out);

#endif
