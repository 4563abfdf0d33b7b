/* model.c: model loading from a record: the A-MIL model (with its
 * optimizer state, as train --resume reads a checkpoint), the CNN
 * baselines and CLAM's head. */
#include <string.h>

#include "amil.h"
#include "clam.h"
#include "cnn.h"
#include "fuzz.h"
#include "mil.h"
#include "optim.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct amil_stream s;
    struct amil_record r;
    FILE *f = fuzz_stream(data, size, &s);
    if (!f)
        return 0;
    if (amil_record_read(&s, &r) == 1) {
        struct amil_mil m;
        if (amil_mil_from_record(&m, &r) == 0) {
            struct amil_optimizer o;
            amil_optim_init(&o, AMIL_ADAM, m.params.nweights);
            amil_optim_from_record(&o, m.params.at, m.params.n, &r);
            amil_optim_free(&o);
            amil_mil_free(&m);
        }
        struct amil_cnn cnn;
        if (amil_cnn_from_record(&cnn, &r) == 0)
            amil_cnn_free(&cnn);
        struct amil_clam clam;
        if (amil_clam_from_record(&clam, &r) == 0)
            amil_clam_free(&clam);
        amil_record_free(&r);
    }
    fclose(f);
    return 0;
}
