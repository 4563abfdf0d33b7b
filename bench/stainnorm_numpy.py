"""The peer of bench/stainnorm.sh: tests/stains.py's NumPy transcription
of Macenko and Reinhard on the same images, read and written as PNG with
PIL, the reference fitted once:

    stainnorm_numpy.py METHOD REFERENCE.png OUTDIR IMAGE.png...
"""
import os
import sys

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import stains  # noqa: E402


def rgb(path):
    return np.asarray(Image.open(path).convert("RGB"))


def main():
    method, reference, outdir = sys.argv[1:4]
    fit, normalize = stains.METHODS[method]
    ref = stains.as_float32(fit(rgb(reference).reshape(-1, 3)))
    for i, path in enumerate(sys.argv[4:]):
        img = rgb(path)
        px = img.reshape(-1, 3)
        out = normalize(px, fit(px), ref).reshape(img.shape)
        Image.fromarray(out).save(os.path.join(outdir, "%d.png" % i))


if __name__ == "__main__":
    main()
