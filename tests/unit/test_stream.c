/* test_stream.c: the record reader and writer, on records built by hand.
 *
 * Each malformed header of amil-stream(5) must be refused with its own
 * message; a good record must come back byte for byte.  Also the colour
 * maps, against matplotlib's colours in a committed record. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/base.h"
#include "media/breakhis.h"
#include "media/colormap.h"
#include "record/record.h"
#include "record/stream.h"
#include "test_data.h"

/* A document: 8-byte length, the header as given (unpadded), data. */
static unsigned char *document(const char *header, const void *data, size_t data_len,
                               size_t *len)
{
    size_t n = strlen(header);
    *len = 8 + n + data_len;
    unsigned char *doc = malloc(*len);
    for (int i = 0; i < 8; i++)
        doc[i] = (unsigned char)((uint64_t)n >> (8 * i));
    memcpy(doc + 8, header, n);
    if (data_len)
        memcpy(doc + 8 + n, data, data_len);
    return doc;
}

/* Parses a document made of header + data_len zero bytes; returns the
 * status and leaves the message in amil_error(). */
static int parse(const char *header, size_t data_len)
{
    unsigned char *zeros = calloc(1, data_len + 1);
    size_t len;
    unsigned char *doc = document(header, zeros, data_len, &len);
    struct amil_record r;
    int status = amil_record_parse(doc, len, &r);
    if (status == 0)
        amil_record_free(&r);
    free(doc);
    free(zeros);
    return status;
}

#define assert_refused(header, data_len, needle)                                  \
    do {                                                                          \
        assert_int_equal(parse(header, data_len), -1);                            \
        if (!strstr(amil_error(), needle))                                        \
            fail_msg("message '%s' lacks '%s'", amil_error(), needle);            \
    } while (0)

static void good_record_parses(void **state)
{
    (void)state;
    const char *header =
        "{\"__metadata__\":{\"kind\":\"bag\",\"label\":\"1\"},"
        "\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
        "\"b\":{\"dtype\":\"U8\",\"shape\":[5],\"data_offsets\":[24,29]},"
        "\"c\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[29,37]},"
        "\"empty\":{\"dtype\":\"I32\",\"shape\":[0,4],\"data_offsets\":[37,37]}}   ";
    unsigned char data[37];
    for (int i = 0; i < 37; i++)
        data[i] = (unsigned char)i;
    size_t len;
    unsigned char *doc = document(header, data, sizeof data, &len);
    struct amil_record r;
    assert_int_equal(amil_record_parse(doc, len, &r), 0);
    assert_int_equal(r.ntensors, 4);
    assert_string_equal(amil_record_meta(&r, "kind"), "bag");
    long label;
    assert_int_equal(amil_record_meta_long(&r, "label", 0, 9, &label), 1);
    assert_int_equal(label, 1);
    struct amil_tensor *b = amil_record_expect(&r, "b", AMIL_U8, 1);
    assert_non_null(b);
    assert_memory_equal(b->data, data + 24, 5);
    struct amil_tensor *c = amil_record_find(&r, "c");
    assert_int_equal(c->ndim, 0);
    assert_int_equal(c->nbytes, 8);
    assert_memory_equal(c->data, data + 29, 8);
    assert_null(amil_record_expect(&r, "a", AMIL_U8, 2));
    assert_non_null(strstr(amil_error(), "is F32 with 2 dimensions"));
    amil_record_free(&r);
    free(doc);
}

/* Write, read back, write again: the same bytes, and data aligned. */
static void write_read_round_trip(void **state)
{
    (void)state;
    struct amil_record r;
    amil_record_init(&r);
    amil_record_set_meta(&r, "source", "a \"quoted\"\\ name\n");
    int64_t s1[1] = {3}, s2[2] = {2, 2};
    unsigned char *u = amil_record_put(&r, "bytes", AMIL_U8, 1, s1)->data;
    u[0] = 1, u[1] = 2, u[2] = 255;
    float *f = amil_record_put(&r, "floats", AMIL_F32, 2, s2)->data;
    f[0] = 1.5f, f[3] = -2.25f;

    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    assert_int_equal(amil_record_write(mem, &r), 0);
    assert_int_equal(amil_record_write(mem, &r), 0);   /* two records: a stream */
    fclose(mem);
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; i--)
        header_len = header_len << 8 | (unsigned char)buf[i];
    assert_int_equal(header_len % 8, 0);

    FILE *in = fmemopen(buf, len, "rb");
    struct amil_stream s;
    amil_stream_open(&s, in, "mem");
    struct amil_record back;
    for (int k = 0; k < 2; k++) {
        assert_int_equal(amil_record_read(&s, &back), 1);
        assert_string_equal(amil_record_meta(&back, "source"), "a \"quoted\"\\ name\n");
        struct amil_tensor *t = amil_record_expect(&back, "floats", AMIL_F32, 2);
        assert_non_null(t);
        assert_memory_equal(t->data, f, 16);
        assert_memory_equal(amil_record_find(&back, "bytes")->data, u, 3);
        char *again = NULL;
        size_t again_len = 0;
        FILE *out = open_memstream(&again, &again_len);
        amil_record_write(out, &back);
        fclose(out);
        assert_int_equal(again_len * 2, len);
        assert_memory_equal(again, buf, again_len);
        free(again);
        amil_record_free(&back);
    }
    assert_int_equal(amil_record_read(&s, &back), 0);   /* clean end */
    fclose(in);
    free(buf);
    amil_record_free(&r);
}

/* A model file is mapped, not read: aligned tensors are borrowed from the
 * mapping, a misaligned one copied, and the record edits (replace, remove)
 * and frees like any other; a short file names itself and the fault. */
static void files_are_mapped(void **state)
{
    (void)state;
    /* "a" (F32) at offset 0 is aligned; "b" (F32) at offset 6 is not */
    const char *header = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                         "\"u\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[4,6]},"
                         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[6,14]}}";
    char padded[256];
    snprintf(padded, sizeof padded, "%-*s", (int)((strlen(header) + 7) / 8 * 8), header);
    unsigned char data[14] = {0};
    float one = 1.0f, two[2] = {2.0f, 3.0f};
    memcpy(data, &one, 4);
    data[4] = 7, data[5] = 9;
    memcpy(data + 6, two, 8);
    size_t len;
    unsigned char *doc = document(padded, data, sizeof data, &len);
    char path[] = "/tmp/amil-test-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, doc, len), (ssize_t)len);
    close(fd);

    struct amil_record r;
    assert_int_equal(amil_record_load(path, &r), 0);
    assert_non_null(r.mapping);
    struct amil_tensor *a = amil_record_find(&r, "a"), *b = amil_record_find(&r, "b");
    assert_true(a->borrowed);
    assert_false(b->borrowed);
    assert_true(amil_record_find(&r, "u")->borrowed);
    assert_memory_equal(a->data, &one, 4);
    assert_memory_equal(b->data, two, 8);
    struct amil_mapping *m = amil_mapping_ref(r.mapping);   /* outlives r */
    amil_record_put(&r, "a", AMIL_F32, 1, (int64_t[]){3});
    assert_false(amil_record_find(&r, "a")->borrowed);
    assert_int_equal(amil_record_remove(&r, "u"), 1);
    amil_record_free(&r);
    assert_memory_equal((unsigned char *)m->base + 8 + strlen(padded), &one, 4);
    amil_mapping_unref(m);

    assert_int_equal(truncate(path, (off_t)len - 1), 0);
    assert_int_equal(amil_record_load(path, &r), -1);
    if (!strstr(amil_error(), "record 0: truncated data (13 of 14 bytes)") ||
        !strstr(amil_error(), path))
        fail_msg("message '%s'", amil_error());
    assert_int_equal(truncate(path, 0), 0);
    assert_int_equal(amil_record_load(path, &r), -1);
    assert_non_null(strstr(amil_error(), "empty file, not a model"));
    unlink(path);
    free(doc);
}

static void malformed_headers_are_refused(void **state)
{
    (void)state;
    assert_refused("{\"a\":", 0, "invalid JSON");
    assert_refused("{\"a\":{}} x", 0, "invalid JSON");
    assert_refused("[1,2]", 0, "not a JSON object");
    assert_refused("{\"a\":{\"shape\":[1],\"data_offsets\":[0,1]}}", 1, "no dtype");
    assert_refused("{\"a\":{\"dtype\":\"U8\",\"data_offsets\":[0,1]}}", 1, "no shape");
    assert_refused("{\"a\":{\"dtype\":\"U8\",\"shape\":[1]}}", 1, "no data_offsets");
    assert_refused("{\"a\":{\"dtype\":\"Q4\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
                   "unknown dtype Q4");
    assert_refused("{\"a\":{\"dtype\":\"U8\",\"shape\":[-1],\"data_offsets\":[0,1]}}", 1,
                   "not a non-negative integer");
    assert_refused("{\"a\":{\"dtype\":\"U8\",\"shape\":[1.5],\"data_offsets\":[0,1]}}", 1,
                   "not a non-negative integer");
    assert_refused("{\"a\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296,0],"
                   "\"data_offsets\":[0,0]}}", 0, "overflows");
    assert_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],"
                   "\"data_offsets\":[0,0]}}", 0, "overflows");
    assert_refused("{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],"
                   "\"data_offsets\":[0,1]}}", 1, "more than 8");
    assert_refused("{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[2,0]}}", 2,
                   "out of range");
    assert_refused("{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0]}}", 2,
                   "two non-negative integers");
    assert_refused("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],"
                   "\"data_offsets\":[0,99999999999999]}}", 0, "out of range");
    assert_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4,
                   "needs 8");
    assert_refused("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
                   "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[2,6]}}", 6,
                   "overlap");
    assert_refused("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
                   "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[6,10]}}", 10,
                   "gap of 2 bytes");
    assert_refused("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]}}", 8,
                   "gap of 4 bytes");
    assert_refused("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                   "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", 2,
                   "appears twice");
    assert_refused("{\"a\":{\"dtype\":\"U8\",\"shape\":[4294967296,2147483648,0],"
                   "\"data_offsets\":[0,0]}}", 0, "overflows");   /* past int64 */
    assert_refused("{\"__metadata__\":{\"a\":\"x\\u0000y\"}}", 0, "NUL");
    assert_refused("{\"__metadata__\":{},\"__metadata__\":{\"a\":\"b\"}}", 0,
                   "__metadata__ appears twice");
    /* a backslash, then the text u0000, is no NUL */
    assert_int_equal(parse("{\"__metadata__\":{\"a\":\"x\\\\u0000y\"}}", 0), 0);
    assert_refused("{\"__metadata__\":{\"a\":\"1\",\"b\":\"2\",\"a\":\"3\"}}", 0,
                   "metadata key 'a' appears twice");
    assert_refused("{\"__metadata__\":{\"label\":1}}", 0, "not a string");
    assert_refused("{\"__metadata__\":[\"x\"]}", 0, "not an object");
    assert_refused("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", 2,
                   "truncated data");
}

/* Reads a stream held in memory; returns what the last amil_record_read said. */
static int read_all(const unsigned char *bytes, size_t len, int *records)
{
    FILE *f = fmemopen((void *)bytes, len, "rb");
    struct amil_stream s;
    struct amil_record r;
    int got;
    amil_stream_open(&s, f, "test");
    *records = 0;
    while ((got = amil_record_read(&s, &r)) == 1) {
        amil_record_free(&r);
        (*records)++;
    }
    fclose(f);
    return got;
}

static void truncations_name_the_record(void **state)
{
    (void)state;
    const char *header = "{\"a\":{\"dtype\":\"U8\",\"shape\":[16],\"data_offsets\":[0,16]}}";
    unsigned char data[16] = {0};
    size_t len;
    unsigned char *doc = document(header, data, sizeof data, &len);
    unsigned char *two = malloc(2 * len);
    memcpy(two, doc, len);
    memcpy(two + len, doc, len);
    int records;
    assert_int_equal(read_all(two, 2 * len, &records), 0);
    assert_int_equal(records, 2);
    /* Cut inside the second record: in its length, header, data. */
    size_t cuts[3] = {len + 3, len + 8 + 10, 2 * len - 1};
    const char *what[3] = {"record 1: truncated length", "record 1: truncated header",
                           "record 1: truncated data (15 of 16 bytes)"};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(read_all(two, cuts[i], &records), -1);
        assert_int_equal(records, 1);
        if (!strstr(amil_error(), what[i]))
            fail_msg("message '%s' lacks '%s'", amil_error(), what[i]);
        assert_non_null(strstr(amil_error(), "test: "));
    }
    free(two);
    free(doc);

    /* A header length over the limit is refused before anything is read. */
    unsigned char huge[8] = {0, 0, 0, 0, 1, 0, 0, 0};   /* 2^32 */
    assert_int_equal(read_all(huge, sizeof huge, &records), -1);
    assert_non_null(strstr(amil_error(), "record 0: header of 4294967296 bytes is over"));
}

/* A record claiming 8 GiB on a stream of a few bytes: refused as truncated,
 * without allocating 8 GiB first. */
static void huge_claim_on_short_stream(void **state)
{
    (void)state;
    const char *header = "{\"a\":{\"dtype\":\"U8\",\"shape\":[8589934592],"
                         "\"data_offsets\":[0,8589934592]}}";
    unsigned char data[100] = {0};
    size_t len;
    unsigned char *doc = document(header, data, sizeof data, &len);
    int records;
    assert_int_equal(read_all(doc, len, &records), -1);
    assert_non_null(strstr(amil_error(), "truncated data (100 of 8589934592 bytes)"));
    free(doc);
}

/* The process's address space now, in bytes (VmSize), or 0. */
static size_t address_space(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    size_t kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmSize: %zu kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb * 1024;
}

/* Short streams that claim much cost little: under an address-space limit
 * of 8 MiB above what the process holds, an 8-byte stream claiming a 90 MB
 * header and a record claiming 8 GiB of data are refused as truncated,
 * not for want of memory (the reader had reserved 64 MiB up front).  In a
 * child, so that the limit ends with it; not under AddressSanitizer, whose
 * allocator maps memory of its own. */
static void short_streams_reserve_little(void **state)
{
    (void)state;
#if defined(__SANITIZE_ADDRESS__)
    print_message("# skipped under AddressSanitizer: it needs address space of its own\n");
    return;
#endif
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        struct rlimit limit = {address_space() + (8u << 20), RLIM_INFINITY};
        limit.rlim_max = limit.rlim_cur;
        if (limit.rlim_cur <= (8u << 20) || setrlimit(RLIMIT_AS, &limit) < 0)
            _exit(3);
        unsigned char claim[8] = {0x80, 0x4a, 0x5d, 0x05, 0, 0, 0, 0};   /* 90,000,000 */
        int records;
        if (read_all(claim, sizeof claim, &records) != -1 ||
            !strstr(amil_error(), "truncated header (0 of 90000000 bytes)"))
            _exit(1);
        const char *header = "{\"a\":{\"dtype\":\"U8\",\"shape\":[8589934592],"
                             "\"data_offsets\":[0,8589934592]}}";
        unsigned char data[100] = {0};
        size_t len;
        unsigned char *doc = document(header, data, sizeof data, &len);
        if (read_all(doc, len, &records) != -1 ||
            !strstr(amil_error(), "truncated data (100 of 8589934592 bytes)"))
            _exit(2);
        _exit(0);
    }
    int status;
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static void records_are_edited_in_place(void **state)
{
    (void)state;
    struct amil_record r;
    amil_record_init(&r);
    int64_t shape[1] = {2};
    amil_record_put(&r, "x", AMIL_I32, 1, shape);
    amil_record_put(&r, "y", AMIL_U8, 1, shape);
    amil_record_put(&r, "x", AMIL_F32, 1, shape);   /* replaces, keeps its place */
    assert_int_equal(r.ntensors, 2);
    assert_string_equal(r.tensors[0].name, "x");
    assert_int_equal(r.tensors[0].dtype, AMIL_F32);
    assert_int_equal(amil_record_remove(&r, "x"), 1);
    assert_int_equal(amil_record_remove(&r, "x"), 0);
    assert_string_equal(r.tensors[0].name, "y");
    amil_record_set_meta(&r, "k", "1");
    amil_record_set_metaf(&r, "k", "%d", 2);
    assert_int_equal(r.nmeta, 1);
    long v;
    assert_int_equal(amil_record_meta_long(&r, "k", 0, 1, &v), -1);
    assert_int_equal(amil_record_meta_long(&r, "absent", 0, 1, &v), 0);
    amil_record_free(&r);
}

static void breakhis_names(void **state)
{
    (void)state;
    struct amil_breakhis b;
    assert_int_equal(amil_breakhis_parse("x/y/SOB_B_A-14-22549G-40-001.png", &b), 0);
    assert_int_equal(b.tumor_class, 'B');
    assert_string_equal(b.tumor_type, "A");
    assert_string_equal(b.patient, "14-22549G");
    assert_int_equal(b.magnification, 40);
    assert_string_equal(b.sequence, "001");
    assert_int_equal(amil_breakhis_parse("SOB_M_DC-14-2523-400-010.png", &b), 0);
    assert_string_equal(amil_breakhis_type_name(b.tumor_type), "ductal_carcinoma");
    assert_int_equal(amil_breakhis_parse("SOB_B_DC-14-2523-400-010.png", &b), -1);
    assert_int_equal(amil_breakhis_parse("SOB_M_DC-14-2523-300-010.png", &b), -1);
    assert_int_equal(amil_breakhis_parse("SOB_M_DC-14-2523-400.png", &b), -1);
    assert_int_equal(amil_breakhis_parse("photo.png", &b), -1);
}

/* Every map against matplotlib at 1540 values (tests/data/colormaps.safetensors,
 * made by tests/colormaps.py with matplotlib 3.6.3): every multiple of
 * 1/1024, each of a byte's levels i/255, the last value of each entry (the
 * double under i/256) and four outside [0, 1].  Each channel must be
 * matplotlib's colour times 255 rounded half up, as colormap.c's tables
 * were made, exactly: a table entry one off, or an entry taken by
 * rounding 256 v or from 255 v, fails. */
static void colormaps_match_matplotlib(void **state)
{
    (void)state;
    const unsigned char(*jet)[3] = amil_colormap("jet");
    const unsigned char(*viridis)[3] = amil_colormap("viridis");
    assert_null(amil_colormap("rainbow"));
    /* Ends of both maps as matplotlib gives them. */
    assert_memory_equal(amil_colormap_lookup(jet, 0), ((unsigned char[]){0, 0, 128}), 3);
    assert_memory_equal(amil_colormap_lookup(jet, 1), ((unsigned char[]){128, 0, 0}), 3);
    assert_memory_equal(amil_colormap_lookup(viridis, 0), ((unsigned char[]){68, 1, 84}), 3);
    assert_memory_equal(amil_colormap_lookup(viridis, 2), ((unsigned char[]){253, 231, 37}), 3);
    /* floor(256 v): 0.5 is entry 128. */
    assert_ptr_equal(amil_colormap_lookup(viridis, 0.5), viridis[128]);

    struct amil_record r;
    if (amil_record_load(test_data("colormaps.safetensors"), &r) < 0)
        fail_msg("%s", amil_error());
    const struct amil_tensor *probes = amil_record_expect(&r, "probes", AMIL_F64, 1);
    assert_non_null(probes);
    const double *v = probes->data;
    int64_t k = probes->shape[0];
    assert_true(k >= 1540);
    const char *names[] = {"jet", "viridis", "gray"};
    for (int m = 0; m < 3; m++) {
        const unsigned char(*map)[3] = amil_colormap(names[m]);
        const struct amil_tensor *want = amil_record_expect(&r, names[m], AMIL_F64, 2);
        assert_non_null(want);
        assert_true(want->shape[0] == k && want->shape[1] == 3);
        const double *rgb = want->data;
        for (int64_t i = 0; i < k; i++) {
            const unsigned char *got = amil_colormap_lookup(map, v[i]);
            for (int c = 0; c < 3; c++)
                if (got[c] != (int)floor(255 * rgb[3 * i + c] + 0.5))
                    fail_msg("%s at %.17g: channel %d is %d, matplotlib's %.4f x 255 = %.4f",
                             names[m], v[i], c, got[c], rgb[3 * i + c], 255 * rgb[3 * i + c]);
        }
    }
    print_message("# jet, viridis and gray agree with matplotlib at %lld values\n", (long long)k);
    amil_record_free(&r);
}

/* Parts whose tensors hold no bytes still sum their first dimensions:
 * [2^53 - 1, 0] twice is past what a header can say (and 1025 times,
 * past int64). */
static void joined_shapes_are_checked(void **state)
{
    (void)state;
    struct amil_record r, part;
    amil_record_init(&r);
    amil_record_init(&part);
    int64_t shape[2] = {AMIL_MAX_DIM - 1, 0};
    amil_record_put(&r, "patches", AMIL_U8, 2, shape);
    amil_record_put(&part, "patches", AMIL_U8, 2, shape);
    assert_int_equal(amil_record_append(&r, &part), -1);
    assert_non_null(strstr(amil_error(), "over 2^53 rows"));
    assert_true(r.tensors[0].shape[0] == AMIL_MAX_DIM - 1);   /* unchanged */
    int64_t one[2] = {1, 0};
    amil_record_put(&part, "patches", AMIL_U8, 2, one);
    assert_int_equal(amil_record_append(&r, &part), 0);       /* exactly 2^53 */
    assert_true(r.tensors[0].shape[0] == AMIL_MAX_DIM);
    assert_int_equal(amil_record_append(&r, &part), -1);
    amil_record_free(&r);
    amil_record_free(&part);
}

/* Every dtype's size, from the safetensors specification (not from our
 * table): a tensor of 3 values spans exactly 3 sizes, and one byte less is
 * refused. */
static void dtype_sizes_are_the_specification(void **state)
{
    (void)state;
    static const struct { const char *name; size_t size; } spec[] = {
        {"BOOL", 1}, {"U8", 1}, {"I8", 1}, {"U16", 2}, {"I16", 2}, {"F16", 2}, {"BF16", 2},
        {"U32", 4}, {"I32", 4}, {"F32", 4}, {"U64", 8}, {"I64", 8}, {"F64", 8}};
    assert_int_equal(sizeof spec / sizeof spec[0], AMIL_NDTYPES);
    for (size_t i = 0; i < sizeof spec / sizeof spec[0]; i++) {
        char header[160];
        size_t n = 3 * spec[i].size;
        snprintf(header, sizeof header,
                 "{\"t\":{\"dtype\":\"%s\",\"shape\":[3],\"data_offsets\":[0,%zu]}}",
                 spec[i].name, n);
        if (parse(header, n) != 0)
            fail_msg("%s: %zu bytes refused: %s", spec[i].name, n, amil_error());
        snprintf(header, sizeof header,
                 "{\"t\":{\"dtype\":\"%s\",\"shape\":[3],\"data_offsets\":[0,%zu]}}",
                 spec[i].name, n - 1);
        if (parse(header, n - 1) != -1)
            fail_msg("%s: %zu bytes accepted", spec[i].name, n - 1);
    }
}

/* A header of exactly AMIL_MAX_HEADER bytes ("{}" and spaces) is read, on
 * a stream and from a mapped file, and one byte more is refused on both. */
static void header_limit_is_exact(void **state)
{
    (void)state;
    char path[] = "/tmp/amil-test-header-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    for (size_t extra = 0; extra < 2; extra++) {
        size_t n = AMIL_MAX_HEADER + extra, len;
        char *header = malloc(n + 1);
        memset(header, ' ', n);
        memcpy(header, "{}", 2);
        header[n] = '\0';
        unsigned char *doc = document(header, NULL, 0, &len);
        free(header);
        int records;
        int got = read_all(doc, len, &records);
        assert_int_equal(got, extra ? -1 : 0);
        assert_int_equal(records, extra ? 0 : 1);
        if (extra)
            assert_non_null(strstr(amil_error(), "over the limit"));
        FILE *f = fopen(path, "wb");
        assert_true(fwrite(doc, 1, len, f) == len);
        fclose(f);
        free(doc);
        struct amil_record r;
        int status = amil_record_load(path, &r);
        assert_int_equal(status, extra ? -1 : 0);
        if (status == 0)
            amil_record_free(&r);
        else
            assert_non_null(strstr(amil_error(), "over the limit"));
    }
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(good_record_parses),
        cmocka_unit_test(write_read_round_trip),
        cmocka_unit_test(files_are_mapped),
        cmocka_unit_test(malformed_headers_are_refused),
        cmocka_unit_test(truncations_name_the_record),
        cmocka_unit_test(huge_claim_on_short_stream),
        cmocka_unit_test(short_streams_reserve_little),
        cmocka_unit_test(records_are_edited_in_place),
        cmocka_unit_test(breakhis_names),
        cmocka_unit_test(colormaps_match_matplotlib),
        cmocka_unit_test(joined_shapes_are_checked),
        cmocka_unit_test(dtype_sizes_are_the_specification),
        cmocka_unit_test(header_limit_is_exact),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
