/* bench/cnn.c: times a CNN baseline or a backbone on one 224×224 tile in
 * this process, as bench/cnn.sh's peer to torchvision: the forward pass
 * (what featurize and classify run; a tile's share of a pass over as many
 * tiles as featurize runs at once) and Grad-CAM (the forward pass, the
 * backward of one class score down to the model's Grad-CAM layer, and the
 * map).
 *
 *   cnn MODEL THREADS SECONDS [layers]
 *
 * With `layers`, stderr gets each kind of layer's share of the forward
 * pass: ms a tile, GFLOP a tile and GFLOP/s (convolutions by size and
 * stride), for finding where a backbone's time goes.
 *
 * prints "forward_ms gradcam_ms gflop linear_gflop linear_ms": the last
 * two a transformer's token linears' (0 elsewhere), for their share of
 * the peak; gradcam_ms is 0 for a ViT, which has no maps.
 *
 * MODEL is a model file (tests/helpers/cnnmodel writes one), loaded as the
 * programs load it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/base.h"
#include "compute/nn.h"
#include "compute/parallel.h"
#include "models/cnn.h"
#include "record/record.h"
#include "record/stream.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

struct run {
    const struct amil_cnn *m;
    struct amil_cnn_work *w;
    const uint8_t *image;
    float *dscores, *cam;
};

/* as featurize runs it: m->tiles_at_once tiles a pass (the same tile) */
static void forward(struct run *r)
{
    amil_cnn_forward(r->m, r->w, r->image, r->m->tiles_at_once, NULL);
}

static void gradcam(struct run *r)
{
    amil_cnn_forward(r->m, r->w, r->image, 1, NULL);
    amil_cnn_backward(r->m, r->w, r->dscores, 1, r->m->cam_layer, AMIL_BACKWARD_PLAIN,
                      NULL);
    amil_cnn_gradcam(r->m, r->w, r->m->cam_layer, 0, r->cam);
}

/* Milliseconds a call, averaged over at least three calls and `seconds`,
 * after two to warm up. */
static double timed(void (*fn)(struct run *), struct run *r, double seconds)
{
    fn(r), fn(r);
    int reps = 0;
    double start = now();
    while (reps < 3 || now() - start < seconds)
        fn(r), reps++;
    return (now() - start) / reps * 1e3;
}

/* Whether layer l is a linear layer of tokens (a transformer's). */
static int token_linear(const struct amil_layer *l) { return l->op == AMIL_OP_TOKEN_LINEAR; }

/* Multiply-adds × 2 of the convolutions, linear layers and attention of
 * one image; of those, *linear the token linears'. */
static double gflop(const struct amil_cnn *m, double *linear)
{
    double flop = 0;
    *linear = 0;
    for (int i = 1; i < m->nlayers; i++) {
        const struct amil_layer *l = &m->layers[i], *in = &m->layers[l->input];
        if (l->op == AMIL_OP_CONV)
            flop += 2.0 * l->c * l->h * l->w * in->c * l->kernel * l->kernel;
        else if (l->op == AMIL_OP_LINEAR)
            flop += 2.0 * l->c * in->c * in->h * in->w;
        else if (l->op == AMIL_OP_EMBED)   /* the patches' product */
            flop += 2.0 * l->w * (l->h - 1) * in->c * l->kernel * l->kernel;
        else if (l->op == AMIL_OP_SELF_ATTENTION)   /* Q Kᵀ and its product with V */
            flop += 4.0 * l->h * l->h * l->w;
        else if (token_linear(l)) {
            flop += 2.0 * l->h * l->w * in->w;
            *linear += 2.0 * l->h * l->w * in->w;
        }
    }
    *linear *= 1e-9;
    return flop * 1e-9;
}

/* Layer l's kind, for the breakdown: "conv KxK/S", else its op's name. */
static void kind_of(const struct amil_layer *l, char *kind, size_t size)
{
    static const char *const ops[] = {
        [AMIL_OP_INPUT] = "input", [AMIL_OP_BATCHNORM] = "batchnorm", [AMIL_OP_RELU] = "relu",
        [AMIL_OP_LEAKY_RELU] = "leaky relu", [AMIL_OP_MAXPOOL] = "maxpool",
        [AMIL_OP_AVGPOOL] = "avgpool", [AMIL_OP_LINEAR] = "linear", [AMIL_OP_DROPOUT] = "dropout",
        [AMIL_OP_ADD] = "add", [AMIL_OP_EMBED] = "embed", [AMIL_OP_LAYERNORM] = "layernorm",
        [AMIL_OP_TOKEN_LINEAR] = "token linear", [AMIL_OP_SELF_ATTENTION] = "attention",
        [AMIL_OP_GELU] = "gelu", [AMIL_OP_SCALE] = "scale", [AMIL_OP_POOL_TOKENS] = "pool tokens"};
    if (l->op == AMIL_OP_CONV)
        snprintf(kind, size, "conv %dx%d/%d", l->kernel, l->kernel, l->stride);
    else
        snprintf(kind, size, "%s", (size_t)l->op < sizeof ops / sizeof *ops && ops[l->op]
                                       ? ops[l->op] : "other");
}

/* ms and GFLOP a tile of each kind of layer, from the per-layer seconds of
 * reps passes of B tiles */
static void print_kinds(const struct amil_cnn *m, const double *layer, int reps, int B)
{
    enum { KINDS = 64 };
    char names[KINDS][32];
    double ms[KINDS] = {0}, flop[KINDS] = {0};
    int kinds = 0;
    for (int i = 1; i < m->nlayers; i++) {
        const struct amil_layer *l = &m->layers[i], *in = &m->layers[l->input];
        char kind[32];
        kind_of(l, kind, sizeof kind);
        int k = 0;
        while (k < kinds && strcmp(names[k], kind) != 0)
            k++;
        if (k == kinds) {
            if (kinds == KINDS)
                continue;
            memcpy(names[kinds++], kind, sizeof kind);
        }
        ms[k] += layer[i] / reps / B * 1e3;
        if (l->op == AMIL_OP_CONV)
            flop[k] += 2e-9 * l->c * l->h * l->w * in->c * l->kernel * l->kernel;
    }
    for (int k = 0; k < kinds; k++)
        fprintf(stderr, "%-12s %8.2f ms %7.3f GFLOP %7.1f GFLOP/s\n", names[k], ms[k],
                flop[k], ms[k] > 0 ? flop[k] / ms[k] * 1e3 : 0);
}

int main(int argc, char **argv)
{
    amil_init(argc, argv);
    if (argc != 4 && !(argc == 5 && strcmp(argv[4], "layers") == 0))
        amil_die("usage: cnn MODEL THREADS SECONDS [layers]");
    amil_threads(atoi(argv[2]));
    double seconds = atof(argv[3]);
    struct amil_record rec;
    struct amil_cnn m;
    if (amil_record_load(argv[1], &rec) < 0 || amil_cnn_from_record(&m, &rec) < 0)
        amil_die("%s: %s", argv[1], amil_error());
    amil_record_free(&rec);
    size_t bytes = (size_t)m.size * m.size * 3 * m.tiles_at_once;
    uint8_t *image = amil_xmalloc(bytes);
    srand(1);
    for (size_t i = 0; i < bytes; i++)
        image[i] = (uint8_t)(rand() & 255);
    int B = m.tiles_at_once;
    /* a ViT has no maps: no Grad-CAM (0) */
    const struct amil_layer *at = &m.layers[m.cam_layer >= 0 ? m.cam_layer : 0];
    /* the forward as featurize runs it (its outputs below the features
     * shared, batch norms folded); Grad-CAM on a work of its own */
    struct amil_cnn_work w = {.forward_only = 1}, cam_work = {0};
    struct run r = {&m, &w, image, amil_xcalloc(m.classes, sizeof(float)),
                    amil_xmalloc(sizeof(float) * at->h * at->w)};
    r.dscores[0] = 1;
    double f = timed(forward, &r, seconds) / B;
    r.w = &cam_work;
    double g = m.cam_layer >= 0 ? timed(gradcam, &r, seconds) : 0;
    r.w = &w;
    /* the token linears' own time, over a few more forward passes (the
     * buffers are made: the per-layer sums stay) */
    double *layer = w.seconds = amil_xcalloc(m.nlayers, sizeof *w.seconds), linear_ms = 0;
    int reps = 3;
    for (int i = 0; i < reps; i++)
        forward(&r);
    for (int i = 0; i < m.nlayers; i++)
        linear_ms += token_linear(&m.layers[i]) ? layer[i] / reps / B * 1e3 : 0;
    if (argc == 5)
        print_kinds(&m, layer, reps, B);
    w.seconds = NULL;
    free(layer);
    double linear, total = gflop(&m, &linear);
    printf("%.2f %.2f %.3f %.3f %.2f\n", f, g, total, linear, linear_ms);
    amil_cnn_work_free(&w), amil_cnn_work_free(&cam_work);
    amil_cnn_free(&m);
    free(image), free(r.dscores), free(r.cam);
    return 0;
}
