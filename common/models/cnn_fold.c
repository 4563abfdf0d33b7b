/* cnn_fold.c: in a forward-only work of cnn.h (featurize's), the layers a
 * convolution's output writing can absorb: the batch norm after it, folded
 * into its weights, and a ReLU; and a ReLU after a residual sum.  Their
 * plan (work->fold_to) and the folded weights, which the convolutions'
 * paths (cnn_pass.c, cnn_winograd.c) read through cnn_conv_params. */
#include <stdlib.h>

#include "base/base.h"
#include "compute/nn.h"
#include "models/cnn.h"
#include "models/cnn_impl.h"

/* cnn_impl.h says which layers fold; ResNets' conv, bn, relu are the case. */
void cnn_plan_folds(const struct amil_cnn *m, struct amil_cnn_work *w)
{
    int *readers = amil_xcalloc(m->nlayers, sizeof *readers);
    for (int i = 1; i < m->nlayers; i++) {
        readers[m->layers[i].input]++;
        if (m->layers[i].input2 >= 0)
            readers[m->layers[i].input2]++;
    }
    for (int i = 0; i < m->nlayers; i++)
        w->fold_to[i] = i;
    for (int i = 1; w->forward_only && i + 1 < m->features; i++) {
        const struct amil_layer *bn = &m->layers[i + 1], *relu = &m->layers[i + 2];
        if (m->layers[i].op != AMIL_OP_CONV || w->fold_to[i] < 0 ||
            bn->op != AMIL_OP_BATCHNORM || bn->input != i || readers[i] != 1)
            continue;
        w->fold_to[i] = i + 1, w->fold_to[i + 1] = -1;
        if (i + 2 < m->nlayers && relu->op == AMIL_OP_RELU && relu->input == i + 1 &&
            readers[i + 1] == 1)
            w->fold_to[i] = i + 2, w->fold_to[i + 2] = -1;
    }
    for (int i = 1; w->forward_only && i < m->features; i++) {   /* a sum, then ReLU */
        const struct amil_layer *relu = &m->layers[i + 1];
        if (m->layers[i].op == AMIL_OP_ADD && m->cam_layer >= 0 && relu->op == AMIL_OP_RELU &&
            relu->input == i && readers[i] == 1)
            w->fold_to[i] = i + 1, w->fold_to[i + 1] = -1;
    }
    free(readers);
}

/* Floats a folded convolution's weights and bias take in the arena (whole
 * vectors) */
size_t cnn_folded_size(const struct amil_layer *l, const struct amil_layer *in)
{
    return ((size_t)l->c * in->c * l->kernel * l->kernel + l->c + 15) / 16 * 16;
}

void cnn_conv_params(const struct amil_cnn *m, struct amil_cnn_work *w, int i,
                     const float **weight, const float **bias)
{
    const struct amil_layer *l = &m->layers[i];
    *weight = PARAM(m, l, 0);
    *bias = l->has_bias ? PARAM(m, l, 1) : NULL;
    if (w->fold_to[i] == i)
        return;
    if (!w->folded[i]) {   /* scale and shift as amil_batchnorm_forward's */
        const struct amil_layer *bn = &m->layers[i + 1];
        size_t per_oc = (size_t)m->layers[l->input].c * l->kernel * l->kernel;
        float *f = w->folded[i] = w->fold_arena + w->fold_used;
        w->fold_used += cnn_folded_size(l, &m->layers[l->input]);
        for (int oc = 0; oc < l->c; oc++) {
            float alpha, beta;
            amil_batchnorm_scale(PARAM(m, bn, 0), PARAM(m, bn, 1), PARAM(m, bn, 2),
                                 PARAM(m, bn, 3), oc, &alpha, &beta);
            for (size_t j = 0; j < per_oc; j++)
                f[oc * per_oc + j] = (*weight)[oc * per_oc + j] * alpha;
            f[l->c * per_oc + oc] = beta + (*bias ? (*bias)[oc] * alpha : 0);
        }
    }
    *weight = w->folded[i];
    *bias = w->folded[i] + (size_t)l->c * m->layers[l->input].c * l->kernel * l->kernel;
}
