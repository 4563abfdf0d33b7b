/* options.c: option readers for the media's words. */
#include <string.h>

#include "media/augment.h"
#include "media/colormap.h"
#include "tool/cli.h"
#include "tool/options.h"

void amil_option_augment(struct amil_augment *a, const char *option, const char *arg)
{
    if (strcmp(option, "--he-sigma") == 0) {
        a->sigma = amil_option_double(option, arg, 0, 1);
        return;
    }
    if (strcmp(option, "--he-bias") == 0) {
        a->bias = amil_option_double(option, arg, 0, 1);
        return;
    }
    a->he = a->flip = 0;
    if (strcmp(arg, "none") == 0)
        return;
    char list[64];
    if (strlen(arg) >= sizeof list)
        amil_misuse("--augment: '%s' is not a list of he and flip", arg);
    strcpy(list, arg);
    for (char *save = NULL, *name = strtok_r(list, ",", &save); name;
         name = strtok_r(NULL, ",", &save)) {
        if (strcmp(name, "he") == 0)
            a->he = 1;
        else if (strcmp(name, "flip") == 0)
            a->flip = 1;
        else
            amil_misuse("--augment: '%s' is not he, flip or none", name);
    }
    if (!a->he && !a->flip)
        amil_misuse("--augment: '%s' names nothing: he, flip, he,flip or none", arg);
}

void amil_option_colormap(void *map, const char *option, const char *arg)
{
    const unsigned char (*colors)[3] = amil_colormap(arg);
    if (!colors)
        amil_misuse("%s: unknown map '%s'", option, arg);
    *(const unsigned char (**)[3])map = colors;
}
