/* test_tissue.c: the tissue rule (tissue.h) on small pictures drawn here:
 * Otsu's threshold and its cap, the darkness rule of colourless pictures,
 * the rounding of saturation at every threshold, and the cleaning of a
 * mask (specks dropped, holes filled, the border's background never a
 * hole). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "media/tissue.h"

/* Draws rows of characters: '#' tissue (1), '.' background (0). */
static void draw(uint8_t *mask, const char *rows[], int height)
{
    for (int y = 0; y < height; y++)
        for (int x = 0; rows[y][x]; x++)
            mask[y * (int)strlen(rows[0]) + x] = rows[y][x] == '#';
}

static void cleaning(void **state)
{
    (void)state;
    const char *before[] = {
        "..........",
        ".######...",
        ".#..###.#.",   /* a hole of 4, a speck of 1 */
        ".#..###...",
        ".######...",
        ".##.###.##",   /* a hole of 1; a piece of 2 at the border */
        ".######...",
        "..........",
    };
    const char *after[] = {
        "..........",
        ".######...",
        ".######...",
        ".######...",
        ".######...",
        ".######...",
        ".######...",
        "..........",
    };
    uint8_t mask[80], want[80];
    draw(mask, before, 8);
    draw(want, after, 8);
    /* pieces under 3 pixels go, holes under 5 are filled */
    amil_tissue_clean(mask, 10, 8, 3, 5);
    assert_memory_equal(mask, want, sizeof mask);
    /* holes under 4 only: the hole of 4 stays; specks under 2: the piece
     * of 2 stays */
    draw(mask, before, 8);
    amil_tissue_clean(mask, 10, 8, 2, 4);
    assert_int_equal(mask[2 * 10 + 2], 0);
    assert_int_equal(mask[5 * 10 + 3], 1);
    assert_int_equal(mask[2 * 10 + 8], 0);
    assert_int_equal(mask[5 * 10 + 8], 1);
    /* 0 turns both off */
    draw(mask, before, 8);
    amil_tissue_clean(mask, 10, 8, 0, 0);
    draw(want, before, 8);
    assert_memory_equal(mask, want, sizeof mask);
}

static void thresholds(void **state)
{
    (void)state;
    /* glass (saturation 0) and pink tissue (255, 128, 192: saturation
     * 128): Otsu's threshold falls at the glass */
    uint8_t rgb[3 * 10];
    for (int i = 0; i < 10; i++) {
        uint8_t *px = rgb + 3 * i;
        px[0] = 255, px[1] = i < 5 ? 255 : 128, px[2] = i < 5 ? 255 : 192;
    }
    struct amil_image img = {10, 1, 3, rgb};
    int used;
    uint8_t *mask = amil_tissue_mask_of(&img, -1, &used);
    assert_int_equal(used, 0);
    for (int i = 0; i < 10; i++)
        assert_int_equal(mask[i], i >= 5);
    free(mask);
    /* pale stroma (saturation 40) and nuclei (128), no glass: Otsu's 40
     * would call the stroma glass; the cap keeps both */
    for (int i = 0; i < 5; i++)
        rgb[3 * i + 1] = 215, rgb[3 * i + 2] = 230;
    mask = amil_tissue_mask_of(&img, -1, &used);
    assert_int_equal(used, AMIL_MAX_GLASS_SATURATION);
    for (int i = 0; i < 10; i++)
        assert_int_equal(mask[i], 1);
    free(mask);
    /* the user's threshold is taken as it is */
    mask = amil_tissue_mask_of(&img, 200, &used);
    assert_int_equal(used, 200);
    assert_int_equal(mask[9], 0);
    free(mask);
    /* no colour at all: darkness instead (black text on white paper) */
    for (int i = 0; i < 10; i++)
        memset(rgb + 3 * i, i % 2 ? 0 : 250, 3);
    mask = amil_tissue_mask_of(&img, -1, &used);
    for (int i = 0; i < 10; i++)
        assert_int_equal(mask[i], i % 2);
    free(mask);
}

/* The saturation rule of bagify(1) at every fixed threshold t, on one
 * pixel for each pair 0 <= min <= max <= 255 (R max, B min, G between):
 * tissue when round(255 (max - min) / max), halves up, is above t, that
 * is when 255 (max - min) / max >= t + 1/2, in integers
 * 510 (max - min) >= (2 t + 1) max; black is saturation 0.  The pixels
 * near t + 1/2 are those that truncating, rounding halves down or
 * comparing with >= would move; the exact halves (max 2, min 1: 127.5)
 * are counted, to show the ties are there. */
static void saturation_rounds_at_every_threshold(void **state)
{
    (void)state;
    enum { PAIRS = 256 * 257 / 2 };
    uint8_t *rgb = malloc(3 * PAIRS);
    int n = 0;
    for (int hi = 0; hi < 256; hi++)
        for (int lo = 0; lo <= hi; lo++, n++)
            rgb[3 * n] = (uint8_t)hi, rgb[3 * n + 1] = (uint8_t)((hi + lo) / 2),
            rgb[3 * n + 2] = (uint8_t)lo;
    struct amil_image img = {PAIRS, 1, 3, rgb};
    long ties = 0;
    for (int t = 0; t <= 254; t++) {
        int used;
        uint8_t *mask = amil_tissue_mask_of(&img, t, &used);
        assert_int_equal(used, t);
        n = 0;
        for (int hi = 0; hi < 256; hi++)
            for (int lo = 0; lo <= hi; lo++, n++) {
                int want = hi > 0 && 510 * (hi - lo) >= (2 * t + 1) * hi;
                ties += hi > 0 && 510 * (hi - lo) == (2 * t + 1) * hi;
                if (mask[n] != want)
                    fail_msg("threshold %d, max %d, min %d (saturation %.3f): mask %d, not %d",
                             t, hi, lo, hi ? 255.0 * (hi - lo) / hi : 0, mask[n], want);
            }
        free(mask);
    }
    print_message("# 32896 pixels at 255 thresholds agree; %ld exact halves among them\n",
                  ties);
    assert_true(ties > 0);
    free(rgb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(cleaning),
        cmocka_unit_test(thresholds),
        cmocka_unit_test(saturation_rounds_at_every_threshold),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
