#!/usr/bin/env python3
"""Writes a whole-slide image whose header claims far more pixels than its
bytes hold: a tiled RGB TIFF (OpenSlide reads it as generic-tiff) of
WIDTH x HEIGHT whose tiles all point at one 256 x 256 tile of the colour
(200, 120, 160), uncompressed: 2,400,000 x 64 pixels in 300 KB, 40,000,000
x 512 in 2.7 MB.  bagify must read it in bounded memory (slide.bats).

    slides.py PATH WIDTH HEIGHT
"""
import struct
import sys


def main(path, width, height, side=256):
    tiles = ((width + side - 1) // side) * ((height + side - 1) // side)
    tile = bytes([200, 120, 160]) * (side * side)
    # (tag, type, count, value): 3 SHORT, 4 LONG; arrays after the IFD
    entries = 11
    bits_at = 8 + 2 + entries * 12 + 4
    offsets_at = bits_at + 8
    counts_at = offsets_at + 4 * tiles
    tile_at = counts_at + 4 * tiles
    fields = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 3, bits_at),
              (259, 3, 1, 1), (262, 3, 1, 2), (277, 3, 1, 3), (284, 3, 1, 1),
              (322, 3, 1, side), (323, 3, 1, side), (324, 4, tiles, offsets_at),
              (325, 4, tiles, counts_at)]
    out = bytearray(b"II*\0" + struct.pack("<I", 8) + struct.pack("<H", entries))
    for tag, kind, count, value in fields:
        if kind == 3 and count == 1:
            out += struct.pack("<HHIHH", tag, kind, count, value, 0)
        else:
            out += struct.pack("<HHII", tag, kind, count, value)
    out += struct.pack("<I", 0) + struct.pack("<4H", 8, 8, 8, 0)
    out += struct.pack("<%dI" % tiles, *([tile_at] * tiles))
    out += struct.pack("<%dI" % tiles, *([len(tile)] * tiles))
    out += tile
    with open(path, "wb") as f:
        f.write(out)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
