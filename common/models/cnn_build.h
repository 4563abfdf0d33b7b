/* cnn_build.h: building a CNN's layer graph, shared by cnn.c (the table of
 * architectures), cnn_graph.c (the convolutional ones) and cnn_vit.c (the
 * vision transformers); private to them. */
#ifndef AMIL_CNN_BUILD_H
#define AMIL_CNN_BUILD_H

#include "compute/nn.h"
#include "models/cnn.h"

struct builder {
    struct amil_cnn *m;
    int height, width;      /* of the input */
    int failed;             /* a layer's output came out empty */
};

/* Appends a layer reading `input` (-1: the image) and returns its index;
 * its output shape is worked out from the input's, its parameters (a
 * convolution's, a linear's, a batch norm's) named after it. */
int cnn_add_layer(struct builder *b, enum amil_op op, const char *name, int input,
                  int out_channels, int kernel, int stride, int pad, int has_bias);
/* Layer part of a block (prefix "layer1.0", part "conv1"), without bias. */
int cnn_block_layer(struct builder *b, enum amil_op op, const char *prefix, const char *part,
                    int input, int out_channels, int kernel, int stride, int pad);

/* The graphs up to the features (cnn.c's table of architectures); each
 * returns the features' layer. */
int cnn_build_net(struct builder *b);
int cnn_build_vgg19(struct builder *b);
int cnn_build_resnet18(struct builder *b);
int cnn_build_resnet50(struct builder *b);
int cnn_build_resnet50_trunc(struct builder *b);
int cnn_build_vit_b_16(struct builder *b);
int cnn_build_vit_l_16(struct builder *b);
int cnn_build_vit_base(struct builder *b);
int cnn_build_vit_large(struct builder *b);

#endif
