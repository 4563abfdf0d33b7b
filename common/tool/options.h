/* options.h: option readers for the media's words, misuse (cli.h) when
 * wrong: train's augmentation, a picture's colour map. */
#ifndef AMIL_OPTIONS_H
#define AMIL_OPTIONS_H

#include "media/augment.h"

/* train's options: --augment's list (he, flip, he,flip or none),
 * --he-sigma, --he-bias; misuse when wrong. */
void amil_option_augment(struct amil_augment *a, const char *option, const char *arg);

/* --cmap's argument, or a misuse (the usage, exit 2) that names it. */
const unsigned char (*amil_option_colormap(const char *option, const char *arg))[3];

#endif
