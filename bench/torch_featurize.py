"""bench/torch_featurize.py ARCH TILES THREADS: torchvision's side of
bench/backbones.sh: ARCH (resnet18, resnet50, vit_b_16, vit_l_16; evaluation
mode, no gradients) over TILES random 224x224 tiles one at a time (batch 1,
as a feature-extraction loop over a slide's patches runs), after two to warm
up.  Prints the milliseconds a tile."""
import sys
import time

import torch
import torchvision


def main():
    arch, tiles, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    m = getattr(torchvision.models, arch)().eval()
    x = torch.rand(tiles, 1, 3, 224, 224)
    with torch.no_grad():
        for i in range(2):
            m(x[i])
        start = time.perf_counter()
        for i in range(tiles):
            m(x[i])
    print("%.2f" % ((time.perf_counter() - start) / tiles * 1e3))


if __name__ == "__main__":
    main()
