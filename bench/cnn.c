/* bench/cnn.c: times a CNN baseline or a backbone on one 224×224 tile in
 * this process, as bench/cnn.sh's peer to torchvision: the forward pass
 * (what featurize and classify run; a tile's share of a pass over as many
 * tiles as featurize runs at once) and Grad-CAM (the forward pass, the
 * backward of one class score down to the model's Grad-CAM layer, and the
 * map).
 *
 *   cnn MODEL THREADS SECONDS
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

int main(int argc, char **argv)
{
    amil_init(argc, argv);
    if (argc != 4)
        amil_die("usage: cnn MODEL THREADS SECONDS");
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
    struct amil_cnn_work w = {0};
    struct run r = {&m, &w, image, amil_xcalloc(m.classes, sizeof(float)),
                    amil_xmalloc(sizeof(float) * at->h * at->w)};
    r.dscores[0] = 1;
    double f = timed(forward, &r, seconds) / B;
    double g = m.cam_layer >= 0 ? timed(gradcam, &r, seconds) : 0;
    /* the token linears' own time, over a few more forward passes (the
     * buffers are made: the per-layer sums stay) */
    double *layer = w.seconds = amil_xcalloc(m.nlayers, sizeof *w.seconds), linear_ms = 0;
    int reps = 3;
    for (int i = 0; i < reps; i++)
        forward(&r);
    for (int i = 0; i < m.nlayers; i++)
        linear_ms += token_linear(&m.layers[i]) ? layer[i] / reps / B * 1e3 : 0;
    w.seconds = NULL;
    free(layer);
    double linear, total = gflop(&m, &linear);
    printf("%.2f %.2f %.3f %.3f %.2f\n", f, g, total, linear, linear_ms);
    amil_cnn_work_free(&w);
    amil_cnn_free(&m);
    free(image), free(r.dscores), free(r.cam);
    return 0;
}
