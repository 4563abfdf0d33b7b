/* legend.c: a heat map's legend, the colour bar and its two values.
 *
 * Box, in font pixels s (16 s high):
 *
 *   2 s margin | bar, 5 s high | 2 s | labels, 5 s high | 2 s margin
 *
 * with 2 s on either side of the bar, and the box 2 s from the picture's
 * edges.  The picture keeps its size, the image's at its downsample, so
 * that it still lies over the image pixel for pixel: the legend goes into
 * a corner of it, not into a strip added below. */
#include <stdio.h>
#include <string.h>

#include "media/colormap.h"
#include "media/legend.h"

/* A 3x5 font for numbers: a glyph's five rows of three pixels, top row
 * first, left pixel the high bit. */
static const char glyph_chars[] = "0123456789.-e+";
static const unsigned short glyphs[] = {
    075557, 026227, 071747, 071717, 055711, 074717, 074757, 071111, 075757, 075717,
    000002, 000700, 007747, 002720,
};

/* A label's width in picture pixels: 4 s a glyph, less the last gap. */
static long text_width(const char *text, int s)
{
    return (long)strlen(text) * 4 * s - s;
}

/* text in black, each font pixel s × s, its top left at (x, y) */
static void draw_text(struct amil_image *img, long x, long y, const char *text, int s)
{
    for (; *text; text++, x += 4 * s) {
        const char *at = strchr(glyph_chars, *text);
        if (!at)
            continue;
        unsigned bits = glyphs[at - glyph_chars];
        for (int row = 0; row < 5; row++)
            for (int col = 0; col < 3; col++)
                if (bits >> (3 * (4 - row) + (2 - col)) & 1)
                    for (long py = y + row * s; py < y + (row + 1) * s; py++)
                        memset(img->pixels + ((size_t)py * img->width + x + col * s) * 3, 0,
                               (size_t)s * 3);
    }
}

int amil_legend_digits(double lo, double hi, int least)
{
    for (int digits = least; digits <= 17; digits++) {
        char a[32], b[32];
        snprintf(a, sizeof a, "%.*g", digits, lo);
        snprintf(b, sizeof b, "%.*g", digits, hi);
        if (strcmp(a, b) != 0)
            return digits;
    }
    return least;
}

/* The pixels of the box (x, y, w, h) over the square (top, left, side). */
static long overlap(long x, long y, long w, long h, const long *keep)
{
    long top = keep[0] > y ? keep[0] : y, left = keep[1] > x ? keep[1] : x;
    long bottom = keep[0] + keep[2] < y + h ? keep[0] + keep[2] : y + h;
    long right = keep[1] + keep[2] < x + w ? keep[1] + keep[2] : x + w;
    return bottom > top && right > left ? (bottom - top) * (right - left) : 0;
}

int amil_legend_draw(struct amil_image *img, const unsigned char (*map)[3], double lo,
                     double hi, const unsigned *covers, const long *keep, long n_keep)
{
    long W = img->width, H = img->height;
    int digits = amil_legend_digits(lo, hi, 2);
    char left[32], right[32];
    snprintf(left, sizeof left, "%.*g", digits, lo);
    snprintf(right, sizeof right, "%.*g", digits, hi);
    int s = (int)((W < H ? W : H) / 200);
    s = s < 1 ? 1 : s > 16 ? 16 : s;
    long bar, box_w, box_h;
    for (;; s--) {   /* the largest font, down to 1, whose box fits */
        long labels = text_width(left, s) + 4 * s + text_width(right, s);
        bar = W / 4 > labels ? W / 4 : labels;
        box_w = bar + 4 * s, box_h = 16 * s;
        if (box_w + 4 * s <= W && box_h + 4 * s <= H && box_w * box_h * 10 <= W * H)
            break;
        if (s == 1)
            return 0;
    }
    /* the corners, in the order ties go */
    long xs[4] = {W - box_w - 2 * s, 2 * s, W - box_w - 2 * s, 2 * s};
    long ys[4] = {H - box_h - 2 * s, H - box_h - 2 * s, 2 * s, 2 * s};
    long best = 0, best_kept = 0, best_covered = 0;
    for (int c = 0; c < 4; c++) {
        long kept = 0, covered = 0;
        for (long k = 0; k < n_keep; k++)
            kept += overlap(xs[c], ys[c], box_w, box_h, keep + 3 * k);
        for (long y = ys[c]; covers && y < ys[c] + box_h; y++)
            for (long x = xs[c]; x < xs[c] + box_w; x++)
                covered += covers[y * W + x] != 0;
        if (c == 0 || kept < best_kept || (kept == best_kept && covered < best_covered))
            best = c, best_kept = kept, best_covered = covered;
    }
    long x0 = xs[best], y0 = ys[best];
    for (long y = y0; y < y0 + box_h; y++)
        memset(img->pixels + ((size_t)y * W + x0) * 3, 255, (size_t)box_w * 3);
    for (long j = 0; j < bar; j++) {
        const unsigned char *colour = amil_colormap_lookup(map, (double)j / (bar - 1));
        for (long y = y0 + 2 * s; y < y0 + 7 * s; y++)
            memcpy(img->pixels + ((size_t)y * W + x0 + 2 * s + j) * 3, colour, 3);
    }
    draw_text(img, x0 + 2 * s, y0 + 9 * s, left, s);
    draw_text(img, x0 + 2 * s + bar - text_width(right, s), y0 + 9 * s, right, s);
    return 1;
}
