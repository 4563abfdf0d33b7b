"""Makes tests/data/torch-fixture.safetensors: what PyTorch computes for the
attention-MIL network on a small real bag, for test_torch.c to hold amil to.

    /usr/bin/python3 tests/torch/fixture.py    (needs Debian's python3-torch)

The modules are the paper's amil_model.py (Ilse et al.'s Attention with 3
input channels) and Ilse et al.'s GatedAttention, with L, D, K and the number
of classes as arguments so the fixture stays small.  The weights are not
stored: both sides compute them from an integer hash (weights()), so only the bag,
the outputs, the gradients and the parameters after three Adam steps are.

The reference is PyTorch in float64 (stored as float32); PyTorch's own
float32 error against it is in the metadata (torch_float32_error.<tensor>).

Records (one per case), each with metadata arch, classes, hidden,
attention, branches, label, and tensors:
    patches         U8 (N, 28, 28, 3), the first patches of the real
                    BreakHis image's bag (bagify's order)
    attention       F32 (K, N)
    features        F32 (N, L)
    prob            F32 (classes): [1 - p, p] for two classes
    loss            F32 ()
    grad.<name>     F32, each parameter's gradient
    gradcam.<c>     F32 (N, 8, 8), Grad-CAM of class c's score at the
                    second convolution (gradcam() below), for every class
    adam3.<name>    F32, each parameter after three steps of torch.optim.Adam
                    (lr 1e-4, betas 0.9/0.999, weight decay 1e-4: the paper's)
                    on the same bag
"""
import math
import os
import subprocess
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import safetensors  # noqa: E402  (tests/safetensors.py)


class Attention(nn.Module):
    """amil_model.py (Ilse et al.'s Attention with 3 input channels), and with
    gated=True Ilse et al.'s GatedAttention; L, D, K and classes as
    arguments.  Modules are made in the reference's order, which is the
    state_dict's order."""

    def __init__(self, L=500, D=128, K=1, classes=2, gated=False):
        super().__init__()
        self.L, self.D, self.K, self.classes, self.gated = L, D, K, classes, gated
        self.feature_extractor_part1 = nn.Sequential(
            nn.Conv2d(3, 20, kernel_size=5), nn.ReLU(), nn.MaxPool2d(2, stride=2),
            nn.Conv2d(20, 50, kernel_size=5), nn.ReLU(), nn.MaxPool2d(2, stride=2))
        self.feature_extractor_part2 = nn.Sequential(nn.Linear(50 * 4 * 4, L), nn.ReLU())
        if gated:
            self.attention_V = nn.Sequential(nn.Linear(L, D), nn.Tanh())
            self.attention_U = nn.Sequential(nn.Linear(L, D), nn.Sigmoid())
            self.attention_weights = nn.Linear(D, K)
        else:
            self.attention = nn.Sequential(nn.Linear(L, D), nn.Tanh(), nn.Linear(D, K))
        self.classifier = nn.Sequential(nn.Linear(L * K, 1 if classes == 2 else classes))

    def forward(self, x):
        H = self.feature_extractor_part1(x.squeeze(0))
        H = self.feature_extractor_part2(H.view(-1, 50 * 4 * 4))   # N x L
        if self.gated:
            scores = self.attention_weights(self.attention_V(H) * self.attention_U(H))
        else:
            scores = self.attention(H)
        A = F.softmax(torch.transpose(scores, 1, 0), dim=1)   # K x N
        M = torch.mm(A, H)
        logits = self.classifier(M.view(1, -1))
        return logits, A, H


def hash_uniform(t, n):
    """splitmix64(t * 2^32 + j) for j < n, as u in [0, 1) from its top 53
    bits: torch_check.h's hash_uniform() computes the same."""
    z = np.uint64(t) * np.uint64(1 << 32) + np.arange(n, dtype=np.uint64)
    z = z + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * 2.0 ** -53


def weights(module, loud="attention"):
    """PyTorch's default distribution, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), from
    an integer hash both sides compute exactly: parameter t (state_dict
    order), element j: u = hash_uniform(t, ...)[j], the value (2u - 1) /
    sqrt(fan_in) in double, then float32.  The attention layers (names
    beginning with loud) get 8 times that, so that the attention is far from
    uniform, as in a trained model; at PyTorch's initial scale it is uniform
    to 1e-4 and its gradients are all rounding.  torch_check.h's
    hash_weights() computes the same."""
    with torch.no_grad():
        for t, (name, p) in enumerate(module.state_dict().items()):
            weight = module.state_dict()[name.rsplit(".", 1)[0] + ".weight"]
            fan_in = int(np.prod(weight.shape[1:]))
            gain = 8.0 if name.startswith(loud) else 1.0
            values = gain * (2 * hash_uniform(t, p.numel()) - 1) / math.sqrt(fan_in)
            p.copy_(torch.from_numpy(values.astype(np.float32)).view(p.shape))


def loss_of(logits, label, classes):
    if classes == 2:
        # the paper's: sigmoid, clamp, negative Bernoulli log-likelihood
        p = torch.sigmoid(logits[0, 0])
        q = torch.clamp(p, min=1e-5, max=1. - 1e-5)
        y = float(label)
        loss = -1. * (y * torch.log(q) + (1. - y) * torch.log(1. - q))
        return loss, torch.stack([1 - p, p])
    loss = F.cross_entropy(logits, torch.tensor([label]))
    return loss, F.softmax(logits[0], dim=0)


def run(module, x, label, classes):
    """Forward, backward, three Adam steps: everything the fixture holds."""
    logits, A, H = module(x)
    loss, prob = loss_of(logits, label, classes)
    module.zero_grad()
    loss.backward()
    out = {"attention": A.detach(), "features": H.detach(), "prob": prob.detach(),
           "loss": loss.detach()}
    for name, p in module.named_parameters():
        out["grad." + name] = p.grad.clone()
    opt = torch.optim.Adam(module.parameters(), lr=1e-4, betas=(0.9, 0.999),
                           weight_decay=1e-4)
    for _ in range(3):
        opt.zero_grad()
        logits, _, _ = module(x)
        loss_of(logits, label, classes)[0].backward()
        opt.step()
    for name, p in module.named_parameters():
        out["adam3." + name] = p.detach().clone()
    return out


def gradcam(module, x, target, classes):
    """Grad-CAM (Selvaraju et al.) of the bag's score for class target at the
    second convolution (feature_extractor_part1[3], its output before the
    ReLU, as a forward hook on that module sees it): alpha = the mean over
    each map of the score's gradient, cam = ReLU(sum alpha A).  The score is
    the logit (two classes: z for class 1, -z for class 0).  (N, 8, 8)."""
    kept = {}

    def hook(_, __, output):
        output.retain_grad()
        kept["A"] = output

    handle = module.feature_extractor_part1[3].register_forward_hook(hook)
    logits, _, _ = module(x)
    handle.remove()
    score = logits[0, 0] * (1 if target == 1 else -1) if classes == 2 else logits[0, target]
    module.zero_grad()
    score.backward()
    A = kept["A"]
    alpha = A.grad.mean(dim=(2, 3), keepdim=True)
    return torch.relu((alpha * A).sum(dim=1)).detach()


def relative_error(a, b):
    scale = b.abs().max().item()
    return (a - b).abs().max().item() / scale if scale > 0 else (a - b).abs().max().item()


NORMS = {"mnist": ((0.1307,) * 3, (0.3081,) * 3),
         "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))}


def case(make, arch, classes, label, patches, norm=None):
    """The reference is PyTorch in float64, stored as float32: the truth that
    both float32 implementations, PyTorch's and ours, are held to.  PyTorch's
    own float32 error against it goes into the metadata, per tensor, for
    comparison."""
    x = torch.from_numpy(patches).permute(0, 3, 1, 2).contiguous().float().div(255)
    if norm:   # transforms.Normalize: (x - mean) / std, per channel, in float
        mean, std = NORMS[norm]
        x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    x = x.unsqueeze(0)   # (1, N, C, P, P), as the paper's DataLoader gave it
    single = make()
    weights(single)
    double = make()
    weights(double)
    double.double()
    cams = {"gradcam.%d" % c: (gradcam(double, x.double(), c, classes), gradcam(single, x, c, classes))
            for c in range(classes)}
    ref = run(double, x.double(), label, classes)
    f32 = run(single, x, label, classes)
    for k, (c64, c32) in cams.items():
        ref[k], f32[k] = c64, c32
    meta = {"arch": arch, "classes": str(classes), "hidden": str(single.L),
            "attention": str(single.D), "branches": str(single.K), "label": str(label),
            "torch": torch.__version__, "reference": "float64"}
    if norm:
        meta["normalization"] = norm
    tensors = {"patches": patches}
    for k, v in ref.items():
        tensors[k] = v.float().numpy().copy()
        meta["torch_float32_error." + k] = "%.3g" % relative_error(f32[k].double(), v)
    return meta, tensors


def whole_bag(model, patches):
    """The small model's attention and probabilities on the whole 400-patch
    bag of the real image, in float64: what bagify | featurize | attend |
    classify must give with torch-state-dict.safetensors."""
    weights(model)
    model.double()
    x = torch.from_numpy(patches).permute(0, 3, 1, 2).contiguous().double().div(255)
    with torch.no_grad():
        logits, A, _ = model(x.unsqueeze(0))
        p = torch.sigmoid(logits[0, 0])
    return ({"kind": "pipeline", "reference": "float64", "torch": torch.__version__},
            {"attention": A.float().numpy(), "prob": torch.stack([1 - p, p]).float().numpy()})


def optimizers():
    """Five steps of each optimizer on a 64-value parameter from gradients
    both sides compute (g_t[j] = sin(0.37 j + 1.1 t) + 0.1 w_t[j]), with the
    settings amil exposes: the paper's Adam, AdamW, SGD and RMSprop with
    momentum (its baselines: lr 3e-4, momentum 0.4).  In float32, as both
    sides train."""
    cases = [("adam", lambda p: torch.optim.Adam(p, lr=1e-3, betas=(0.9, 0.999), weight_decay=1e-4)),
             ("adamw", lambda p: torch.optim.AdamW(p, lr=1e-3, weight_decay=1e-2)),
             ("sgd", lambda p: torch.optim.SGD(p, lr=1e-2, momentum=0.9, weight_decay=1e-4)),
             ("rmsprop", lambda p: torch.optim.RMSprop(p, lr=3e-4, momentum=0.4, weight_decay=1e-4))]
    tensors = {}
    for name, make in cases:
        w = torch.nn.Parameter(torch.from_numpy(np.linspace(-1, 1, 64).astype(np.float32)))
        opt = make([w])
        for t in range(5):
            j = np.arange(64, dtype=np.float64)
            g = np.sin(0.37 * j + 1.1 * t).astype(np.float32) + np.float32(0.1) * w.detach().numpy()
            opt.zero_grad()
            w.grad = torch.from_numpy(g.astype(np.float32))
            opt.step()
        tensors["after5." + name] = w.detach().numpy().copy()
    return {"kind": "optimizers", "torch": torch.__version__}, tensors


def main():
    torch.set_num_threads(1)
    root = os.path.dirname(os.path.dirname(HERE))
    # where the fixtures go: tests/data, or a folder given (make check
    # writes them anew there and compares them with the committed ones)
    data = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "tests/data")
    image = os.path.join(root, "tests/data/SOB_B_A-14-22549G-40-001.png")
    bag = subprocess.run([os.path.join(root, "build/bin/bagify"), image],
                         check=True, capture_output=True).stdout
    import io
    (_, t), = list(safetensors.read(io.BytesIO(bag)))
    # six patches from across the image: rows of tissue and of glass
    patches = np.ascontiguousarray(t["patches"][[0, 57, 130, 211, 288, 399]])
    out = os.path.join(data, "torch-fixture.safetensors")
    small = lambda: Attention(L=32, D=8, K=1, classes=2)   # noqa: E731
    with open(out, "wb") as f:
        safetensors.write(f, *case(small, "amil", 2, 1, patches))
        safetensors.write(f, *case(lambda: Attention(L=24, D=6, K=2, classes=3, gated=True),
                                   "gated", 3, 2, patches))
        safetensors.write(f, *case(small, "amil", 2, 0, patches, norm="imagenet"))
        safetensors.write(f, *whole_bag(small(), np.array(t["patches"])))
        safetensors.write(f, *optimizers())
    print("wrote", out, os.path.getsize(out), "bytes")

    # The same small model as a bare state_dict, the file
    # safetensors.torch.save_file(model.state_dict(), path) makes: no
    # metadata, so amil reads the architecture off the names and shapes.
    model = small()
    weights(model)
    state = os.path.join(data, "torch-state-dict.safetensors")
    with open(state, "wb") as f:
        safetensors.write(f, {}, {k: v.numpy() for k, v in model.state_dict().items()})
    print("wrote", state, os.path.getsize(state), "bytes")


if __name__ == "__main__":
    main()
