/* cnnmodel: writes a CNN model with PyTorch's default initialization (seed
 * 1) to stdout, for the tests of the programs that read one.
 *
 *   cnnmodel ARCH [CLASSES [NORMALIZATION]]      (net, vgg19, resnet18) */
#include <stdio.h>
#include <stdlib.h>

#include "base/base.h"
#include "models/cnn.h"
#include "record/record.h"
#include "record/stream.h"

int main(int argc, char **argv)
{
    amil_init(argc, argv);
    if (argc < 2 || argc > 4)
        amil_die("usage: cnnmodel ARCH [CLASSES [NORMALIZATION]]");
    int arch = amil_cnn_arch_parse(argv[1]);
    if (arch < 0)
        amil_die("unknown arch '%s'", argv[1]);
    struct amil_cnn m;
    if (amil_cnn_init(&m, arch, argc > 2 ? atoi(argv[2]) : 2, 0, 0, NULL) < 0)
        amil_die("%s", amil_error());
    if (argc > 3 && (int)(m.norm = amil_norm_parse(argv[3])) < 0)
        amil_die("unknown normalization '%s'", argv[3]);
    amil_cnn_randomize(&m, 1);
    struct amil_record r;
    amil_cnn_to_record(&m, &r);
    if (amil_record_write(stdout, &r) < 0)
        amil_die("%s", amil_error());
    amil_record_free(&r);
    amil_cnn_free(&m);
    return amil_close_stdout();
}
