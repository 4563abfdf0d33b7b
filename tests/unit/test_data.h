/* test_data.h: where the unit tests find the committed test data. */
#ifndef AMIL_TEST_DATA_H
#define AMIL_TEST_DATA_H

#include <stdio.h>
#include <stdlib.h>

/* tests/data/NAME, or $AMIL_TESTDATA/NAME. */
static inline const char *test_data(const char *name)
{
    const char *dir = getenv("AMIL_TESTDATA");
    static char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir ? dir : "tests/data", name);
    return path;
}

#endif
