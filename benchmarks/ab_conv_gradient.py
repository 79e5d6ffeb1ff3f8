"""Per-shape timing of a convolution's input gradient: TensorFlow's ``Conv2DBackpropInput``
against the forward convolution with the flipped kernel (`lucid_ifv.conv_gradient`).

    OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=1 python benchmarks/ab_conv_gradient.py [--reps 10]

For each shape (batch, size, input channels, output channels, kernel; stride 1, SAME) of the
shipped models' and InceptionV1's convolutions: both compiled, the best of 3 runs of
``--reps`` calls each, and the largest relative difference of the two results. Prints a
Markdown table (docs/performance.md quotes it). Timings are ratios side by side; no thresholds.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

#: (batch, size, input channels, output channels, kernel)
SHAPES = [(16, 32, 3, 32, 3), (16, 32, 32, 32, 3), (16, 16, 32, 64, 3), (16, 16, 64, 64, 3),
          (1, 32, 32, 32, 3), (1, 16, 64, 64, 3), (8, 28, 96, 128, 3), (8, 28, 16, 32, 5), (8, 56, 64, 192, 3)]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=10)
    args = parser.parse_args(argv)

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(2)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    rng = np.random.default_rng(0)
    print("| batch, size, in, out, kernel | Conv2DBackpropInput ms | forward conv ms | conv / backprop | max rel. diff |")
    print("|---|---|---|---|---|")
    for batch, size, cin, cout, kernel in SHAPES:
        w = tf.constant(rng.normal(size=(kernel, kernel, cin, cout)).astype(np.float32))
        g = tf.constant(rng.normal(size=(batch, size, size, cout)).astype(np.float32))
        flipped = tf.transpose(tf.reverse(w, [0, 1]), [0, 1, 3, 2])
        own = tf.function(lambda g: tf.nn.conv2d_transpose(g, w, [batch, size, size, cin], 1, "SAME"))  # noqa: B023
        conv = tf.function(lambda g: tf.nn.conv2d(g, flipped, 1, "SAME"))  # noqa: B023
        a, b = own(g).numpy(), conv(g).numpy()
        best = {}
        for name, fn in (("own", own), ("conv", conv)):
            runs = []
            for _ in range(3):
                start = time.perf_counter()
                for _ in range(args.reps):
                    fn(g).numpy()
                runs.append((time.perf_counter() - start) / args.reps * 1e3)
            best[name] = min(runs)
        print(f"| {batch}, {size}, {cin}, {cout}, {kernel} | {best['own']:.2f} | {best['conv']:.2f} | "
              f"{best['conv'] / best['own']:.2f} | {np.abs(a - b).max() / np.abs(a).max():.1e} |")


if __name__ == "__main__":
    main()
