/* amil.h: the shared library of the amil programs.
 *
 * The record stream (amil-stream(5)): a concatenation of safetensors
 * documents, each an 8-byte little-endian header length, a JSON header and a
 * data buffer.  Functions here return a status and leave a message for
 * amil_error(); they never print or exit.  Programs decide (amil_die()).
 */
#ifndef AMIL_H
#define AMIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- errors and program helpers ---------------------------------------- */

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

void *amil_xmalloc(size_t n);   /* dies on failure, never returns NULL */
void *amil_xcalloc(size_t n, size_t size);
void *amil_xaligned(size_t n);  /* 64-byte aligned, for vectors; free() frees it */
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

/* ---- tensors and records ------------------------------------------------ */

/* Every safetensors dtype, so that tensors a program does not use pass
 * through it unchanged; the programs themselves use U8, I32, I64 and F32. */
enum amil_dtype {
    AMIL_BOOL, AMIL_U8, AMIL_I8, AMIL_U16, AMIL_I16, AMIL_F16, AMIL_BF16,
    AMIL_U32, AMIL_I32, AMIL_F32, AMIL_U64, AMIL_I64, AMIL_F64, AMIL_NDTYPES
};

#define AMIL_MAX_DIMS 8
/* The largest dimension a header can state exactly (JSON numbers are
 * doubles): 2^53.  A sum of dimensions (a slide's parts joined) is held to
 * it too. */
#define AMIL_MAX_DIM ((int64_t)1 << 53)
/* The safetensors reference refuses headers over 100 MB; so do we. */
#define AMIL_MAX_HEADER 100000000ULL
/* No record's data buffer may claim more than this (16 GiB); a claim within
 * it is still read in bounded steps, so a truncated stream that claims much
 * does not make us allocate much. */
#define AMIL_MAX_DATA (1ULL << 34)

struct amil_tensor {
    char *name;
    enum amil_dtype dtype;
    int ndim;
    int64_t shape[AMIL_MAX_DIMS];
    size_t nbytes;          /* elements × dtype size */
    void *data;             /* malloc'ed and owned by the tensor, or, when
                               borrowed, inside the record's mapping */
    int borrowed;
};

/* A model file mapped into memory (amil_record_load): its tensors are used
 * where they lie, and whatever is made from them (a CNN's frozen weights)
 * holds a reference, so the record can be freed first. */
struct amil_mapping {
    void *base;
    size_t length;
    int refs;
};
struct amil_mapping *amil_mapping_ref(struct amil_mapping *m);   /* returns m */
void amil_mapping_unref(struct amil_mapping *m);                 /* NULL is fine */

struct amil_meta {
    char *key, *value;      /* both owned */
};

/* One record: its tensors and metadata in the order of the header. */
struct amil_record {
    struct amil_tensor *tensors;
    size_t ntensors, tensors_cap;
    struct amil_meta *meta;
    size_t nmeta, meta_cap;
    struct amil_mapping *mapping;   /* what borrowed tensors point into */
};

/* A stream being read: counts records so messages can name them. */
struct amil_stream {
    FILE *file;
    const char *name;       /* for messages: a path or "<stdin>" */
    long index;             /* index of the next record, from 0 */
    unsigned char peeked[9];   /* bytes amil_stream_is_image read ahead */
    size_t npeeked;
    int is_stdout;          /* the file standard output writes: never read
                               (`cmd < f >> f` would read its own output) */
};

size_t amil_dtype_size(enum amil_dtype t);
const char *amil_dtype_name(enum amil_dtype t);
/* Returns the dtype for a safetensors name ("F32"), or -1. */
int amil_dtype_parse(const char *name);

void amil_stream_open(struct amil_stream *s, FILE *f, const char *name);
/* Opens path for reading ("-" or NULL is stdin, named "<stdin>").  Returns
 * 0, or -1 with a message; amil_stream_close() closes what it opened. */
int amil_stream_open_path(struct amil_stream *s, const char *path);
void amil_stream_close(struct amil_stream *s);
/* Opens s on standard input and reads its first record into r: 0, or -1
 * with a message (a bad record; none at all: "no records on standard
 * input").  For the programs that need at least one. */
int amil_stream_first(struct amil_stream *s, struct amil_record *r);
/* Whether the stream, not yet read, holds an image rather than records: 0
 * when it begins as a record does (a header length within the limit, then
 * '{') or is shorter than that (nothing, or a record cut short), else 1
 * (an image, whose decoder says if it is none: TGA has no signature to
 * know it by); -1 with a message on a read error.  The bytes it looks at
 * are still read by what follows (amil_record_read, amil_stream_slurp). */
int amil_stream_is_image(struct amil_stream *s);
/* The rest of the stream in memory (its length in *len), or NULL with a
 * message (which does not name the stream).  At most AMIL_MAX_SLURP bytes:
 * a PAM of 2^28 pixels of four 16-bit samples is 2 GiB, and a device
 * such as /dev/zero never ends. */
#define AMIL_MAX_SLURP ((size_t)2 << 30 | (size_t)1 << 20)
unsigned char *amil_stream_slurp(struct amil_stream *s, size_t *len);
/* Reads the next record into r (which it initializes).  Returns 1 for a
 * record, 0 at a clean end of stream, -1 on bad input with the message
 * "NAME: record I: what" (r is then empty). */
int amil_record_read(struct amil_stream *s, struct amil_record *r);
/* The next bag: a record, or when the record is part 0 of `parts` (bagify
 * cuts a slide into parts), it and the parts after it, each of the same
 * source and the next part, joined into one record (amil_record_append)
 * with part 0's metadata less part and parts.  1, 0 at the end, -1 with a
 * message naming the record (a part missing, out of order, of another
 * source or of other tensors). */
int amil_bag_read(struct amil_stream *s, struct amil_record *r);
/* Parses one record from memory (a whole safetensors document); used by
 * amil_record_read() and by model loading.  Returns 0 or -1. */
int amil_record_parse(const unsigned char *doc, size_t len, struct amil_record *r);
/* Writes r as one safetensors document.  Data are laid out by decreasing
 * dtype size, so every tensor starts aligned to its element size. Returns 0,
 * or -1 if the write failed. */
int amil_record_write(FILE *f, const struct amil_record *r);
/* The first record of a file (a model): 0, or -1 with a message naming
 * the file.  A regular file is mapped, not read: its tensors aligned to
 * their element size are borrowed from the mapping (copy on write), so
 * that a 550 MB model is ready without copying it; a pipe is read. */
int amil_record_load(const char *path, struct amil_record *r);
/* Writes one record to path as an amil_output (whole or not at all), the
 * counterpart of amil_record_load.  0, or -1 with a message. */
int amil_record_save(const char *path, const struct amil_record *r);

void amil_record_init(struct amil_record *r);
void amil_record_free(struct amil_record *r);

struct amil_tensor *amil_record_find(const struct amil_record *r, const char *name);
/* The helpers below that build records die if memory runs out (as llm.c's
 * mallocCheck does); reading and writing report every other failure. */

/* Adds (or replaces) a tensor with a zeroed buffer of the right size and
 * returns it; shape has ndim entries. */
struct amil_tensor *amil_record_put(struct amil_record *r, const char *name,
                                    enum amil_dtype dtype, int ndim, const int64_t *shape);
/* Removes the named tensor, if any; returns whether it was there. */
int amil_record_remove(struct amil_record *r, const char *name);
/* Appends part's tensors to r's of the same names along the first
 * dimension (a slide's parts into one bag): 0, or -1 with a message, r
 * unchanged, when part has other tensors, dtypes or trailing dimensions,
 * or the sum would pass AMIL_MAX_DATA bytes or AMIL_MAX_DIM rows. */
int amil_record_append(struct amil_record *r, const struct amil_record *part);
/* Checks that the named tensor exists with this dtype and rank; returns it,
 * or NULL with a message. */
struct amil_tensor *amil_record_expect(const struct amil_record *r, const char *name,
                                       enum amil_dtype dtype, int ndim);
/* Whether every value of F32 tensor t is finite: 0, or -1 with a message
 * naming the first that is not by its indices ("features[17, 3] is nan"),
 * and the patch when axis (of the patches: 0 for features, 1 for
 * attention) is not -1.  A value that is not finite is an error, never a
 * class or a weight. */
int amil_tensor_finite(const char *name, const float *v, int ndim, const int64_t *shape,
                       int axis);

/* Which weights made a stage of a record (amil-stream(5)): features_by
 * (featurize) and embedding_by (attend) hold a fingerprint of them
 * (amil_params_fingerprint) as 16 hex digits.  amil_record_fingerprint:
 * 1 found (into *fingerprint), 0 absent, -1 malformed (with a message).
 * amil_check_stage: 1 when key says want, 0 when the record does not say
 * (features from elsewhere), -1 with a message naming both weights (and
 * the model files, where the record names one) when they differ. */
void amil_record_set_fingerprint(struct amil_record *r, const char *key, uint64_t fingerprint);
int amil_record_fingerprint(const struct amil_record *r, const char *key, uint64_t *fingerprint);
int amil_check_stage(const struct amil_record *r, const char *key, uint64_t want,
                     const char *model);

const char *amil_record_meta(const struct amil_record *r, const char *key);
/* Sets key to value, or with value NULL removes it. */
void amil_record_set_meta(struct amil_record *r, const char *key, const char *value);
void amil_record_set_metaf(struct amil_record *r, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Reads an integer metadata value in [min, max]: 1 found, 0 absent,
 * -1 present but not such an integer (with a message). */
int amil_record_meta_long(const struct amil_record *r, const char *key, long min,
                          long max, long *out);
/* Which image of its source file a record was cut from: image_index (set
 * by bagify from the second image of a stream on), 0 when absent; -1 with a
 * message when malformed. */
long amil_record_image_index(const struct amil_record *r);
/* Where a record's image is: its source as given to bagify if that names a
 * file from here (or is absolute, or "-"); else the source under the
 * folder bagify ran in (source_dir), if a file is there; else the source
 * (so that a message names what was given).  NULL if it has no source.
 * buf holds a path that is built. */
const char *amil_record_source_path(const struct amil_record *r, char *buf, size_t size);
/* Whether image is the record's source: the same file, or, when the
 * source is not found here, the same base name; 1 also when the record
 * has no source (or standard input's). */
int amil_record_is_source(const struct amil_record *r, const char *image);

#endif
