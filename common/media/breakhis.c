/* breakhis.c: parsing BreakHis file names. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "media/breakhis.h"
#include "record/record.h"

static const struct {
    const char *code, *name;
    char tumor_class;
} types[] = {
    {"A", "adenosis", 'B'},          {"F", "fibroadenoma", 'B'},
    {"PT", "phyllodes_tumor", 'B'},  {"TA", "tubular_adenoma", 'B'},
    {"DC", "ductal_carcinoma", 'M'}, {"LC", "lobular_carcinoma", 'M'},
    {"MC", "mucinous_carcinoma", 'M'}, {"PC", "papillary_carcinoma", 'M'},
};
#define NTYPES (sizeof types / sizeof types[0])

const char *amil_breakhis_type_name(const char *code)
{
    for (size_t i = 0; i < NTYPES; i++)
        if (strcmp(code, types[i].code) == 0)
            return types[i].name;
    return NULL;
}

char amil_breakhis_type_class(const char *code)
{
    for (size_t i = 0; i < NTYPES; i++)
        if (strcmp(code, types[i].code) == 0)
            return types[i].tumor_class;
    return 0;
}

static int all(const char *s, int (*is)(int))
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!is((unsigned char)*s))
            return 0;
    return 1;
}

/* Copies the text up to the next separator into out (at most size - 1
 * characters); returns a pointer past the separator, or NULL. */
static const char *field(const char *s, char sep, char *out, size_t size)
{
    const char *end = strchr(s, sep);
    if (!end || (size_t)(end - s) >= size)
        return NULL;
    memcpy(out, s, (size_t)(end - s));
    out[end - s] = '\0';
    return end + 1;
}

int amil_breakhis_parse(const char *path, struct amil_breakhis *b)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    /* Work on the name without its extension, with a '-' at the end so
     * every field ends in a separator. */
    char name[128];
    const char *dot = strrchr(base, '.');
    size_t len = dot ? (size_t)(dot - base) : strlen(base);
    if (len + 2 > sizeof name)
        return amil_fail("not a BreakHis file name (too long)");
    memcpy(name, base, len);
    strcpy(name + len, "-");

    char class_text[4], magnification[8];
    const char *p = name;
    memset(b, 0, sizeof *b);
    if (!(p = field(p, '_', b->procedure, sizeof b->procedure)) ||
        !(p = field(p, '_', class_text, sizeof class_text)) ||
        !(p = field(p, '-', b->tumor_type, sizeof b->tumor_type)) ||
        !(p = field(p, '-', b->year, sizeof b->year)) ||
        !(p = field(p, '-', b->slide, sizeof b->slide)) ||
        !(p = field(p, '-', magnification, sizeof magnification)) ||
        !(p = field(p, '-', b->sequence, sizeof b->sequence)) || *p != '\0')
        return amil_fail("not a BreakHis file name "
                         "(SOB_<B|M>_<type>-<yy>-<slide>-<mag>-<seq>)");
    if (strcmp(b->procedure, "SOB") != 0)
        return amil_fail("BreakHis name: procedure '%s' is not SOB", b->procedure);
    if (strcmp(class_text, "B") != 0 && strcmp(class_text, "M") != 0)
        return amil_fail("BreakHis name: class '%s' is not B or M", class_text);
    b->tumor_class = class_text[0];
    if (amil_breakhis_type_class(b->tumor_type) != b->tumor_class)
        return amil_fail("BreakHis name: '%s' is not a %s tumour type", b->tumor_type,
                         b->tumor_class == 'B' ? "benign" : "malignant");
    if (!all(b->year, isdigit) || !all(b->slide, isalnum) || !all(b->sequence, isdigit))
        return amil_fail("BreakHis name: year, slide or sequence is malformed");
    long mag;
    if (amil_parse_long(magnification, 1, 10000, &mag) < 0 ||
        (mag != 40 && mag != 100 && mag != 200 && mag != 400))
        return amil_fail("BreakHis name: magnification '%s' is not 40, 100, 200 or 400",
                         magnification);
    b->magnification = (int)mag;
    snprintf(b->patient, sizeof b->patient, "%s-%s", b->year, b->slide);
    return 0;
}

void amil_breakhis_describe(const struct amil_breakhis *bh, struct amil_record *r)
{
    amil_record_set_meta(r, "tumor_class", bh->tumor_class == 'B' ? "benign" : "malignant");
    amil_record_set_meta(r, "tumor_type", amil_breakhis_type_name(bh->tumor_type));
    amil_record_set_meta(r, "patient", bh->patient);
    amil_record_set_metaf(r, "magnification", "%d", bh->magnification);
    amil_record_set_meta(r, "procedure", bh->procedure);
    amil_record_set_meta(r, "year", bh->year);
    amil_record_set_meta(r, "slide", bh->slide);
    amil_record_set_meta(r, "sequence", bh->sequence);
}
