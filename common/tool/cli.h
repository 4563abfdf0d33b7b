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

#endif
