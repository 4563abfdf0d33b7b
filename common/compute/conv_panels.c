/* conv_panels.c: a convolution as products on the kernels (an implicit
 * GEMM; nn.h's amil_conv2d_panels).  For each panel of AMIL_CONV_PANEL
 * output positions, what each position reads under each tap is gathered
 * into a pack (C·K·K, columns) in cache, and the kernels' product
 * multiplies it by the weights as they lie, (OC, C·K·K): one output
 * channel a row, the positions in lanes.
 *
 * Against shifted rows (kernels.h's conv_shift: a broadcast weight times
 * rows read straight from the planes), the pack is read from cache at unit
 * stride whatever the stride and padding: ResNet50's 1×1 convolutions went
 * from 97 to 155 GFLOP/s on one core, its 3×3 ones of stride 2 from 102 to
 * 135 (bench/cnn … layers). */
#include <stdint.h>
#include <string.h>

#include "compute/kernels.h"
#include "compute/nn.h"

size_t amil_conv2d_panel_scratch(int C, int K, int OC)
{
    /* the pack, the products, the pack in bfloat16 */
    return ((size_t)C * K * K * 3 / 2 + 1 + (size_t)OC) * AMIL_CONV_PANEL;
}

/* pack (C·K·K, cols): row (c·K + ki)·K + kj, column j = what output
 * position p0 + j reads under tap (ki, kj) of channel c; 0 in the padding
 * and from the np-th column on.  Along an output row the reads are S
 * apart, so each row of the pack is copied in runs. */
static void pack_panel(float *pack, size_t cols, const float *inp, int C, int H, int W,
                       int OW, int K, int S, int pad, int p0, int np)
{
    size_t rows = (size_t)C * K * K;
    if ((size_t)np < cols)
        for (size_t r = 0; r < rows; r++)
            memset(pack + r * cols + np, 0, sizeof *pack * (cols - np));
    for (int q = p0; q < p0 + np;) {   /* one output row's run of positions */
        int y = q / OW, x0 = q % OW, x1 = OW - x0 < p0 + np - q ? OW : x0 + p0 + np - q;
        float *run = pack + (q - p0);
        for (int ki = 0; ki < K; ki++) {
            int iy = y * S - pad + ki;
            for (int kj = 0; kj < K; kj++) {
                /* the x whose ix = x·S - pad + kj lies in 0 .. W-1: the same
                 * for every channel, so worked out once (its divisions
                 * were a third of a 3×3 of stride 2's pack) */
                int lo = pad - kj > 0 ? (pad - kj + S - 1) / S : 0;
                int hi = (W - 1 + pad - kj) / S + 1;
                lo = lo > x0 ? lo : x0, hi = hi < x1 ? hi : x1;
                if (iy < 0 || iy >= H || lo >= hi)
                    lo = hi = x1;
                for (int c = 0; c < C; c++) {
                    float *to = run + (((size_t)c * K + ki) * K + kj) * cols - x0;
                    const float *from = inp + ((size_t)c * H + (iy >= 0 ? iy : 0)) * W +
                                        (ptrdiff_t)lo * S - pad + kj;
                    for (int x = x0; x < lo; x++)
                        to[x] = 0;
                    if (S == 1)
                        memcpy(to + lo, from, sizeof *to * (hi - lo));
                    else if (S == 2)   /* a constant stride: vectorized */
                        for (int x = lo; x < hi; x++)
                            to[x] = from[(size_t)(x - lo) * 2];
                    else
                        for (int x = lo; x < hi; x++)
                            to[x] = from[(size_t)(x - lo) * S];
                    for (int x = hi; x < x1; x++)
                        to[x] = 0;
                }
            }
        }
        q += x1 - x0;
    }
}

/* Where a panel's products go: a whole panel of aligned rows straight to
 * out (OC, P), else products (OC, cols) */
static int panel_direct(const struct amil_kernels *k, const float *out, int P, int p0,
                        int np, size_t cols)
{
    return cols == (size_t)np && P % k->lanes == 0 && (uintptr_t)(out + p0) % 64 == 0;
}

/* out's panel (OC rows of np from p0) = the products `to` (to_stride
 * apart) plus the bias, then the ReLU; nothing to do for a direct panel
 * with neither */
static void panel_out(float *out, const float *to, size_t to_stride, const float *bias,
                      int relu, int OC, int P, int p0, int np, int direct)
{
    for (int oc = 0; oc < OC; oc++) {
        float *row = out + (size_t)oc * P + p0;
        const float *from = to + oc * to_stride;
        float b = bias ? bias[oc] : 0;
        if (relu)   /* NaN passes, as amil_relu_forward's */
            for (int j = 0; j < np; j++)
                row[j] = from[j] + b <= 0 ? 0 : from[j] + b;
        else if (bias)
            for (int j = 0; j < np; j++)
                row[j] = from[j] + b;
        else if (!direct)
            memcpy(row, from, sizeof *row * np);
    }
}

void amil_conv2d_panels(const struct amil_kernels *k, float *out, float *scratch,
                        const float *inp, const float *weight, const float *bias, int relu,
                        int C, int H, int W, int OC, int K, int stride, int pad, int first,
                        int end)
{
    int OH = amil_conv_out(H, K, stride, pad), OW = amil_conv_out(W, K, stride, pad);
    int P = OH * OW, rows = C * K * K;
    float *pack = scratch, *products = scratch + (size_t)rows * AMIL_CONV_PANEL;
    for (int panel = first; panel < end; panel++) {
        int p0 = panel * AMIL_CONV_PANEL, np = P - p0 < AMIL_CONV_PANEL ? P - p0 : AMIL_CONV_PANEL;
        /* a short last panel: only the vectors it fills */
        size_t cols = ((size_t)np + k->lanes - 1) / k->lanes * k->lanes;
        pack_panel(pack, cols, inp, C, H, W, OW, K, stride, pad, p0, np);
        int direct = panel_direct(k, out, P, p0, np, cols);
        float *to = direct ? out + p0 : products;
        size_t to_stride = direct ? (size_t)P : cols;
        k->product(to, to_stride, weight, 1, (size_t)rows, pack, NULL, rows, (int)cols, 0, OC);
        panel_out(out, to, to_stride, bias, relu, OC, P, p0, np, direct);
    }
}

/* As amil_conv2d_panels, in bfloat16: the pack's rows taken in pairs,
 * (C·K·K/2, cols, 2), rounded as they are interleaved; a 1×1 of stride 1
 * reads them straight from the input's planes, with no pack in float. */
void amil_conv2d_panels_bf16(const struct amil_kernels *k, float *out, float *scratch,
                             const float *inp, const uint16_t *weight, const float *bias,
                             int relu, int C, int H, int W, int OC, int K, int stride, int pad,
                             int first, int end)
{
    int OH = amil_conv_out(H, K, stride, pad), OW = amil_conv_out(W, K, stride, pad);
    int P = OH * OW, rows = C * K * K;
    float *pack = scratch, *products = scratch + (size_t)rows * AMIL_CONV_PANEL;
    uint16_t *pairs = (uint16_t *)(products + (size_t)OC * AMIL_CONV_PANEL);
    int plain = K == 1 && stride == 1 && pad == 0;   /* pack row r: plane r */
    for (int panel = first; panel < end; panel++) {
        int p0 = panel * AMIL_CONV_PANEL, np = P - p0 < AMIL_CONV_PANEL ? P - p0 : AMIL_CONV_PANEL;
        size_t cols = ((size_t)np + k->lanes - 1) / k->lanes * k->lanes;
        if (!plain)
            pack_panel(pack, cols, inp, C, H, W, OW, K, stride, pad, p0, np);
        for (int r = 0; r < rows; r += 2) {
            uint16_t *to = pairs + (size_t)r * cols;
            if (plain) {
                k->pairs_bf16(to, inp + (size_t)r * P + p0, inp + (size_t)(r + 1) * P + p0,
                              (size_t)np);
                memset(to + 2 * np, 0, sizeof *to * 2 * (cols - np));
            } else {
                k->pairs_bf16(to, pack + (size_t)r * cols, pack + (size_t)(r + 1) * cols, cols);
            }
        }
        int direct = panel_direct(k, out, P, p0, np, cols);
        float *to = direct ? out + p0 : products;
        size_t to_stride = direct ? (size_t)P : cols;
        k->product_bf16(to, to_stride, weight, 2, (size_t)rows, pairs, 2 * cols, NULL, rows / 2,
                        (int)cols, 0, OC);
        panel_out(out, to, to_stride, bias, relu, OC, P, p0, np, direct);
    }
}
