/* model.c: model loading from a record: the A-MIL model (with its
 * optimizer state, as train --resume reads a checkpoint), the CNN
 * baselines and CLAM's head; and stainnorm's stains (-s), applied to a
 * few pixels, so that a value the reader lets through cannot misbehave. */
#include <string.h>

#include "base/base.h"
#include "compute/optim.h"
#include "fuzz.h"
#include "media/stain.h"
#include "models/clam.h"
#include "models/cnn.h"
#include "models/mil.h"
#include "record/record.h"
#include "record/stream.h"

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
        struct amil_stains stains;
        struct amil_stain_params p = AMIL_STAIN_PARAMS;
        if (amil_stains_from_record(&r, &stains, &p) == 0) {
            uint8_t rgb[4 * 3] = {0, 0, 0, 255, 255, 255, 200, 100, 150, 30, 200, 90};
            amil_stain_normalize(&p, &stains, &stains, rgb, 4);
        }
        amil_record_free(&r);
    }
    fclose(f);
    return 0;
}
