/* cnn_winograd4.c: a frozen 3×3 convolution of cnn.h as Winograd's
 * F(4×4, 3×3) (Lavin and Gray, CVPR 2016, with the points 0, ±1, ±2):
 * each 4×4 block of outputs is Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A, d the 6×6 input
 * around it, so summed over the input channels 36 products (tiles, C) ×
 * (C, OC) make 16 outputs: 2.25 multiplies an output against F(2×2)'s 4.
 * Its weights are 36/9 of the layer's, so cnn_winograd_fits gives it only
 * the layers whose transformed weights stay in cache (a ResNet's first two
 * stages).  The transforms are loops along a block row's tiles or along
 * the output channels, which the compiler vectorizes; the products run on
 * the kernels' product, as F(2×2)'s. */
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "compute/kernels.h"
#include "models/cnn.h"
#include "models/cnn_impl.h"

/* G (6, 3): U = G g Gᵀ */
static const double G[6][3] = {
    {1 / 4.0, 0, 0},           {-1 / 6.0, -1 / 6.0, -1 / 6.0}, {-1 / 6.0, 1 / 6.0, -1 / 6.0},
    {1 / 24.0, 1 / 12.0, 1 / 6.0}, {1 / 24.0, -1 / 12.0, 1 / 6.0}, {0, 0, 1}};

struct weights_pass {
    float *U;                 /* (36, C, OC) */
    const float *weight;      /* (OC, C, 3, 3) */
    int OC, C;
};

/* input channels c_first .. c_end-1 of U: threads split them.  Sixteen
 * output channels at a time, gathered into columns, so that the arithmetic
 * runs along them and U's rows are stored sixteen floats at once. */
static void weights_of(void *ctx, int c_first, int c_end, int thread)
{
    (void)thread;
    enum { BLOCK = 16 };
    const struct weights_pass *p = ctx;
    size_t plane = (size_t)p->OC * p->C;
    for (int c = c_first; c < c_end; c++)
        for (int o0 = 0; o0 < p->OC; o0 += BLOCK) {
            int n = p->OC - o0 < BLOCK ? p->OC - o0 : BLOCK;
            double g[9][BLOCK] = {{0}}, t[6][3][BLOCK];
            for (int o = 0; o < n; o++)
                for (int j = 0; j < 9; j++)
                    g[j][o] = p->weight[((size_t)(o0 + o) * p->C + c) * 9 + j];
            for (int i = 0; i < 6; i++)   /* t = G g */
                for (int j = 0; j < 3; j++)
                    for (int o = 0; o < BLOCK; o++)
                        t[i][j][o] = G[i][0] * g[j][o] + G[i][1] * g[3 + j][o] +
                                     G[i][2] * g[6 + j][o];
            for (int i = 0; i < 6; i++)   /* U = t Gᵀ */
                for (int j = 0; j < 6; j++) {
                    float u[BLOCK];
                    for (int o = 0; o < BLOCK; o++)
                        u[o] = (float)(t[i][0][o] * G[j][0] + t[i][1][o] * G[j][1] +
                                       t[i][2][o] * G[j][2]);
                    memcpy(p->U + (size_t)(6 * i + j) * plane + (size_t)c * p->OC + o0, u,
                           sizeof(float) * n);
                }
        }
}

float *cnn_winograd4_weights(struct amil_cnn_work *w, const float *weight, int C, int OC)
{
    float *U = amil_xaligned(sizeof(float) * 36 * OC * C);
    struct weights_pass pass = {U, weight, OC, C};
    cnn_run(w, C, weights_of, &pass);
    return U;
}

/* One row of d's six: Bᵀ applied down a column of six values. */
#define BT(d0, d1, d2, d3, d4, d5, b)                  \
    do {                                               \
        b[0] = 4 * d0 - 5 * d2 + d4;                   \
        b[1] = -4 * d1 - 4 * d2 + d3 + d4;             \
        b[2] = 4 * d1 - 4 * d2 - d3 + d4;              \
        b[3] = -2 * d1 - d2 + 2 * d3 + d4;             \
        b[4] = 2 * d1 - d2 - 2 * d3 + d4;              \
        b[5] = 4 * d1 - 5 * d3 + d5;                   \
    } while (0)

/* V (36, C, N) = Bᵀ d B of every 6×6 input block d of inp (C, H, W): rows
 * 4ty-1 .. 4ty+4, columns 4tx-1 .. 4tx+4, zero outside; N = th·tw tiles.
 * Each channel is copied once into a zero-bordered plane; then for each
 * block row Bᵀ runs down the columns of its six rows (a loop along whole
 * rows, which vectorizes), and B across each tile's six columns. */
static void input_of(float *V, float *scratch, const float *inp, int C, int H, int W)
{
    int th = (H + 3) / 4, tw = (W + 3) / 4;
    size_t N = (size_t)th * tw, plane = (size_t)C * N;
    size_t pw = 4 * (size_t)tw + 2, ph = 4 * (size_t)th + 2;   /* from row and column -1 */
    float *padded = scratch, *r = scratch + ph * pw;           /* (ph, pw), (6, pw) */
    memset(padded, 0, sizeof *padded * ph * pw);
    for (int c = 0; c < C; c++) {
        for (int y = 0; y < H; y++)
            memcpy(padded + (size_t)(y + 1) * pw + 1, inp + ((size_t)c * H + y) * W,
                   sizeof *padded * W);
        for (int ty = 0; ty < th; ty++) {
            const float *d = padded + (size_t)4 * ty * pw;
            for (size_t x = 0; x < pw; x++) {
                float b[6];
                BT(d[x], d[pw + x], d[2 * pw + x], d[3 * pw + x], d[4 * pw + x],
                   d[5 * pw + x], b);
                for (int k = 0; k < 6; k++)
                    r[k * pw + x] = b[k];
            }
            float *to = V + (size_t)c * N + (size_t)ty * tw;
            for (int k = 0; k < 6; k++)
                for (int tx = 0; tx < tw; tx++) {
                    const float *e = r + k * pw + 4 * tx;
                    float b[6];
                    BT(e[0], e[1], e[2], e[3], e[4], e[5], b);
                    for (int l = 0; l < 6; l++)
                        to[(size_t)(6 * k + l) * plane + tx] = b[l];
                }
        }
    }
}

size_t cnn_winograd4_scratch(int H, int W)
{
    size_t pw = 4 * (size_t)((W + 3) / 4) + 2, ph = 4 * (size_t)((H + 3) / 4) + 2;
    return (ph + 6) * pw;
}

/* out (OC, H, W) = bias + Aᵀ m A of every 4×4 block's m, M (36, N, OC)
 * (with relu, max(that, 0)): each block's values along the output
 * channels. */
static void output_of(float *out, const float *M, const float *bias, int relu, int OC, int H,
                      int W)
{
    int th = (H + 3) / 4, tw = (W + 3) / 4;
    size_t N = (size_t)th * tw, plane = N * OC;
    enum { CHUNK = 64 };
    float s[4][6][CHUNK], o[4][4][CHUNK];
    for (int ty = 0; ty < th; ty++)
        for (int tx = 0; tx < tw; tx++) {
            size_t n = (size_t)ty * tw + tx;
            for (int c0 = 0; c0 < OC; c0 += CHUNK) {
                int nc = OC - c0 < CHUNK ? OC - c0 : CHUNK;
                for (int j = 0; j < 6; j++)   /* s = Aᵀ m, column j */
                    for (int c = 0; c < nc; c++) {
                        const float *m = M + n * OC + c0 + c + (size_t)j * plane;
                        float m0 = m[0], m1 = m[6 * plane], m2 = m[12 * plane],
                              m3 = m[18 * plane], m4 = m[24 * plane], m5 = m[30 * plane];
                        s[0][j][c] = m0 + m1 + m2 + m3 + m4;
                        s[1][j][c] = m1 - m2 + 2 * (m3 - m4);
                        s[2][j][c] = m1 + m2 + 4 * (m3 + m4);
                        s[3][j][c] = m1 - m2 + 8 * (m3 - m4) + m5;
                    }
                for (int i = 0; i < 4; i++)   /* o = s A */
                    for (int c = 0; c < nc; c++) {
                        float m0 = s[i][0][c], m1 = s[i][1][c], m2 = s[i][2][c],
                              m3 = s[i][3][c], m4 = s[i][4][c], m5 = s[i][5][c];
                        float b = bias ? bias[c0 + c] : 0;
                        o[i][0][c] = b + (m0 + m1 + m2 + m3 + m4);
                        o[i][1][c] = b + (m1 - m2 + 2 * (m3 - m4));
                        o[i][2][c] = b + (m1 + m2 + 4 * (m3 + m4));
                        o[i][3][c] = b + (m1 - m2 + 8 * (m3 - m4) + m5);
                    }
                for (int i = 0; i < 4 && 4 * ty + i < H; i++)
                    for (int j = 0; j < 4 && 4 * tx + j < W; j++)
                        for (int c = 0; c < nc; c++)
                            out[((size_t)(c0 + c) * H + 4 * ty + i) * W + 4 * tx + j] =
                                relu && o[i][j][c] <= 0 ? 0 : o[i][j][c];
            }
        }
}

void cnn_winograd4_input(struct amil_cnn_work *w, const float *inp, int C, int H, int W)
{
    input_of(w->tiles, w->cols, inp, C, H, W);
}

void cnn_winograd4_output(struct amil_cnn_work *w, float *out, const float *bias, int relu,
                          int OC, int H, int W)
{
    output_of(out, w->products, bias, relu, OC, H, W);
}
