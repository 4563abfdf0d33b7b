/* stream.c: the record stream reader, every bag of a stream as attend reads
 * its input (amil_bag_read: records, and slides' parts joined), which is
 * amil_record_read, as featurize and the rest read theirs, and more. */
#include "base/base.h"
#include "fuzz.h"
#include "record/record.h"
#include "record/stream.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct amil_stream s;
    struct amil_record r;
    FILE *f = fuzz_stream(data, size, &s);
    if (!f)
        return 0;
    while (amil_bag_read(&s, &r) == 1) {
        for (size_t i = 0; i < r.ntensors; i++)   /* touch every byte it claims */
            if (r.tensors[i].nbytes)
                ((volatile uint8_t *)r.tensors[i].data)[r.tensors[i].nbytes - 1] ^= 0;
        amil_record_free(&r);
    }
    fclose(f);
    return 0;
}
