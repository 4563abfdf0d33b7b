/* cnn_vit.c: the vision transformers' layer graphs, in torchvision's
 * names and in timm's (as pathology encoders ship them). */
#include <stdio.h>

#include "compute/nn.h"
#include "models/cnn.h"
#include "models/cnn_build.h"
#include "record/record.h"

/* Dosovitskiy et al. 2021: the class token and the image's 16×16 patches,
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
    int x = cnn_add_layer(b, op, name, input, 0, 0, 0, 0, 0);
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
    int at = cnn_block_layer(b, AMIL_OP_ADD, prefix, sum, branch, 0, 0, 0, 0);
    b->m->layers[at].input2 = x;
    return at;
}

static int build_vit(struct builder *b, const struct vit_names *n, int width, int depth,
                     int heads)
{
    struct amil_cnn *m = b->m;
    int x = cnn_add_layer(b, AMIL_OP_INPUT, "input", -1, 0, 0, 0, 0, 0);
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

int cnn_build_vit_b_16(struct builder *b) { return build_vit(b, &torchvision_vit, 768, 12, 12); }
int cnn_build_vit_l_16(struct builder *b) { return build_vit(b, &torchvision_vit, 1024, 24, 16); }
int cnn_build_vit_base(struct builder *b) { return build_vit(b, &timm_vit, 768, 12, 12); }
int cnn_build_vit_large(struct builder *b) { return build_vit(b, &timm_vit, 1024, 24, 16); }
