/* output.h: files written whole or not at all, and never over an input. */
#ifndef AMIL_OUTPUT_H
#define AMIL_OUTPUT_H

#include <stdio.h>

/* An output file (output.c) that holds either its old bytes or all the new
 * ones, never a part: written to PATH.tmp.PID beside it, flushed to disk
 * and renamed over it by amil_output_commit; amil_output_abort (or a failed
 * commit) removes the temporary.  A path that is not a regular file (a
 * device, a FIFO) is written in place.  Failures say which path and why
 * (errno's words).  Return 0, or -1 with a message. */
struct amil_output {
    FILE *file;
    char *path, *temporary;
};
int amil_output_open(struct amil_output *o, const char *path);
int amil_output_commit(struct amil_output *o);
void amil_output_abort(struct amil_output *o);
/* An output opened at its first write: o's file on path, opened now if
 * it is not yet, or standard output when path is NULL; NULL with a
 * message when it cannot be opened.  amil_output_finish commits it if it
 * was opened (a run that wrote nothing leaves no file). */
FILE *amil_output_lazy(struct amil_output *o, const char *path);
int amil_output_finish(struct amil_output *o);
/* DIR/<source's base name, its extension replaced by ext> (the caller
 * frees it); a name already given in this run gets -index (and then -2,
 * -3, ...), so that no output of a run overwrites another. */
char *amil_output_name(const char *dir, const char *source, long index, const char *ext);
/* From amil_output_defer on, amil_output_commit writes an output whole but
 * leaves its rename to amil_output_commit_deferred, which checks each
 * against the inputs known by then and renames it: a program whose later
 * records may name an earlier output's file as their source (stitch -d)
 * replaces nothing until its input is read.  0, or -1 with the first
 * failure's message (the other outputs are still renamed). */
void amil_output_defer(void);
int amil_output_commit_deferred(void);
/* Removes the temporaries of outputs not yet committed; safe in a signal
 * handler (exit runs it by itself). */
void amil_output_cleanup(void);
/* Whether two paths name one file: its device and inode, or for files
 * not yet made, one folder and one name (two outputs of one run). */
int amil_same_file(const char *a, const char *b);
/* The inputs: no output replaces a file this process has read or said it
 * will read.  Every stream opened for reading (amil_stream_open, a model's
 * amil_record_load, a slide) notes its file by device and inode; a program
 * notes the files on its command line before any output is opened ("-" is
 * standard input), so that its outputs are checked before the work.
 * amil_output_open, amil_output_commit and amil_output_probe refuse an
 * input, naming it.  Only regular files are noted.  amil_input_forget is
 * for an input read whole that may be replaced (a resumed checkpoint). */
void amil_input_note(const char *path);
void amil_input_note_fd(int fd, const char *name);
void amil_input_forget(const char *path);
/* Whether path can be written and is not an input, by making and removing
 * a file beside it: so that a long run fails at its start, not at its
 * end.  0, or -1 with a message. */
int amil_output_probe(const char *path);
/* The same for a file made in folder dir. */
int amil_output_probe_dir(const char *dir);

#endif
