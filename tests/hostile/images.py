#!/usr/bin/env python3
"""Writes hostile images into the folder given: files of a few dozen bytes
whose headers claim hundreds of megabytes of pixels.  Each must be refused
as truncated before the pixels are allocated or decoded.

bomb.png (69 B): 16384x16384 RGB, an IDAT of 11 bytes (deflate cannot give
more than 1032 bytes out per byte in: 805 MB of rows cannot come from it).
bomb.pam (73 B): 16384x16384x3 with 3 bytes of raster.
bomb.bmp (350 B): 24x9306132 at 24 bits with 296 bytes of pixels (stb_image
decoded it, 657 MB, before bagify found it taller than wide).
bomb.tga (48 B): 65535x4096 run-length RGB from 30 bytes (a packet of 1 + 3
bytes gives at most 128 pixels); stb_image filled the rest with zeros.
raw.tga (48 B): 4096x4096 uncompressed RGB from 30 bytes.
"""
import struct
import sys
import zlib


def chunk(kind, body):
    return (struct.pack(">I", len(body)) + kind + body +
            struct.pack(">I", zlib.crc32(kind + body) & 0xffffffff))


def main(folder):
    ihdr = struct.pack(">IIBBBBB", 16384, 16384, 8, 2, 0, 0, 0)
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) +
           chunk(b"IDAT", zlib.compress(b"\0" * 16)[:11]) + chunk(b"IEND", b""))
    pam = (b"P7\nWIDTH 16384\nHEIGHT 16384\nDEPTH 3\nMAXVAL 255\n"
           b"TUPLTYPE RGB\nENDHDR\n")
    pam += b"\0" * (73 - len(pam))
    pixels = b"\x80" * 296
    bmp = (b"BM" + struct.pack("<IHHI", 54 + len(pixels), 0, 0, 54) +
           struct.pack("<IiiHHIIiiII", 40, 24, 9306132, 1, 24, 0, len(pixels),
                       2835, 2835, 0, 0) + pixels)
    tga = struct.pack("<BBBHHBHHHHBB", 0, 0, 10, 0, 0, 0, 0, 0, 65535, 4096, 24, 0)
    tga += b"\xff\x10\x20\x30" * 7 + b"\0\0"
    raw = struct.pack("<BBBHHBHHHHBB", 0, 0, 2, 0, 0, 0, 0, 0, 4096, 4096, 24, 0)
    raw += b"\x40" * 30
    for name, data in [("bomb.png", png), ("bomb.pam", pam), ("bomb.bmp", bmp),
                       ("bomb.tga", tga), ("raw.tga", raw)]:
        with open(f"{folder}/{name}", "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main(sys.argv[1])
