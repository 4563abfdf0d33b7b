/* breakhis.c: BreakHis file names (bagify, reorg-breakhis). */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "media/breakhis.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *name = malloc(size + 1);
    memcpy(name, data, size);
    name[size] = '\0';
    struct amil_breakhis b;
    amil_breakhis_parse(name, &b);
    free(name);
    return 0;
}
