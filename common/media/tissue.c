/* tissue.c: the tissue rule of tissue.h. */
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "media/tissue.h"

/* Saturation of HSV on 0..255: 255 (max - min) / max, rounded. */
static int saturation(const uint8_t *rgb)
{
    int hi = rgb[0], lo = rgb[0];
    for (int c = 1; c < 3; c++) {
        if (rgb[c] > hi) hi = rgb[c];
        if (rgb[c] < lo) lo = rgb[c];
    }
    return hi == 0 ? 0 : (255 * (hi - lo) + hi / 2) / hi;
}

/* Otsu's threshold over a 256-bin histogram: the level t that maximizes the
 * between-class variance of {<= t} and {> t}. */
static int otsu(const size_t histogram[256])
{
    double total = 0, sum = 0;
    for (int i = 0; i < 256; i++) {
        total += (double)histogram[i];
        sum += (double)i * histogram[i];
    }
    double weight_low = 0, sum_low = 0, best = -1;
    int threshold = 0;
    for (int t = 0; t < 256; t++) {
        weight_low += (double)histogram[t];
        sum_low += (double)t * histogram[t];
        double weight_high = total - weight_low;
        if (weight_low == 0 || weight_high == 0)
            continue;
        double mean_low = sum_low / weight_low;
        double mean_high = (sum - sum_low) / weight_high;
        double between = weight_low * weight_high * (mean_low - mean_high) *
                         (mean_low - mean_high);
        if (between > best) {
            best = between;
            threshold = t;
        }
    }
    return threshold;
}

void amil_tissue_scores_init(struct amil_tissue_scores *t, size_t n)
{
    memset(t, 0, sizeof *t);
    t->pixels = n;
    t->saturation = amil_xmalloc(n ? n : 1);
    t->darkness = amil_xmalloc(n ? n : 1);
}

void amil_tissue_scores_free(struct amil_tissue_scores *t)
{
    free(t->saturation), free(t->darkness);
    t->saturation = t->darkness = NULL;
}

void amil_tissue_score(struct amil_tissue_scores *t, size_t at, const uint8_t *rgb, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint8_t s = (uint8_t)saturation(rgb + 3 * i), d = (uint8_t)(255 - amil_luma(rgb + 3 * i));
        t->saturation[at + i] = s;
        t->darkness[at + i] = d;
        t->histogram[0][s]++;
        t->histogram[1][d]++;
    }
}

uint8_t *amil_tissue_mask(const struct amil_tissue_scores *t, long fixed, int *used)
{
    /* colourless: every saturation 0 */
    int colourless = t->histogram[0][0] == t->pixels;
    const uint8_t *score = colourless ? t->darkness : t->saturation;
    int threshold = otsu(t->histogram[colourless]);
    if (threshold > AMIL_MAX_GLASS_SATURATION)
        threshold = AMIL_MAX_GLASS_SATURATION;
    if (fixed >= 0)   /* the user's, for pale or dark stains */
        threshold = (int)fixed;
    *used = threshold;
    uint8_t *mask = amil_xmalloc(t->pixels ? t->pixels : 1);
    for (size_t i = 0; i < t->pixels; i++)
        mask[i] = score[i] > threshold;
    return mask;
}

uint8_t *amil_tissue_mask_of(const struct amil_image *rgb, long fixed, int *used)
{
    struct amil_tissue_scores t;
    size_t n = (size_t)rgb->width * rgb->height;
    amil_tissue_scores_init(&t, n);
    amil_tissue_score(&t, 0, rgb->pixels, n);
    uint8_t *mask = amil_tissue_mask(&t, fixed, used);
    amil_tissue_scores_free(&t);
    return mask;
}

/* Flips every 4-connected piece of value v under `most` pixels (a hole:
 * only those off the border), breadth first; queue holds a piece's pixels
 * from its start to its end, so flipping it is one pass. */
static void flip_small(uint8_t *mask, uint8_t *seen, uint32_t *queue, int width, int height,
                       uint8_t v, long most, int inner_only)
{
    size_t n = (size_t)width * height;
    memset(seen, 0, n);
    for (size_t start = 0; start < n; start++) {
        if (seen[start] || mask[start] != v)
            continue;
        size_t head = 0, tail = 0;
        int border = 0;
        queue[tail++] = (uint32_t)start;
        seen[start] = 1;
        while (head < tail) {
            size_t i = queue[head++];
            int x = (int)(i % (size_t)width), y = (int)(i / (size_t)width);
            border |= x == 0 || y == 0 || x == width - 1 || y == height - 1;
            size_t next[4] = {i - 1, i + 1, i - (size_t)width, i + (size_t)width};
            int inside[4] = {x > 0, x < width - 1, y > 0, y < height - 1};
            for (int k = 0; k < 4; k++)
                if (inside[k] && !seen[next[k]] && mask[next[k]] == v) {
                    seen[next[k]] = 1;
                    queue[tail++] = (uint32_t)next[k];
                }
        }
        if ((long)tail < most && !(inner_only && border))
            for (size_t k = 0; k < tail; k++)
                mask[queue[k]] = (uint8_t)!v;
    }
}

void amil_tissue_clean(uint8_t *mask, int width, int height, long min_speck, long max_hole)
{
    size_t n = (size_t)width * height;
    if (n == 0 || (min_speck <= 0 && max_hole <= 0))
        return;
    uint8_t *seen = amil_xmalloc(n);
    uint32_t *queue = amil_xmalloc(sizeof *queue * n);
    if (min_speck > 0)
        flip_small(mask, seen, queue, width, height, 1, min_speck, 0);
    if (max_hole > 0)
        flip_small(mask, seen, queue, width, height, 0, max_hole, 1);
    free(seen), free(queue);
}
