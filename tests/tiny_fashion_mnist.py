#!/usr/bin/env python3
"""Writes a tiny Fashion-MNIST-shaped dataset (uncompressed IDX files with the Fashion-MNIST names)
into DIR for end-to-end tests of wcmi reproduce / demo: 200 training and 60 test images of 28x28,
class y a bright band at rows 2y..2y+5 plus noise, labels cycling 0..9.
Usage: tiny_fashion_mnist.py DIR"""
import os
import random
import struct
import sys


def write(d, prefix, n, rng):
    imgs, labs = bytearray(), bytearray()
    for i in range(n):
        y = i % 10
        for r in range(28):
            for _ in range(28):
                v = 200 if 2 * y <= r < 2 * y + 6 else 0
                imgs.append(min(255, v + rng.randrange(40)))
        labs.append(y)
    with open(os.path.join(d, prefix + '-images-idx3-ubyte'), 'wb') as f:
        f.write(struct.pack('>IIII', 0x803, n, 28, 28) + imgs)
    with open(os.path.join(d, prefix + '-labels-idx1-ubyte'), 'wb') as f:
        f.write(struct.pack('>II', 0x801, n) + labs)


def main():
    d = sys.argv[1]
    os.makedirs(d, exist_ok=True)
    rng = random.Random(7)
    write(d, 'train', 200, rng)
    write(d, 't10k', 60, rng)


if __name__ == '__main__':
    main()
