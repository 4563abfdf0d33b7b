/* replay.c: runs files through a fuzz target, without libFuzzer: each
 * argument is a file or a folder of them (make check: the committed corpus).
 * A crash is the sanitizer's report and a failed exit; otherwise prints
 * one TAP line.
 *
 *   fuzz_TARGET PATH...  */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

static long replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        exit(1);
    }
    size_t cap = 4096, n = 0;
    uint8_t *buf = malloc(cap);
    for (size_t k; buf && (k = fread(buf + n, 1, cap - n, f)) > 0;) {
        n += k;
        if (n == cap)
            buf = realloc(buf, cap *= 2);
    }
    fclose(f);
    if (!buf) {
        fputs("replay: out of memory\n", stderr);
        exit(1);
    }
    /* a copy of exactly the input's size, so that a read past its end is
     * caught, as libFuzzer's would be */
    uint8_t *exact = malloc(n ? n : 1);
    memcpy(exact, buf, n);
    free(buf);
    LLVMFuzzerTestOneInput(exact, n);
    free(exact);
    return 1;
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

int main(int argc, char **argv)
{
    long inputs = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) < 0) {
            perror(argv[i]);
            return 1;
        }
        if (!S_ISDIR(st.st_mode)) {
            inputs += replay_file(argv[i]);
            continue;
        }
        struct dirent **names;
        int n = scandir(argv[i], &names, NULL, by_name);
        for (int j = 0; j < n; j++) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", argv[i], names[j]->d_name);
            if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
                inputs += replay_file(path);
            free(names[j]);
        }
        free(names);
    }
    const char *name = strrchr(argv[0], '/');
    printf("ok - %s: %ld inputs replayed, no crash\n", name ? name + 1 : argv[0], inputs);
    return inputs > 0 ? 0 : 1;
}
