"""Makes tests/data/colormaps.safetensors: the colours matplotlib gives for
many values in jet, viridis and gray, for test_stream.c to hold colormap.c's
tables and amil_colormap_lookup to.

    /usr/bin/python3 tests/colormaps.py > tests/data/colormaps.safetensors
    (needs Debian's python3-matplotlib; made with matplotlib 3.6.3)

One record, metadata kind "colormaps" and matplotlib's version, tensors
    probes  F64 (K): every multiple of 1/1024 in [0, 1] (four in each of
            the 256 entries); i/255 for i = 0..255, the levels of a byte;
            the largest double under i/256 for i = 1..255, the last value
            of entry i - 1; and -0.5, -1e-9, 1 + 1e-9 and 2, outside [0, 1]
    NAME    F64 (K, 3): matplotlib.colormaps[NAME](probes), its R, G, B in
            [0, 1] as matplotlib computes them, not rounded
"""
import os
import sys

import matplotlib
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors import write  # noqa: E402


def main():
    probes = np.concatenate([
        np.arange(1025) / 1024,
        np.arange(256) / 255,
        np.nextafter(np.arange(1, 256) / 256, 0),
        [-0.5, -1e-9, 1 + 1e-9, 2.0],
    ]).astype(np.float64)
    tensors = {"probes": probes}
    for name in ("jet", "viridis", "gray"):
        tensors[name] = np.ascontiguousarray(matplotlib.colormaps[name](probes)[:, :3],
                                             dtype=np.float64)
    write(sys.stdout.buffer, {"kind": "colormaps", "matplotlib": matplotlib.__version__},
          tensors)


if __name__ == "__main__":
    main()
