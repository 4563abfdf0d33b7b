"""bench/torch_step.py PATCHES CHANNELS THREADS SECONDS: PyTorch's side of
bench/train.sh: the paper's model (tests/torch/fixture.py's Attention, L 500,
D 128), one training step (forward, the paper's loss, backward, Adam) and
one inference, on a bag of random patches.  Prints "train_ms infer_ms"."""
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "torch"))
from fixture import Attention  # noqa: E402


def timed(fn, seconds):
    for _ in range(2):
        fn()
    reps, start = 0, time.perf_counter()
    while reps < 3 or time.perf_counter() - start < seconds:
        fn()
        reps += 1
    return (time.perf_counter() - start) / reps * 1e3


def main():
    n, channels, threads, seconds = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    model = Attention()
    if channels != 3:
        model.feature_extractor_part1[0] = torch.nn.Conv2d(channels, 20, kernel_size=5)
    x = torch.randint(0, 256, (1, n, channels, 28, 28), dtype=torch.uint8).float().div(255)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.999), weight_decay=1e-4)

    def step():
        opt.zero_grad()
        logits, _, _ = model(x)
        p = torch.clamp(torch.sigmoid(logits[0, 0]), min=1e-5, max=1. - 1e-5)
        (-torch.log(p)).backward()
        opt.step()

    def infer():
        with torch.no_grad():
            model(x)

    print("%.3f %.3f" % (timed(step, seconds), timed(infer, seconds)))


if __name__ == "__main__":
    main()
