/* header.h: the record layer's own: a safetensors header parsed into a
 * record's tensors (their data still to be read), for stream.c. */
#ifndef AMIL_HEADER_H
#define AMIL_HEADER_H

#include <stddef.h>
#include <stdint.h>

#include "record/record.h"

/* A tensor as the header describes it, before its data are read. */
struct amil_entry {
    size_t tensor;          /* index in r->tensors */
    uint64_t begin, end;
};

/* Parses a header (len bytes of JSON at text) into r (tensors without
 * data) and *entries sorted by offset (the caller frees them); *data_len
 * is the length of the data buffer.  Every offset, shape and dtype is
 * checked against the others and the limits.  0, or -1 with a message. */
int amil_header_parse(const char *text, size_t len, struct amil_record *r,
                      struct amil_entry **entries, uint64_t *data_len);

#endif
