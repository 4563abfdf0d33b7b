"""Makes tests/data/clam-fixture.safetensors: what PyTorch computes for
CLAM's attention head (Lu et al. 2021, CLAM_SB: a linear layer, ReLU,
dropout, gated or plain attention, a classifier), for test_clam.c to hold
amil's to.

    /usr/bin/python3 tests/torch/clam_fixture.py [DIR]   (Debian's python3-torch)

The module below is written from the paper's description and CLAM's
state_dict names (attention_net.0, attention_net.3.attention_a.0 ...,
classifiers), small (24 features, L 16, D 8) so the fixture stays small.
The features of the bag (37 patches) are drawn here and stored; the weights
are not: both sides compute them from fixture.py's integer hash, the
attention layers (attention_net.3) 8 times PyTorch's scale.

Records (one per case), metadata gated, classes, outputs, features,
hidden, attention, label, and tensors:
    features        F32 (N, F), the bag's cached features
    attention       F32 (1, N)
    embedding       F32 (1, L)
    prob            F32 (classes)
    loss            F32 ()
    grad.<name>     F32, each parameter's gradient
    adam3.<name>    F32, each parameter after three Adam steps (lr 2e-4,
                    weight decay 1e-5: CLAM's defaults)
and a last record, kind state_dict: a gated head with two outputs as
torch's state_dict holds it, CLAM's instance classifiers included, which
amil must load and leave out.
"""
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import safetensors  # noqa: E402  (tests/safetensors.py)
from fixture import relative_error, weights  # noqa: E402


class Gated(nn.Module):
    def __init__(self, L, D):
        super().__init__()
        self.attention_a = nn.Sequential(nn.Linear(L, D), nn.Tanh())
        self.attention_b = nn.Sequential(nn.Linear(L, D), nn.Sigmoid())
        self.attention_c = nn.Linear(D, 1)

    def forward(self, h):
        return self.attention_c(self.attention_a(h) * self.attention_b(h))


class Plain(nn.Module):
    def __init__(self, L, D):
        super().__init__()
        self.module = nn.Sequential(nn.Linear(L, D), nn.Tanh(), nn.Linear(D, 1))

    def forward(self, h):
        return self.module(h)


class Head(nn.Module):
    """CLAM_SB's forward: scores (N, 1) -> softmax over N -> M = A H ->
    classifiers(M)."""

    def __init__(self, F_, L, D, outputs, gated, instance=0):
        super().__init__()
        self.attention_net = nn.Sequential(nn.Linear(F_, L), nn.ReLU(), nn.Dropout(0.25),
                                           Gated(L, D) if gated else Plain(L, D))
        self.classifiers = nn.Linear(L, outputs)
        if instance:
            self.instance_classifiers = nn.ModuleList([nn.Linear(L, 2) for _ in range(instance)])

    def forward(self, x):
        h = self.attention_net[2](self.attention_net[1](self.attention_net[0](x)))
        A = F.softmax(self.attention_net[3](h).transpose(1, 0), dim=1)   # (1, N)
        M = A @ h
        return self.classifiers(M), A, M


def loss_of(logits, label, outputs):
    if outputs == 1:   # the paper's, as fixture.py's
        p = torch.sigmoid(logits[0, 0])
        q = torch.clamp(p, min=1e-5, max=1. - 1e-5)
        loss = -1. * (label * torch.log(q) + (1. - label) * torch.log(1. - q))
        return loss, torch.stack([1 - p, p])
    return F.cross_entropy(logits, torch.tensor([label])), F.softmax(logits[0], dim=0)


def run(module, x, label, outputs):
    module.eval()   # no dropout: the fixture is deterministic
    logits, A, M = module(x)
    loss, prob = loss_of(logits, label, outputs)
    module.zero_grad()
    loss.backward()
    out = {"attention": A.detach(), "embedding": M.detach(), "prob": prob.detach(),
           "loss": loss.detach()}
    for name, p in module.named_parameters():
        out["grad." + name] = p.grad.clone()
    opt = torch.optim.Adam(module.parameters(), lr=2e-4, betas=(0.9, 0.999), weight_decay=1e-5)
    for _ in range(3):
        opt.zero_grad()
        loss_of(module(x)[0], label, outputs)[0].backward()
        opt.step()
    for name, p in module.named_parameters():
        out["adam3." + name] = p.detach().clone()
    return out


def case(gated, classes, outputs, label, x):
    make = lambda: Head(24, 16, 8, outputs, gated)   # noqa: E731
    single, double = make(), make()
    weights(single, loud="attention_net.3")
    weights(double, loud="attention_net.3")
    double.double()
    ref = run(double, torch.from_numpy(x).double(), label, outputs)
    f32 = run(single, torch.from_numpy(x), label, outputs)
    meta = {"gated": str(int(gated)), "classes": str(classes), "outputs": str(outputs),
            "features": "24", "hidden": "16", "attention": "8", "label": str(label),
            "torch": torch.__version__, "reference": "float64"}
    tensors = {"features": x}
    for k, v in ref.items():
        tensors[k] = v.float().numpy().copy()
        meta["torch_float32_error." + k] = "%.3g" % relative_error(f32[k].double(), v)
    return meta, tensors


def main():
    torch.set_num_threads(1)
    root = os.path.dirname(os.path.dirname(HERE))
    data = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "tests/data")
    # a bag's cached features: 37 patches of 24 values, as a backbone's
    # average pool gives them (non-negative, a few large)
    rng = np.random.default_rng(2021)
    x = (rng.gamma(0.7, 0.6, size=(37, 24))).astype(np.float32)
    out = os.path.join(data, "clam-fixture.safetensors")
    with open(out, "wb") as f:
        safetensors.write(f, *case(True, 2, 1, 1, x))    # the paper's loss
        safetensors.write(f, *case(True, 3, 3, 2, x))    # softmax over K classes
        safetensors.write(f, *case(False, 2, 2, 0, x))   # CLAM's own two-class head, plain
        model = Head(24, 16, 8, 2, True, instance=2)
        weights(model, loud="attention_net.3")
        safetensors.write(f, {"kind": "state_dict"},
                          {k: v.numpy() for k, v in model.state_dict().items()})
    print("wrote", out, os.path.getsize(out), "bytes")


if __name__ == "__main__":
    main()
