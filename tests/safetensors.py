"""A NumPy reader and writer of amil records (safetensors documents), written
from the format's description alone, to prove that ours is the real thing;
and NumPy references for what bagify and stitch compute.

    safetensors.py make                  a record with every dtype amil uses
    safetensors.py check                 stdin holds what `make` wrote
    safetensors.py bag IMAGE.pam         stdin is bagify's bag of IMAGE
    safetensors.py paper PNM             the paper's picture (stitch --style
                                         paper) of the record on stdin
    safetensors.py heat IMAGE PNM ALPHA  stitch --cmap gray --norm minmax
    safetensors.py untouched IMAGE PNM   pixels of no patch are the image's
    safetensors.py slide IMAGE SCALE BOX stdin is bagify's bag of a slide whose
                                         pixels at coords / SCALE are IMAGE's,
                                         read at BOX times coarser (the mean
                                         of BOX x BOX pixels, ties to even)
    safetensors.py drawn IMAGE PNM D     stitch --downsample D (whole D) of the
                                         bag on stdin: pixels of no patch are
                                         IMAGE's D x D box means
    safetensors.py clam MODEL            attend -k | classify of a CLAM head
                                         MODEL on stdin, against NumPy
    safetensors.py tissue IMAGE          the kept patches of the bag on stdin
                                         against saturation at full resolution
    safetensors.py legend WITH WITHOUT   the legend that WITH has and WITHOUT
                                         (the same picture, --no-legend) has
                                         not: its box and its two labels read
"""
import json
import struct
import sys

import numpy as np

DTYPES = {"BOOL": np.bool_, "U8": np.uint8, "I8": np.int8, "U16": np.uint16,
          "I16": np.int16, "F16": np.float16, "U32": np.uint32, "I32": np.int32,
          "F32": np.float32, "U64": np.uint64, "I64": np.int64, "F64": np.float64}
NAMES = {np.dtype(v): k for k, v in DTYPES.items()}


def read(f):
    while True:
        head = f.read(8)
        if not head:
            return
        (n,) = struct.unpack("<Q", head)
        header = json.loads(f.read(n))
        meta = header.pop("__metadata__", {})
        buf = f.read(max([v["data_offsets"][1] for v in header.values()] + [0]))
        yield meta, {k: np.frombuffer(buf[v["data_offsets"][0]:v["data_offsets"][1]],
                                      DTYPES[v["dtype"]]).reshape(v["shape"])
                     for k, v in header.items()}


def write(f, meta, tensors):
    header, parts, offset = ({"__metadata__": meta} if meta else {}), [], 0
    for name, a in tensors.items():
        b = np.ascontiguousarray(a).tobytes()
        header[name] = {"dtype": NAMES[a.dtype], "shape": list(a.shape),
                        "data_offsets": [offset, offset + len(b)]}
        parts.append(b)
        offset += len(b)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    f.write(struct.pack("<Q", len(text)) + text + b"".join(parts))


def sample():
    # U8 first and 5 bytes long, so the F32 after it starts unaligned: the
    # reader must not assume the writer's alignment.
    return ({"kind": "test", "source": "ünïcode \"path\".png", "label": "1"},
            {"bytes": np.arange(5, dtype=np.uint8),
             "floats": np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4),
             "ints": np.array([[-7, 2**31 - 1]], dtype=np.int32),
             "longs": np.array([2**40, -1], dtype=np.int64),
             "scalar": np.array(3.5, dtype=np.float32),
             "empty": np.zeros((0, 3), dtype=np.float32)})


def read_pnm(path):
    """Binary PPM/PGM (P6/P5) or PAM (P7) with maxval 255."""
    data = open(path, "rb").read()
    if data[:2] == b"P7":
        end = data.index(b"ENDHDR\n") + 7
        fields = dict(line.split(None, 1) for line in data[3:end - 7].decode().split("\n")
                      if line and not line.startswith("#") and " " in line)
        w, h, d = int(fields["WIDTH"]), int(fields["HEIGHT"]), int(fields["DEPTH"])
        return np.frombuffer(data[end:end + w * h * d], np.uint8).reshape(h, w, d)
    tokens, pos = [], 2
    while len(tokens) < 3:
        while data[pos:pos + 1].isspace():
            pos += 1
        start = pos
        while not data[pos:pos + 1].isspace():
            pos += 1
        tokens.append(int(data[start:pos]))
    w, h, _ = tokens
    d = 3 if data[:2] == b"P6" else 1
    return np.frombuffer(data[pos + 1:pos + 1 + w * h * d], np.uint8).reshape(h, w, d)


def main():
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    cmd = sys.argv[1]
    if cmd == "make":
        write(stdout, *sample())
    elif cmd == "check":
        records = list(read(stdin))
        meta, tensors = sample()
        assert len(records) == 1, len(records)
        got_meta, got = records[0]
        assert got_meta == meta, got_meta
        assert sorted(got) == sorted(tensors), sorted(got)
        for k, a in tensors.items():
            assert got[k].dtype == a.dtype and got[k].shape == a.shape, k
            assert np.array_equal(got[k], a), k
        print("round trip ok")
    elif cmd == "bag":
        image = read_pnm(sys.argv[2])
        n = 0
        for meta, t in read(stdin):
            p = int(meta["patch"])
            assert t["patches"].shape[1:] == (p, p, image.shape[2])
            # bagify -c pad pads right and bottom with 255.
            padded = np.pad(image, ((0, p), (0, p), (0, 0)), constant_values=255)
            for patch, (y, x) in zip(t["patches"], t["coords"]):
                assert np.array_equal(patch, padded[y:y + p, x:x + p]), (y, x)
            n += len(t["patches"])
        print("%d patches ok" % n)
    elif cmd == "paper":
        # train_n_test.py's visualization_attention, without its 32 extra
        # black rows, then scipy.misc.imsave's bytescale (cmin 0: the black
        # rows made the minimum 0).
        image = read_pnm(sys.argv[2])
        (meta, t), = list(read(stdin))
        p = int(meta["patch"])
        data = t["patches"].astype(np.float32) / np.float32(255)
        a = t["attention"][0]
        a = a / np.max(a)
        y0, x0 = int(meta["crop_y"]), int(meta["crop_x"])
        canvas = np.zeros((int(meta["crop_height"]), int(meta["crop_width"]), data.shape[3]))
        for patch, w, (y, x) in zip(data, a, t["coords"]):
            canvas[y - y0:y - y0 + p, x - x0:x - x0 + p] = patch * w
        out = ((canvas - 0) * (255.0 / canvas.max())).clip(0, 255) + 0.5
        out = out.astype(np.uint8)
        assert out.shape == image.shape, (out.shape, image.shape)
        diff = np.abs(out.astype(int) - image.astype(int))
        print("max difference %d over %d values" % (diff.max(), diff.size))
        assert diff.max() == 0
    elif cmd == "heat":
        # Per pixel, the mean of the min-max normalized attention of the
        # patches over it (summed in patch order, as stitch does), through
        # the gray map (entry floor(256 v)), blended with weight ALPHA.
        image, got = read_pnm(sys.argv[2]).astype(float), read_pnm(sys.argv[3])
        alpha = float(sys.argv[4])
        (meta, t), = list(read(stdin))
        p = int(meta["patch"])
        a = t["attention"][0].astype(float)
        v = (a - a.min()) / (a.max() - a.min())
        total = np.zeros(image.shape[:2])
        count = np.zeros(image.shape[:2])
        for w, (y, x) in zip(v, t["coords"]):
            total[y:y + p, x:x + p] += w
            count[y:y + p, x:x + p] += 1
        mean = np.where(count > 0, total / np.maximum(count, 1), 0)
        gray = np.minimum(np.floor(mean * 256), 255)[:, :, None]
        want = np.where(count[:, :, None] > 0,
                        np.floor((1 - alpha) * image + alpha * gray + 0.5), image)
        diff = np.abs(want - got)
        print("max difference %d over %d values" % (diff.max(), diff.size))
        assert diff.max() == 0
    elif cmd == "untouched":
        image, got = read_pnm(sys.argv[2]), read_pnm(sys.argv[3])
        (meta, t), = list(read(stdin))
        p = int(meta["patch"])
        covered = np.zeros(image.shape[:2], bool)
        for y, x in t["coords"]:
            covered[y:y + p, x:x + p] = True
        same = np.all(image == got, axis=2)
        assert same[~covered].all(), "an uncovered pixel changed"
        print("%d uncovered pixels kept, %d of %d covered pixels changed"
              % ((~covered).sum(), (~same[covered]).sum(), covered.sum()))
    elif cmd == "slide":
        image = read_pnm(sys.argv[2]).astype(float)
        scale, box = int(sys.argv[3]), int(sys.argv[4])
        n = records = 0
        for meta, t in read(stdin):
            p = int(meta["patch"])
            assert meta.get("part", "0") == str(records), meta.get("part")
            for patch, (y, x) in zip(t["patches"], t["coords"]):
                y, x = y // scale, x // scale
                area = image[y:y + p * box, x:x + p * box]
                want = area.reshape(p, box, p, box, 3).mean(axis=(1, 3))
                assert np.array_equal(patch, np.round(want)), (y, x)
            n += len(t["patches"])
            records += 1
        print("%d patches ok in %d records" % (n, records))
    elif cmd == "drawn":
        image, got, d = read_pnm(sys.argv[2]).astype(float), read_pnm(sys.argv[3]), int(sys.argv[4])
        (meta, t), = list(read(stdin))
        side = int(meta["patch"]) * float(meta.get("downsample", "1"))
        h, w = -(-image.shape[0] // d), -(-image.shape[1] // d)
        assert got.shape == (h, w, 3), got.shape
        padded = np.full((h * d, w * d, 3), 255.0)
        padded[:image.shape[0], :image.shape[1]] = image
        want = np.round(padded.reshape(h, d, w, d, 3).mean(axis=(1, 3)))
        covered = np.zeros((h, w), bool)
        for y, x in t["coords"]:
            covered[y // d:-(-int(y + side) // d), x // d:-(-int(x + side) // d)] = True
        same = np.all(want == got, axis=2)
        print("%d of %d pixels of no patch are the image's means; %d covered"
              % (same[~covered].sum(), (~covered).sum(), covered.sum()))
        assert same[~covered].all() and covered.any() and not same[covered].all()
    elif cmd == "clam":
        # CLAM_SB's forward in NumPy, float64, from the model file's weights
        (_, w), = list(read(open(sys.argv[2], "rb")))
        w = {k: v.astype(np.float64) for k, v in w.items()}
        lin = lambda x, name: x @ w[name + ".weight"].T + w[name + ".bias"]   # noqa: E731
        worst, n = 0.0, 0
        for meta, t in read(stdin):
            h = np.maximum(lin(t["features"].astype(np.float64), "attention_net.0"), 0)
            if "attention_net.3.attention_a.0.weight" in w:
                g = np.tanh(lin(h, "attention_net.3.attention_a.0")) / \
                    (1 + np.exp(-lin(h, "attention_net.3.attention_b.0")))
                s_ = lin(g, "attention_net.3.attention_c")
            else:
                s_ = lin(np.tanh(lin(h, "attention_net.3.module.0")), "attention_net.3.module.2")
            a = np.exp(s_[:, 0] - s_.max())
            a /= a.sum()
            m = a @ h
            z = lin(m, "classifiers")
            p = np.array([1 / (1 + np.exp(z[0])), 1 / (1 + np.exp(-z[0]))]) if len(z) == 1 \
                else np.exp(z - z.max()) / np.exp(z - z.max()).sum()
            for got, want in ((t["attention"][0], a), (t["embedding"][0], m), (t["prob"], p)):
                worst = max(worst, np.abs(got - want).max() / np.abs(want).max())
            assert int(meta["predicted"]) == (int(p[1] >= 0.5) if len(z) == 1 else int(p.argmax()))
            n += 1
        print("%d bags: attention, embedding and prob within %.1e of NumPy" % (n, worst))
        assert n > 0 and worst < 1e-5
    elif cmd == "tissue":
        # HSV saturation on 0..255, rounded, as bagify's rule has it
        rgb = read_pnm(sys.argv[2]).astype(int)
        hi, lo = rgb.max(axis=2), rgb.min(axis=2)
        sat = np.where(hi == 0, 0, (255 * (hi - lo) + hi // 2) // np.maximum(hi, 1))
        tissue = sat > 26
        (meta, t), = list(read(stdin))
        p, stride = int(meta["patch"]), int(meta["stride"])
        y0, x0 = int(meta["crop_y"]), int(meta["crop_x"])
        rows, cols = int(meta["crop_height"]) // stride, int(meta["crop_width"]) // stride
        kept = {(int(y), int(x)) for y, x in t["coords"]}
        fraction = {(y0 + r * stride, x0 + c * stride):
                    tissue[y0 + r * stride:y0 + r * stride + p,
                           x0 + c * stride:x0 + c * stride + p].mean()
                    for r in range(rows) for c in range(cols)}
        assert kept <= set(fraction)
        mean = np.mean([fraction[k] for k in kept])
        full = [k for k, f in fraction.items() if f >= 0.75]
        missed = sum(k not in kept for k in full)
        glass = sum(f == 0 for k, f in fraction.items() if k in kept)
        print("%d kept, %.2f tissue on average; %d of %d patches of 3/4 tissue "
              "or more missed; %d kept of pure glass" % (len(kept), mean, missed,
                                                          len(full), glass))
        assert mean >= 0.75 and missed <= len(full) // 50 and glass == 0
    elif cmd == "legend":
        # the box is the pixels that differ, and must be white all round
        # (draw with -a 1: no jet colour is white); 16 font pixels high
        picture, plain = read_pnm(sys.argv[2]), read_pnm(sys.argv[3])
        ys, xs = np.nonzero(np.any(picture != plain, axis=2))
        top, left = ys.min(), xs.min()
        box = picture[top:ys.max() + 1, left:xs.max() + 1]
        height, width = box.shape[:2]
        border = np.concatenate([box[0], box[-1], box[:, 0], box[:, -1]])
        assert (border == 255).all() and height % 16 == 0, (height, width)
        s = height // 16
        # the 3x5 font of common/legend.c, read back from the label row
        # (9 s to 14 s), one glyph every 4 s: the left label from 2 s, the
        # right one back from width - 2 s, each up to the first blank cell
        font = dict(zip("0123456789.-e+", (
            0o75557, 0o26227, 0o71747, 0o71717, 0o55711, 0o74717, 0o74757, 0o71111,
            0o75757, 0o75717, 0o00002, 0o00700, 0o07747, 0o02720)))
        glyph_of = {bits: c for c, bits in font.items()}
        def glyph(x):
            bits = 0
            for row in range(5):
                for col in range(3):
                    px = box[9 * s + row * s + s // 2, x + col * s + s // 2]
                    bits = bits << 1 | int((px == 0).all())
            return bits
        lo, hi = "", ""
        x = 2 * s
        while x + 3 * s <= width - 2 * s and glyph(x):
            lo += glyph_of[glyph(x)]
            x += 4 * s
        x = width - 5 * s
        while x >= 2 * s and glyph(x):
            hi = glyph_of[glyph(x)] + hi
            x -= 4 * s
        print("box %d %d %d %d" % (left, top, width, height))
        print("labels %s %s" % (lo, hi))
    else:
        sys.exit("unknown command " + cmd)


if __name__ == "__main__":
    main()
