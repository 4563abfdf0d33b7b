/* cnn.c: the CNN baselines and backbones of cnn.h: the table of
 * architectures, model records and starting weights.  cnn_graph.c and
 * cnn_vit.c build their layer graphs, cnn_pass.c runs them forward and
 * backward, cnn_images.c sees images as their tiles. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "compute/kernels.h"
#include "compute/nn.h"
#include "models/cnn.h"
#include "models/cnn_build.h"
#include "record/record.h"
#include "record/stream.h"

/* The architectures, in enum amil_cnn_arch's order: a new one is its
 * builder (cnn_build.h), its row here and its name in the enum. */
static const struct arch {
    const char *name;
    int size;               /* the side of the images it was trained on */
    int only_size;          /* it takes no other (its linear layers' widths) */
    int (*build)(struct builder *b);   /* the graph up to the features */
    const char *head;       /* the last layer, by its state_dict name */
    /* a tensor its state_dicts hold, for a file that names no arch: the
     * last row whose tensor a file has is its arch (a deeper network of a
     * kind comes after the shallower, whose tensors it holds too) */
    const char *marker;
} archs[] = {
    {"net", 128, 1, cnn_build_net, "fc2", "conv5.weight"},
    {"vgg19", 224, 0, cnn_build_vgg19, "classifier.6", "features.0.weight"},
    {"resnet18", 224, 0, cnn_build_resnet18, "fc", "layer1.0.conv1.weight"},
    {"resnet50", 224, 0, cnn_build_resnet50, "fc", "layer1.0.conv3.weight"},
    {"resnet50_trunc", 224, 0, cnn_build_resnet50_trunc, "fc", NULL},
    {"vit_b_16", 224, 1, cnn_build_vit_b_16, "heads.head", "encoder.layers.encoder_layer_0.ln_1.weight"},
    {"vit_l_16", 224, 1, cnn_build_vit_l_16, "heads.head", "encoder.layers.encoder_layer_23.ln_1.weight"},
    {"vit_base_patch16_224", 224, 1, cnn_build_vit_base, "head", "blocks.0.norm1.weight"},
    {"vit_large_patch16_224", 224, 1, cnn_build_vit_large, "head", "blocks.23.norm1.weight"},
};
#define NARCHS ((int)(sizeof archs / sizeof *archs))
_Static_assert(NARCHS == AMIL_CNN_ARCHS, "a row of archs for each enum amil_cnn_arch");

static const struct arch *arch_of(int arch) { return &archs[arch]; }

const char *amil_cnn_arch_name(enum amil_cnn_arch arch) { return archs[arch].name; }

int amil_cnn_arch_parse(const char *name)
{
    for (int i = 0; i < NARCHS; i++)
        if (strcmp(archs[i].name, name) == 0)
            return i;
    return -1;
}

static int is_vit(int arch) { return arch >= AMIL_CNN_VIT_B_16; }
static int is_timm(int arch) { return arch >= AMIL_CNN_VIT_BASE_TIMM; }

/* The layer graph and parameter table of the network, without its buffer. */
static int cnn_layout(struct amil_cnn *m, enum amil_cnn_arch arch, int classes, int height,
                      int width, const struct amil_cnn_form *form)
{
    const struct arch *a = arch_of(arch);
    memset(m, 0, sizeof *m);
    m->arch = arch, m->classes = classes, m->channels = 3;
    if (form)
        m->form = *form;
    m->size = a->size;
    height = height ? height : m->size, width = width ? width : m->size;
    if (classes < 2 || classes > AMIL_CNN_MAX_CLASSES)
        return amil_fail("a classifier of %d classes", classes);
    if (a->only_size && (height != a->size || width != a->size))
        return amil_fail("%s takes %d×%d images, not %d×%d", a->name, a->size, a->size, width,
                         height);
    if (height < 32 || width < 32 || (long)height * width > 1L << 26)
        return amil_fail("%s cannot take %d×%d images", a->name, width, height);
    struct builder b = {m, height, width, 0};
    m->tiles_at_once = 1;
    cnn_add_layer(&b, AMIL_OP_LINEAR, a->head, a->build(&b), classes, 0, 0, 0, 1);
    if (m->params.n == AMIL_PARAMS_MAX)   /* full: one may not have fitted */
        return amil_fail("%s has more parameters than amil's table holds", a->name);
    if (b.failed)
        return amil_fail("%s cannot take %d×%d images", a->name, width, height);
    return 0;
}

int amil_cnn_init(struct amil_cnn *m, enum amil_cnn_arch arch, int classes, int height,
                  int width, const struct amil_cnn_form *form)
{
    if (cnn_layout(m, arch, classes, height, width, form) < 0)
        return -1;
    amil_params_alloc(&m->params);
    return 0;
}

int amil_cnn_form_of(enum amil_cnn_arch arch, const struct amil_record *r,
                     struct amil_cnn_form *form)
{
    *form = (struct amil_cnn_form){AMIL_POOL_TOKEN, 0, 0, 0};
    const char *pool = amil_record_meta(r, "global_pool");
    if (pool && !is_vit(arch))
        return amil_fail("global_pool '%s': %s has no tokens to pool", pool, archs[arch].name);
    if (is_timm(arch)) {
        form->layer_scale = amil_record_find(r, "blocks.0.ls1.gamma") != NULL;
        form->fc_norm = amil_record_find(r, "fc_norm.weight") != NULL;
        form->pool = form->fc_norm ? AMIL_POOL_AVG : AMIL_POOL_TOKEN;
    }
    if (pool && strcmp(pool, "token") == 0)
        form->pool = AMIL_POOL_TOKEN;
    else if (pool && strcmp(pool, "avg") == 0)
        form->pool = AMIL_POOL_AVG;
    else if (pool)
        return amil_fail("global_pool '%s': not token or avg", pool);
    if (form->fc_norm && form->pool == AMIL_POOL_TOKEN)
        return amil_fail("global_pool 'token', but the file's fc_norm follows a mean");
    const char *precision = amil_record_meta(r, "precision");
    if (precision && strcmp(precision, "bf16") != 0 && strcmp(precision, "f32") != 0)
        return amil_fail("precision '%s': not f32 or bf16", precision);
    form->bf16 = precision && strcmp(precision, "bf16") == 0;
    const struct amil_kernels *k = form->bf16 ? amil_kernels() : NULL;
    if (form->bf16 && (!k || !k->product_bf16))
        return amil_fail("precision bf16: the %s kernels have no bfloat16 path (AVX-512 has)",
                         k ? k->name : "chosen");
    if (form->bf16 && !amil_cpu_has_bf16())
        return amil_fail("precision bf16: this CPU has no AVX512_BF16");
    return 0;
}

int amil_cnn_start(struct amil_cnn *m, enum amil_cnn_arch arch, int classes,
                   unsigned long seed, enum amil_norm norm, const char *weights, int keep_norm)
{
    struct amil_cnn_form form = {AMIL_POOL_TOKEN, 0, 0, 0};
    if (weights) {
        struct amil_record r;
        if (amil_record_load(weights, &r) < 0)
            return -1;   /* the message names the file */
        int status = amil_cnn_form_of(arch, &r, &form);
        amil_record_free(&r);
        if (status < 0)
            return amil_fail_in(weights);
    }
    if (amil_cnn_init(m, arch, classes, 0, 0, &form) < 0)
        return -1;
    amil_cnn_randomize(m, seed);
    m->norm = norm;
    return weights ? amil_cnn_load_weights(m, weights, keep_norm) : 0;
}

void amil_cnn_free(struct amil_cnn *m)
{
    amil_params_free(&m->params);
    amil_mapping_unref(m->mapping);
    m->mapping = NULL;
}

void amil_cnn_randomize(struct amil_cnn *m, unsigned long seed)
{
    amil_params_randomize(&m->params, seed);
}

int amil_cnn_is_map(const struct amil_cnn *m, int layer)
{
    if (layer <= 0 || layer >= m->nlayers)
        return 0;
    for (int i = 1; i <= layer; i++)
        if (m->layers[i].op == AMIL_OP_LINEAR || m->layers[i].op == AMIL_OP_AVGPOOL ||
            m->layers[i].op == AMIL_OP_EMBED)
            return 0;
    return 1;
}

int amil_cnn_layer(const struct amil_cnn *m, const char *name)
{
    /* a ResNet's "layer4": the output of its last block, the last layer
     * named layer4.K (a block's own layers are layer4.K.conv1 ...) */
    size_t length = strlen(name);
    int stage = strncmp(name, "layer", 5) == 0 && !strchr(name, '.'), found = -1;
    for (int i = 0; i < m->nlayers; i++) {
        const char *at = m->layers[i].name;
        if (strcmp(at, name) == 0)
            return i;
        if (stage && strncmp(at, name, length) == 0 && at[length] == '.' &&
            !strchr(at + length + 1, '.'))
            found = i;
    }
    return found;
}

/* ---- records ------------------------------------------------------------ */

void amil_cnn_to_record(const struct amil_cnn *m, struct amil_record *r)
{
    amil_record_init(r);
    amil_record_set_meta(r, "kind", "model");
    amil_record_set_meta(r, "arch", arch_of(m->arch)->name);
    amil_record_set_metaf(r, "classes", "%d", m->classes);
    amil_record_set_metaf(r, "channels", "%d", m->channels);
    amil_record_set_metaf(r, "size", "%d", m->size);
    amil_record_set_meta(r, "normalization", amil_norm_name(m->norm));
    if (is_vit(m->arch))
        amil_record_set_meta(r, "global_pool", m->form.pool == AMIL_POOL_AVG ? "avg" : "token");
    if (m->form.bf16)
        amil_record_set_meta(r, "precision", "bf16");
    amil_params_to_record(&m->params, r);
}

int amil_cnn_is_model(const struct amil_record *r)
{
    const char *arch = amil_record_meta(r, "arch");
    if (arch)
        return amil_cnn_arch_parse(arch) >= 0;
    for (int i = 0; i < NARCHS; i++)
        if (archs[i].marker && amil_record_find(r, archs[i].marker))
            return 1;
    return amil_record_find(r, "conv1.weight") != NULL;
}

void amil_cnn_rename_paper(struct amil_record *r)
{
    const char *const names[][2] = {{"fc.0.weight", "fc.weight"}, {"fc.0.bias", "fc.bias"}};
    for (int i = 0; i < 2; i++) {
        struct amil_tensor *t = amil_record_find(r, names[i][0]);
        if (t && !amil_record_find(r, names[i][1])) {
            free(t->name);
            t->name = amil_xstrdup(names[i][1]);
        }
    }
}

/* The arch r's metadata names, else the last row whose marker r has;
 * trunc = "layer3" cuts a resnet50 to CLAM's.  The arch, or -1 with a
 * message. */
static int arch_of_record(const struct amil_record *r)
{
    const char *arch_text = amil_record_meta(r, "arch");
    int arch = arch_text ? amil_cnn_arch_parse(arch_text) : -1;
    for (int i = NARCHS - 1; !arch_text && arch < 0 && i >= 0; i--)
        arch = archs[i].marker && amil_record_find(r, archs[i].marker) ? i : -1;
    if (arch < 0)
        return amil_fail(arch_text ? "arch '%s' is not a CNN or a backbone amil knows"
                                   : "not a CNN model: no arch, and not torchvision's or "
                                     "timm's names%s",
                         arch_text ? arch_text : "");
    const char *trunc = amil_record_meta(r, "trunc");
    if (trunc && strcmp(trunc, "layer3") != 0)
        return amil_fail("trunc '%s': only layer3 (CLAM's resnet50_trunc)", trunc);
    if (trunc && arch != AMIL_CNN_RESNET50 && arch != AMIL_CNN_RESNET50_TRUNC)
        return amil_fail("trunc: %s is no resnet50 to cut at layer3", archs[arch].name);
    return trunc ? AMIL_CNN_RESNET50_TRUNC : arch;
}

int amil_cnn_from_record(struct amil_cnn *m, struct amil_record *r)
{
    memset(m, 0, sizeof *m);
    amil_cnn_rename_paper(r);
    const char *kind = amil_record_meta(r, "kind");
    if (kind && strcmp(kind, "model") != 0 && strcmp(kind, "checkpoint") != 0)
        return amil_fail("a record of kind '%s', not a model", kind);
    int arch = arch_of_record(r);
    if (arch < 0)
        return -1;
    char head_name[64];
    snprintf(head_name, sizeof head_name, "%s.weight", archs[arch].head);
    const struct amil_tensor *head = amil_record_find(r, head_name);
    /* a backbone may come without its last layer (timm's num_classes=0),
     * and a resnet50 cut at layer3 leaves its own behind */
    const char *named = amil_record_meta(r, "arch");
    if (arch == AMIL_CNN_RESNET50_TRUNC && (!named || strcmp(named, archs[arch].name) != 0))
        head = NULL;
    int headless = !head && arch != AMIL_CNN_NET;
    if (!headless && (!head || head->ndim != 2))
        return amil_fail("not a %s model: it has no last layer", archs[arch].name);
    /* a shape is any int64: range it before it becomes an int */
    if (head && (head->shape[0] < 2 || head->shape[0] > AMIL_CNN_MAX_CLASSES))
        return amil_fail("a last layer of %lld classes (2 to %d)", (long long)head->shape[0],
                         AMIL_CNN_MAX_CLASSES);
    long classes = head ? (long)head->shape[0] : 2;
    if (amil_record_meta_long(r, "classes", 2, AMIL_CNN_MAX_CLASSES, &classes) < 0)
        return -1;
    if (head && classes != head->shape[0])
        return amil_fail("the metadata's %ld classes disagree with the last layer's %lld",
                         classes, (long long)head->shape[0]);
    enum amil_norm norm;
    struct amil_cnn_form form;
    if (amil_norm_of_record(r, &norm) < 0 || amil_cnn_form_of(arch, r, &form) < 0)
        return -1;
    /* every tensor checked before the buffer is allocated; a headless
     * one's last layer stays zero */
    if (cnn_layout(m, arch, (int)classes, 0, 0, &form) < 0)
        return -1;
    int n = m->params.n;
    m->params.n -= 2 * headless;
    int status = amil_params_check(&m->params, r);
    m->params.n = n;
    if (status < 0)
        return -1;
    m->norm = norm, m->headless = headless;
    amil_params_alloc(&m->params);
    for (int i = 0; i < m->params.n - 2 * headless; i++)
        amil_cnn_take_param(m, i, r);
    return 0;
}

void amil_cnn_take_param(struct amil_cnn *m, int i, const struct amil_record *r)
{
    struct amil_param *p = &m->params.at[i];
    const struct amil_tensor *t = amil_record_find(r, p->name);
    if (i < m->trained && t->borrowed && r->mapping) {
        p->data = t->data;
        if (!m->mapping)
            m->mapping = amil_mapping_ref(r->mapping);
        return;
    }
    p->data = m->params.weights + p->offset;
    memcpy(p->data, t->data, p->count * sizeof(float));
}

uint64_t amil_cnn_features_fingerprint(const struct amil_cnn *m)
{
    /* the pixels' normalization makes the features too, and a ViT's pool */
    return amil_params_fingerprint(&m->params, 0, m->trained,
                                   (uint64_t)m->norm | (uint64_t)m->form.pool << 8 |
                                       (uint64_t)m->form.bf16 << 9);
}

int amil_cnn_take_weights(struct amil_cnn *m, struct amil_record *r)
{
    amil_cnn_rename_paper(r);
    int head = m->params.n - 2, fits = 1;
    for (int i = 0; i < m->params.n; i++) {
        const struct amil_param *p = &m->params.at[i];
        int same = amil_param_fits(p, amil_record_find(r, p->name));
        if (!same && i < head)
            return amil_fail("tensor '%s' is missing or not F32 of the shape %s needs",
                             p->name, archs[m->arch].name);
        const struct amil_tensor *t = amil_record_find(r, p->name);
        if (same && amil_tensor_finite(p->name, t->data, t->ndim, t->shape, -1) < 0)
            return -1;
        fits &= i < head || same;
    }
    for (int i = 0; i < m->params.n; i++)
        if (i < head || fits)
            amil_cnn_take_param(m, i, r);
    return 0;
}

int amil_cnn_load_weights(struct amil_cnn *m, const char *path, int keep_norm)
{
    struct amil_record r;
    if (amil_record_load(path, &r) < 0)
        return -1;   /* the message names path */
    int status = amil_cnn_take_weights(m, &r);
    if (status == 0 && amil_record_meta(&r, "normalization") && !keep_norm)
        status = amil_norm_of_record(&r, &m->norm);
    amil_record_free(&r);
    return status < 0 ? amil_fail_in(path) : 0;
}
