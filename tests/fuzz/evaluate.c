/* evaluate.c: evaluate's reader of classify -t's table, and its scores.
 * The program is compiled in, its main renamed; amil_die() jumps back. */
#define main evaluate_main
#include "../../tools/evaluate.c"
#undef main
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cmdline cl = {0, 1, fuzz_file(data, size)};
    if (!cl.input)
        return 0;
    if (setjmp(fuzz_died) == 0) {
        int classes;
        long count;
        struct row *rows = read_table(&cl, &classes, &count);
        struct result s = score(&cl, "fuzz", rows, count, classes);
        free(s.confusion);
        for (long i = 0; i < count; i++)
            free(rows[i].prob), free(rows[i].patient);
        free(rows);
    }
    fuzz_close_files();
    return 0;
}
