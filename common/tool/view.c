/* view.c: the image or slide under a picture, at the picture's resolution. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>

#include "base/base.h"
#include "media/image.h"
#include "media/slide.h"
#include "record/record.h"
#include "tool/cli.h"
#include "tool/view.h"

void amil_option_view(void *view, const char *option, const char *arg)
{
    struct amil_view *v = view;
    if (strcmp(option, "--downsample") == 0)
        v->downsample = amil_option_double(option, arg, 1, 1e6);
    else
        v->width = amil_option_long(option, arg, 1, 1L << 20);
    if (v->downsample && v->width)
        amil_misuse("give --downsample or --width, not both");
}

double amil_view_downsample(const struct amil_view *v, long width, long height, int slide)
{
    if (v->downsample)
        return v->downsample;
    if (v->width)
        return fmax(1, (double)width / v->width);
    double side = (double)(width > height ? width : height);
    return slide && side > AMIL_VIEW_SIDE ? side / AMIL_VIEW_SIDE : 1;
}

int amil_view_read(const struct amil_view *v, const char *path, long index, int channels,
                   const struct amil_record *r, struct amil_image *img, double *d)
{
    *img = (struct amil_image){0};
    /* the image a record names may be anything: a device never ends, a
     * FIFO may never open; a picture is drawn over a file read by name */
    struct stat st;
    if (stat(path, &st) != 0)
        return amil_fail("%s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return amil_fail("%s is not a regular file: an image to draw on is read from a file",
                         path);
    if (st.st_size == 0)   /* no image, or a kernel's file (/proc/kmsg) that never ends */
        return amil_fail("%s is empty", path);
    struct amil_slide slide;
    int is_slide = amil_slide_open(&slide, path);
    if (is_slide < 0)
        return amil_fail_in(path);
    struct amil_image full = {0};
    if (!is_slide && amil_image_load(path, index, channels, AMIL_MAX_PIXELS, &full) < 0)
        return amil_fail_in(path);
    long width = is_slide ? (long)slide.width[0] : full.width;
    long height = is_slide ? (long)slide.height[0] : full.height, want_h = height, want_w = width;
    int status = 0;
    if (amil_record_meta_long(r, "image_height", 1, LONG_MAX, &want_h) < 0 ||
        amil_record_meta_long(r, "image_width", 1, LONG_MAX, &want_w) < 0)
        status = -1;
    else if (want_h != height || want_w != width)
        status = amil_fail("%s is %ld×%ld, but the record was cut from a %ld×%ld image", path,
                           width, height, want_w, want_h);
    *d = amil_view_downsample(v, width, height, is_slide);
    long w = (long)ceil(width / *d), h = (long)ceil(height / *d);
    if (status == 0 && (status = amil_image_check_size(w, h, AMIL_MAX_PIXELS)) == 0) {
        if (*d == 1 && !is_slide) {
            *img = full, full.pixels = NULL;
        } else {
            *img = (struct amil_image){(int)w, (int)h, 3, amil_xmalloc((size_t)w * h * 3)};
            status = is_slide ? amil_slide_read(&slide, *d, 0, 0, img->width, img->height,
                                                img->pixels)
                              : amil_image_resample(&full, *d, 0, 0, img->width, img->height,
                                                    img->pixels);
        }
    }
    amil_image_free(&full);
    if (is_slide)
        amil_slide_close(&slide);
    if (status < 0)
        amil_image_free(img);
    return status;
}
