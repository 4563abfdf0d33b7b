/* cli.h: the command line of a program.  Unlike the library, these
 * print and exit: usage and misuse are the program's to decide. */
#ifndef AMIL_CLI_H
#define AMIL_CLI_H

/* A program's command line, as sbase's EARGF reads it: amil_usage_is
 * gives the usage text once; amil_usage prints it (standard output for
 * status 0, else standard error) and exits with status; amil_misuse
 * prints "program: message" and the usage on standard error and exits 2.
 * The option readers return the value of option's argument arg, or are
 * misuse: a number in [min, max], or the index of one of names (NULL
 * ended). */
void amil_usage_is(const char *text);
/* getopt_long, that first refuses a long option given one dash ("-model"),
 * which getopt would read as short options with a value. */
struct option;
int amil_getopt(int argc, char **argv, const char *shorts, const struct option *longs);
_Noreturn void amil_usage(int status);
_Noreturn void amil_misuse(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
long amil_option_long(const char *option, const char *arg, long min, long max);
double amil_option_double(const char *option, const char *arg, double min, double max);
int amil_option_choice(const char *option, const char *arg, const char *const *names);

/* A program's options as a table, in the manner of netpbm's optEntry: each
 * entry says its names, what its value is and where it goes, and
 * amil_options reads the command line by it, with the readers above (so
 * a bad value is misuse naming --NAME), -h and --help printing the usage,
 * an unknown option the synopsis.  The program keeps its defaults (in
 * the variables before the call) and its checks across options (after). */
enum amil_opt_kind {
    AMIL_OPT_FLAG,          /* int *: set to 1 */
    AMIL_OPT_STRING,        /* const char **: the argument itself */
    AMIL_OPT_LONG,          /* long *: an integer in [min, max] */
    AMIL_OPT_DOUBLE,        /* double *: a number in [min, max] */
    AMIL_OPT_CHOICE,        /* int * (or an enum in names' order): the index in names */
    AMIL_OPT_READ           /* read(to, "--NAME", argument), which is misuse when wrong */
};
struct amil_opt {
    const char *name;       /* the long name, without its dashes */
    int letter;             /* the short one, or 0 */
    enum amil_opt_kind kind;
    void *to;
    double min, max;
    const char *const *names;   /* a choice's words, NULL ended */
    void (*read)(void *to, const char *option, const char *arg);
    int given;              /* set by amil_options: times given */
    int last;               /* and its place among the options read, the last time */
};
/* Table entries, one line each. */
#define AMIL_FLAG(n, l, p) {.name = (n), .letter = (l), .kind = AMIL_OPT_FLAG, .to = (p)}
#define AMIL_STRING(n, l, p) {.name = (n), .letter = (l), .kind = AMIL_OPT_STRING, .to = (p)}
#define AMIL_LONG(n, l, p, lo, hi) \
    {.name = (n), .letter = (l), .kind = AMIL_OPT_LONG, .to = (p), .min = (lo), .max = (hi)}
#define AMIL_DOUBLE(n, l, p, lo, hi) \
    {.name = (n), .letter = (l), .kind = AMIL_OPT_DOUBLE, .to = (p), .min = (lo), .max = (hi)}
#define AMIL_CHOICE(n, l, p, words) \
    {.name = (n), .letter = (l), .kind = AMIL_OPT_CHOICE, .to = (p), .names = (words)}
#define AMIL_READ(n, l, p, f) \
    {.name = (n), .letter = (l), .kind = AMIL_OPT_READ, .to = (p), .read = (f)}
#define AMIL_OPTIONS_END {.name = NULL}
/* Reads argv's options by table (ended by an entry without a name);
 * returns the index of the first operand. */
int amil_options(int argc, char **argv, struct amil_opt *table);
/* How many times the option called name was given (0 for a name not in
 * the table). */
int amil_option_given(const struct amil_opt *table, const char *name);
/* Of the options called names (NULL ended), the name of the one given
 * last, or NULL when none was: for a message about a conflict that names
 * the option the user typed last, or to ask whether any was given. */
const char *amil_option_last(const struct amil_opt *table, const char *const *names);

/* amil_options, keeping the messages of a program whose tests say them:
 * AMIL_OPTS_BY_LETTER names an option by its letter ("-t: ..."), where
 * it has one, not --NAME; AMIL_OPTS_SAY_UNKNOWN makes an unknown option
 * or a missing value misuse that says which ("unknown option --bogus"),
 * not getopt's message. */
enum { AMIL_OPTS_BY_LETTER = 1, AMIL_OPTS_SAY_UNKNOWN = 2 };
int amil_options_as(int argc, char **argv, struct amil_opt *table, int manner);

#endif
