/* mil_gradcam.c: Grad-CAM (Selvaraju et al. 2017) of the attention-MIL
 * network (mil.h) at its second convolution, over a bag a chunk at a
 * time. */
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "compute/kernels.h"
#include "compute/parallel.h"
#include "models/mil_impl.h"

/* Grad-CAM of group g's patches (amil_mil_gradcam): A = conv2's output
 * with its bias (conv2 is run again: the forward kept only the pooled
 * maps), dA = w->dc2 as backward left it; per patch and channel alpha = the
 * mean of dA over the map, cam (N, S, S) = ReLU(Σ alpha A). */
static void gradcam_group(const struct amil_mil *m, struct amil_mil_work *w, float *cam, int n,
                          int g, float *c2, const float *dc2, int thread)
{
    struct sides s = sides_of(m->patch);
    int lanes = w->kernels->lanes;
    size_t map = (size_t)s.conv2 * s.conv2;
    mil_conv2_forward(m, w, c2, w->p1 + (size_t)g * CONV1 * s.pool1 * s.pool1 * lanes, n, g,
                  thread);
    const float *bias = W(m, CONV2_B);
    for (int l = 0; l < lanes && g * lanes + l < n; l++) {
        float *out = cam + (size_t)(g * lanes + l) * map;
        memset(out, 0, sizeof *out * map);
        for (int c = 0; c < CONV2; c++) {
            const float *a = c2 + c * map * lanes + l, *da = dc2 + c * map * lanes + l;
            double alpha = 0;
            for (size_t j = 0; j < map; j++)
                alpha += da[j * lanes];
            alpha /= (double)map;
            for (size_t j = 0; j < map; j++)
                out[j] += (float)(alpha * (a[j * lanes] + bias[c]));
        }
        for (size_t j = 0; j < map; j++)
            out[j] = out[j] > 0 ? out[j] : 0;
    }
}

int amil_mil_gradcam_side(const struct amil_mil *m) { return sides_of(m->patch).conv2; }

/* Groups first .. end-1 of a chunk from dP2 back to dC2 through the second
 * pooling and ReLU, then their Grad-CAM maps; no weight gradients. */
static void cam_of_groups(void *ctx, int first, int end, int thread)
{
    const struct bag_pass *pass = ctx;
    const struct amil_mil *m = pass->m;
    struct amil_mil_work *w = pass->w;
    const struct amil_kernels *k = w->kernels;
    struct sides s = sides_of(m->patch);
    struct group_sizes z = mil_group_sizes(m, k->lanes);
    float *dc2 = w->dc2 + thread * z.c2, dbias[CONV2] = {0};   /* dbias: not wanted */
    for (int g = first; g < end; g++) {
        memset(dc2, 0, sizeof *dc2 * z.c2);
        k->unpool_relu(dc2, dbias, w->dp2 + g * z.p2, w->p2 + g * z.p2, w->arg2 + g * z.p2,
                       CONV2, s.conv2, s.conv2);
        gradcam_group(m, w, pass->cam, pass->n, g, w->c2 + thread * z.c2, dc2, thread);
    }
}

/* Two passes over the bag, AMIL_MIL_CHUNK patches at a time: the features
 * (N, L), then attend and classify over all of them and the scores'
 * gradients; then each chunk's forward again (the same bits: the same
 * chunks), its rows' gradients, and back through the linear layer to the
 * second convolution.  The bag's buffers are its features and what attend
 * keeps; the rest is a chunk's. */
int amil_mil_gradcam(const struct amil_mil *m, struct amil_mil_work *w,
                     const uint8_t *patches, int n, int target, float *cam)
{
    size_t L = (size_t)m->hidden, patch = (size_t)m->patch * m->patch * m->channels;
    size_t map = (size_t)amil_mil_gradcam_side(m) * amil_mil_gradcam_side(m);
    float *h = amil_xmalloc(sizeof *h * n * L);   /* (N, L) */
    amil_mil_features(m, w, patches, n, h);
    amil_mil_attend(m, w, h, n);
    amil_mil_classify(m, w, w->m);
    if (target < 0)
        target = amil_mil_predict(m, w->prob);
    mil_fit(m, w, n, STAGE_SCORES_BACKWARD);
    mil_score_of(m, w, target);
    mil_scores_backward(m, w, h, n, NULL);
    for (int first = 0; first < n; first += AMIL_MIL_CHUNK) {
        int count = n - first < AMIL_MIL_CHUNK ? n - first : AMIL_MIL_CHUNK;
        amil_mil_featurize(m, w, patches + first * patch, count);
        mil_fit(m, w, count, STAGE_BACKWARD);
        mil_rows_backward(m, w, h + first * L, first, count, n);
        int lanes = w->kernels->lanes, groups = (count + lanes - 1) / lanes;
        struct bag_pass pass = {m, w, NULL, count, NULL, cam + first * map};
        memset(w->dp2, 0, sizeof *w->dp2 * (size_t)groups * m->flat * lanes);
        amil_parallel(groups, mil_linear_back_of_groups, &pass);
        amil_parallel(groups, cam_of_groups, &pass);
    }
    free(h);
    return target;
}
