/* isa.c: which kernels of kernels.h this process runs. */
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "compute/kernels.h"

static int runs_here(const struct amil_kernels *k)
{
    if (k == &amil_kernels_avx512)
        return __builtin_cpu_supports("avx512f");
    if (k == &amil_kernels_avx2)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    return 1;
}

int amil_kernels_available(const struct amil_kernels **sets)
{
    const struct amil_kernels *all[] = {&amil_kernels_avx512, &amil_kernels_avx2,
                                        &amil_kernels_portable};
    int n = 0;
    for (int i = 0; i < 3; i++)
        if (runs_here(all[i]))
            sets[n++] = all[i];
    return n;
}

const struct amil_kernels *amil_kernels(void)
{
    static const struct amil_kernels *chosen;
    if (chosen)
        return chosen;
    const struct amil_kernels *sets[3];
    int n = amil_kernels_available(sets);
    const char *wanted = getenv("AMIL_ISA");
    if (!wanted || !*wanted)
        return chosen = sets[0];
    const struct amil_kernels *all[] = {&amil_kernels_avx512, &amil_kernels_avx2,
                                        &amil_kernels_portable};
    for (int i = 0; i < 3; i++)
        if (strcmp(wanted, all[i]->name) == 0) {
            for (int j = 0; j < n; j++)
                if (sets[j] == all[i])
                    return chosen = all[i];
            amil_fail("AMIL_ISA=%s: this CPU cannot run it", wanted);
            return NULL;
        }
    amil_fail("AMIL_ISA=%s: not avx512, avx2 or portable", wanted);
    return NULL;
}

int amil_cpu_has_bf16(void)
{   /* pairs_bf16's word permutation is AVX512BW's */
    return __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw");
}
