/* pixels.c: the size check of every image decoded or drawn. */
#include "base/base.h"
#include "media/pixels.h"

int amil_image_check_size(long width, long height, long max_pixels)
{
    if (width <= 0 || height <= 0)
        return amil_fail("image is empty (%ld×%ld)", width, height);
    if (width > max_pixels / height)
        return amil_fail("image of %ld×%ld pixels is over the limit of %ld pixels",
                         width, height, max_pixels);
    return 0;
}
