/* common.c: fuzz.h's stream and file, and amil_die()'s replacement. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/base.h"
#include "fuzz.h"
#include "record/stream.h"

jmp_buf fuzz_died;

/* fopen and fclose are wrapped too: the file a reader opened before
 * amil_die() is closed by fuzz_close_files(), or every input would keep a
 * descriptor */
static FILE *open_file;
FILE *__real_fopen(const char *path, const char *mode);
int __real_fclose(FILE *f);
FILE *__wrap_fopen(const char *path, const char *mode);
int __wrap_fclose(FILE *f);

FILE *__wrap_fopen(const char *path, const char *mode)
{
    FILE *f = __real_fopen(path, mode);
    if (f)
        open_file = f;
    return f;
}

int __wrap_fclose(FILE *f)
{
    if (f == open_file)
        open_file = NULL;
    return __real_fclose(f);
}

void fuzz_close_files(void)
{
    if (open_file)
        __wrap_fclose(open_file);
}

_Noreturn void __wrap_amil_die(const char *fmt, ...);
_Noreturn void __wrap_amil_die(const char *fmt, ...)
{
    (void)fmt;
    longjmp(fuzz_died, 1);
}

FILE *fuzz_stream(const uint8_t *data, size_t size, struct amil_stream *s)
{
    FILE *f = fmemopen((void *)data, size, "rb");
    if (f)
        amil_stream_open(s, f, "fuzz");
    return f;
}

const char *fuzz_file(const uint8_t *data, size_t size)
{
    static int fd = -1;
    static char path[64];
    if (fd < 0) {
        fd = memfd_create("fuzz-input", 0);
        if (fd < 0)
            return NULL;
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    }
    if (ftruncate(fd, 0) < 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
        return NULL;
    return path;
}
