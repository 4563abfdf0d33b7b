/* model.c: the families in the order they recognise a model file, and
 * loading one. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "models/model.h"
#include "record/record.h"
#include "record/stream.h"

/* A CNN says so by its arch or its torchvision names, a CLAM head by its
 * own names; attention-MIL reads the rest (and refuses what is none). */
static const struct amil_model_ops *const families[] = {&amil_cnn_model, &amil_clam_model,
                                                       &amil_mil_model};

#define NFAMILIES (sizeof families / sizeof *families)

const struct amil_model_ops *amil_model_family(const struct amil_record *r)
{
    size_t i = 0;
    while (i + 1 < NFAMILIES && !families[i]->recognise(r))
        i++;
    return families[i];
}

const struct amil_model_ops *amil_model_arch(const char *word, int *variant)
{
    for (size_t i = 0; i < NFAMILIES; i++)
        if (families[i]->train && (*variant = families[i]->train->arch_parse(word)) >= 0)
            return families[i];
    return NULL;
}

/* Whether the family takes setting key (a word of its settings). */
static int takes(const struct amil_model_ops *ops, const char *key)
{
    size_t length = strlen(key);
    for (const char *at = ops->settings; at && *at; at += strcspn(at, " ")) {
        at += strspn(at, " ");
        if (strncmp(at, key, length) == 0 && (at[length] == ' ' || !at[length]))
            return 1;
    }
    return 0;
}

int amil_model_load_with(struct amil_model *m, const char *path,
                         const char *const *settings)
{
    memset(m, 0, sizeof *m);
    m->path = path;
    struct amil_record r;
    if (amil_record_load(path, &r) < 0)
        return -1;
    m->ops = amil_model_family(&r);
    for (; settings && settings[0]; settings += 2) {
        if (!settings[1])
            continue;
        if (!takes(m->ops, settings[0])) {
            amil_record_free(&r);
            amil_fail("%s takes no %s", m->ops->noun, settings[0]);
            m->ops = NULL;
            return amil_fail_in(path);
        }
        amil_record_set_meta(&r, settings[0], settings[1]);
    }
    int status = m->ops->from_record(m, &r);
    amil_record_free(&r);
    if (status < 0) {
        m->ops->free(m);
        m->ops = NULL;
        return amil_fail_in(path);
    }
    return 0;
}

int amil_model_load(struct amil_model *m, const char *path)
{
    return amil_model_load_with(m, path, NULL);
}

void amil_model_free(struct amil_model *m)
{
    if (m->ops)
        m->ops->free(m);
    memset(m, 0, sizeof *m);
}

int amil_model_runs(const struct amil_model *m, enum amil_stage stage)
{
    const char *why = m->ops->lacks(m, stage);
    return why ? amil_fail("%s: %s", m->path, why) : 0;
}
