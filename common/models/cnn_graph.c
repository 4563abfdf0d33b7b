/* cnn_graph.c: the convolutional networks' layer graphs (the paper's Net,
 * VGG19, the ResNets) with their parameter tables, in torchvision's names;
 * cnn_vit.c builds the vision transformers on the same pieces. */
#include <stdio.h>

#include "compute/nn.h"
#include "models/cnn.h"
#include "models/cnn_build.h"
#include "record/record.h"

/* Appends parameter layer.suffix; its index.  The graphs here are fixed
 * and small, so the table cannot overflow. */
static int add_param(struct amil_cnn *m, const char *layer, const char *suffix, int ndim,
                     const int64_t *shape, size_t fan_in)
{
    char name[80];
    snprintf(name, sizeof name, "%s.%s", layer, suffix);
    return amil_params_add(&m->params, name, ndim, shape, fan_in);
}

int cnn_add_layer(struct builder *b, enum amil_op op, const char *name, int input,
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

int cnn_build_net(struct builder *b)
{
    static const int widths[5] = {64, 64, 128, 128, 128};
    int x = cnn_add_layer(b, AMIL_OP_INPUT, "input", -1, 0, 0, 0, 0, 0);
    char name[16];
    for (int i = 0; i < 5; i++) {
        snprintf(name, sizeof name, "conv%d", i + 1);
        x = cnn_add_layer(b, AMIL_OP_CONV, name, x, widths[i], 3, 1, 1, 1);
        snprintf(name, sizeof name, "relu%d", i + 1);
        x = cnn_add_layer(b, AMIL_OP_LEAKY_RELU, name, x, 0, 0, 0, 0, 0);
        if (i == 4)
            b->m->cam_layer = x;
        snprintf(name, sizeof name, "pool%d", i + 1);
        x = cnn_add_layer(b, AMIL_OP_MAXPOOL, name, x, 0, 2, 2, 0, 0);
    }
    x = cnn_add_layer(b, AMIL_OP_DROPOUT, "dropout1", x, 0, 0, 0, 0, 0);
    x = cnn_add_layer(b, AMIL_OP_LINEAR, "fc1", x, 1024, 0, 0, 0, 1);
    x = cnn_add_layer(b, AMIL_OP_LEAKY_RELU, "relu6", x, 0, 0, 0, 0, 0);
    x = cnn_add_layer(b, AMIL_OP_DROPOUT, "dropout2", x, 0, 0, 0, 0, 0);
    b->m->features = x;
    b->m->trained = 0;   /* all of it */
    return x;
}

int cnn_build_vgg19(struct builder *b)
{
    /* torchvision's configuration "E": channels, 0 for a max-pool */
    static const int config[] = {64,  64,  0,   128, 128, 0,   256, 256, 256, 256, 0,
                                 512, 512, 512, 512, 0,   512, 512, 512, 512, 0};
    int x = cnn_add_layer(b, AMIL_OP_INPUT, "input", -1, 0, 0, 0, 0, 0), index = 0;
    char name[24];
    for (size_t i = 0; i < sizeof config / sizeof *config; i++) {
        snprintf(name, sizeof name, "features.%d", index++);
        if (!config[i]) {
            x = cnn_add_layer(b, AMIL_OP_MAXPOOL, name, x, 0, 2, 2, 0, 0);
            continue;
        }
        x = cnn_add_layer(b, AMIL_OP_CONV, name, x, config[i], 3, 1, 1, 1);
        snprintf(name, sizeof name, "features.%d", index++);
        x = cnn_add_layer(b, AMIL_OP_RELU, name, x, 0, 0, 0, 0, 0);
        b->m->cam_layer = x;   /* the last convolution's, once done */
    }
    x = cnn_add_layer(b, AMIL_OP_AVGPOOL, "avgpool", x, 0, 7, 0, 0, 0);
    x = cnn_add_layer(b, AMIL_OP_LINEAR, "classifier.0", x, 4096, 0, 0, 0, 1);
    x = cnn_add_layer(b, AMIL_OP_RELU, "classifier.1", x, 0, 0, 0, 0, 0);
    x = cnn_add_layer(b, AMIL_OP_DROPOUT, "classifier.2", x, 0, 0, 0, 0, 0);
    x = cnn_add_layer(b, AMIL_OP_LINEAR, "classifier.3", x, 4096, 0, 0, 0, 1);
    x = cnn_add_layer(b, AMIL_OP_RELU, "classifier.4", x, 0, 0, 0, 0, 0);
    x = cnn_add_layer(b, AMIL_OP_DROPOUT, "classifier.5", x, 0, 0, 0, 0, 0);
    b->m->features = x;
    b->m->trained = b->m->params.n;
    return x;
}

int cnn_block_layer(struct builder *b, enum amil_op op, const char *prefix, const char *part,
                    int input, int out_channels, int kernel, int stride, int pad)
{
    char name[64];
    snprintf(name, sizeof name, "%s.%s", prefix, part);
    return cnn_add_layer(b, op, name, input, out_channels, kernel, stride, pad, 0);
}

/* A ResNet block's end: its branch x plus its input in (through a 1×1
 * convolution with the stride and bn when the shape changes), ReLU. */
static int residual(struct builder *b, const char *prefix, int x, int in, int channels,
                    int stride)
{
    int shortcut = in;
    if (stride != 1 || b->m->layers[in].c != channels) {
        shortcut = cnn_block_layer(b, AMIL_OP_CONV, prefix, "downsample.0", in, channels,
                                   1, stride, 0);
        shortcut = cnn_block_layer(b, AMIL_OP_BATCHNORM, prefix, "downsample.1", shortcut,
                                   0, 0, 0, 0);
    }
    x = cnn_block_layer(b, AMIL_OP_ADD, prefix, "add", x, 0, 0, 0, 0);
    b->m->layers[x].input2 = shortcut;
    return cnn_add_layer(b, AMIL_OP_RELU, prefix, x, 0, 0, 0, 0, 0);
}

/* torchvision's BasicBlock: conv 3×3 (stride), bn, ReLU, conv 3×3, bn,
 * then the residual sum. */
static int basic_block(struct builder *b, const char *prefix, int x, int channels,
                       int stride)
{
    int in = x;
    x = cnn_block_layer(b, AMIL_OP_CONV, prefix, "conv1", x, channels, 3, stride, 1);
    x = cnn_block_layer(b, AMIL_OP_BATCHNORM, prefix, "bn1", x, 0, 0, 0, 0);
    x = cnn_block_layer(b, AMIL_OP_RELU, prefix, "relu", x, 0, 0, 0, 0);
    x = cnn_block_layer(b, AMIL_OP_CONV, prefix, "conv2", x, channels, 3, 1, 1);
    x = cnn_block_layer(b, AMIL_OP_BATCHNORM, prefix, "bn2", x, 0, 0, 0, 0);
    return residual(b, prefix, x, in, channels, stride);
}

/* torchvision's Bottleneck (ResNet v1.5): conv 1×1, bn, ReLU, conv 3×3
 * (stride), bn, ReLU, conv 1×1 to 4 × width, bn, then the residual sum. */
static int bottleneck(struct builder *b, const char *prefix, int x, int width, int stride)
{
    int in = x;
    x = cnn_block_layer(b, AMIL_OP_CONV, prefix, "conv1", x, width, 1, 1, 0);
    x = cnn_block_layer(b, AMIL_OP_BATCHNORM, prefix, "bn1", x, 0, 0, 0, 0);
    x = cnn_block_layer(b, AMIL_OP_RELU, prefix, "relu1", x, 0, 0, 0, 0);
    x = cnn_block_layer(b, AMIL_OP_CONV, prefix, "conv2", x, width, 3, stride, 1);
    x = cnn_block_layer(b, AMIL_OP_BATCHNORM, prefix, "bn2", x, 0, 0, 0, 0);
    x = cnn_block_layer(b, AMIL_OP_RELU, prefix, "relu2", x, 0, 0, 0, 0);
    x = cnn_block_layer(b, AMIL_OP_CONV, prefix, "conv3", x, 4 * width, 1, 1, 0);
    x = cnn_block_layer(b, AMIL_OP_BATCHNORM, prefix, "bn3", x, 0, 0, 0, 0);
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
    int x = cnn_add_layer(b, AMIL_OP_INPUT, "input", -1, 0, 0, 0, 0, 0);
    x = cnn_add_layer(b, AMIL_OP_CONV, "conv1", x, 64, 7, 2, 3, 0);
    x = cnn_add_layer(b, AMIL_OP_BATCHNORM, "bn1", x, 0, 0, 0, 0, 0);
    x = cnn_add_layer(b, AMIL_OP_RELU, "relu", x, 0, 0, 0, 0, 0);
    x = cnn_add_layer(b, AMIL_OP_MAXPOOL, "maxpool", x, 0, 3, 2, 1, 0);
    char prefix[32];
    for (int stage = 0; stage < stages; stage++)
        for (int i = 0; i < blocks[stage]; i++) {
            snprintf(prefix, sizeof prefix, "layer%d.%d", stage + 1, i);
            x = block(b, prefix, x, 64 << stage, stage > 0 && i == 0 ? 2 : 1);
        }
    b->m->cam_layer = x;
    x = cnn_add_layer(b, AMIL_OP_AVGPOOL, "avgpool", x, 0, 1, 0, 0, 0);
    b->m->features = x;
    b->m->trained = b->m->params.n;
    return x;
}

int cnn_build_resnet18(struct builder *b)
{
    return build_resnet(b, basic_block, (const int[4]){2, 2, 2, 2}, 4);
}

/* 2048 features */
int cnn_build_resnet50(struct builder *b)
{
    return build_resnet(b, bottleneck, (const int[4]){3, 4, 6, 3}, 4);
}

/* 1024 features */
int cnn_build_resnet50_trunc(struct builder *b)
{
    return build_resnet(b, bottleneck, (const int[4]){3, 4, 6, 3}, 3);
}
