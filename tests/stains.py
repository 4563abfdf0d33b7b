"""Stain normalization in NumPy, written from the papers (not from amil's
C), to hold stainnorm to:

  Macenko, Niethammer, Marron, Borland, Woosley, Guan, Schmitt, Thomas:
  "A method for normalizing histology slides for quantitative analysis",
  ISBI 2009.  Optical density per channel, OD = -ln((I + 1) / Io); drop
  the pixels under beta in any channel; the plane of the two largest
  eigenvectors of the ODs' covariance; each pixel's angle in it from the
  first; the stains at the alpha-th and (100 - alpha)-th percentile
  angles, hematoxylin the one of more red OD; concentrations by least
  squares; the 99th percentile of each stain's concentration as its
  maximum.  Normalizing: the reference's stains, and concentrations scaled
  by the reference's maxima over the image's own.

  Reinhard, Ashikhmin, Gooch, Shirley: "Color transfer between images",
  IEEE CG&A 2001, in CIE L*a*b* (sRGB IEC 61966-2-1 -> XYZ under D65 ->
  L*a*b*): each channel's mean and standard deviation made the
  reference's.

    stains.py compare METHOD REF.pnm IN.pnm OURS.pnm   ours against NumPy's
    stains.py fit METHOD IMAGE.pnm STAINS               a --save-stains record
    stains.py bag METHOD REF.pnm BAG OURS_BAG           a bag's patches

Images are binary PNM/PAM; a record is read with tests/safetensors.py.
The pixels must agree within 1 grey level on average and 3 at most, the
stain vectors within 1e-3.
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors  # noqa: E402

IO, ALPHA, BETA = 240.0, 1.0, 0.15

# sRGB's linear RGB to XYZ under D65, and D65's white
XYZ_OF_RGB = np.array([[0.4124564, 0.3575761, 0.1804375],
                       [0.2126729, 0.7151522, 0.0721750],
                       [0.0193339, 0.1191920, 0.9503041]])
WHITE = np.array([0.95047, 1.0, 1.08883])
DELTA = 6 / 29


def optical_density(rgb):
    return -np.log((rgb.astype(np.float64) + 1) / IO)


def macenko_fit(rgb):
    od = optical_density(rgb)
    kept = od[(od >= BETA).all(axis=1)]
    _, vectors = np.linalg.eigh(np.cov(kept.T))      # eigenvalues ascending
    first, second = vectors[:, 2], vectors[:, 1]
    if first @ kept.mean(axis=0) < 0:
        first = -first
    angle = np.arctan2(kept @ second, kept @ first)
    ends = [np.percentile(angle, ALPHA), np.percentile(angle, 100 - ALPHA)]
    v = [first * np.cos(a) + second * np.sin(a) for a in ends]
    he = np.array(v if v[0][0] > v[1][0] else v[::-1])   # (2, 3): H, E
    c = np.linalg.lstsq(he.T, od.T, rcond=None)[0]         # (2, n)
    return {"stains": he, "max": np.percentile(c, 99, axis=1)}


def macenko_normalize(rgb, own, ref):
    c = np.linalg.lstsq(own["stains"].T, optical_density(rgb).T, rcond=None)[0]
    c *= (ref["max"] / own["max"])[:, None]
    out = IO * np.exp(-(ref["stains"].T @ c)).T
    return np.floor(np.minimum(out, 255) + 0.5).astype(np.uint8)


def to_lab(rgb):
    c = rgb.astype(np.float64) / 255
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    t = linear @ XYZ_OF_RGB.T / WHITE
    f = np.where(t > DELTA ** 3, np.cbrt(t), t / (3 * DELTA ** 2) + 4 / 29)
    return np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]),
                     200 * (f[:, 1] - f[:, 2])], axis=1)


def from_lab(lab):
    fy = (lab[:, 0] + 16) / 116
    f = np.stack([fy + lab[:, 1] / 500, fy, fy - lab[:, 2] / 200], axis=1)
    t = np.where(f > DELTA, f ** 3, 3 * DELTA ** 2 * (f - 4 / 29))
    linear = (t * WHITE) @ np.linalg.inv(XYZ_OF_RGB).T
    c = np.where(linear <= 0.0031308, 12.92 * linear,
                 1.055 * np.maximum(linear, 0) ** (1 / 2.4) - 0.055)
    return np.floor(np.clip(c, 0, 1) * 255 + 0.5).astype(np.uint8)


def reinhard_fit(rgb):
    lab = to_lab(rgb)
    return {"mean": lab.mean(axis=0), "sd": lab.std(axis=0)}


def reinhard_normalize(rgb, own, ref):
    lab = (to_lab(rgb) - own["mean"]) * (ref["sd"] / own["sd"]) + ref["mean"]
    return from_lab(lab)


METHODS = {"macenko": (macenko_fit, macenko_normalize),
           "reinhard": (reinhard_fit, reinhard_normalize)}


def as_float32(fitted):
    """The reference as stainnorm keeps it: in float32."""
    return {k: v.astype(np.float32).astype(np.float64) for k, v in fitted.items()}


def normalized(method, ref, rgb):
    fit, normalize = METHODS[method]
    return normalize(rgb, fit(rgb), as_float32(fit(ref)))


def agree(name, ours, theirs):
    d = np.abs(ours.astype(int) - theirs.astype(int))
    print("%s: %d values, mean |difference| %.4f grey levels, largest %d, "
          "%.2f%% differ" % (name, d.size, d.mean(), d.max(), 100 * (d > 0).mean()))
    return d.mean() <= 1 and d.max() <= 3


def pixels(path):
    img = safetensors.read_pnm(path)
    assert img.shape[2] == 3, img.shape
    return img.reshape(-1, 3)


def main():
    cmd, method = sys.argv[1], sys.argv[2]
    if cmd == "compare":
        ref, rgb, ours = (pixels(p) for p in sys.argv[3:6])
        ok = agree("%s %s" % (method, os.path.basename(sys.argv[4])), ours,
                   normalized(method, ref, rgb))
        sys.exit(0 if ok else 1)
    if cmd == "fit":
        theirs = METHODS[method][0](pixels(sys.argv[3]))
        (meta, t), = list(safetensors.read(open(sys.argv[4], "rb")))
        assert meta["method"] == method, meta
        pairs = ([("stains", "stains"), ("max_concentrations", "max")] if method == "macenko"
                 else [("lab_mean", "mean"), ("lab_sd", "sd")])
        worst = 0
        for ours, key in pairs:
            err = np.abs(t[ours].astype(np.float64) - theirs[key]).max()
            print("%s: largest difference %.2e" % (ours, err))
            worst = max(worst, err / (1 if ours == "stains" else max(1, np.abs(theirs[key]).max())))
        sys.exit(0 if worst <= 1e-3 else 1)
    if cmd == "bag":
        ref = pixels(sys.argv[3])
        (_, bag), = list(safetensors.read(open(sys.argv[4], "rb")))
        (meta, out), = list(safetensors.read(open(sys.argv[5], "rb")))
        assert meta["stain_method"] == method, meta
        assert np.array_equal(bag["coords"], out["coords"])
        theirs = normalized(method, ref, bag["patches"].reshape(-1, 3))
        ok = agree("%s bag" % method, out["patches"].reshape(-1, 3), theirs)
        sys.exit(0 if ok else 1)
    sys.exit("unknown command " + cmd)


if __name__ == "__main__":
    main()
