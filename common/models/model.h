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
};

struct amil_model {
    const struct amil_model_ops *ops;
    const char *path;       /* the file it came from, for messages */
    void *impl;             /* the family's model (struct amil_mil, ...) */
    void *work;             /* and its buffers, grown to fit */
    /* the fingerprints of the weights that make a record's features and
     * embedding (amil_check_stage): knows_features is 0 for a CLAM head
     * that does not say which backbone's features it reads, and for net */
    uint64_t features_by, embedding_by;
    int knows_features;
};

/* The model in the file at path, of whichever family reads it: 0, or -1
 * with a message naming path. */
int amil_model_load(struct amil_model *m, const char *path);
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

extern const struct amil_model_ops amil_mil_model, amil_clam_model, amil_cnn_model;

#endif
