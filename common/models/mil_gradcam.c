/* mil_gradcam.c: Grad-CAM (Selvaraju et al. 2017) of the attention-MIL
 * network (mil.h) at its second convolution, over a bag a chunk at a
 * time. */
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "compute/parallel.h"
#include "models/mil_impl.h"

int amil_mil_gradcam_side(const struct amil_mil *m) { return sides_of(m->patch).conv2; }

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
        mil_run_groups(&pass, groups, mil_linear_back_of_groups);
        mil_run_groups(&pass, groups, mil_conv_back_of_groups);
    }
    free(h);
    return target;
}
