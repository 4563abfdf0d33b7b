/* record.c: a record in memory (amil.h): its tensors and metadata, found,
 * added, replaced and removed by name; the dtypes of the format; mappings
 * shared by the tensors of a file read in place.  stream.c reads and
 * writes records. */
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/base.h"
#include "base/output.h"
#include "record/record.h"

static const struct {
    const char *name;
    size_t size;
} dtypes[AMIL_NDTYPES] = {
    [AMIL_BOOL] = {"BOOL", 1}, [AMIL_U8] = {"U8", 1},    [AMIL_I8] = {"I8", 1},
    [AMIL_U16] = {"U16", 2},   [AMIL_I16] = {"I16", 2},  [AMIL_F16] = {"F16", 2},
    [AMIL_BF16] = {"BF16", 2}, [AMIL_U32] = {"U32", 4},  [AMIL_I32] = {"I32", 4},
    [AMIL_F32] = {"F32", 4},   [AMIL_U64] = {"U64", 8},  [AMIL_I64] = {"I64", 8},
    [AMIL_F64] = {"F64", 8},
};

size_t amil_dtype_size(enum amil_dtype t) { return dtypes[t].size; }
const char *amil_dtype_name(enum amil_dtype t) { return dtypes[t].name; }

int amil_dtype_parse(const char *name)
{
    for (int t = 0; t < AMIL_NDTYPES; t++)
        if (strcmp(name, dtypes[t].name) == 0)
            return t;
    return -1;
}

void amil_record_init(struct amil_record *r) { memset(r, 0, sizeof *r); }

struct amil_mapping *amil_mapping_ref(struct amil_mapping *m)
{
    m->refs++;
    return m;
}

void amil_mapping_unref(struct amil_mapping *m)
{
    if (!m || --m->refs > 0)
        return;
    free(m->base);
    free(m);
}

static void drop_data(struct amil_tensor *t)
{
    if (!t->borrowed)
        free(t->data);
    t->data = NULL;
    t->borrowed = 0;
}

void amil_record_free(struct amil_record *r)
{
    for (size_t i = 0; i < r->ntensors; i++) {
        free(r->tensors[i].name);
        drop_data(&r->tensors[i]);
    }
    amil_mapping_unref(r->mapping);
    for (size_t i = 0; i < r->nmeta; i++) {
        free(r->meta[i].key);
        free(r->meta[i].value);
    }
    free(r->tensors);
    free(r->meta);
    amil_record_init(r);
}

/* ---- building records --------------------------------------------------- */

struct amil_tensor *amil_record_find(const struct amil_record *r, const char *name)
{
    for (size_t i = 0; i < r->ntensors; i++)
        if (strcmp(r->tensors[i].name, name) == 0)
            return &r->tensors[i];
    return NULL;
}

/* Zeroed memory for a tensor of n bytes.  A large one (a slide's patches,
 * a bag's features) goes on 2 MiB pages (amil_xaligned): filling it then
 * takes a page fault every 2 MiB instead of every 4 KiB (measured: the
 * faults were a fifth of bagify's time on a slide). */
static void *tensor_memory(size_t n)
{
    if (n < 2 * AMIL_HUGE_PAGE)
        return amil_xcalloc(n ? n : 1, 1);
    void *p = amil_xaligned(n);
    memset(p, 0, n);
    return p;
}

struct amil_tensor *amil_record_put(struct amil_record *r, const char *name,
                                    enum amil_dtype dtype, int ndim, const int64_t *shape)
{
    size_t count = 1;
    for (int d = 0; d < ndim; d++)
        count *= (size_t)shape[d];
    struct amil_tensor *t = amil_record_find(r, name);
    if (t) {
        drop_data(t);
    } else {
        if (r->ntensors == r->tensors_cap) {
            r->tensors_cap = r->tensors_cap ? 2 * r->tensors_cap : 8;
            r->tensors = amil_xrealloc(r->tensors, r->tensors_cap * sizeof *r->tensors);
        }
        t = &r->tensors[r->ntensors++];
        t->name = amil_xstrdup(name);
    }
    t->dtype = dtype;
    t->ndim = ndim;
    if (ndim > 0)   /* a scalar has no shape to copy, and may give none */
        memcpy(t->shape, shape, sizeof shape[0] * ndim);
    t->nbytes = count * dtypes[dtype].size;
    t->data = tensor_memory(count * dtypes[dtype].size);
    t->borrowed = 0;
    return t;
}

int amil_record_remove(struct amil_record *r, const char *name)
{
    struct amil_tensor *t = amil_record_find(r, name);
    if (!t)
        return 0;
    free(t->name);
    drop_data(t);
    size_t i = (size_t)(t - r->tensors);
    memmove(t, t + 1, (r->ntensors - i - 1) * sizeof *t);
    r->ntensors--;
    return 1;
}

struct amil_tensor *amil_record_expect(const struct amil_record *r, const char *name,
                                       enum amil_dtype dtype, int ndim)
{
    struct amil_tensor *t = amil_record_find(r, name);
    if (!t) {
        /* which program makes it, so that the message says what to run */
        static const char *const makers[][2] = {
            {"patches", "cut the image into a bag with bagify"},
            {"coords", "cut the image into a bag with bagify"},
            {"image", "bagify -w writes whole images"},
            {"features", "run featurize first"},
            {"attention", "run attend first"},
            {"embedding", "run attend first"},
            {"prob", "run classify first"},
        };
        for (size_t i = 0; i < sizeof makers / sizeof *makers; i++)
            if (strcmp(name, makers[i][0]) == 0) {
                amil_fail("no tensor '%s' (%s)", name, makers[i][1]);
                return NULL;
            }
        amil_fail("no tensor '%s'", name);
        return NULL;
    }
    if (t->dtype != dtype || t->ndim != ndim) {
        amil_fail("tensor '%s' is %s with %d dimensions, not %s with %d", name,
                  dtypes[t->dtype].name, t->ndim, dtypes[dtype].name, ndim);
        return NULL;
    }
    return t;
}

const char *amil_record_meta(const struct amil_record *r, const char *key)
{
    for (size_t i = 0; i < r->nmeta; i++)
        if (strcmp(r->meta[i].key, key) == 0)
            return r->meta[i].value;
    return NULL;
}

void amil_record_set_meta(struct amil_record *r, const char *key, const char *value)
{
    for (size_t i = 0; i < r->nmeta; i++)
        if (strcmp(r->meta[i].key, key) == 0) {
            free(r->meta[i].value);
            if (value) {
                r->meta[i].value = amil_xstrdup(value);
                return;
            }
            free(r->meta[i].key);   /* removed; the others keep their order */
            memmove(r->meta + i, r->meta + i + 1, (r->nmeta - i - 1) * sizeof *r->meta);
            r->nmeta--;
            return;
        }
    if (!value)
        return;
    if (r->nmeta == r->meta_cap) {
        r->meta_cap = r->meta_cap ? 2 * r->meta_cap : 16;
        r->meta = amil_xrealloc(r->meta, r->meta_cap * sizeof *r->meta);
    }
    r->meta[r->nmeta].key = amil_xstrdup(key);
    r->meta[r->nmeta].value = amil_xstrdup(value);
    r->nmeta++;
}

void amil_record_set_metaf(struct amil_record *r, const char *key, const char *fmt, ...)
{
    char value[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(value, sizeof value, fmt, ap);
    va_end(ap);
    amil_record_set_meta(r, key, value);
}

int amil_record_meta_long(const struct amil_record *r, const char *key, long min, long max,
                          long *out)
{
    const char *v = amil_record_meta(r, key);
    if (!v)
        return 0;
    if (amil_parse_long(v, min, max, out) < 0) {
        char where[300];
        snprintf(where, sizeof where, "metadata %s", key);
        return amil_fail_in(where);
    }
    return 1;
}

long amil_record_image_index(const struct amil_record *r)
{
    long index = 0;
    return amil_record_meta_long(r, "image_index", 0, LONG_MAX, &index) < 0 ? -1 : index;
}

const char *amil_record_source_path(const struct amil_record *r, char *buf, size_t size)
{
    const char *source = amil_record_meta(r, "source"), *dir = amil_record_meta(r, "source_dir");
    if (!source || source[0] == '/' || strcmp(source, "-") == 0 || access(source, F_OK) == 0 ||
        !dir)
        return source;
    if (snprintf(buf, size, "%s/%s", dir, source) < (int)size && access(buf, F_OK) == 0)
        return buf;
    return source;
}

int amil_record_is_source(const struct amil_record *r, const char *image)
{
    char buf[4096];
    const char *source = amil_record_source_path(r, buf, sizeof buf);
    if (!source || strcmp(source, "-") == 0)
        return 1;
    if (access(source, F_OK) == 0)
        return amil_same_file(source, image);
    const char *a = strrchr(source, '/'), *b = strrchr(image, '/');
    return strcmp(a ? a + 1 : source, b ? b + 1 : image) == 0;
}

int amil_tensor_finite(const char *name, const float *v, int ndim, const int64_t *shape,
                       int axis)
{
    size_t count = 1;
    for (int d = 0; d < ndim; d++)
        count *= (size_t)shape[d];
    /* blocks checked by their bits (an exponent of all ones is an infinity
     * or NaN), which vectorizes: a ResNet18's weights took 23 ms one float
     * at a time; then the first bad block one at a time */
    enum { BLOCK = 4096 };
    size_t bad = 0;
    for (size_t at = 0; at < count; at += BLOCK) {
        size_t n = count - at < BLOCK ? count - at : BLOCK;
        uint32_t any = 0;
        for (size_t j = 0; j < n; j++) {
            uint32_t bits;
            memcpy(&bits, v + at + j, sizeof bits);
            any |= (bits & 0x7f800000u) == 0x7f800000u;
        }
        if (any)
            break;
        bad = at + n;
    }
    while (bad < count && isfinite(v[bad]))
        bad++;
    if (bad == count)
        return 0;
    int64_t at[AMIL_MAX_DIMS];   /* bad's indices, outermost first */
    size_t rest = bad;
    for (int d = ndim - 1; d >= 0; d--) {
        at[d] = (int64_t)(rest % (size_t)shape[d]);
        rest /= (size_t)shape[d];
    }
    char where[256] = "";
    size_t len = 0;
    for (int d = 0; d < ndim && len < sizeof where; d++)
        len += (size_t)snprintf(where + len, sizeof where - len, "%s%lld", d ? ", " : "",
                                (long long)at[d]);
    if (axis >= 0 && axis < ndim)
        return amil_fail("%s[%s] is %g: patch %lld is not a number", name, where,
                         (double)v[bad], (long long)at[axis]);
    return amil_fail("%s[%s] is %g, not a finite number", name, where, (double)v[bad]);
}

void amil_record_set_fingerprint(struct amil_record *r, const char *key, uint64_t fingerprint)
{
    amil_record_set_metaf(r, key, "%016llx", (unsigned long long)fingerprint);
}

int amil_record_fingerprint(const struct amil_record *r, const char *key, uint64_t *fingerprint)
{
    const char *text = amil_record_meta(r, key);
    if (!text)
        return 0;
    /* exactly as written: strtoull alone takes a sign, spaces and 0x */
    if (strlen(text) != 16 || strspn(text, "0123456789abcdef") != 16)
        return amil_fail("metadata %s '%s' is not a fingerprint (16 hex digits)", key, text);
    *fingerprint = strtoull(text, NULL, 16);
    return 1;
}

const char *amil_record_made_by(const struct amil_record *r, const char *key, uint64_t made,
                                char *buf, size_t size)
{
    const char *by = amil_record_meta(r, strcmp(key, "features_by") == 0 ? "features_model"
                                                                         : "attention_model");
    snprintf(buf, size, "weights %016llx%s%s%s", (unsigned long long)made, by ? " (" : "",
             by ? by : "", by ? ")" : "");
    return buf;
}

int amil_check_stage(const struct amil_record *r, const char *key, uint64_t want,
                     const char *model)
{
    uint64_t made;
    int got = amil_record_fingerprint(r, key, &made);
    if (got <= 0 || made == want)
        return got;
    const char *stage = strcmp(key, "features_by") == 0 ? "features" : "embedding";
    char by[4200];
    return amil_fail("its %s %s made by %s, not by %s's (%016llx)", stage,
                     stage[0] == 'f' ? "were" : "was", amil_record_made_by(r, key, made, by,
                                                                          sizeof by),
                     model, (unsigned long long)want);
}

int amil_record_append(struct amil_record *r, const struct amil_record *part)
{
    if (part->ntensors != r->ntensors)
        return amil_fail("it has %zu tensors, the bag's first part %zu", part->ntensors,
                         r->ntensors);
    for (size_t i = 0; i < r->ntensors; i++) {   /* all checked before any is changed */
        const struct amil_tensor *t = &r->tensors[i];
        const struct amil_tensor *p = amil_record_find(part, t->name);
        int same = p && p->dtype == t->dtype && p->ndim == t->ndim && t->ndim >= 1;
        for (int d = 1; same && d < t->ndim; d++)
            same = p->shape[d] == t->shape[d];
        if (!same)
            return amil_fail("its %s is not of the first part's dtype and shape", t->name);
        if (p->nbytes > AMIL_MAX_DATA - t->nbytes)
            return amil_fail("the bag's %s would be over %llu bytes", t->name, AMIL_MAX_DATA);
        /* a tensor of no bytes ([2^53 - 1, 0]) can still sum past int64 */
        if (p->shape[0] > AMIL_MAX_DIM - t->shape[0])
            return amil_fail("the bag's %s would have over 2^53 rows", t->name);
    }
    for (size_t i = 0; i < r->ntensors; i++) {
        struct amil_tensor *t = &r->tensors[i];
        const struct amil_tensor *p = amil_record_find(part, t->name);
        unsigned char *data;
        if (t->borrowed) {   /* out of the mapping, into memory of its own */
            data = amil_xmalloc(t->nbytes + p->nbytes + 1);
            memcpy(data, t->data, t->nbytes);
        } else {
            data = amil_xrealloc(t->data, t->nbytes + p->nbytes + 1);
        }
        memcpy(data + t->nbytes, p->data, p->nbytes);
        t->data = data;
        t->borrowed = 0;
        t->nbytes += p->nbytes;
        t->shape[0] += p->shape[0];
    }
    return 0;
}
