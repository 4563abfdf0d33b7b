/* stages.c: what the families' stages share (model.h): checking the
 * features and embedding a record holds, adding its attention; a bag
 * family's trainer. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "models/model.h"
#include "record/record.h"

const struct amil_tensor *amil_model_features_in(const struct amil_model *m,
                                                 const struct amil_record *r, int width)
{
    const struct amil_tensor *h = amil_record_expect(r, "features", AMIL_F32, 2);
    if (!h)
        return NULL;
    if (h->shape[1] != width || h->shape[0] < 1 || h->shape[0] > INT32_MAX / 1024) {
        amil_fail("features are [%lld, %lld]; the model's are [N ≥ 1, %d]",
                  (long long)h->shape[0], (long long)h->shape[1], width);
        return NULL;
    }
    if (amil_tensor_finite("features", h->data, 2, h->shape, 0) < 0)
        return NULL;
    if (m->knows_features && amil_check_stage(r, "features_by", m->features_by, m->path) < 0)
        return NULL;
    return h;
}

int amil_model_put_attention(struct amil_record *r, const float *a, const float *em, int K,
                             int n, int L)
{
    int64_t a_shape[2] = {K, n}, m_shape[2] = {K, L};
    memcpy(amil_record_put(r, "attention", AMIL_F32, 2, a_shape)->data, a,
           sizeof(float) * (size_t)K * n);
    memcpy(amil_record_put(r, "embedding", AMIL_F32, 2, m_shape)->data, em,
           sizeof(float) * (size_t)K * L);
    if (amil_tensor_finite("attention", amil_record_find(r, "attention")->data, 2, a_shape, 1) <
            0 ||
        amil_tensor_finite("embedding", amil_record_find(r, "embedding")->data, 2, m_shape,
                           -1) < 0)
        return -1;
    return 0;
}

const struct amil_tensor *amil_model_embedding_in(const struct amil_record *r, int K, int L)
{
    const struct amil_tensor *em = amil_record_expect(r, "embedding", AMIL_F32, 2);
    if (em && (em->shape[0] != K || em->shape[1] != L)) {
        amil_fail("embedding is [%lld, %lld]; the model's is [%d, %d]",
                  (long long)em->shape[0], (long long)em->shape[1], K, L);
        return NULL;
    }
    if (em && amil_tensor_finite("embedding", em->data, 2, em->shape, -1) < 0)
        return NULL;
    return em;
}

void amil_bag_trainer_start(struct amil_model *m, const struct amil_train_spec *spec,
                            size_t impl, size_t work)
{
    if (!m->impl) {
        m->impl = amil_xcalloc(1, impl);
        m->work = amil_xcalloc(1, work);
    }
    struct amil_bag_step *t = m->trainer = amil_xcalloc(1, sizeof *t);
    t->spec = spec;
}

void amil_bag_trainer_free(struct amil_model *m)
{
    struct amil_bag_step *t = m->trainer;
    if (t)
        free(t->augmented);
    free(t);
    m->trainer = NULL;
}
