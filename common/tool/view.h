/* view.h: how stitch and gradcam draw over the image or slide a record
 * was cut from: at which resolution (--downsample, --width), and reading
 * it at that resolution. */
#ifndef AMIL_VIEW_H
#define AMIL_VIEW_H

#include "media/image.h"
#include "record/record.h"

/* How a picture over an image or a slide asks for its resolution
 * (stitch's and gradcam's --downsample and --width). */
struct amil_view {
    double downsample;      /* image pixels per picture pixel; 0: not given */
    long width;             /* the picture's width instead; 0: not given */
};
/* A reader for cli.h's option table: option --downsample's or --width's
 * argument into the struct amil_view at view; a bad number or both given
 * is misuse (amil_misuse). */
void amil_option_view(void *view, const char *option, const char *arg);

/* A slide is drawn at most this wide or high unless the view says. */
#define AMIL_VIEW_SIDE 4096
/* The view's downsample for an image of width × height: its own, its
 * width's, or 1 for an image and at most AMIL_VIEW_SIDE a side for a
 * slide. */
double amil_view_downsample(const struct amil_view *v, long width, long height, int slide);
/* The image a record was cut from, at the view's downsample *d, into img
 * (ceil(W / d) × ceil(H / d), RGB; with channels 1 and a downsample of 1, an
 * image's grey): path a slide, read at *d, or an image file (index: which
 * image of a stream of several), decoded and averaged down.  Its size is
 * checked against the record's image_height and image_width, where it has
 * them.  0, or -1 with a message that names path. */
int amil_view_read(const struct amil_view *v, const char *path, long index, int channels,
                   const struct amil_record *r, struct amil_image *img, double *d);

#endif
