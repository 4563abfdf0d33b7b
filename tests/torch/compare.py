"""compare.py MADE COMMITTED: whether a fixture just made by fixture.py or
cnn_fixture.py holds what the committed one holds: the same records,
metadata, tensor names, dtypes and shapes; integer and byte tensors equal;
floating-point ones (the float64 references, the weights drawn from the
seed) within 1e-9 of each other's largest value, plus 1e-15: a gradient
that is zero in exact arithmetic (the attention score's bias, which the
softmax does not see) comes out as float64 round-off near 1e-18, which
differs from one CPU's kernels to another's.  The metadata torch_float32_*
(what PyTorch's own float32 run missed by, which depends on the CPU's
kernels) is informative and not compared.  Prints
what differs; exits 1 if anything does."""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import safetensors  # noqa: E402  (tests/safetensors.py)


def main(made, committed):
    a = list(safetensors.read(open(made, "rb")))
    b = list(safetensors.read(open(committed, "rb")))
    bad = []
    if len(a) != len(b):
        bad.append(f"{len(a)} records, not {len(b)}")
    for i, ((ma, ta), (mb, tb)) in enumerate(zip(a, b)):
        keep = lambda m: {k: v for k, v in m.items()  # noqa: E731
                          if not k.startswith("torch_float32_")}
        if keep(ma) != keep(mb):
            bad.append(f"record {i}: metadata differs")
        if set(ta) != set(tb):
            bad.append(f"record {i}: tensors {sorted(set(ta) ^ set(tb))}")
        for name in sorted(set(ta) & set(tb)):
            x, y = ta[name], tb[name]
            if x.dtype != y.dtype or x.shape != y.shape:
                bad.append(f"record {i}: {name}: {x.dtype}{x.shape}, not {y.dtype}{y.shape}")
            elif np.issubdtype(x.dtype, np.floating):
                top = max(float(np.max(np.abs(y))) if y.size else 0, 1e-300)
                err = float(np.max(np.abs(x.astype(np.float64) - y))) if y.size else 0
                if not err <= 1e-9 * top + 1e-15:
                    bad.append(f"record {i}: {name}: off by {err:.3g} of {top:.3g}")
            elif not np.array_equal(x, y):
                bad.append(f"record {i}: {name}: differs")
    for line in bad:
        print(line)
    print(f"{made}: {len(a)} records, {'differs' if bad else 'the same'} as {committed}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
