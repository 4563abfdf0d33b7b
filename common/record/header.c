/* header.c: a record's safetensors header, parsed and checked, and a
 * record written whole (header and data).
 *
 * The header maps tensor names to {"dtype", "shape", "data_offsets"} and may
 * hold "__metadata__", an object of strings.  Offsets are relative to the
 * data buffer; the tensors must tile it exactly, from byte 0 to its end, with
 * neither gaps nor overlaps (the safetensors reference's rule).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "base/base.h"
#include "record/header.h"
#include "record/record.h"
#include "record/stream.h"

/* JSON numbers are doubles; integers above 2^53 are not exact. */
#define MAX_JSON_INT ((double)AMIL_MAX_DIM)

/* ---- the header --------------------------------------------------------- */


static int json_uint(const cJSON *j, uint64_t *out)
{
    if (!cJSON_IsNumber(j))
        return -1;
    double v = j->valuedouble;
    if (!(v >= 0 && v <= MAX_JSON_INT) || v != (double)(uint64_t)v)
        return -1;
    *out = (uint64_t)v;
    return 0;
}

static int by_key(const void *a, const void *b)
{
    return strcmp(((const struct amil_meta *)a)->key, ((const struct amil_meta *)b)->key);
}

/* Appends every pair, then finds twins by sorting a copy: n log n, where a
 * lookup per key would make a header of many keys quadratic. */
static int parse_metadata(const cJSON *meta, struct amil_record *r)
{
    if (!cJSON_IsObject(meta))
        return amil_fail("__metadata__ is not an object");
    for (const cJSON *m = meta->child; m; m = m->next) {
        if (!cJSON_IsString(m))
            return amil_fail("metadata value of '%s' is not a string", m->string);
        if (r->nmeta == r->meta_cap) {
            r->meta_cap = r->meta_cap ? 2 * r->meta_cap : 16;
            r->meta = amil_xrealloc(r->meta, r->meta_cap * sizeof *r->meta);
        }
        r->meta[r->nmeta].key = amil_xstrdup(m->string);
        r->meta[r->nmeta].value = amil_xstrdup(m->valuestring);
        r->nmeta++;
    }
    if (r->nmeta == 0)
        return 0;
    struct amil_meta *sorted = amil_xmalloc(r->nmeta * sizeof *sorted);
    memcpy(sorted, r->meta, r->nmeta * sizeof *sorted);
    qsort(sorted, r->nmeta, sizeof *sorted, by_key);
    for (size_t i = 1; i < r->nmeta; i++)
        if (strcmp(sorted[i - 1].key, sorted[i].key) == 0) {
            amil_fail("metadata key '%s' appears twice", sorted[i].key);
            free(sorted);
            return -1;
        }
    free(sorted);
    return 0;
}

/* Checks one tensor entry and adds it, without data, to r. */
static int parse_tensor(const cJSON *j, struct amil_record *r, struct amil_entry *e)
{
    const char *name = j->string;
    if (!cJSON_IsObject(j))
        return amil_fail("tensor '%s': entry is not an object", name);
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(j, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(j, "shape");
    const cJSON *offsets = cJSON_GetObjectItemCaseSensitive(j, "data_offsets");
    if (!dtype)
        return amil_fail("tensor '%s': no dtype", name);
    if (!shape)
        return amil_fail("tensor '%s': no shape", name);
    if (!offsets)
        return amil_fail("tensor '%s': no data_offsets", name);

    int t = cJSON_IsString(dtype) ? amil_dtype_parse(dtype->valuestring) : -1;
    if (t < 0)
        return amil_fail("tensor '%s': unknown dtype %s", name,
                         cJSON_IsString(dtype) ? dtype->valuestring : "(not a string)");

    if (!cJSON_IsArray(shape))
        return amil_fail("tensor '%s': shape is not an array", name);
    int ndim = cJSON_GetArraySize(shape);
    if (ndim > AMIL_MAX_DIMS)
        return amil_fail("tensor '%s': %d dimensions, more than %d", name, ndim,
                         AMIL_MAX_DIMS);
    int64_t dims[AMIL_MAX_DIMS];
    uint64_t count = 1;
    int d = 0;
    for (const cJSON *s = shape->child; s; s = s->next, d++) {
        uint64_t n;
        if (json_uint(s, &n) < 0)
            return amil_fail("tensor '%s': shape entry %d is not a non-negative integer",
                             name, d);
        /* Checked in order, as the reference's checked_mul fold, and
         * against int64, which shapes are stored in. */
        if (n > INT64_MAX || (n != 0 && count > (uint64_t)INT64_MAX / n))
            return amil_fail("tensor '%s': shape product overflows", name);
        count *= n;
        dims[d] = (int64_t)n;
    }
    uint64_t size = amil_dtype_size(t);
    if (count > AMIL_MAX_DATA / size)
        return amil_fail("tensor '%s': shape product overflows the data limit", name);
    uint64_t nbytes = count * size;

    if (!cJSON_IsArray(offsets) || cJSON_GetArraySize(offsets) != 2 ||
        json_uint(offsets->child, &e->begin) < 0 ||
        json_uint(offsets->child->next, &e->end) < 0)
        return amil_fail("tensor '%s': data_offsets is not two non-negative integers",
                         name);
    if (e->begin > e->end || e->end > AMIL_MAX_DATA)
        return amil_fail("tensor '%s': data_offsets [%llu, %llu] out of range", name,
                         (unsigned long long)e->begin, (unsigned long long)e->end);
    if (e->end - e->begin != nbytes)
        return amil_fail("tensor '%s': data_offsets span %llu bytes, but %s%s needs %llu",
                         name, (unsigned long long)(e->end - e->begin), amil_dtype_name(t),
                         ndim ? " × shape" : "", (unsigned long long)nbytes);

    if (r->ntensors == r->tensors_cap) {
        r->tensors_cap = r->tensors_cap ? 2 * r->tensors_cap : 8;
        r->tensors = amil_xrealloc(r->tensors, r->tensors_cap * sizeof *r->tensors);
    }
    struct amil_tensor *x = &r->tensors[r->ntensors];
    memset(x, 0, sizeof *x);
    x->name = amil_xstrdup(name);
    x->dtype = t;
    x->ndim = ndim;
    memcpy(x->shape, dims, sizeof dims[0] * ndim);
    x->nbytes = nbytes;
    e->tensor = r->ntensors++;
    return 0;
}

static int by_begin(const void *a, const void *b)
{
    const struct amil_entry *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    return (x->end > y->end) - (x->end < y->end);
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const struct amil_tensor *)a)->name,
                  ((const struct amil_tensor *)b)->name);
}

/* Parses a header into r (tensors without data) and *entries sorted by
 * offset; *data_len is the length of the data buffer. */
int amil_header_parse(const char *text, size_t len, struct amil_record *r,
                      struct amil_entry **entries, uint64_t *data_len)
{
    /* C strings end at a NUL: a name or value holding one would be cut
     * short without a word, so refuse it. */
    for (size_t i = 0; i + 1 < len; i++)
        if (text[i] == '\\') {   /* an escape: look at it, then step over it */
            if (i + 6 <= len && memcmp(text + i + 1, "u0000", 5) == 0)
                return amil_fail("a string in the header holds a NUL (\\u0000)");
            i++;
        }
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root)
        return amil_fail("invalid JSON in header");
    int status = -1;
    for (const char *p = end; p < text + len; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r' && *p != '\0') {
            amil_fail("invalid JSON in header: text after the object");
            goto out;
        }
    if (!cJSON_IsObject(root)) {
        amil_fail("header is not a JSON object");
        goto out;
    }
    size_t n = 0;
    for (const cJSON *j = root->child; j; j = j->next)
        n++;
    *entries = amil_xcalloc(n, sizeof **entries);
    size_t ne = 0;
    int seen_metadata = 0;
    for (const cJSON *j = root->child; j; j = j->next) {
        if (strcmp(j->string, "__metadata__") == 0) {
            if (seen_metadata++) {
                amil_fail("__metadata__ appears twice");
                goto out;
            }
            if (parse_metadata(j, r) < 0)
                goto out;
        } else if (parse_tensor(j, r, &(*entries)[ne++]) < 0) {
            goto out;
        }
    }

    /* Names must be unique; sort a copy to find twins in n log n. */
    struct amil_tensor *sorted = amil_xmalloc(ne * sizeof *sorted + 1);
    if (ne)   /* r->tensors is NULL in a record of metadata alone */
        memcpy(sorted, r->tensors, ne * sizeof *sorted);
    qsort(sorted, ne, sizeof *sorted, by_name);
    for (size_t i = 1; i < ne; i++)
        if (strcmp(sorted[i - 1].name, sorted[i].name) == 0) {
            amil_fail("tensor '%s' appears twice", sorted[i].name);
            free(sorted);
            goto out;
        }
    free(sorted);

    qsort(*entries, ne, sizeof **entries, by_begin);
    uint64_t expected = 0;
    for (size_t i = 0; i < ne; i++) {
        const struct amil_entry *e = &(*entries)[i];
        const char *name = r->tensors[e->tensor].name;
        if (e->begin < expected) {
            amil_fail("tensor '%s': data_offsets overlap the tensor before", name);
            goto out;
        }
        if (e->begin > expected) {
            amil_fail("tensor '%s': data_offsets leave a gap of %llu bytes before it",
                      name, (unsigned long long)(e->begin - expected));
            goto out;
        }
        expected = e->end;
    }
    *data_len = expected;
    status = 0;
out:
    cJSON_Delete(root);
    return status;
}

/* ---- reading ------------------------------------------------------------ */

/* ---- writing ------------------------------------------------------------ */

int amil_record_write(FILE *f, const struct amil_record *r)
{
    /* Data by decreasing element size (stable), so each tensor is aligned. */
    size_t *order = amil_xmalloc(r->ntensors * sizeof *order + 1);
    size_t n = 0;
    for (size_t size = 8; size >= 1; size /= 2)
        for (size_t i = 0; i < r->ntensors; i++)
            if (amil_dtype_size(r->tensors[i].dtype) == size)
                order[n++] = i;
    uint64_t *begin = amil_xmalloc(r->ntensors * sizeof *begin + 1);
    uint64_t offset = 0;
    for (size_t k = 0; k < n; k++) {
        begin[order[k]] = offset;
        offset += r->tensors[order[k]].nbytes;
    }

    cJSON *root = cJSON_CreateObject();
    if (r->nmeta) {
        cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
        for (size_t i = 0; i < r->nmeta; i++)
            cJSON_AddStringToObject(meta, r->meta[i].key, r->meta[i].value);
    }
    for (size_t i = 0; i < r->ntensors; i++) {
        const struct amil_tensor *t = &r->tensors[i];
        cJSON *j = cJSON_AddObjectToObject(root, t->name);
        cJSON_AddStringToObject(j, "dtype", amil_dtype_name(t->dtype));
        cJSON *shape = cJSON_AddArrayToObject(j, "shape");
        for (int d = 0; d < t->ndim; d++)
            cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[d]));
        cJSON *offsets = cJSON_AddArrayToObject(j, "data_offsets");
        cJSON_AddItemToArray(offsets, cJSON_CreateNumber((double)begin[i]));
        cJSON_AddItemToArray(offsets,
                             cJSON_CreateNumber((double)(begin[i] + t->nbytes)));
    }
    char *json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    free(begin);
    if (!json) {
        free(order);
        return amil_fail("out of memory writing a header");
    }
    size_t len = strlen(json), padded = (len + 7) / 8 * 8;
    unsigned char lenbuf[8];
    errno = 0;
    for (int i = 0; i < 8; i++)
        lenbuf[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    int ok = fwrite(lenbuf, 1, 8, f) == 8 && fwrite(json, 1, len, f) == len;
    for (size_t i = len; ok && i < padded; i++)
        ok = putc(' ', f) != EOF;
    for (size_t k = 0; ok && k < n; k++) {
        const struct amil_tensor *t = &r->tensors[order[k]];
        ok = fwrite(t->data, 1, t->nbytes, f) == t->nbytes;
    }
    int saved = errno;   /* the failed write's */
    free(json);
    free(order);
    return ok ? 0 : amil_fail("write error: %s", strerror(saved ? saved : EIO));
}
