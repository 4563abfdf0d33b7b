/* cnn.c: the CNN baselines of cnn.h: the layer graphs and their parameter
 * tables, model records and starting weights.  cnn_pass.c runs them
 * forward and backward; cnn_images.c sees images as their tiles. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "compute/kernels.h"
#include "compute/nn.h"
#include "models/cnn.h"
#include "record/record.h"
#include "record/stream.h"

/* ---- building the graph ------------------------------------------------ */

struct builder {
    struct amil_cnn *m;
    int height, width;      /* of the input */
    int failed;             /* a layer's output came out empty */
};

/* Appends parameter layer.suffix; its index.  The graphs here are fixed
 * and small, so the table cannot overflow. */
static int add_param(struct amil_cnn *m, const char *layer, const char *suffix, int ndim,
                     const int64_t *shape, size_t fan_in)
{
    char name[80];
    snprintf(name, sizeof name, "%s.%s", layer, suffix);
    return amil_params_add(&m->params, name, ndim, shape, fan_in);
}

/* Appends a layer reading `input` and returns its index; its output shape
 * is worked out from the input's. */
static int add_layer(struct builder *b, enum amil_op op, const char *name, int input,
                     int out_channels, int kernel, int stride, int pad, int has_bias)
{
    struct amil_cnn *m = b->m;
    if (m->nlayers == AMIL_CNN_MAX_LAYERS) {   /* an architecture too deep for the table */
        b->failed = 1;
        return m->nlayers - 1;
    }
    struct amil_layer *l = &m->layers[m->nlayers];
    const struct amil_layer *in = input >= 0 ? &m->layers[input] : NULL;
    *l = (struct amil_layer){.op = op, .input = input, .input2 = -1, .kernel = kernel,
                             .stride = stride, .pad = pad, .param = -1,
                             .has_bias = has_bias};
    snprintf(l->name, sizeof l->name, "%s", name);
    if (in)
        l->c = in->c, l->h = in->h, l->w = in->w;
    else
        l->c = 3, l->h = b->height, l->w = b->width;
    switch (op) {
    case AMIL_OP_CONV: {
        l->c = out_channels;
        l->h = amil_conv_out(in->h, kernel, stride, pad);
        l->w = amil_conv_out(in->w, kernel, stride, pad);
        int64_t shape[4] = {out_channels, in->c, kernel, kernel};
        size_t fan_in = (size_t)in->c * kernel * kernel;
        l->param = add_param(m, name, "weight", 4, shape, fan_in);
        if (has_bias)
            add_param(m, name, "bias", 1, shape, fan_in);
        break;
    }
    case AMIL_OP_MAXPOOL:
        l->h = amil_conv_out(in->h, kernel, stride, pad);
        l->w = amil_conv_out(in->w, kernel, stride, pad);
        break;
    case AMIL_OP_AVGPOOL:   /* adaptive, to kernel × kernel */
        l->h = l->w = kernel;
        break;
    case AMIL_OP_LINEAR: {
        int64_t shape[2] = {out_channels, (int64_t)in->c * in->h * in->w};
        l->param = add_param(m, name, "weight", 2, shape, (size_t)shape[1]);
        add_param(m, name, "bias", 1, shape, (size_t)shape[1]);
        l->c = out_channels, l->h = l->w = 1;
        break;
    }
    case AMIL_OP_BATCHNORM: {
        int64_t shape[1] = {in->c};
        const char *const names[] = {"weight", "bias", "running_mean", "running_var"};
        for (int i = 0; i < 4; i++) {
            int p = add_param(m, name, names[i], 1, shape, 0);
            l->param = i == 0 ? p : l->param;
        }
        break;
    }
    default:
        break;
    }
    if (l->h < 1 || l->w < 1)
        b->failed = 1;
    return m->nlayers++;
}

static int build_net(struct builder *b)
{
    static const int widths[5] = {64, 64, 128, 128, 128};
    int x = add_layer(b, AMIL_OP_INPUT, "input", -1, 0, 0, 0, 0, 0);
    char name[16];
    for (int i = 0; i < 5; i++) {
        snprintf(name, sizeof name, "conv%d", i + 1);
        x = add_layer(b, AMIL_OP_CONV, name, x, widths[i], 3, 1, 1, 1);
        snprintf(name, sizeof name, "relu%d", i + 1);
        x = add_layer(b, AMIL_OP_LEAKY_RELU, name, x, 0, 0, 0, 0, 0);
        if (i == 4)
            b->m->cam_layer = x;
        snprintf(name, sizeof name, "pool%d", i + 1);
        x = add_layer(b, AMIL_OP_MAXPOOL, name, x, 0, 2, 2, 0, 0);
    }
    x = add_layer(b, AMIL_OP_DROPOUT, "dropout1", x, 0, 0, 0, 0, 0);
    x = add_layer(b, AMIL_OP_LINEAR, "fc1", x, 1024, 0, 0, 0, 1);
    x = add_layer(b, AMIL_OP_LEAKY_RELU, "relu6", x, 0, 0, 0, 0, 0);
    x = add_layer(b, AMIL_OP_DROPOUT, "dropout2", x, 0, 0, 0, 0, 0);
    b->m->features = x;
    b->m->trained = 0;   /* all of it */
    return x;
}

static int build_vgg19(struct builder *b)
{
    /* torchvision's configuration "E": channels, 0 for a max-pool */
    static const int config[] = {64,  64,  0,   128, 128, 0,   256, 256, 256, 256, 0,
                                 512, 512, 512, 512, 0,   512, 512, 512, 512, 0};
    int x = add_layer(b, AMIL_OP_INPUT, "input", -1, 0, 0, 0, 0, 0), index = 0;
    char name[24];
    for (size_t i = 0; i < sizeof config / sizeof *config; i++) {
        snprintf(name, sizeof name, "features.%d", index++);
        if (!config[i]) {
            x = add_layer(b, AMIL_OP_MAXPOOL, name, x, 0, 2, 2, 0, 0);
            continue;
        }
        x = add_layer(b, AMIL_OP_CONV, name, x, config[i], 3, 1, 1, 1);
        snprintf(name, sizeof name, "features.%d", index++);
        x = add_layer(b, AMIL_OP_RELU, name, x, 0, 0, 0, 0, 0);
        b->m->cam_layer = x;   /* the last convolution's, once done */
    }
    x = add_layer(b, AMIL_OP_AVGPOOL, "avgpool", x, 0, 7, 0, 0, 0);
    x = add_layer(b, AMIL_OP_LINEAR, "classifier.0", x, 4096, 0, 0, 0, 1);
    x = add_layer(b, AMIL_OP_RELU, "classifier.1", x, 0, 0, 0, 0, 0);
    x = add_layer(b, AMIL_OP_DROPOUT, "classifier.2", x, 0, 0, 0, 0, 0);
    x = add_layer(b, AMIL_OP_LINEAR, "classifier.3", x, 4096, 0, 0, 0, 1);
    x = add_layer(b, AMIL_OP_RELU, "classifier.4", x, 0, 0, 0, 0, 0);
    x = add_layer(b, AMIL_OP_DROPOUT, "classifier.5", x, 0, 0, 0, 0, 0);
    b->m->features = x;
    b->m->trained = b->m->params.n;
    return x;
}

/* Layer part of a block (prefix "layer1.0", part "conv1"), without bias. */
static int block_layer(struct builder *b, enum amil_op op, const char *prefix,
                       const char *part, int input, int out_channels, int kernel, int stride,
                       int pad)
{
    char name[64];
    snprintf(name, sizeof name, "%s.%s", prefix, part);
    return add_layer(b, op, name, input, out_channels, kernel, stride, pad, 0);
}

/* A ResNet block's end: its branch x plus its input in (through a 1×1
 * convolution with the stride and bn when the shape changes), ReLU. */
static int residual(struct builder *b, const char *prefix, int x, int in, int channels,
                    int stride)
{
    int shortcut = in;
    if (stride != 1 || b->m->layers[in].c != channels) {
        shortcut = block_layer(b, AMIL_OP_CONV, prefix, "downsample.0", in, channels, 1,
                               stride, 0);
        shortcut = block_layer(b, AMIL_OP_BATCHNORM, prefix, "downsample.1", shortcut, 0, 0,
                               0, 0);
    }
    x = block_layer(b, AMIL_OP_ADD, prefix, "add", x, 0, 0, 0, 0);
    b->m->layers[x].input2 = shortcut;
    return add_layer(b, AMIL_OP_RELU, prefix, x, 0, 0, 0, 0, 0);
}

/* torchvision's BasicBlock: conv 3×3 (stride), bn, ReLU, conv 3×3, bn,
 * then the residual sum. */
static int basic_block(struct builder *b, const char *prefix, int x, int channels,
                       int stride)
{
    int in = x;
    x = block_layer(b, AMIL_OP_CONV, prefix, "conv1", x, channels, 3, stride, 1);
    x = block_layer(b, AMIL_OP_BATCHNORM, prefix, "bn1", x, 0, 0, 0, 0);
    x = block_layer(b, AMIL_OP_RELU, prefix, "relu", x, 0, 0, 0, 0);
    x = block_layer(b, AMIL_OP_CONV, prefix, "conv2", x, channels, 3, 1, 1);
    x = block_layer(b, AMIL_OP_BATCHNORM, prefix, "bn2", x, 0, 0, 0, 0);
    return residual(b, prefix, x, in, channels, stride);
}

/* torchvision's Bottleneck (ResNet v1.5): conv 1×1, bn, ReLU, conv 3×3
 * (stride), bn, ReLU, conv 1×1 to 4 × width, bn, then the residual sum. */
static int bottleneck(struct builder *b, const char *prefix, int x, int width, int stride)
{
    int in = x;
    x = block_layer(b, AMIL_OP_CONV, prefix, "conv1", x, width, 1, 1, 0);
    x = block_layer(b, AMIL_OP_BATCHNORM, prefix, "bn1", x, 0, 0, 0, 0);
    x = block_layer(b, AMIL_OP_RELU, prefix, "relu1", x, 0, 0, 0, 0);
    x = block_layer(b, AMIL_OP_CONV, prefix, "conv2", x, width, 3, stride, 1);
    x = block_layer(b, AMIL_OP_BATCHNORM, prefix, "bn2", x, 0, 0, 0, 0);
    x = block_layer(b, AMIL_OP_RELU, prefix, "relu2", x, 0, 0, 0, 0);
    x = block_layer(b, AMIL_OP_CONV, prefix, "conv3", x, 4 * width, 1, 1, 0);
    x = block_layer(b, AMIL_OP_BATCHNORM, prefix, "bn3", x, 0, 0, 0, 0);
    return residual(b, prefix, x, in, 4 * width, stride);
}

/* torchvision's ResNet: the stem (conv 7×7 stride 2, bn, ReLU, max-pool),
 * stages (4; CLAM's truncated one 3) of blocks[stage] blocks of width
 * 64 << stage (the first of stages 2 to 4 with stride 2), the average
 * pool. */
static int build_resnet(struct builder *b, int (*block)(struct builder *, const char *, int,
                                                        int, int),
                        const int blocks[4], int stages)
{
    int x = add_layer(b, AMIL_OP_INPUT, "input", -1, 0, 0, 0, 0, 0);
    x = add_layer(b, AMIL_OP_CONV, "conv1", x, 64, 7, 2, 3, 0);
    x = add_layer(b, AMIL_OP_BATCHNORM, "bn1", x, 0, 0, 0, 0, 0);
    x = add_layer(b, AMIL_OP_RELU, "relu", x, 0, 0, 0, 0, 0);
    x = add_layer(b, AMIL_OP_MAXPOOL, "maxpool", x, 0, 3, 2, 1, 0);
    char prefix[32];
    for (int stage = 0; stage < stages; stage++)
        for (int i = 0; i < blocks[stage]; i++) {
            snprintf(prefix, sizeof prefix, "layer%d.%d", stage + 1, i);
            x = block(b, prefix, x, 64 << stage, stage > 0 && i == 0 ? 2 : 1);
        }
    b->m->cam_layer = x;
    x = add_layer(b, AMIL_OP_AVGPOOL, "avgpool", x, 0, 1, 0, 0, 0);
    b->m->features = x;
    b->m->trained = b->m->params.n;
    return x;
}

static int build_resnet18(struct builder *b)
{
    return build_resnet(b, basic_block, (const int[4]){2, 2, 2, 2}, 4);
}

/* 2048 features */
static int build_resnet50(struct builder *b)
{
    return build_resnet(b, bottleneck, (const int[4]){3, 4, 6, 3}, 4);
}

/* 1024 features */
static int build_resnet50_trunc(struct builder *b)
{
    return build_resnet(b, bottleneck, (const int[4]){3, 4, 6, 3}, 3);
}

/* ---- vision transformers -------------------------------------------------
 *
 * Dosovitskiy et al. 2021: the class token and the image's 16×16 patches,
 * embedded, plus positions; blocks of x += attention(LayerNorm(x)), x +=
 * MLP(LayerNorm(x)) (GELU between its two linears); a final LayerNorm. */

/* The tensors' names in one layout; a block's after its prefix.  scale
 * names LayerScale's (timm only); fc_norm timm's LayerNorm after a mean. */
struct vit_names {
    const char *patch_weight, *patch_bias, *class_token, *position;
    const char *block;      /* a printf format of the block's number */
    const char *norm1, *qkv_weight, *qkv_bias, *proj, *scale1, *norm2, *fc1, *fc2, *scale2;
    const char *norm, *fc_norm;
};

static const struct vit_names torchvision_vit = {
    "conv_proj.weight", "conv_proj.bias", "class_token", "encoder.pos_embedding",
    "encoder.layers.encoder_layer_%d", "ln_1", "self_attention.in_proj_weight",
    "self_attention.in_proj_bias", "self_attention.out_proj", NULL, "ln_2", "mlp.0", "mlp.3",
    NULL, "encoder.ln", NULL};

static const struct vit_names timm_vit = {
    "patch_embed.proj.weight", "patch_embed.proj.bias", "cls_token", "pos_embed", "blocks.%d",
    "norm1", "attn.qkv.weight", "attn.qkv.bias", "attn.proj", "ls1", "norm2", "mlp.fc1",
    "mlp.fc2", "ls2", "norm", "fc_norm"};

/* Appends a token layer (enum amil_op's) reading input, `width` values a
 * token (its input's where the op keeps them), its parameters under the
 * names given in full: weight and bias, and for the embedding the class
 * token and the positions. */
static int add_token_layer(struct builder *b, enum amil_op op, const char *name, int input,
                           int width, int arg, const char *const params[4])
{
    struct amil_cnn *m = b->m;
    int x = add_layer(b, op, name, input, 0, 0, 0, 0, 0);
    struct amil_layer *l = &m->layers[x];
    const struct amil_layer *in = &m->layers[input];
    struct amil_params *t = &m->params;
    int D = width ? width : in->w;
    l->c = 1, l->h = in->h, l->w = D, l->kernel = arg;
    switch (op) {
    case AMIL_OP_EMBED: {
        int P = arg, T = 1 + (in->h / P) * (in->w / P);
        l->h = T;
        int64_t weight[4] = {D, in->c, P, P}, token[3] = {1, 1, D}, position[3] = {1, T, D};
        size_t fan_in = (size_t)in->c * P * P;
        l->param = amil_params_add(t, params[0], 4, weight, fan_in);
        amil_params_add(t, params[1], 1, weight, fan_in);
        amil_params_add(t, params[2], 3, token, 0);
        amil_params_add(t, params[3], 3, position, 0);
        break;
    }
    case AMIL_OP_TOKEN_LINEAR: {
        int64_t shape[2] = {D, in->w};
        l->param = amil_params_add(t, params[0], 2, shape, (size_t)in->w);
        amil_params_add(t, params[1], 1, shape, (size_t)in->w);
        break;
    }
    case AMIL_OP_LAYERNORM: {
        int64_t shape[1] = {D};
        l->param = amil_params_add(t, params[0], 1, shape, 0);
        amil_params_add(t, params[1], 1, shape, 0);
        break;
    }
    case AMIL_OP_SCALE: {
        int64_t shape[1] = {D};
        l->param = amil_params_add(t, params[0], 1, shape, 0);
        break;
    }
    case AMIL_OP_POOL_TOKENS:
        l->h = 1;
        break;
    default:
        break;
    }
    return x;
}

/* A token layer named prefix.part (part NULL: prefix alone), whose
 * parameters are its name's .weight and .bias, or the two names given
 * after the prefix; a scale's, its name's .gamma. */
static int block_token_layer(struct builder *b, enum amil_op op, const char *prefix,
                             const char *part, const char *weight_name,
                             const char *bias_name, int input, int width, int arg)
{
    char name[64], names[2][80];
    snprintf(name, sizeof name, part ? "%s.%s" : "%s", prefix, part);
    snprintf(names[0], sizeof names[0], op == AMIL_OP_SCALE ? "%s.gamma" : "%s.weight", name);
    snprintf(names[1], sizeof names[1], "%s.bias", name);
    if (weight_name) {
        snprintf(names[0], sizeof names[0], "%s.%s", prefix, weight_name);
        snprintf(names[1], sizeof names[1], "%s.%s", prefix, bias_name);
    }
    const char *const params[4] = {names[0], names[1], NULL, NULL};
    return add_token_layer(b, op, name, input, width, arg, params);
}

/* x + the output of its branch (block part `sum`), scaled first by
 * timm's LayerScale `scale` when the form has it */
static int vit_residual(struct builder *b, const char *prefix, const char *scale,
                        const char *sum, int x, int branch)
{
    if (scale && b->m->form.layer_scale)
        branch = block_token_layer(b, AMIL_OP_SCALE, prefix, scale, NULL, NULL, branch, 0, 0);
    int at = block_layer(b, AMIL_OP_ADD, prefix, sum, branch, 0, 0, 0, 0);
    b->m->layers[at].input2 = x;
    return at;
}

static int build_vit(struct builder *b, const struct vit_names *n, int width, int depth,
                     int heads)
{
    struct amil_cnn *m = b->m;
    int x = add_layer(b, AMIL_OP_INPUT, "input", -1, 0, 0, 0, 0, 0);
    const char *embed[4] = {n->patch_weight, n->patch_bias, n->class_token, n->position};
    x = add_token_layer(b, AMIL_OP_EMBED, "embed", x, width, 16, embed);
    char prefix[48];
    for (int i = 0; i < depth; i++) {
        snprintf(prefix, sizeof prefix, n->block, i);
        int y = block_token_layer(b, AMIL_OP_LAYERNORM, prefix, n->norm1, NULL, NULL, x, 0, 0);
        y = block_token_layer(b, AMIL_OP_TOKEN_LINEAR, prefix, "qkv", n->qkv_weight,
                              n->qkv_bias, y, 3 * width, 0);
        y = block_token_layer(b, AMIL_OP_SELF_ATTENTION, prefix, "attention", NULL, NULL, y,
                              width, heads);
        y = block_token_layer(b, AMIL_OP_TOKEN_LINEAR, prefix, n->proj, NULL, NULL, y, 0, 0);
        x = vit_residual(b, prefix, n->scale1, "residual1", x, y);
        y = block_token_layer(b, AMIL_OP_LAYERNORM, prefix, n->norm2, NULL, NULL, x, 0, 0);
        y = block_token_layer(b, AMIL_OP_TOKEN_LINEAR, prefix, n->fc1, NULL, NULL, y,
                              4 * width, 0);
        y = block_token_layer(b, AMIL_OP_GELU, prefix, "gelu", NULL, NULL, y, 0, 0);
        y = block_token_layer(b, AMIL_OP_TOKEN_LINEAR, prefix, n->fc2, NULL, NULL, y, width, 0);
        x = vit_residual(b, prefix, n->scale2, "residual2", x, y);
    }
    if (!m->form.fc_norm)
        x = block_token_layer(b, AMIL_OP_LAYERNORM, n->norm, NULL, NULL, NULL, x, 0, 0);
    x = add_token_layer(b, AMIL_OP_POOL_TOKENS, "pool", x, 0, (int)m->form.pool, NULL);
    if (m->form.fc_norm)
        x = block_token_layer(b, AMIL_OP_LAYERNORM, n->fc_norm, NULL, NULL, NULL, x, 0, 0);
    m->cam_layer = -1;   /* no maps */
    m->tiles_at_once = 16;
    m->features = x;
    m->trained = m->params.n;
    return x;
}

static int build_vit_b_16(struct builder *b) { return build_vit(b, &torchvision_vit, 768, 12, 12); }
static int build_vit_l_16(struct builder *b) { return build_vit(b, &torchvision_vit, 1024, 24, 16); }
static int build_vit_base(struct builder *b) { return build_vit(b, &timm_vit, 768, 12, 12); }
static int build_vit_large(struct builder *b) { return build_vit(b, &timm_vit, 1024, 24, 16); }

/* The architectures, in enum amil_cnn_arch's order: a new one is its
 * builder above, its row here and its name in the enum. */
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
    {"net", 128, 1, build_net, "fc2", "conv5.weight"},
    {"vgg19", 224, 0, build_vgg19, "classifier.6", "features.0.weight"},
    {"resnet18", 224, 0, build_resnet18, "fc", "layer1.0.conv1.weight"},
    {"resnet50", 224, 0, build_resnet50, "fc", "layer1.0.conv3.weight"},
    {"resnet50_trunc", 224, 0, build_resnet50_trunc, "fc", NULL},
    {"vit_b_16", 224, 1, build_vit_b_16, "heads.head", "encoder.layers.encoder_layer_0.ln_1.weight"},
    {"vit_l_16", 224, 1, build_vit_l_16, "heads.head", "encoder.layers.encoder_layer_23.ln_1.weight"},
    {"vit_base_patch16_224", 224, 1, build_vit_base, "head", "blocks.0.norm1.weight"},
    {"vit_large_patch16_224", 224, 1, build_vit_large, "head", "blocks.23.norm1.weight"},
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
    add_layer(&b, AMIL_OP_LINEAR, a->head, a->build(&b), classes, 0, 0, 0, 1);
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
    if (form->bf16 && !is_vit(arch))
        return amil_fail("precision bf16: only a ViT's linear layers have it; %s runs in f32",
                         archs[arch].name);
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
