/* stream.h: the record stream (amil-stream(5)): a concatenation of
 * safetensors documents, each an 8-byte little-endian header length, a
 * JSON header and a data buffer; reading one record at a time, writing,
 * and a model's file loaded whole. */
#ifndef AMIL_STREAM_H
#define AMIL_STREAM_H

#include <stdio.h>

#include "record/record.h"

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

#endif
