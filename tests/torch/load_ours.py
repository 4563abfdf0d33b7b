"""Loads a model amil trained into the PyTorch module with load_state_dict
(strict) and prints, for each bag of a stream, PyTorch's probability of
class 1, one per line:

    /usr/bin/python3 tests/torch/load_ours.py MODEL BAGS
"""
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)
import safetensors  # noqa: E402  (tests/safetensors.py)
from fixture import Attention  # noqa: E402


def main():
    (meta, tensors), = list(safetensors.read(open(sys.argv[1], "rb")))
    model = Attention(L=int(meta["hidden"]), D=int(meta["attention"]),
                      K=int(meta["branches"]), classes=int(meta["classes"]),
                      gated=meta["arch"] == "gated")
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in tensors.items()},
                          strict=True)
    with torch.no_grad():
        for _, bag in safetensors.read(open(sys.argv[2], "rb")):
            x = torch.from_numpy(np.array(bag["patches"])).permute(0, 3, 1, 2)
            x = x.contiguous().float().div(255).unsqueeze(0)
            logits, _, _ = model(x)
            print("%.9g" % torch.sigmoid(logits[0, 0]).item())


if __name__ == "__main__":
    main()
