/* image.c: image decoding, every image of the input, as bagify reads a
 * file: the PNG fast path, stb_image's formats and libnetpbm's, with the
 * pixel limit at 2^22 so that an input cannot make one run slow. */
#include "base/base.h"
#include "fuzz.h"
#include "media/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t at = 0;
    struct amil_image img;
    for (int i = 0; i < 64 && amil_image_next(data, size, &at, i % 2 ? 1 : 3, 1L << 22,
                                              &img) == 1; i++)
        amil_image_free(&img);
    return 0;
}
