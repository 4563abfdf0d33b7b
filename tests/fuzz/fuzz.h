/* fuzz.h: what the fuzz targets share.  Each target is one file defining
 * LLVMFuzzerTestOneInput; `make fuzz` links it with libFuzzer (clang), and
 * `make check` with replay.c, which runs the committed corpus through it
 * under AddressSanitizer and UBSan.
 *
 * Programs stop on bad input with amil_die(), which exits; a target that
 * runs a program's reader links with -Wl,--wrap=amil_die, so that the call
 * lands in __wrap_amil_die below and jumps back to the target instead (what
 * the reader allocated before dying is not freed, as the program would not
 * free it: these targets run with leak detection off, in rounds; the file
 * it opened is closed). */
#ifndef AMIL_FUZZ_H
#define AMIL_FUZZ_H

#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "record/stream.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The input as a file a program can open by name: a memfd, rewritten for
 * each input; returns its /proc path, or NULL. */
const char *fuzz_file(const uint8_t *data, size_t size);

/* The input as a record stream s, from memory: the FILE to fclose, or
 * NULL. */
struct amil_stream;
FILE *fuzz_stream(const uint8_t *data, size_t size, struct amil_stream *s);

/* Where amil_die() jumps to (set with setjmp before calling a reader). */
extern jmp_buf fuzz_died;
/* Closes the file the reader left open when it died (fopen is wrapped). */
void fuzz_close_files(void);

#endif
