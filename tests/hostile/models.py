#!/usr/bin/env python3
"""Writes hostile model files into the folder given: small safetensors
documents whose headers ask for more than they hold.  Loading any of them
must fail with a message, never write outside what was allocated and never
allocate what the data cannot back.

overflow.safetensors (6.5 KB): an A-MIL state_dict without metadata whose
sizes come from the shapes of empty tensors.  hidden H = 44987186551 and
branches B = 4930030700320910 are chosen so that H * B wraps in int64 to 2,
the classifier's width; cut to int they become 2037513591 and 949999758,
and with attention 1639249750 and 7 classes the model's parameter count
wraps in size_t to 456.  A loader that trusted them allocated 456 floats and
copied the 1500 of conv1 into them (the search for these numbers solves
the wrap equations; it is not needed to use the file).

huge.safetensors (6.4 KB): metadata and shapes agree on 4096x4096
patches, 16 hidden and 2^20 attention units, with no data behind the large
tensors: a loader that allocated before checking them asked for 3.4 GB.

vgg19.safetensors (33 KB): the last layer of a VGG19 and nothing else: a
loader that allocated before checking asked for 575 MB.
"""
import json
import struct
import sys


def write(path, tensors, metadata=None):
    header, data = {}, b""
    if metadata:
        header["__metadata__"] = metadata
    for name, shape, payload in tensors:
        header[name] = {"dtype": "F32", "shape": shape,
                        "data_offsets": [len(data), len(data) + len(payload)]}
        data += payload
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data)


def main(folder):
    write(f"{folder}/overflow.safetensors", [
        ("feature_extractor_part1.0.weight", [20, 3, 5, 5], b"\x41" * 6000),
        ("feature_extractor_part2.0.weight", [44987186551, 0], b""),
        ("attention.0.weight", [1639249750, 0], b""),
        ("attention.2.weight", [4930030700320910, 0], b""),
        ("classifier.0.weight", [7, 2], bytes(7 * 2 * 4)),
    ])
    write(f"{folder}/huge.safetensors", [
        ("feature_extractor_part1.0.weight", [20, 3, 5, 5], bytes(6000)),
        ("feature_extractor_part2.0.weight", [16, 0], b""),
        ("attention.0.weight", [1 << 20, 0], b""),
        ("attention.2.weight", [1, 0], b""),
        ("classifier.0.weight", [1, 16], bytes(16 * 4)),
    ], {"kind": "model", "arch": "amil", "patch": "4096", "hidden": "16",
        "attention": str(1 << 20), "classes": "2", "branches": "1"})
    write(f"{folder}/vgg19.safetensors", [
        ("classifier.6.weight", [2, 4096], bytes(2 * 4096 * 4)),
    ], {"kind": "model", "arch": "vgg19", "classes": "2"})


if __name__ == "__main__":
    main(sys.argv[1])
