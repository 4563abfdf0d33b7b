/* params.h: a network's parameters as a table of named tensors over one
 * flat float buffer (llm.c keeps GPT-2's so), so that the optimizer is one
 * loop over the buffer and a model file is one record.  The A-MIL model and
 * the CNN baselines build their tables here; the optimizer reads them.
 *
 * Also here: how pixels become a network's input (the normalization a
 * model file names), which every network and its file share.
 */
#ifndef AMIL_PARAMS_H
#define AMIL_PARAMS_H

#include <stddef.h>
#include <stdint.h>

#include "base/base.h"
#include "record/record.h"

/* How pixels become the network's input: x / 255 (ToTensor, the paper's),
 * then for the others ToTensor + Normalize(mean, std) per channel: MNIST's
 * (0.1307, 0.3081; Ilse et al.'s MNIST-bags) or ImageNet's
 * ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225); RGB only). */
enum amil_norm { AMIL_NORM_NONE, AMIL_NORM_MNIST, AMIL_NORM_IMAGENET };
const char *amil_norm_name(enum amil_norm norm);   /* "x/255", "mnist", "imagenet" */
int amil_norm_parse(const char *name);            /* also "none"; -1 if unknown */
/* table[c][v]: the network's input for byte v of channel c. */
void amil_norm_table(enum amil_norm norm, float table[3][256]);
/* The record's "normalization" (x/255 when absent) into *norm: 0, or -1
 * with a message naming what it is not. */
int amil_norm_of_record(const struct amil_record *r, enum amil_norm *norm);

#define AMIL_PARAMS_MAX 512
/* The most floats a table may describe (4 GiB), so that sizes read from a
 * hostile file fail here instead of at allocation. */
#define AMIL_PARAMS_MAX_WEIGHTS ((size_t)1 << 30)

struct amil_param {
    char name[80];          /* the state_dict name: "feature_extractor_part1.0.weight" */
    int ndim;
    int64_t shape[4];
    size_t offset, count;   /* into the flat buffer */
    size_t fan_in;          /* PyTorch's default init draws U(±1/√fan_in); 0
                               marks a norm's tensor or a scale (weight,
                               running_var and gamma 1, the rest 0) */
    float *data;            /* its values: weights + offset, or where a file's
                               mapping holds a frozen one (cnn.c borrows) */
};

struct amil_params {
    int n;
    struct amil_param at[AMIL_PARAMS_MAX];
    size_t nweights;        /* the buffer's floats: every parameter starts on a
                               64-byte line (the kernels stream weights), the
                               gaps zero, so their gradients and every
                               optimizer's steps are zero too */
    float *weights;         /* 64-byte aligned, in buffer */
    void *buffer;           /* what was allocated */
};

/* Appends a parameter of this shape (ndim ≤ 4) and returns its index, or
 * -1 with a message if the table is full or the counts overflow or pass
 * AMIL_PARAMS_MAX_WEIGHTS: a table built from hostile sizes fails instead
 * of describing a buffer smaller than its parameters. */
int amil_params_add(struct amil_params *t, const char *name, int ndim,
                    const int64_t *shape, size_t fan_in);
/* The buffer, zeroed (pages a borrowed parameter leaves untouched cost
 * nothing), and each parameter's data in it. */
void amil_params_alloc(struct amil_params *t);
void amil_params_free(struct amil_params *t);
/* The parameter with this name, or NULL. */
const struct amil_param *amil_params_find(const struct amil_params *t, const char *name);
/* PyTorch's defaults, from a GSL mt19937 seeded with seed, in table order:
 * U(-1/√fan_in, 1/√fan_in) for weights and biases (kaiming_uniform with
 * a = √5); norms and scales the identity, embeddings 0 (no draw). */
void amil_params_randomize(struct amil_params *t, unsigned long seed);

/* Each parameter as an F32 tensor of its name, in table order; after a
 * batch norm's running_var, its num_batches_tracked (I64 0), which
 * PyTorch's load_state_dict wants. */
void amil_params_to_record(const struct amil_params *t, struct amil_record *r);
/* Loading checks every tensor against the table before the caller
 * allocates the buffer, so that what a file's header claims is never
 * trusted beyond the data it holds.  check: 0, or -1 with a message if a
 * parameter's tensor is missing, not F32 of its shape, or holds a value
 * that is not finite (named by its indices); copy: copies
 * them into their data (checked ones only). */
int amil_params_check(const struct amil_params *t, const struct amil_record *r);
/* A fingerprint of parameters [from, to) of t (their names, shapes and
 * values), chained after another (0 to start): what a record says made its
 * features or its embedding (amil-stream(5): features_by, embedding_by). */
uint64_t amil_params_fingerprint(const struct amil_params *t, int from, int to, uint64_t after);
void amil_params_copy(struct amil_params *t, const struct amil_record *r);
/* Whether tensor t (NULL: none) is F32 of p's shape. */
int amil_param_fits(const struct amil_param *p, const struct amil_tensor *t);

#endif
