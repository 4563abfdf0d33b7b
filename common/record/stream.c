/* stream.c: reading records, each one safetensors document (record.c
 * builds them in memory, header.c parses and writes their headers):
 *
 *   u64 little-endian N | N bytes of JSON, space-padded | data buffer
 *
 * Everything is checked before anything large is allocated, and data are
 * read in bounded steps; a model's file is mapped and its tensors used
 * where they lie. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/base.h"
#include "base/output.h"
#include "record/record.h"
#include "record/header.h"
#include "record/stream.h"

/* Tensor data are little-endian in the format and are read and written as
 * they lie in memory. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "amil's record stream assumes a little-endian machine"
#endif

/* A read of a header or a tensor starts with a buffer of this much and
 * doubles it as the bytes arrive, so that a record claiming gigabytes on a
 * stream that ends early costs about what it holds (an 8-byte stream
 * claiming a 100 MB header had reserved 64 MiB). */
#define READ_FIRST (64u << 10)

void amil_stream_open(struct amil_stream *s, FILE *f, const char *name)
{
    if (f)
        amil_input_note_fd(fileno(f), name);   /* -1 for a stream in memory */
    struct stat in, out;
    s->is_stdout = f && fileno(f) >= 0 && fstat(fileno(f), &in) == 0 && S_ISREG(in.st_mode) &&
                   fstat(1, &out) == 0 && in.st_dev == out.st_dev && in.st_ino == out.st_ino;
    s->file = f;
    s->name = name;
    s->index = 0;
    s->npeeked = 0;
}

int amil_stream_open_path(struct amil_stream *s, const char *path)
{
    if (!path || strcmp(path, "-") == 0) {
        amil_stream_open(s, stdin, "<stdin>");
        return 0;
    }
    FILE *f = fopen(path, "rb");
    if (!f)
        return amil_fail("%s: %s", path, strerror(errno));
    amil_stream_open(s, f, path);
    return 0;
}

int amil_stream_first(struct amil_stream *s, struct amil_record *r)
{
    amil_stream_open(s, stdin, "<stdin>");
    int got = amil_record_read(s, r);
    return got == 1 ? 0 : got == 0 ? amil_fail("<stdin>: no records") : -1;
}

void amil_stream_close(struct amil_stream *s)
{
    if (s->file && s->file != stdin)
        fclose(s->file);
    s->file = NULL;
}

static uint64_t le64(const unsigned char *b)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | b[i];
    return v;
}

/* Reads n bytes into a buffer that grows as the bytes arrive.  Returns the
 * buffer (NULL if memory ran out) and the count read in *got. */
static unsigned char *read_growing(FILE *f, size_t n, size_t *got)
{
    size_t cap = n < READ_FIRST ? n : READ_FIRST, have = 0;
    unsigned char *buf = malloc(cap ? cap : 1);
    while (buf && have < n) {
        if (have == cap) {
            cap = n - cap < cap ? n : 2 * cap;
            unsigned char *bigger = realloc(buf, cap);
            if (!bigger) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = bigger;
        }
        size_t k = fread(buf + have, 1, cap - have, f);
        have += k;
        if (k == 0)
            break;
    }
    *got = have;
    return buf;
}

/* Reads the tensors' data in offset order from f, or takes them from mem:
 * borrowed where they lie if borrow says so and they are aligned to their
 * element size, else copied. */
static int fill_data(struct amil_record *r, const struct amil_entry *entries,
                     FILE *f, const unsigned char *mem, int borrow, uint64_t data_len)
{
    uint64_t done = 0;
    for (size_t i = 0; i < r->ntensors; i++) {
        struct amil_tensor *t = &r->tensors[entries[i].tensor];
        size_t got = 0;
        const unsigned char *at = mem ? mem + entries[i].begin : NULL;
        t->borrowed = 0;
        if (borrow && (uintptr_t)at % amil_dtype_size(t->dtype) == 0) {
            t->data = (void *)at;
            t->borrowed = 1;
            got = t->nbytes;
        } else if (mem) {
            t->data = malloc(t->nbytes ? t->nbytes : 1);
            if (t->data)
                memcpy(t->data, mem + entries[i].begin, got = t->nbytes);
        } else {
            t->data = read_growing(f, t->nbytes, &got);
        }
        if (!t->data)
            return amil_fail("out of memory for tensor '%s' (%zu bytes)", t->name,
                             t->nbytes);
        done += got;
        if (got < t->nbytes)
            return amil_fail("truncated data (%llu of %llu bytes)",
                             (unsigned long long)done, (unsigned long long)data_len);
    }
    return 0;
}

static int read_fail(struct amil_stream *s, long index, struct amil_record *r)
{
    char why[1024];
    snprintf(why, sizeof why, "%s", amil_error());
    amil_record_free(r);
    return amil_fail("%s: record %ld: %s", s->name, index, why);
}

/* The kind of image whose first 8 bytes these are ("a PNG"), or NULL: a
 * stream's length field that reads as an image's magic number. */
static const char *image_kind(const unsigned char b[8])
{
    if (memcmp(b, "\x89PNG\r\n\x1a\n", 8) == 0)
        return "a PNG";
    if (b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff)
        return "a JPEG";
    if (memcmp(b, "II*", 4) == 0 || memcmp(b, "MM\0*", 4) == 0)
        return "a TIFF";
    if (memcmp(b, "GIF8", 4) == 0)
        return "a GIF";
    if (b[0] == 'B' && b[1] == 'M')
        return "a BMP";
    if (b[0] == 'P' && b[1] >= '1' && b[1] <= '7' && strchr(" \t\r\n", b[2]))
        return "a netpbm";
    return NULL;
}

/* n bytes of the stream: those looked at first, then the file's. */
static size_t read_bytes(struct amil_stream *s, unsigned char *to, size_t n)
{
    size_t got = s->npeeked < n ? s->npeeked : n;
    memcpy(to, s->peeked, got);
    memmove(s->peeked, s->peeked + got, s->npeeked - got);
    s->npeeked -= got;
    return got + (got < n ? fread(to + got, 1, n - got, s->file) : 0);
}

int amil_stream_is_image(struct amil_stream *s)
{
    while (s->npeeked < 9) {
        size_t got = fread(s->peeked + s->npeeked, 1, 9 - s->npeeked, s->file);
        if (got == 0 && ferror(s->file))
            return amil_fail("%s: %s", s->name, strerror(errno));
        if (got == 0)
            break;
        s->npeeked += got;
    }
    return s->npeeked == 9 && !(le64(s->peeked) <= AMIL_MAX_HEADER && s->peeked[8] == '{');
}

unsigned char *amil_stream_slurp(struct amil_stream *s, size_t *len)
{
    if (s->is_stdout) {
        amil_fail("it is also standard output: it would read what is written");
        return NULL;
    }
    size_t cap = 1 << 20, n = 0;
    unsigned char *buf = malloc(cap);
    while (buf) {
        if (n > AMIL_MAX_SLURP) {
            free(buf);
            amil_fail("over %zu MiB, more than an image of the largest size takes",
                      (size_t)AMIL_MAX_SLURP >> 20);
            return NULL;
        }
        if (n == cap) {   /* doubled, but never past the limit (plus one byte to see it) */
            size_t next = cap * 2 < AMIL_MAX_SLURP + 1 ? cap * 2 : AMIL_MAX_SLURP + 1;
            unsigned char *bigger = realloc(buf, next);
            if (!bigger) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = bigger;
            cap = next;
        }
        size_t k = read_bytes(s, buf + n, cap - n);
        n += k;
        if (k == 0)
            break;
    }
    if (!buf || ferror(s->file)) {
        amil_fail("%s", !buf ? "out of memory" : strerror(errno));
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

int amil_record_read(struct amil_stream *s, struct amil_record *r)
{
    amil_record_init(r);
    if (s->is_stdout)
        return amil_fail("%s is also standard output: it would read what it writes", s->name);
    unsigned char lenbuf[8];
    size_t got = read_bytes(s, lenbuf, 8);
    /* the header's first byte, when amil_stream_is_image looked at it,
     * goes back to the file, which reads the rest (C keeps one byte) */
    if (s->npeeked == 1 && ungetc(s->peeked[0], s->file) != EOF)
        s->npeeked = 0;
    if (got == 0 && !ferror(s->file))
        return 0;
    long index = s->index++;
    if (ferror(s->file)) {
        amil_fail("read error: %s", strerror(errno));
        return read_fail(s, index, r);
    }
    if (got < 8) {
        amil_fail("truncated length (%zu of 8 bytes)", got);
        return read_fail(s, index, r);
    }
    uint64_t header_len = le64(lenbuf);
    const char *image = image_kind(lenbuf);
    if (image && header_len > AMIL_MAX_HEADER) {
        amil_fail("this is %s image, not a record: cut it into a bag with bagify first",
                  image);
        return read_fail(s, index, r);
    }
    if (header_len > AMIL_MAX_HEADER) {
        amil_fail("header of %llu bytes is over the limit of %llu",
                  (unsigned long long)header_len, AMIL_MAX_HEADER);
        return read_fail(s, index, r);
    }
    char *header = (char *)read_growing(s->file, header_len, &got);
    if (!header) {
        amil_fail("out of memory for the header");
        return read_fail(s, index, r);
    }
    if (got < header_len) {
        free(header);
        amil_fail("truncated header (%zu of %llu bytes)", got,
                  (unsigned long long)header_len);
        return read_fail(s, index, r);
    }
    struct amil_entry *entries = NULL;
    uint64_t data_len = 0;
    int status = amil_header_parse(header, header_len, r, &entries, &data_len);
    free(header);
    if (status == 0)
        status = fill_data(r, entries, s->file, NULL, 0, data_len);
    free(entries);
    if (status < 0)
        return read_fail(s, index, r);
    /* the image the record was cut from is an input too: no output of a
     * program that reads it may replace it, whether it reads it or not */
    char source[4096];
    amil_input_note(amil_record_source_path(r, source, sizeof source));
    /* and the file under source_dir, where the record was cut, even when a
     * file of that name here is the one found */
    const char *given = amil_record_meta(r, "source"), *dir = amil_record_meta(r, "source_dir");
    if (given && dir && given[0] != '/' &&
        snprintf(source, sizeof source, "%s/%s", dir, given) < (int)sizeof source)
        amil_input_note(source);
    return 1;
}

static int parse_document(const unsigned char *doc, size_t len, int borrow,
                          struct amil_record *r)
{
    amil_record_init(r);
    if (len < 8)
        return amil_fail("truncated length (%zu of 8 bytes)", len);
    uint64_t header_len = le64(doc);
    const char *image = image_kind(doc);
    if (image && header_len > AMIL_MAX_HEADER)
        return amil_fail("this is %s image, not a record", image);
    if (header_len > AMIL_MAX_HEADER)
        return amil_fail("header of %llu bytes is over the limit of %llu",
                         (unsigned long long)header_len, AMIL_MAX_HEADER);
    if (header_len > len - 8)
        return amil_fail("truncated header (%zu of %llu bytes)", len - 8,
                         (unsigned long long)header_len);
    struct amil_entry *entries = NULL;
    uint64_t data_len = 0;
    int status = amil_header_parse((const char *)doc + 8, header_len, r, &entries, &data_len);
    if (status == 0 && data_len > len - 8 - header_len)
        status = amil_fail("truncated data (%llu of %llu bytes)",
                           (unsigned long long)(len - 8 - header_len),
                           (unsigned long long)data_len);
    if (status == 0)
        status = fill_data(r, entries, NULL, doc + 8 + header_len, borrow, data_len);
    free(entries);
    if (status < 0)
        amil_record_free(r);
    return status;
}

int amil_record_parse(const unsigned char *doc, size_t len, struct amil_record *r)
{
    return parse_document(doc, len, 0, r);
}

/* Bytes [at, at + n) of fd into to; -1 with errno's message (or "the file
 * ends early") if it cannot. */
static int read_at(int fd, void *to, size_t n, size_t at, const char *path)
{
    for (size_t done = 0; done < n;) {
        ssize_t got = pread(fd, (char *)to + done, n - done, (off_t)(at + done));
        if (got <= 0)
            return amil_fail("%s: %s", path, got < 0 ? strerror(errno) : "the file ends early");
        done += (size_t)got;
    }
    return 0;
}

/* The length of the first record of a regular file of length bytes: its
 * header read and parsed for its data's length; what parse_document then
 * checks (length at most that of the file, or the file's for a header too
 * long to read, whose parse fails). */
static size_t first_record_length(int fd, size_t length, const char *path)
{
    unsigned char prefix[8];
    if (length < 8 || read_at(fd, prefix, 8, 0, path) < 0)
        return length;
    uint64_t header_len = le64(prefix);
    if (header_len > AMIL_MAX_HEADER || header_len > length - 8)
        return length < 8 + AMIL_MAX_HEADER ? length : 8 + AMIL_MAX_HEADER;
    char *header = amil_xmalloc(header_len ? header_len : 1);
    struct amil_record probe;
    struct amil_entry *entries = NULL;
    uint64_t data_len = 0;
    amil_record_init(&probe);
    int ok = read_at(fd, header, header_len, 8, path) == 0 &&
             amil_header_parse(header, header_len, &probe, &entries, &data_len) == 0;
    free(entries), free(header);
    amil_record_free(&probe);
    if (!ok || data_len > length - 8 - header_len)
        return length;
    return 8 + header_len + data_len;
}

/* Reads the first record of a regular file of length bytes from fd into
 * memory of its own and parses it there.  Read, not mapped: a mapping
 * faults every 4 KiB as the weights are first read, and under this
 * machine's hypervisor that cost a ResNet18's 45 MB 21 ms against 9 read
 * onto 2 MiB pages (amil_xaligned).  What follows the record is ignored,
 * as a stream reader would leave it unread. */
static int load_file(int fd, size_t length, const char *path, struct amil_record *r)
{
    size_t n = first_record_length(fd, length, path);
    void *base = amil_xaligned(n ? n : 1);
    if (read_at(fd, base, n, 0, path) < 0) {
        free(base);
        return -1;
    }
    struct amil_mapping *m = amil_xmalloc(sizeof *m);
    *m = (struct amil_mapping){base, n, 1};
    if (parse_document(base, n, 1, r) < 0) {
        amil_mapping_unref(m);
        char why[1024];
        snprintf(why, sizeof why, "%s", amil_error());
        return amil_fail("%s: record 0: %s", path, why);
    }
    r->mapping = m;
    return 0;
}

int amil_record_load(const char *path, struct amil_record *r)
{
    amil_record_init(r);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return amil_fail("%s: %s", path, strerror(errno));
    amil_input_note_fd(fd, path);
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0) {
        int status = load_file(fd, (size_t)st.st_size, path, r);
        close(fd);
        return status;
    }
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        close(fd);
        return amil_fail("%s: %s", path, strerror(errno));
    }
    struct amil_stream s;
    amil_stream_open(&s, f, path);
    int got = amil_record_read(&s, r);
    fclose(f);
    if (got == 0)
        return amil_fail("%s: empty file, not a model", path);
    return got < 0 ? -1 : 0;
}

/* Reads part `part` of the bag r has begun and appends it to r. */
static int read_part(struct amil_stream *s, struct amil_record *r, long part, long parts)
{
    struct amil_record next;
    int got = amil_record_read(s, &next);
    if (got <= 0) {
        if (got == 0)
            amil_fail("%s: the stream ends before part %ld of %ld of %s", s->name, part,
                      parts, amil_record_meta(r, "source"));
        amil_record_free(r);
        return -1;
    }
    const char *source = amil_record_meta(r, "source"), *its = amil_record_meta(&next, "source");
    long number = -1, total = -1;
    int status = 0;
    if (!its || strcmp(its, source) != 0 ||
        amil_record_meta_long(&next, "part", 0, parts - 1, &number) != 1 ||
        amil_record_meta_long(&next, "parts", 2, parts, &total) != 1 || number != part ||
        total != parts)
        status = amil_fail("part %ld of %ld of %s expected", part, parts, source);
    else
        status = amil_record_append(r, &next);
    if (status < 0) {
        char why[1024];
        snprintf(why, sizeof why, "%s", amil_error());
        amil_record_free(&next);
        amil_record_free(r);
        return amil_fail("%s: record %ld: %s", s->name, s->index - 1, why);
    }
    amil_record_free(&next);
    return 1;
}

int amil_bag_read(struct amil_stream *s, struct amil_record *r)
{
    int got = amil_record_read(s, r);
    if (got <= 0 || !amil_record_meta(r, "part"))
        return got;
    long part, parts;
    if (amil_record_meta_long(r, "parts", 2, 1000000, &parts) != 1 ||
        amil_record_meta_long(r, "part", 0, parts - 1, &part) != 1 || part != 0 ||
        !amil_record_meta(r, "source")) {
        const char *number = amil_record_meta(r, "part"), *total = amil_record_meta(r, "parts");
        amil_fail("%s: record %ld: part '%s' of '%s' does not begin a bag (part 0 of 2 to "
                  "1000000 parts, with a source)", s->name, s->index - 1, number,
                  total ? total : "");
        amil_record_free(r);
        return -1;
    }
    for (long k = 1; k < parts; k++)
        if (read_part(s, r, k, parts) < 0)
            return -1;
    amil_record_set_meta(r, "part", NULL);
    amil_record_set_meta(r, "parts", NULL);
    return 1;
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
