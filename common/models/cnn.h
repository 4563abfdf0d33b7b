/* cnn.h: the paper's CNN baselines and the frozen backbones of slide
 * studies as a small graph of layers: the paper's own network (`net`, its
 * my_network/net.py), torchvision's VGG19, ResNets and ViTs with
 * torchvision's state_dict names, and timm's ViTs with timm's.
 *
 * A network is a list of layers in topological order; each reads the
 * outputs of one or two earlier layers (two: ResNet's residual sum) and
 * has its own output and gradient buffers, so forward is one pass down the
 * list and backward one pass up it, each layer adding its input's gradient
 * (+=: a layer read twice gets both).  Activations are PyTorch's NCHW, a
 * batch of B images.  A convolution's forward pass (stride 1 or 2, up to
 * 7×7: all of these networks') runs image by image on the kernels of
 * kernels.h: a frozen 3×3 one as Winograd's F(2×2, 3×3) (its transformed
 * weights made at first use and kept in the work), the others as broadcast
 * weights times shifted rows of the zero-padded input (no im2col); threads
 * split the positions.  Its backward is one matrix product per image,
 * (OC, C·K·K) × (C·K·K, OH·OW), on BLAS.
 *
 *   net       128×128: 5 × [conv 3×3 pad 1, leaky ReLU 0.01, max-pool 2]
 *             (64, 64, 128, 128, 128 channels), dropout 0.5, fc1 2048→1024,
 *             leaky ReLU, dropout 0.5, fc2 1024→classes; all trained.
 *   vgg19     torchvision's vgg19 (features.0 to features.36, avgpool 7×7,
 *             classifier.0 to classifier.6); classifier.6 is the new last
 *             layer (4096→classes), the rest frozen.
 *   resnet18  torchvision's resnet18 (batch norm in evaluation mode); fc is
 *             the new last layer (512→classes), the rest frozen.
 *   resnet50  torchvision's resnet50 (bottlenecks, the stride on their 3×3
 *             convolution), the same way: fc 2048→classes.
 *   resnet50_trunc  CLAM's: resnet50 through layer3, the average pool of
 *             its 1024 maps the features.
 *   vit_b_16, vit_l_16  torchvision's ViT-B/16 and ViT-L/16 (224×224, 12
 *             blocks of 768 and 12 heads; 24 of 1024 and 16 heads): the
 *             features are the class token after the final LayerNorm (or
 *             the patch tokens' mean); heads.head is the last layer.
 *   vit_base_patch16_224, vit_large_patch16_224  the same networks as timm
 *             lays them out (and pathology encoders ship them: UNI is the
 *             large one with LayerScale and no head); head is the last.
 *
 * The class scores are logits; the loss is softmax cross-entropy (the
 * paper's log-softmax with NLL for net, CrossEntropyLoss for the others).
 */
#ifndef AMIL_CNN_H
#define AMIL_CNN_H

#include <stddef.h>
#include <stdint.h>

#include "base/base.h"
#include "compute/metrics.h"
#include "compute/params.h"
#include "record/record.h"

/* The architectures: each a builder and a row of cnn.c's archs table (its
 * name, input side, last layer, the tensor that marks its state_dicts), in
 * this order; the compiler holds the table to the enum. */
enum amil_cnn_arch {
    AMIL_CNN_NET, AMIL_CNN_VGG19, AMIL_CNN_RESNET18, AMIL_CNN_RESNET50, AMIL_CNN_RESNET50_TRUNC,
    AMIL_CNN_VIT_B_16, AMIL_CNN_VIT_L_16, AMIL_CNN_VIT_BASE_TIMM, AMIL_CNN_VIT_LARGE_TIMM,
    AMIL_CNN_ARCHS
};

const char *amil_cnn_arch_name(enum amil_cnn_arch arch);   /* "net", "vgg19", ... */
int amil_cnn_arch_parse(const char *name);                 /* -1 if unknown */

/* A vision transformer's layers see a sequence of T tokens of width D as
 * an image of one channel, (1, T, D), a token a row; they run forward only
 * (frozen), and none of them is a map Grad-CAM can look at. */
enum amil_op {
    AMIL_OP_INPUT, AMIL_OP_CONV, AMIL_OP_BATCHNORM, AMIL_OP_RELU, AMIL_OP_LEAKY_RELU,
    AMIL_OP_MAXPOOL, AMIL_OP_AVGPOOL, AMIL_OP_LINEAR, AMIL_OP_DROPOUT, AMIL_OP_ADD,
    /* tokens: */
    AMIL_OP_EMBED,          /* image (3, H, W) to (1, 1 + N, D): the class token,
                               then the P×P patches through a linear layer
                               (the convolution of kernel and stride P), plus
                               the position embedding; kernel = P */
    AMIL_OP_LAYERNORM,      /* each row (eps 1e-6) */
    AMIL_OP_TOKEN_LINEAR,   /* each row through a linear layer */
    AMIL_OP_SELF_ATTENTION, /* (1, T, 3D) rows of q, k, v to (1, T, D); kernel =
                               the heads; no parameters of its own */
    AMIL_OP_GELU,
    AMIL_OP_SCALE,          /* each row times gamma (D): timm's LayerScale */
    AMIL_OP_POOL_TOKENS     /* (1, T, D) to (1, 1, D): the class token's row, or
                               the mean of the others (kernel = enum
                               amil_cnn_pool) */
};

struct amil_layer {
    enum amil_op op;
    char name[64];          /* "features.34", "layer4.1.conv2", "layer4.1" */
    int input, input2;      /* the layers read; input2 only for ADD, else -1 */
    int c, h, w;            /* output of one image; a linear's is (c, 1, 1) */
    int kernel, stride, pad;   /* convolution and max-pool; avgpool: none; the
                                  token layers' as enum amil_op says */
    int param;              /* first parameter (weight, then bias; batch norm:
                               weight, bias, running_mean, running_var), or -1 */
    int has_bias;
};

#define AMIL_CNN_MAX_LAYERS 320
#define AMIL_CNN_MAX_CLASSES 1000   /* ImageNet's, for torchvision's own weights */

/* How a ViT pools its tokens into features: the class token (after the
 * final LayerNorm), or the mean of the patch tokens (after that
 * LayerNorm, or with timm's fc_norm, before it). */
enum amil_cnn_pool { AMIL_POOL_TOKEN, AMIL_POOL_AVG };

/* What a file says of an architecture beyond its name (amil_cnn_form_of). */
struct amil_cnn_form {
    enum amil_cnn_pool pool;
    int layer_scale;        /* timm's blocks scale their branches (ls1, ls2) */
    int fc_norm;            /* timm's fc_norm: the LayerNorm after the mean */
    int bf16;               /* a ViT's linear layers and a CNN's convolutions
                               on panels or as F(2×2) in bfloat16 (weights
                               rounded once, sums in float32): metadata
                               precision = "bf16", featurize --precision */
};

struct amil_cnn {
    enum amil_cnn_arch arch;
    struct amil_cnn_form form;
    int classes;
    int size;               /* side of the square input: 128 or 224 */
    int channels;           /* 3 */
    enum amil_norm norm;
    int nlayers;
    struct amil_layer layers[AMIL_CNN_MAX_LAYERS];
    struct amil_params params;   /* a frozen one loaded from a file has its data
                               where the file's mapping holds it */
    struct amil_mapping *mapping;   /* that mapping, or NULL */
    int trained;            /* the parameters from this one on are trained
                               (in the buffer, one block for the optimizer) */
    int features;           /* the layer read by the last one: its output is
                               what featurize caches */
    int cam_layer;          /* Grad-CAM's layer unless told otherwise, or -1 */
    int headless;           /* loaded from a backbone without its last layer
                               (timm's num_classes=0): it only featurizes */
    int tiles_at_once;      /* what featurize runs as one batch: 1, or for a
                               ViT 16 (its rows are computed each alone, so
                               the bytes are a tile's alone, and its weights
                               are read once for 16 tiles: at 8, packing
                               them took a tenth of two threads' time) */
};

/* Sets up the network for inputs of height × width (0, 0: its own size),
 * of form (NULL: the architecture's plain one), weights zeroed.  Returns
 * 0, or -1 with a message (an input too small for the network, or for net
 * and the ViTs, not their own size). */
int amil_cnn_init(struct amil_cnn *m, enum amil_cnn_arch arch, int classes, int height,
                  int width, const struct amil_cnn_form *form);
/* The form of arch that record r's tensors and metadata say: a timm ViT
 * has LayerScale when r has blocks.0.ls1.gamma and fc_norm when it has
 * fc_norm.weight; a ViT pools as r's global_pool metadata says ("token"
 * or "avg", timm's words), else by the mean where it has an fc_norm, else
 * by the class token; precision "bf16" (where the CPU has AVX512_BF16
 * and AMIL_ISA allows AVX-512) or "f32".  0, or -1 with a message. */
int amil_cnn_form_of(enum amil_cnn_arch arch, const struct amil_record *r,
                     struct amil_cnn_form *form);
/* A network to train: amil_cnn_init at the architecture's own size, in
 * the form of the file of starting weights (NULL: none), randomized from
 * seed, of normalization norm, then the file's weights taken as
 * amil_cnn_load_weights does.  0, or -1 with a message. */
int amil_cnn_start(struct amil_cnn *m, enum amil_cnn_arch arch, int classes,
                   unsigned long seed, enum amil_norm norm, const char *weights, int keep_norm);
void amil_cnn_free(struct amil_cnn *m);
/* PyTorch's default initialization of every parameter: U(±1/√fan_in) for
 * convolutions and linears, batch norm weight 1, bias 0, running mean 0,
 * variance 1 (torchvision's own inits differ, but only the new last layer
 * is ever trained from scratch). */
void amil_cnn_randomize(struct amil_cnn *m, unsigned long seed);
/* Whether layer's output is feature maps, a layer Grad-CAM can look at:
 * not the input, and before the first average pool or linear layer. */
int amil_cnn_is_map(const struct amil_cnn *m, int layer);
/* The layer of this name, or -1.  "layerN" names ResNet's last block of
 * stage N. */
int amil_cnn_layer(const struct amil_cnn *m, const char *name);

/* Model files: the weights under their state_dict names (batch norm's
 * num_batches_tracked as I64 0) plus metadata (arch, classes, size,
 * channels, normalization; a ViT's global_pool).  Loading takes a bare
 * torchvision or timm state_dict too: the arch from the names, the
 * classes from the last layer; the num_batches_tracked tensors are
 * ignored.  A backbone without a last layer loads headless, of the
 * metadata's classes or 2.  Metadata trunc = "layer3" makes a resnet50
 * resnet50_trunc (CLAM's: through layer3, 1024 features). */
void amil_cnn_to_record(const struct amil_cnn *m, struct amil_record *r);
int amil_cnn_from_record(struct amil_cnn *m, struct amil_record *r);
/* Parameter i from r's tensor of its name (the caller has checked it): a
 * frozen one borrowed from r's mapping when r has one (no copy: VGG19's
 * 550 MB are used where the file lies), else copied into m->weights. */
void amil_cnn_take_param(struct amil_cnn *m, int i, const struct amil_record *r);
/* Starting weights from r (a model or a bare state_dict): every tensor of
 * the network by its name (as amil_cnn_take_param), the last layer's only
 * when both its tensors fit the model (not torchvision's 1000 ImageNet
 * classes: it keeps its fresh initialization).  Returns 0, or -1 with a
 * message naming a tensor missing or of the wrong shape. */
int amil_cnn_take_weights(struct amil_cnn *m, struct amil_record *r);
/* The same from the file path, whose normalization, if it names one,
 * becomes the model's unless keep_norm.  0, or -1 with a message naming
 * path. */
int amil_cnn_load_weights(struct amil_cnn *m, const char *path, int keep_norm);
/* The paper's resnet_pre.py made its new last layer a Sequential, so its
 * state_dicts name it fc.0.weight and fc.0.bias: renames those in r to
 * torchvision's fc.weight and fc.bias (amil_cnn_from_record does). */
void amil_cnn_rename_paper(struct amil_record *r);
/* Whether a record holds a CNN model (or a backbone: a ViT) rather than an
 * attention-MIL one. */
int amil_cnn_is_model(const struct amil_record *r);

/* Where the square tiles of side `tile` that cover a side of `length`
 * start (into starts, unless NULL): ceil(length / tile) tiles, spread
 * evenly from 0 to length - tile (rounded down), overlapping as little as
 * they can.  Returns the count, or 0 if length < tile.  A CNN sees an
 * image as these tiles; its class probabilities are their mean. */
int amil_cnn_tiles(int length, int tile, int *starts);
/* tile (T, T, 3) = the square of image (…, width, 3) at (y, x). */
void amil_cnn_cut(uint8_t *tile, const uint8_t *image, int width, int y, int x, int T);

/* Activations and gradients of a batch, grown to fit. */
struct amil_cnn_work {
    const struct amil_kernels *kernels;   /* NULL: amil_kernels()'s */
    int capacity;           /* images the buffers hold */
    int nlayers;
    int from;               /* the first layer with buffers */
    float **out, **grad;    /* per layer, (B, c, h, w); a transient layer's
                               out one of the slots, its grad NULL */
    float **slots;          /* the transient layers' outputs, nslots of them */
    int nslots;
    int *slot_of;           /* per layer, its slot, or -1: its own buffers */
    int32_t **argmax;       /* per max-pool, the input offset of each winner */
    float **mask;           /* per dropout, 0 or 2 */
    float *cols, *dcols;    /* one image's im2col and its gradient; a
                               transformer's scratch, cols_size a thread */
    size_t cols_size;
    int serial;             /* 1: a worker's own work, which runs its layers in
                               its thread alone (featurize's tiles split over
                               the threads) */
    struct amil_cnn_work *workers;   /* featurize's: one work per thread but
                                        the first, made when needed */
    int nworkers;
    struct amil_cnn_work *owner;     /* a worker's: the work whose prepared
                                        weights it reads (made before) */
    int forward_only;       /* set by its user: no backward will run, so the
                               outputs below the features share slots */
    int fit_forward_only;   /* what the buffers were made for */
    int fit_threads;        /* the threads the per-thread scratch was made
                               for: 1 for a serial work (a featurize
                               worker), else amil_thread_count() */
    float *padded, *shifted;      /* a convolution's padded input (one phase of
                                     it) and its output at the padded width */
    float *phase_weights;         /* a stride-2 phase's taps' weights (cnn_pass.c) */
    float **prepared;             /* per frozen layer whose kernel wants its
                                     weights in another form, that form, made
                                     at first use: a 3×3 convolution's
                                     Winograd transform (16 or 36, C, OC),
                                     in bfloat16 (16, C/2, OC, 2); a
                                     convolution on panels' bfloat16
                                     (OC, C·K·K); a token linear's
                                     bfloat16 (C/2, OC, 2) */
    const float **prepared_of;    /* the weights each was made from */
    float *tiles, *products;      /* Winograd's transformed input (values, C,
                                     tiles) and products (values, tiles, OC):
                                     F(4×4) an image's, F(2×2) a block's
                                     per thread (cnn_winograd.c) */
    int *fold_to;                 /* forward only, per layer: for a convolution
                                     followed by a batch norm (and a ReLU) that
                                     nothing else reads, the last of those,
                                     whose output it writes, the batch norm
                                     folded into its weights; -1 for the layers
                                     so folded (not run); else the layer */
    float **folded;               /* per folded convolution, its weights times
                                     the batch norm's scale (OC, C, K, K), then
                                     its bias (OC): the owner's are read; each
                                     made at first use in fold_arena, one buffer
                                     on 2 MiB pages (fold_used floats used) */
    float *fold_arena;
    size_t fold_used;
    float *packs;                 /* per thread, a token linear's panel of
                                     weights transposed (cnn_pass.c) */
    uint16_t *bf16_rows;          /* in bfloat16, a token linear's input, or
                                     F(2×2)'s V in pairs (per thread) */
    double *seconds;              /* when not NULL, (nlayers): forward adds
                                     the seconds each layer took (bench/) */
};
void amil_cnn_work_free(struct amil_cnn_work *w);
/* Makes w's buffers for one image and every frozen layer's prepared
 * weights, before threads read them (amil_cnn_featurize). */
void amil_cnn_prepare(const struct amil_cnn *m, struct amil_cnn_work *w);

/* Forward over images (B, H, W, C) u8, normalized as m->norm says; with
 * rng (a gsl_rng *), dropout is on (training), else off.  Leaves the class
 * scores in w->out[nlayers - 1] (B, classes). */
void amil_cnn_forward(const struct amil_cnn *m, struct amil_cnn_work *w,
                      const uint8_t *images, int B, void *rng);
/* Forward from the features layer on, over features (B, F) given (as
 * featurize caches them).  Leaves the scores as amil_cnn_forward. */
void amil_cnn_forward_head(const struct amil_cnn *m, struct amil_cnn_work *w,
                           const float *features, int B, void *rng);

enum amil_backward {
    AMIL_BACKWARD_PLAIN,    /* the gradient */
    AMIL_BACKWARD_GUIDED    /* Guided Backpropagation: ReLUs pass only positive
                               gradients, where their input was positive */
};
/* Backward from dscores (B, classes) down to layer stop (its gradient
 * left in w->grad[stop]; 0 is the input; after amil_cnn_forward_head, the
 * features layer at the lowest), adding parameter gradients to
 * grads (nweights) for the trained parameters when grads is not NULL. */
void amil_cnn_backward(const struct amil_cnn *m, struct amil_cnn_work *w,
                       const float *dscores, int B, int stop, enum amil_backward how,
                       float *grads);

/* Grad-CAM (Selvaraju et al. 2017) of image b, after a forward and a
 * backward of the score to explain down to layer: A = its output (c, h, w),
 * alpha_k = the mean over map k of its gradient, cam (h, w) =
 * ReLU(Σ alpha_k A_k). */
void amil_cnn_gradcam(const struct amil_cnn *m, const struct amil_cnn_work *w, int layer,
                      int b, float *cam);

/* prob (classes) = softmax of one image's scores (classes). */
void amil_cnn_softmax(const struct amil_cnn *m, const float *scores, float *prob);

/* ---- images and their tiles (cnn_images.c) ------------------------------- */

/* The record's `image` U8 (H, W, 3), checked to be one the model can see
 * (H and W at least its size), or NULL with a message. */
const struct amil_tensor *amil_cnn_image(const struct amil_cnn *m, const struct amil_record *r);
/* The record's `features` F32 (N ≥ 1, F), F the features layer's size (what
 * featurize caches: vgg19 4096, resnet18 512), or NULL with a message. */
const struct amil_tensor *amil_cnn_cached(const struct amil_cnn *m, const struct amil_record *r);
/* Features per tile (what the last layer reads). */
int amil_cnn_feature_size(const struct amil_cnn *m);
/* The fingerprint (params.h) of the frozen backbone's weights, which make
 * the features featurize caches (0 parameters for net). */
uint64_t amil_cnn_features_fingerprint(const struct amil_cnn *m);
/* The tiles of an H × W image: *n of them, their top left corners in
 * coords (n, 2) (y, x), allocated; row by row. */
int32_t *amil_cnn_tile_coords(const struct amil_cnn *m, int H, int W, int *n);
/* features (n, F) of each tile of image (H, W, 3) at coords (image NULL:
 * of tiles (n, T, T, 3), T the input's side, cut already), in evaluation
 * mode, m->tiles_at_once at a time: the bytes train computes inside the
 * network. */
void amil_cnn_featurize(const struct amil_cnn *m, struct amil_cnn_work *w,
                        const uint8_t *image, int W, const int32_t *coords, int n,
                        const uint8_t *tiles, float *features);
/* prob (classes) = the mean over an image's tiles of their softmax, from
 * the image (H, W, 3) or, with image NULL, from its tiles' features (n, F). */
void amil_cnn_classify(const struct amil_cnn *m, struct amil_cnn_work *w,
                       const uint8_t *image, int H, int W, const float *features, int n,
                       float *prob);
/* What the model makes of image record r (cached: its tiles' features):
 * classified as amil_cnn_classify does, the loss the cross-entropy of the
 * mean of its tiles' softmax.  Returns 0, or -1 with a message when r is
 * not a labelled image (or features) of this model. */
int amil_cnn_judge(const struct amil_cnn *m, struct amil_cnn_work *w,
                   const struct amil_record *r, int cached, struct amil_verdict *v);
/* The most probable class, the first of equals. */
int amil_cnn_predict(const struct amil_cnn *m, const float *prob);

/* ---- training samples (cnn_images.c) ------------------------------------- */

/* The training samples an image record holds for m: net 1 (a random crop
 * of the image, a new one each epoch), a frozen backbone's head one per
 * tile, from the record's cached features (featurize) when it has them,
 * else through the backbone.  *cached is -1 until a first record says,
 * then whether the set holds features: a record that disagrees is
 * refused, as are one without a label of the model's classes and an image
 * too small.  Returns the count, or -1 with a message. */
long amil_cnn_samples(const struct amil_cnn *m, const struct amil_record *r, int *cached);

/* What a training step reads: net's crops (B, T, T, 3) or the head's
 * features (B, F), their labels (B), and room for the scores' gradient
 * (B, classes). */
struct amil_cnn_batch {
    uint8_t *crops;
    float *features;
    long *labels;
    float *dscores;
};
/* Sample tile of record r (cached: it holds features) into slot k of
 * batch: net's a random crop of its image (the corner drawn from rng, a
 * gsl_rng *); a backbone's a tile's features, from the cache or through the
 * backbone (work backbone, one tile at a time).  0, or -1 when r is not
 * what it was when its samples were counted (amil_cnn_samples). */
int amil_cnn_take(const struct amil_cnn *m, struct amil_cnn_work *backbone,
                  const struct amil_record *r, long tile, int cached, void *rng,
                  struct amil_cnn_batch *batch, int k);

/* Cross-entropy of scores against labels over a batch, averaged (as
 * PyTorch's mean reduction); dscores (B, classes) gets its gradient when
 * not NULL.  Returns the mean loss. */
double amil_cnn_loss(const struct amil_cnn *m, const float *scores, const long *labels,
                     int B, float *dscores);

#endif
