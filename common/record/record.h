/* record.h: a record of the stream (amil-stream(5)) in memory: its
 * tensors, their dtypes and shapes, its metadata, and the fingerprints
 * of the weights that made its stages. */
#ifndef AMIL_RECORD_H
#define AMIL_RECORD_H

#include <stddef.h>
#include <stdint.h>

/* Every safetensors dtype, so that tensors a program does not use pass
 * through it unchanged; the programs themselves use U8, I32, I64 and F32. */
enum amil_dtype {
    AMIL_BOOL, AMIL_U8, AMIL_I8, AMIL_U16, AMIL_I16, AMIL_F16, AMIL_BF16,
    AMIL_U32, AMIL_I32, AMIL_F32, AMIL_U64, AMIL_I64, AMIL_F64, AMIL_NDTYPES
};

#define AMIL_MAX_DIMS 8
/* The largest dimension a header can state exactly (JSON numbers are
 * doubles): 2^53.  A sum of dimensions (a slide's parts joined) is held to
 * it too. */
#define AMIL_MAX_DIM ((int64_t)1 << 53)
/* The safetensors reference refuses headers over 100 MB; so do we. */
#define AMIL_MAX_HEADER 100000000ULL
/* No record's data buffer may claim more than this (16 GiB); a claim within
 * it is still read in bounded steps, so a truncated stream that claims much
 * does not make us allocate much. */
#define AMIL_MAX_DATA (1ULL << 34)

struct amil_tensor {
    char *name;
    enum amil_dtype dtype;
    int ndim;
    int64_t shape[AMIL_MAX_DIMS];
    size_t nbytes;          /* elements × dtype size */
    void *data;             /* malloc'ed and owned by the tensor, or, when
                               borrowed, inside the record's mapping */
    int borrowed;
};

/* A model file's first record read into memory of its own (amil_record_load,
 * on 2 MiB pages where the kernel has them): its tensors are used where
 * they lie, and whatever is made from them (a CNN's frozen weights) holds
 * a reference, so the record can be freed first. */
struct amil_mapping {
    void *base;
    size_t length;
    int refs;
};
struct amil_mapping *amil_mapping_ref(struct amil_mapping *m);   /* returns m */
void amil_mapping_unref(struct amil_mapping *m);                 /* NULL is fine */

struct amil_meta {
    char *key, *value;      /* both owned */
};

/* One record: its tensors and metadata in the order of the header. */
struct amil_record {
    struct amil_tensor *tensors;
    size_t ntensors, tensors_cap;
    struct amil_meta *meta;
    size_t nmeta, meta_cap;
    struct amil_mapping *mapping;   /* what borrowed tensors point into */
};

size_t amil_dtype_size(enum amil_dtype t);
const char *amil_dtype_name(enum amil_dtype t);
/* Returns the dtype for a safetensors name ("F32"), or -1. */
int amil_dtype_parse(const char *name);

void amil_record_init(struct amil_record *r);
void amil_record_free(struct amil_record *r);

struct amil_tensor *amil_record_find(const struct amil_record *r, const char *name);
/* The helpers below that build records die if memory runs out (as llm.c's
 * mallocCheck does); reading and writing report every other failure. */

/* Adds (or replaces) a tensor with a zeroed buffer of the right size and
 * returns it; shape has ndim entries. */
struct amil_tensor *amil_record_put(struct amil_record *r, const char *name,
                                    enum amil_dtype dtype, int ndim, const int64_t *shape);
/* Removes the named tensor, if any; returns whether it was there. */
int amil_record_remove(struct amil_record *r, const char *name);
/* Appends part's tensors to r's of the same names along the first
 * dimension (a slide's parts into one bag): 0, or -1 with a message, r
 * unchanged, when part has other tensors, dtypes or trailing dimensions,
 * or the sum would pass AMIL_MAX_DATA bytes or AMIL_MAX_DIM rows. */
int amil_record_append(struct amil_record *r, const struct amil_record *part);
/* Checks that the named tensor exists with this dtype and rank; returns it,
 * or NULL with a message. */
struct amil_tensor *amil_record_expect(const struct amil_record *r, const char *name,
                                       enum amil_dtype dtype, int ndim);
/* Whether every value of F32 tensor t is finite: 0, or -1 with a message
 * naming the first that is not by its indices ("features[17, 3] is nan"),
 * and the patch when axis (of the patches: 0 for features, 1 for
 * attention) is not -1.  A value that is not finite is an error, never a
 * class or a weight. */
int amil_tensor_finite(const char *name, const float *v, int ndim, const int64_t *shape,
                       int axis);

/* Which weights made a stage of a record (amil-stream(5)): features_by
 * (featurize) and embedding_by (attend) hold a fingerprint of them
 * (amil_params_fingerprint) as 16 hex digits.  amil_record_fingerprint:
 * 1 found (into *fingerprint), 0 absent, -1 malformed (with a message).
 * amil_check_stage: 1 when key says want, 0 when the record does not say
 * (features from elsewhere), -1 with a message naming both weights (and
 * the model files, where the record names one) when they differ. */
void amil_record_set_fingerprint(struct amil_record *r, const char *key, uint64_t fingerprint);
int amil_record_fingerprint(const struct amil_record *r, const char *key, uint64_t *fingerprint);
int amil_check_stage(const struct amil_record *r, const char *key, uint64_t want,
                     const char *model);
/* "weights <fingerprint made> (<the model file the record names>)": who
 * made the stage key says, for messages; into buf (size bytes). */
const char *amil_record_made_by(const struct amil_record *r, const char *key, uint64_t made,
                                char *buf, size_t size);

const char *amil_record_meta(const struct amil_record *r, const char *key);
/* Sets key to value, or with value NULL removes it. */
void amil_record_set_meta(struct amil_record *r, const char *key, const char *value);
void amil_record_set_metaf(struct amil_record *r, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Reads an integer metadata value in [min, max]: 1 found, 0 absent,
 * -1 present but not such an integer (with a message). */
int amil_record_meta_long(const struct amil_record *r, const char *key, long min,
                          long max, long *out);
/* Which image of its source file a record was cut from: image_index (set
 * by bagify from the second image of a stream on), 0 when absent; -1 with a
 * message when malformed. */
long amil_record_image_index(const struct amil_record *r);
/* Where a record's image is: its source as given to bagify if that names a
 * file from here (or is absolute, or "-"); else the source under the
 * folder bagify ran in (source_dir), if a file is there; else the source
 * (so that a message names what was given).  NULL if it has no source.
 * buf holds a path that is built. */
const char *amil_record_source_path(const struct amil_record *r, char *buf, size_t size);
/* Whether image is the record's source: the same file, or, when the
 * source is not found here, the same base name; 1 also when the record
 * has no source (or standard input's). */
int amil_record_is_source(const struct amil_record *r, const char *image);

#endif
