"""Makes tests/data/cnn-fixture.safetensors: what PyTorch and torchvision
compute for the paper's CNN baselines, for test_cnn.c to hold amil to.

    /usr/bin/python3 tests/torch/cnn_fixture.py
    (needs Debian's python3-torch and python3-torchvision)

The networks are the paper's own Net (my_network/net.py, under the names of
Net below), torchvision's vgg19 and resnet18 with a new last layer of two
classes.  No weights are stored: both sides compute them from an integer
hash (weights()), so the fixture holds only an image and what comes out.

Records, one per case, with metadata arch, classes, label, cam_layer, and
the input: crop_y, crop_x, height, width of the committed BreakHis image
(tests/data/SOB_B_A-14-22549G-40-001.png, decoded by PIL), and tensors:
    logits          F32 (classes)
    loss            F32 (): the mean cross-entropy of a batch of two: the
                    crop with label, and the crop mirrored left to right
                    with label + 1 (mod classes)
    grad.<name>     F32: that loss's gradient for each trained parameter
                    (all of net's; the new last layer of the others),
                    flattened; of tensors over 4096 elements only every
                    97th element (index 0, 97, 194, ...)
    cam_raw.<c>     F32 (h, w): Grad-CAM of class c's logit at cam_layer,
                    at that layer's resolution (gradcam() below); for
                    ResNet also at layer3, whose gradients (unlike
                    layer4's, a linear map of its mean) vary over the map
and for the small inputs also, for class 1 only:
    cam.1           F32 (H, W): cam_raw.1 scaled to the input (bilinear)
    guided.1        F32 (3, H, W): Guided Backpropagation of class 1's logit
                    to the (normalized) input
The reference is PyTorch in float64, stored as float32; PyTorch's own
float32 error against it is in the metadata (torch_float32_error.<tensor>).
"""
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import safetensors  # noqa: E402  (tests/safetensors.py)
from fixture import hash_uniform  # noqa: E402  (fixture.py's, which torch_check.h mirrors)


class Net(nn.Module):
    """The paper's own network (my_network/net.py): five 3x3 convolutions
    with padding 1, each leaky ReLU 0.01 and 2x2 max-pool; dropout 0.5;
    fc1 2048->1024, leaky ReLU, dropout 0.5; fc2 1024->classes; the paper's
    log-softmax and NLL are cross-entropy on these logits."""

    def __init__(self, classes=2):
        super().__init__()
        widths = [3, 64, 64, 128, 128, 128]
        for i in range(5):
            setattr(self, "conv%d" % (i + 1), nn.Conv2d(widths[i], widths[i + 1], 3, padding=1))
        self.fc1 = nn.Linear(2048, 1024)
        self.fc2 = nn.Linear(1024, classes)
        self.act = nn.LeakyReLU(0.01)
        self.dropout = nn.Dropout(0.5)
        self.cam_at = None   # keeps the output of relu5 here when set

    def forward(self, x):
        for i in range(5):
            x = self.act(getattr(self, "conv%d" % (i + 1))(x))
            if i == 4 and self.cam_at is not None:
                self.cam_at(x)
            x = F.max_pool2d(x, 2)
        x = self.dropout(torch.flatten(x, 1))
        x = self.dropout(self.act(self.fc1(x)))
        return self.fc2(x)


def vgg19(classes):
    model = torchvision.models.vgg19()
    model.classifier[6] = nn.Linear(4096, classes)
    return model


def resnet18(classes):
    model = torchvision.models.resnet18()
    model.fc = nn.Linear(512, classes)
    return model


def weights(module):
    """Parameter t (state_dict order without num_batches_tracked), element
    j, v = 2u - 1: convolution and linear weights v sqrt(6 / fan_in) (He's
    uniform, so that nineteen layers keep their scale), biases
    v / sqrt(fan_in); batch norm weight 1 + v/4, bias v/10, running mean
    v/10, running variance 1 + v/4.  The last layer's weight is negated:
    without, ResNet's logits all come out below 0 on these crops, and
    Grad-CAM of a negative logit (a ReLU of its linearization) is a map of
    zeros, which proves nothing.  In double, then float32."""
    state = module.state_dict()
    names = [k for k in state if not k.endswith("num_batches_tracked")]
    with torch.no_grad():
        for t, name in enumerate(names):
            p = state[name]
            v = 2 * hash_uniform(t, p.numel()) - 1
            layer, suffix = name.rsplit(".", 1)
            weight = state[layer + ".weight"]
            if weight.dim() == 1:   # batch norm
                values = {"weight": 1 + v / 4, "bias": v / 10, "running_mean": v / 10,
                          "running_var": 1 + v / 4}[suffix]
            else:
                fan_in = int(np.prod(weight.shape[1:]))
                values = v * math.sqrt(6 / fan_in) if suffix == "weight" else v / math.sqrt(fan_in)
                if t == len(names) - 2:
                    values = -values
            p.copy_(torch.from_numpy(values.astype(np.float32)).view(p.shape))


class GuidedReLU(torch.autograd.Function):
    """Guided Backpropagation's ReLU (or leaky ReLU): the forward as usual,
    the backward's result clamped at 0, as a backward hook with
    clamp(min=0) on each ReLU module does."""

    @staticmethod
    def forward(ctx, x, slope):
        ctx.save_for_backward(x)
        ctx.slope = slope
        return torch.where(x > 0, x, x * slope)

    @staticmethod
    def backward(ctx, g):
        x, = ctx.saved_tensors
        return torch.where(x > 0, g, g * ctx.slope).clamp(min=0), None


class Guided(nn.Module):
    def __init__(self, slope):
        super().__init__()
        self.slope = slope

    def forward(self, x):
        return GuidedReLU.apply(x, self.slope)


def guide(model):
    """Every ReLU of the model made a guided one (ResNet's blocks call their
    relu twice; one module, both guided)."""
    for parent in model.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.ReLU):
                setattr(parent, name, Guided(0.0))
            elif isinstance(child, nn.LeakyReLU):
                setattr(parent, name, Guided(child.negative_slope))


def no_inplace(model):
    for m in model.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False


def cam_module(model, name):
    """The module of a state_dict-style name; "layerN" is its last block."""
    if name.startswith("layer") and "." not in name:
        name += ".1"
    return model.get_submodule(name)


def gradcam(model, arch, x, target, layer):
    """Grad-CAM (Selvaraju et al.): A = the output of the cam layer, alpha =
    the mean over each map of d logit[target] / dA, cam = ReLU(sum alpha A);
    and cam scaled to the input (F.interpolate, bilinear,
    align_corners=False)."""
    kept = {}

    def keep(output):
        output.retain_grad()
        kept["A"] = output

    if arch == "net":
        model.cam_at = keep
        handle = None
    else:
        handle = cam_module(model, layer).register_forward_hook(lambda m, i, o: keep(o))
    logits = model(x)
    model.cam_at = None
    if handle:
        handle.remove()
    model.zero_grad()
    logits[0, target].backward()
    A = kept["A"]
    alpha = A.grad.mean(dim=(2, 3), keepdim=True)
    raw = torch.relu((alpha * A).sum(dim=1, keepdim=True))
    up = F.interpolate(raw, size=x.shape[2:], mode="bilinear", align_corners=False)
    return raw[0, 0].detach(), up[0, 0].detach()


def guided(model, x, target):
    x = x.clone().requires_grad_(True)
    logits = model(x)
    model.zero_grad()
    logits[0, target].backward()
    return x.grad[0].detach()


def relative_error(a, b):
    scale = b.abs().max().item()
    return (a - b).abs().max().item() / scale if scale > 0 else (a - b).abs().max().item()


def compute(make, arch, image, label, classes, layer, full):
    """Everything the fixture holds, for one precision."""
    model = make()
    weights(model)
    no_inplace(model)
    model.eval()   # batch norm and dropout in evaluation mode
    if image.dtype == torch.float64:
        model.double()
    out = {}
    x = image.unsqueeze(0)
    out["logits"] = model(x)[0].detach()
    for c in range(classes):
        raw, up = gradcam(model, arch, x, c, layer)
        out["cam_raw.%d" % c] = raw
        if full and c == 1:
            out["cam.1"] = up
    # training's gradient: a batch of two, mean cross-entropy
    batch = torch.stack([image, image.flip(2)])
    loss = F.cross_entropy(model(batch), torch.tensor([label, (label + 1) % classes]))
    model.zero_grad()
    loss.backward()
    trained = [n for n, _ in model.named_parameters()]
    if arch != "net":
        trained = trained[-2:]   # the new last layer
    params = dict(model.named_parameters())
    for n in trained:
        out["grad." + n] = params[n].grad.detach().flatten().clone()
    out["loss"] = loss.detach()
    if full:
        guide(model)
        out["guided.1"] = guided(model, x, 1)
    return out


def case(make, arch, full_image, y, x, height, width, label, classes, cam_layer, full):
    image = full_image[y:y + height, x:x + width]
    t = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).contiguous()
    t = t.float().div(255)
    ref = compute(make, arch, t.double(), label, classes, cam_layer, full)
    f32 = compute(make, arch, t, label, classes, cam_layer, full)
    meta = {"arch": arch, "classes": str(classes), "crop_y": str(y), "crop_x": str(x),
            "height": str(height), "width": str(width), "label": str(label),
            "cam_layer": cam_layer, "torch": torch.__version__,
            "torchvision": torchvision.__version__, "reference": "float64"}
    tensors = {}
    for k, v in ref.items():
        meta["torch_float32_error." + k] = "%.3g" % relative_error(f32[k].double(), v)
        meta["torch_float32_l2." + k] = "%.3g" % ((f32[k].double() - v).norm() / v.norm()).item()
        v = v.float().numpy()
        if k.startswith("grad.") and v.size > 4096:   # every 97th element
            v = v[::97]
        tensors[k] = np.ascontiguousarray(v)
    return meta, tensors


def main():
    torch.set_num_threads(2)
    root = os.path.dirname(os.path.dirname(HERE))
    # where the fixtures go: tests/data, or a folder given (make check
    # writes them anew there and compares them with the committed ones)
    data = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "tests/data")
    png = os.path.join(root, "tests/data/SOB_B_A-14-22549G-40-001.png")
    from PIL import Image
    image = np.asarray(Image.open(png).convert("RGB"))
    out = os.path.join(data, "cnn-fixture.safetensors")
    with open(out, "wb") as f:
        for make, arch, y, x, h, w, label, classes, layer, full in [
                (lambda: Net(2), "net", 120, 240, 128, 128, 1, 2, "relu5", True),
                (lambda: vgg19(2), "vgg19", 200, 300, 64, 64, 0, 2, "features.35", True),
                (lambda: resnet18(2), "resnet18", 150, 400, 64, 96, 1, 2, "layer3", True),
                (lambda: vgg19(2), "vgg19", 120, 240, 224, 224, 1, 2, "features.35", False),
                (lambda: resnet18(3), "resnet18", 120, 240, 224, 224, 2, 3, "layer4", False)]:
            safetensors.write(f, *case(make, arch, image, y, x, h, w, label, classes, layer, full))
            print(arch, h, w, "done", flush=True)
    print("wrote", out, os.path.getsize(out), "bytes")


if __name__ == "__main__":
    main()
