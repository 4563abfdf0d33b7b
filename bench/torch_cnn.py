"""bench/torch_cnn.py ARCH THREADS SECONDS: torchvision's side of bench/cnn.sh:
vgg19 or resnet18 (evaluation mode, parameters frozen) on one 224x224 image,
the forward pass and Grad-CAM at amil's default layer (vgg19 features.35,
resnet18 layer4): the forward pass, the gradient of one class score with
respect to that layer's output only (torch.autograd.grad, no parameter
gradients), and the map.  Prints "forward_ms gradcam_ms"."""
import os
import sys

import torch
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_step import timed  # noqa: E402


def halves(arch, m):
    """The network cut at the Grad-CAM layer: (up to it, after it)."""
    if arch == "vgg19":
        return m.features[:36], torch.nn.Sequential(m.features[36:], m.avgpool,
                                                    torch.nn.Flatten(), m.classifier)
    return (torch.nn.Sequential(m.conv1, m.bn1, m.relu, m.maxpool, m.layer1, m.layer2,
                                m.layer3, m.layer4),
            torch.nn.Sequential(m.avgpool, torch.nn.Flatten(), m.fc))


def main():
    arch, threads, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    m = getattr(torchvision.models, arch)().eval()
    for p in m.parameters():
        p.requires_grad_(False)
    x = torch.rand(1, 3, 224, 224)
    below, above = halves(arch, m)

    def forward():
        with torch.no_grad():
            m(x)

    def gradcam():
        a = below(x).requires_grad_()
        score = above(a)[0, 0]
        (g,) = torch.autograd.grad(score, a)
        torch.relu((g.mean((2, 3), keepdim=True) * a).sum(1))

    print("%.2f %.2f" % (timed(forward, seconds), timed(gradcam, seconds)))


if __name__ == "__main__":
    main()
