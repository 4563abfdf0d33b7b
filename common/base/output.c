/* output.c: files a program writes, whole or not at all. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/base.h"
#include "base/output.h"

/* The folder of path, resolved, and its last name: a file that does not
 * exist yet, named two ways ("c.st", "./d/../c.st"). */
static char *resolved(const char *path)
{
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    char *dir = slash ? amil_xstrdup(path) : NULL;
    if (dir)
        dir[slash == path ? 1 : slash - path] = '\0';
    char *real = realpath(dir ? dir : ".", NULL);
    free(dir);
    if (!real)
        return NULL;
    size_t size = strlen(real) + strlen(base) + 2;
    char *full = amil_xmalloc(size);
    snprintf(full, size, "%s/%s", real, base);
    free(real);
    return full;
}

int amil_same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    int ea = stat(a, &sa) == 0, eb = stat(b, &sb) == 0;
    if (ea || eb)
        return ea && eb && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
    char *ra = resolved(a), *rb = resolved(b);
    int same = ra && rb && strcmp(ra, rb) == 0;
    free(ra), free(rb);
    return same;
}

/* ---- inputs: every regular file this process reads or will read -------- */

/* A set by device and inode, open addressing: a stream of a million
 * records, each naming its source, is a million lookups. */
struct input {
    dev_t dev;
    ino_t ino;
    char *name;    /* as the program named it, for messages; NULL: free */
    int forgotten;
};
static struct input *inputs;
static size_t ninputs, capacity;   /* capacity a power of two, or 0 */

static struct input *slot(dev_t dev, ino_t ino)
{
    size_t h = ((size_t)ino * 0x9E3779B97F4A7C15u) ^ (size_t)dev;
    for (size_t i = h & (capacity - 1);; i = (i + 1) & (capacity - 1))
        if (!inputs[i].name || (inputs[i].dev == dev && inputs[i].ino == ino))
            return &inputs[i];
}

static struct input *find(const struct stat *st)
{
    struct input *in = capacity ? slot(st->st_dev, st->st_ino) : NULL;
    return in && in->name && !in->forgotten ? in : NULL;
}

static void note(const struct stat *st, const char *name)
{
    if (!S_ISREG(st->st_mode))
        return;   /* a pipe, a terminal, a device: nothing to destroy */
    if (2 * (ninputs + 1) > capacity) {
        struct input *old = inputs;
        size_t n = capacity;
        capacity = capacity ? 2 * capacity : 64;
        inputs = amil_xcalloc(capacity, sizeof *inputs);
        for (size_t i = 0; i < n; i++)
            if (old[i].name)
                *slot(old[i].dev, old[i].ino) = old[i];
        free(old);
    }
    struct input *in = slot(st->st_dev, st->st_ino);
    if (in->name) {
        in->forgotten = 0;
        return;
    }
    *in = (struct input){st->st_dev, st->st_ino, amil_xstrdup(name), 0};
    ninputs++;
}

void amil_input_note_fd(int fd, const char *name)
{
    struct stat st;
    if (fd >= 0 && fstat(fd, &st) == 0)
        note(&st, fd == 0 ? "standard input" : name);
}

void amil_input_note(const char *path)
{
    struct stat st;
    if (!path)
        return;
    if (strcmp(path, "-") == 0)
        amil_input_note_fd(0, "standard input");
    else if (stat(path, &st) == 0)
        note(&st, path);
}

void amil_input_forget(const char *path)
{
    struct stat st;
    struct input *in = path && stat(path, &st) == 0 ? find(&st) : NULL;
    if (in)
        in->forgotten = 1;
}

/* -1 with a message when path is one of the inputs, else 0. */
static int not_an_input(const char *path)
{
    struct stat st;
    const struct input *in = stat(path, &st) == 0 ? find(&st) : NULL;
    if (!in)
        return 0;
    if (strcmp(in->name, path) == 0)
        return amil_fail("%s is also an input: it would be overwritten", path);
    return amil_fail("%s is also an input (%s): it would be overwritten", path, in->name);
}

/* The temporaries not yet renamed or removed: a program that dies
 * (amil_die) between open and commit leaves none behind.  Grown, never
 * shrunk: a deferred run (stitch -d) holds one a record. */
static char **pending;
static size_t npending;

void amil_output_cleanup(void)
{
    for (size_t i = 0; i < npending; i++)
        if (pending[i])
            unlink(pending[i]);
}

static void track(const char *temporary, int add)
{
    static int registered;
    if (!registered)
        registered = atexit(amil_output_cleanup) == 0;
    for (size_t i = 0; i < npending; i++)
        if (add ? !pending[i] : pending[i] == temporary) {
            pending[i] = add ? (char *)temporary : NULL;
            return;
        }
    if (add) {
        pending = amil_xrealloc(pending, (npending + 1) * sizeof *pending);
        pending[npending++] = (char *)temporary;
    }
}

/* Outputs written whole whose rename waits for amil_output_commit_deferred. */
static int deferring;
static struct amil_output *deferred;
static size_t ndeferred;

void amil_output_defer(void) { deferring = 1; }

int amil_output_commit_deferred(void)
{
    int status = 0;
    char why[4200] = "";
    deferring = 0;
    for (size_t i = 0; i < ndeferred; i++) {
        struct amil_output *o = &deferred[i];
        int ok = not_an_input(o->path) == 0;
        if (ok && rename(o->temporary, o->path) != 0)
            ok = 0, amil_fail("%s: %s", o->path, strerror(errno));
        if (!ok) {
            if (status == 0)
                snprintf(why, sizeof why, "%s", amil_error());
            status = -1;
            unlink(o->temporary);
        }
        track(o->temporary, 0);
        free(o->temporary);
        free(o->path);
    }
    free(deferred);
    deferred = NULL, ndeferred = 0;
    return status < 0 ? amil_fail("%s", why) : 0;
}

int amil_output_open(struct amil_output *o, const char *path)
{
    memset(o, 0, sizeof *o);
    if (not_an_input(path) < 0)
        return -1;
    /* a link's file is replaced, not the link: the rename would put a
     * file where "-o /dev/stdout" (to /proc/self/fd/1) or a user's link was */
    struct stat st;
    char *real = lstat(path, &st) == 0 && S_ISLNK(st.st_mode) ? realpath(path, NULL) : NULL;
    o->path = real ? real : amil_xstrdup(path);
    path = o->path;
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
    /* an input read since the output was opened (a record's source) */
    if (!failed && not_an_input(o->path) < 0) {
        char why[4200];
        snprintf(why, sizeof why, "%s", amil_error());
        amil_output_abort(o);
        return amil_fail("%s", why);
    }
    if (!failed && o->temporary && deferring) {   /* renamed when the input is read */
        deferred = amil_xrealloc(deferred, (ndeferred + 1) * sizeof *deferred);
        deferred[ndeferred++] = *o;
        memset(o, 0, sizeof *o);
        return 0;
    }
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

/* Makes and removes a file named by at_format (of name and the pid)
 * beside or in name; fails with message (of name and errno's words). */
static int probe(const char *name, const char *at_format, const char *message)
{
    size_t size = strlen(name) + 32;
    char *at = amil_xmalloc(size);
    snprintf(at, size, at_format, name, (long)getpid());
    FILE *f = fopen(at, "wb");
    int saved = errno;
    if (f) {
        fclose(f);
        unlink(at);
    }
    free(at);
    return f ? 0 : amil_fail(message, name, strerror(saved));
}

int amil_output_probe(const char *path)
{
    if (not_an_input(path) < 0)
        return -1;
    /* a device or a FIFO is written in place: nothing is made beside it
     * (in /dev, where a user may not, and where root should not) */
    struct stat st;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode))
        return access(path, W_OK) == 0 ? 0 : amil_fail("cannot write %s: %s", path,
                                                        strerror(errno));
    char *real = realpath(path, NULL);   /* a link's file, beside which the temporary goes */
    int status = probe(real ? real : path, "%s.tmp.%ld", "cannot write %s: %s");
    free(real);
    return status;
}

int amil_output_probe_dir(const char *dir)
{
    return probe(dir, "%s/.amil.tmp.%ld", "cannot write in %s: %s");
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
