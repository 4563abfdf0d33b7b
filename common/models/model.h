/* model.h: every model family behind one table of operations, as the
 * kernels are behind theirs (kernels.h).  A family is one file that
 * exports one const struct amil_model_ops (mil_model.c, clam_model.c,
 * cnn_model.c) and one entry in model.c's list; the programs hold a
 * struct amil_model and call through its table, never naming a family.
 *
 * The stages are the programs' (amil-stream(5)): featurize reads a
 * record's patches or image and adds `features`; attend reads `features`
 * and adds `attention` (K, N) and `embedding` (K, L); classify reads what
 * the family classifies from (an embedding, an image, cached features)
 * and gives the probabilities. */
#ifndef AMIL_MODEL_H
#define AMIL_MODEL_H

#include <stdint.h>

#include <gsl/gsl_rng.h>

#include "compute/metrics.h"
#include "compute/optim.h"
#include "compute/params.h"
#include "media/augment.h"
#include "record/record.h"

/* The most classes a program takes: ImageNet's, for torchvision's weights. */
#define AMIL_MAX_CLASSES 1000

enum amil_stage {
    AMIL_STAGE_FEATURES, AMIL_STAGE_ATTENTION, AMIL_STAGE_CLASSES, AMIL_STAGE_GRADCAM
};
/* A bag's patches (attention-MIL), an image (the CNNs), cached features
 * (CLAM's head). */
enum amil_input { AMIL_INPUT_PATCHES, AMIL_INPUT_IMAGE, AMIL_INPUT_FEATURES };

struct amil_model;
struct amil_image;

/* Grad-CAM (Selvaraju et al. 2017) of a bag: each patch's map at the
 * family's layer, for the picture the caller lays them into. */
struct amil_bag_cams {
    float *cams;            /* (N, side, side), the caller's to free */
    int n, side;
    int target;             /* the class explained */
    int patch;              /* a patch's side, in its own pixels */
    const char *layer;      /* the maps' layer, by its state_dict name */
};
/* Grad-CAM and Guided Backpropagation of an image, at its size: each
 * pixel the mean over the tiles of the model's input that cover it. */
struct amil_image_maps {
    float *cam;             /* (H, W), or NULL when not asked */
    float *guided;          /* (3, H, W), or NULL when not asked */
    unsigned *covers;       /* (H, W): the tiles over each pixel */
    int target;             /* the class explained */
    const char *layer;      /* the cam's layer, by its state_dict name */
    const char *arch;       /* the model's name, for the record */
};

struct amil_model_ops {
    const char *units;      /* what featurize's progress line counts */
    enum amil_input input;  /* what the family's first stage reads */
    /* Whether a model file's record r is of this family: tried in model.c's
     * order, the first that says yes reads it. */
    int (*recognise)(const struct amil_record *r);
    /* The family's model from r into m->impl and its work into m->work
     * (both allocated), and the fingerprints of m; 0, or -1 with a message. */
    int (*from_record)(struct amil_model *m, struct amil_record *r);
    void (*free)(struct amil_model *m);   /* impl and work */
    int (*classes)(const struct amil_model *m);
    /* How many instances record r holds for m (its patches, its
     * features), checked against m: N ≥ 1, or -1 with a message.  NULL
     * where the family reads images, not bags. */
    long (*bag)(const struct amil_model *m, const struct amil_record *r);
    /* NULL when m runs stage, else why not (the message after its path). */
    const char *(*lacks)(const struct amil_model *m, enum amil_stage stage);
    /* featurize and attend: r's input read, the stage's tensors added, the
     * name of the tensor read in *consumed; the units of work done
     * (patches, images) or -1 with a message. */
    long (*featurize)(struct amil_model *m, struct amil_record *r, const char **consumed);
    long (*attend)(struct amil_model *m, struct amil_record *r, const char **consumed);
    /* r's probabilities (classes) into prob: the name of the tensor read,
     * or NULL with a message. */
    const char *(*classify)(struct amil_model *m, const struct amil_record *r, float *prob);
    /* The class predicted from probabilities prob. */
    int (*predict)(const struct amil_model *m, const float *prob);
    /* Grad-CAM, where the family reads its input (NULL where it has
     * none).  cam_layer: the state_dict name of the layer asked for (NULL:
     * the family's own), or NULL with a message when m has no such layer
     * of maps.  gradcam_bag: of bag r for class target (-1: the one
     * predicted), the bag's work freed after; gradcam_image: of image img
     * (name: its file, for messages) at that layer, with the cam, the
     * guided map or both.  0, or -1 with a message. */
    const char *(*cam_layer)(const struct amil_model *m, const char *layer);
    int (*gradcam_bag)(struct amil_model *m, const struct amil_record *r, int target,
                       struct amil_bag_cams *out);
    int (*gradcam_image)(struct amil_model *m, const struct amil_image *img, const char *name,
                         const char *layer, int target, int cam, int guided,
                         struct amil_image_maps *out);
    const char *noun;       /* the family in messages: "an attention-MIL model" */
    /* The metadata keys a program may set on a model file as it loads it
     * (amil_model_load_with), space-separated, or NULL: none. */
    const char *settings;
    const struct amil_train_ops *train;   /* NULL where train cannot fit one */
};

struct amil_model {
    const struct amil_model_ops *ops;
    const char *path;       /* the file it came from, for messages */
    void *impl;             /* the family's model (struct amil_mil, ...) */
    void *work;             /* and its buffers, grown to fit */
    void *trainer;          /* what training adds to them (amil_train_ops) */
    /* the fingerprints of the weights that make a record's features and
     * embedding (amil_check_stage): knows_features is 0 for a CLAM head
     * that does not say which backbone's features it reads, and for net */
    uint64_t features_by, embedding_by;
    int knows_features;
};

/* ---- training (train(1)) -------------------------------------------------
 *
 * A set's records each hold samples (a bag, an image to crop, an image's
 * tiles); a step draws `batch` of them, the family's take copies each into
 * its trainer's batch, and its step runs forward and backward over them.
 * A bag family takes one bag a step; a batch family draws samples across
 * records. */

/* What a new model is made of and trained with: the command line's. */
struct amil_train_spec {
    int variant;            /* the family's --arch word (its arch_parse) */
    const char *arch;       /* that word */
    int classes, hidden, attention, branches;
    enum amil_norm norm;
    int norm_given;         /* --normalize was given (else a file's holds) */
    const char *weights;    /* a batch family's starting weights, or NULL */
    const char *resume;     /* the checkpoint resumed from, or NULL */
    unsigned long seed;     /* of the initial weights */
    const struct amil_augment *augment;
};

/* The command line a family takes beyond the common one. */
enum {
    AMIL_TRAIN_BATCH = 1,     /* --batch and --weights */
    AMIL_TRAIN_SIZES = 2,     /* --hidden and --attention-dim */
    AMIL_TRAIN_BRANCHES = 4,  /* --branches above 1 */
    AMIL_TRAIN_AUGMENT = 8    /* --augment */
};

/* A family's defaults, where the paper (or CLAM) sets its own. */
struct amil_train_defaults {
    long epochs, batch, hidden, attention;
    double lr, decay, momentum;
    enum amil_optim_kind optimizer;
};

struct amil_train_ops {
    const char *unit;       /* a sample, in the progress line: "bag" */
    /* 1: take points into the record, which the trainer holds until the
     * step is done (a bag); 0: take copies the sample out of it */
    int holds;
    unsigned takes;         /* AMIL_TRAIN_* */
    struct amil_train_defaults defaults;
    int (*arch_parse)(const char *word);   /* the variant, or -1 */
    /* A trainer for m, as spec asks: m->impl NULL makes a new model (a
     * bag family's when its first bag says its shape, in check), else m
     * is a checkpoint's (a batch family's must be of spec's variant; a
     * bag family goes on with the checkpoint's own).  0, or -1 with a
     * message; *random_backbone set to 1 when a frozen backbone has no
     * weights given (for tests only). */
    int (*start)(struct amil_model *m, const struct amil_train_spec *spec,
                 int *random_backbone);
    /* The parameters, and *first the first that is trained. */
    struct amil_params *(*params)(struct amil_model *m, int *first);
    /* Checks record r of a set (*form: the set's, -1 until its first
     * record says, as a CNN's cached features), making the model from it
     * when it has no weights yet: the samples r holds, or -1 with a
     * message. */
    long (*check)(struct amil_model *m, struct amil_record *r, int *form);
    /* Sample `sample` of record r into slot k of the step (rng: crops,
     * augmentation): 0, or -1 when r is not what check found. */
    int (*take)(struct amil_model *m, const struct amil_record *r, long sample, int form,
                gsl_rng *rng, int k);
    /* Forward and backward over the n samples taken (rng: dropout), the
     * gradient added to grads (nweights): the mean loss; *errors the
     * samples predicted wrong. */
    double (*step)(struct amil_model *m, int n, float *grads, gsl_rng *rng, int *errors);
    /* What m makes of labelled record r of a set of form, without dropout:
     * 0, or -1 with a message. */
    int (*judge)(struct amil_model *m, struct amil_record *r, int form, struct amil_verdict *v);
    void (*to_record)(const struct amil_model *m, struct amil_record *r);
};

/* The entries of a family's amil_train_ops that are its static functions
 * of the fields' names: the table names no one else's. */
#define AMIL_TRAIN_FUNCTIONS                                                       \
    .start = start, .params = params, .check = check, .take = take, .step = step, \
    .judge = judge, .to_record = to_record

/* The family and variant of --arch word: its table, or NULL. */
const struct amil_model_ops *amil_model_arch(const char *word, int *variant);
/* The family whose model record r holds (the first that recognises it). */
const struct amil_model_ops *amil_model_family(const struct amil_record *r);

/* The model in the file at path, of whichever family reads it: 0, or -1
 * with a message naming path. */
int amil_model_load(struct amil_model *m, const char *path);
/* The same, with metadata set on the file's record before its family
 * reads it (what a command line says of the model: featurize --trunc):
 * settings holds key, value pairs, ended by a NULL key; a NULL value
 * leaves the key as the file has it.  A key the family does not take is
 * an error. */
int amil_model_load_with(struct amil_model *m, const char *path,
                         const char *const *settings);
void amil_model_free(struct amil_model *m);
/* 0 when m runs stage, else -1 with a message that names its file. */
int amil_model_runs(const struct amil_model *m, enum amil_stage stage);

/* What the families share in their stages.  The features r holds for m:
 * F32 (N ≥ 1, width), finite, and made by m's backbone where both say;
 * the tensor, or NULL with a message. */
const struct amil_tensor *amil_model_features_in(const struct amil_model *m,
                                                 const struct amil_record *r, int width);
/* Puts attention a (K, N) and embedding em (K, L) into r, checked finite
 * (finite weights and features can still overflow to inf, then NaN): 0,
 * or -1 with a message. */
int amil_model_put_attention(struct amil_record *r, const float *a, const float *em, int K,
                             int n, int L);
/* r's embedding: F32 (K, L) and finite; the tensor, or NULL with a message. */
const struct amil_tensor *amil_model_embedding_in(const struct amil_record *r, int K, int L);

/* What training adds to a bag family's model (m->trainer): the step's bag,
 * from the record (held by the trainer) or augmented. */
struct amil_bag_step {
    const struct amil_train_spec *spec;
    const void *input;      /* (n, ...): patches or features */
    int n;
    long label;
    uint8_t *augmented;     /* augmented patches, grown to fit */
};
/* A bag family's trainer: a new model's impl and work (zeroed, of their
 * sizes) when m has none, made whole by its first bag; its m->trainer. */
void amil_bag_trainer_start(struct amil_model *m, const struct amil_train_spec *spec,
                            size_t impl, size_t work);
void amil_bag_trainer_free(struct amil_model *m);

extern const struct amil_model_ops amil_mil_model, amil_clam_model, amil_cnn_model;

#endif
