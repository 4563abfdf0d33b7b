/* hejitter: an image's pixels through augment.h's H&E jitter with the
 * given scale and shift of each stain (H, E, DAB), or (flip N SEED) a
 * square image's --augment flip draws, N of them from a seeded mt19937,
 * each as its own image; PAM to stdout.  For the tests, which hold the
 * jitter to scikit-image's rgb2hed and hed2rgb.
 *
 *   hejitter IMAGE SH SE SD BH BE BD
 *   hejitter IMAGE flip N SEED */
#include <stdlib.h>
#include <string.h>

#include <gsl/gsl_rng.h>

#include "base/base.h"
#include "media/augment.h"
#include "media/image.h"

int main(int argc, char **argv)
{
    amil_init(argc, argv);
    if (argc != 8 && argc != 5)
        amil_die("usage: hejitter IMAGE SH SE SD BH BE BD | hejitter IMAGE flip N SEED");
    struct amil_image img;
    if (amil_image_load(argv[1], 0, 3, AMIL_MAX_PIXELS, &img) < 0)
        amil_die("%s: %s", argv[1], amil_error());
    size_t pixels = (size_t)img.width * img.height;
    if (argc == 5) {
        int n = atoi(argv[3]);
        if (img.width != img.height || n < 1)
            amil_die("flip: a square image and N of at least 1");
        gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
        gsl_rng_set(rng, strtoul(argv[4], NULL, 10));
        struct amil_augment flip = {0, 1, 0, 0};
        uint8_t *in = amil_xmalloc(3 * pixels * n), *out = amil_xmalloc(3 * pixels * n);
        for (int i = 0; i < n; i++)
            memcpy(in + 3 * pixels * i, img.pixels, 3 * pixels);
        amil_augment_bag(&flip, rng, in, n, img.width, 3, out);
        for (int i = 0; i < n; i++) {
            struct amil_image one = {img.width, img.height, 3, out + 3 * pixels * i};
            if (amil_image_write_pam(stdout, &one) < 0)
                amil_die("%s", amil_error());
        }
        free(in), free(out);
        gsl_rng_free(rng);
    } else {
        double scale[3], shift[3];
        for (int s = 0; s < 3; s++)
            scale[s] = atof(argv[2 + s]), shift[s] = atof(argv[5 + s]);
        amil_he_jitter(img.pixels, pixels, scale, shift);
        if (amil_image_write_pam(stdout, &img) < 0)
            amil_die("%s", amil_error());
    }
    amil_image_free(&img);
    return amil_close_stdout();
}
