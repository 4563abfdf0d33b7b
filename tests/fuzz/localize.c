/* localize.c: localize's reader of mnist-bags' table of bags.  The program
 * is compiled in, its main renamed; amil_die() jumps back. */
#define main localize_main
#include "../../tools/localize.c"
#undef main
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_file(data, size);
    if (!path)
        return 0;
    if (setjmp(fuzz_died) == 0) {
        long count;
        struct bag *bags = read_table(path, &count);
        struct index ix = make_index(bags, count);
        free(ix.by_file), free(ix.by_base);
        for (long i = 0; i < count; i++)
            free(bags[i].file), free(bags[i].classes);
        free(bags);
    }
    fuzz_close_files();
    return 0;
}
