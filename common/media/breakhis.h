/* breakhis.h: the fields of a BreakHis file name.
 *
 *   SOB_B_A-14-22549G-40-001.png
 *   procedure _ class _ type - year - slide - magnification - sequence
 *
 * (Spanhol et al., IEEE TBME 2016).  The patient is "year-slide", as the
 * dataset's patient folders (SOB_B_A_14-22549G) name it. */
#ifndef AMIL_BREAKHIS_H
#define AMIL_BREAKHIS_H

#include "record/record.h"

struct amil_breakhis {
    char procedure[8];      /* SOB: surgical open biopsy */
    char tumor_class;       /* 'B' benign, 'M' malignant */
    char tumor_type[4];     /* A F PT TA (benign), DC LC MC PC (malignant) */
    char year[4];           /* "14" */
    char slide[32];         /* "22549G" */
    char patient[40];       /* "14-22549G" */
    int magnification;      /* 40, 100, 200 or 400 */
    char sequence[8];       /* "001" */
};

/* Parses the base name of path (any extension).  Returns 0, or -1 with a
 * message saying which part does not follow the rule. */
int amil_breakhis_parse(const char *path, struct amil_breakhis *b);
/* The dataset's folder name for a type code: "A" -> "adenosis"; NULL if the
 * code is not one of the eight. */
const char *amil_breakhis_type_name(const char *code);
/* The class a type belongs to: 'B', 'M', or 0 for an unknown code. */
char amil_breakhis_type_class(const char *code);
/* The name's parts as a record's metadata (amil-stream(5)): tumor_class
 * (benign, malignant), tumor_type (the folder name), patient,
 * magnification, procedure, year, slide, sequence. */
struct amil_record;
void amil_breakhis_describe(const struct amil_breakhis *bh, struct amil_record *r);

#endif
