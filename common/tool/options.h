/* options.h: option readers for the media's words, misuse (cli.h) when
 * wrong: train's augmentation, a picture's colour map. */
#ifndef AMIL_OPTIONS_H
#define AMIL_OPTIONS_H

#include "media/augment.h"

/* train's options: --augment's list (he, flip, he,flip or none),
 * --he-sigma, --he-bias; misuse when wrong. */
void amil_option_augment(struct amil_augment *a, const char *option, const char *arg);

/* A reader for cli.h's option table: --cmap's argument into the colour
 * map pointer (const unsigned char (*)[3]) at map, or a misuse (the
 * usage, exit 2) that names it. */
void amil_option_colormap(void *map, const char *option, const char *arg);

#endif
