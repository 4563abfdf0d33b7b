/* output.c: files a program writes, whole or not at all. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "amil.h"

int amil_same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

int amil_same_as_stdin(const char *path)
{
    struct stat sp, si;
    return stat(path, &sp) == 0 && fstat(0, &si) == 0 && S_ISREG(si.st_mode) &&
           sp.st_dev == si.st_dev && sp.st_ino == si.st_ino;
}

/* The temporaries not yet renamed or removed: a program that dies
 * (amil_die) between open and commit leaves none behind. */
#define PENDING 16
static char *pending[PENDING];

void amil_output_cleanup(void)
{
    for (int i = 0; i < PENDING; i++)
        if (pending[i])
            unlink(pending[i]);
}


static void track(const char *temporary, int add)
{
    static int registered;
    if (!registered)
        registered = atexit(amil_output_cleanup) == 0;
    for (int i = 0; i < PENDING; i++)
        if (add ? !pending[i] : pending[i] == temporary) {
            pending[i] = add ? (char *)temporary : NULL;
            return;
        }
}

int amil_output_open(struct amil_output *o, const char *path)
{
    memset(o, 0, sizeof *o);
    o->path = amil_xstrdup(path);
    struct stat st;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
        /* a device, a FIFO, /dev/stdout: written in place, never replaced */
        o->file = fopen(path, "wb");
    } else {
        size_t size = strlen(path) + 32;
        o->temporary = amil_xmalloc(size);
        snprintf(o->temporary, size, "%s.tmp.%ld", path, (long)getpid());
        o->file = fopen(o->temporary, "wb");
        if (o->file)
            track(o->temporary, 1);
    }
    if (o->file)
        return 0;
    int saved = errno;
    amil_output_abort(o);
    return amil_fail("%s: %s", path, strerror(saved));
}

int amil_output_commit(struct amil_output *o)
{
    int failed = fflush(o->file) != 0 || ferror(o->file) ||
                 (o->temporary && fsync(fileno(o->file)) != 0);
    int saved = errno;
    if (fclose(o->file) != 0 && !failed)
        failed = 1, saved = errno;
    o->file = NULL;
    if (!failed && o->temporary && rename(o->temporary, o->path) != 0)
        failed = 1, saved = errno;
    if (failed) {
        char path[4096];
        snprintf(path, sizeof path, "%s", o->path);
        amil_output_abort(o);
        return amil_fail("%s: %s", path, saved ? strerror(saved) : "write error");
    }
    track(o->temporary, 0);
    free(o->temporary);
    free(o->path);
    memset(o, 0, sizeof *o);
    return 0;
}

void amil_output_abort(struct amil_output *o)
{
    if (o->file)
        fclose(o->file);
    if (o->temporary) {
        unlink(o->temporary);
        track(o->temporary, 0);
    }
    free(o->temporary);
    free(o->path);
    memset(o, 0, sizeof *o);
}

int amil_output_probe(const char *path)
{
    size_t size = strlen(path) + 32;
    char *probe = amil_xmalloc(size);
    snprintf(probe, size, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(probe, "wb");
    int saved = errno;
    if (f) {
        fclose(f);
        unlink(probe);
    }
    free(probe);
    return f ? 0 : amil_fail("cannot write %s: %s", path, strerror(saved));
}

int amil_record_save(const char *path, const struct amil_record *r)
{
    struct amil_output o;
    if (amil_output_open(&o, path) < 0)
        return -1;
    if (amil_record_write(o.file, r) < 0) {
        char why[512];
        snprintf(why, sizeof why, "%s", amil_error());
        amil_output_abort(&o);
        return amil_fail("writing %s: %s", path, why);
    }
    if (amil_output_commit(&o) < 0) {
        char why[4200];
        snprintf(why, sizeof why, "%s", amil_error());
        return amil_fail("writing %s", why);
    }
    return 0;
}

char *amil_output_name(const char *dir, const char *source, long index, const char *ext)
{
    static char **used;
    static size_t nused;
    const char *base = strrchr(source, '/');
    base = base ? base + 1 : source;
    const char *dot = strrchr(base, '.');
    int stem = dot && dot != base ? (int)(dot - base) : (int)strlen(base);
    size_t size = strlen(dir) + strlen(base) + strlen(ext) + 64;
    char *path = amil_xmalloc(size);
    snprintf(path, size, "%s/%.*s.%s", dir, stem, base, ext);
    for (long k = 1;; k++) {
        size_t i = 0;
        while (i < nused && strcmp(used[i], path) != 0)
            i++;
        if (i == nused)
            break;
        if (k == 1)
            snprintf(path, size, "%s/%.*s-%ld.%s", dir, stem, base, index, ext);
        else
            snprintf(path, size, "%s/%.*s-%ld-%ld.%s", dir, stem, base, index, k, ext);
    }
    used = amil_xrealloc(used, (nused + 1) * sizeof *used);
    used[nused++] = amil_xstrdup(path);
    return path;
}

FILE *amil_output_lazy(struct amil_output *o, const char *path)
{
    if (!path)
        return stdout;
    if (!o->file && amil_output_open(o, path) < 0)
        return NULL;
    return o->file;
}

int amil_output_finish(struct amil_output *o)
{
    return o->file ? amil_output_commit(o) : 0;
}
