"""Every bad input: a clear one-line error, before any work (issue 10, docs/reliability.md).

A table-driven catalogue. Each case is a command line or a Python API call with a bad
input, and the fragment its message must contain. For every case:

* the command exits with status 2 (the API raises a `ValueError`), and the message is one
  line (``error: ...`` on stderr for the CLI), without a traceback;
* nothing silently succeeds: a case that ran (exit 0) would fail here;
* ``stage="args"`` cases need no model, so they must be refused before TensorFlow is even
  imported: they run together in one fresh interpreter that reports, after each case,
  whether ``tensorflow`` is in ``sys.modules`` (no timing, which a loaded machine blurs);
* ``stage="model"`` cases need the model (channel count, image size...): they run
  in-process, after the model loads and before any rendering or inversion.

A few cases also run as real ``python -m lucid_ifv.cli`` processes to check the exit status
and the whole of stderr as a user sees it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
MNIST = ["--model", "mnist_small"]  # 28x28 grey, layer conv2 with 32 channels


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    argv: tuple  # "{d}" is the folder of bad files, "{o}" a fresh output folder
    fragment: str
    stage: str = "args"  # "args": refused before TensorFlow is imported; "model": once the model is loaded


def C(id, argv, fragment, stage="args"):
    return Case(id, tuple(argv.split()) if isinstance(argv, str) else tuple(argv), fragment, stage)


CLI_CASES = [
    # -- numbers -------------------------------------------------------------------------
    C("render --channel -1", "render --channel -1 --out {o}", "--channel must be an integer >= 0, got -1"),
    C("render --batch 0", "render --batch 0 --out {o}", "--batch must be an integer >= 1, got 0"),
    C("render --batch -3", "render --batch -3 --out {o}", "--batch must be an integer >= 1, got -3"),
    C("render --adam 0", "render --adam 0 --out {o}", "--adam must be an integer >= 1, got 0"),
    C("render --lbfgs -1", "render --lbfgs -1 --out {o}", "--lbfgs must be an integer >= 0, got -1"),
    C("render --seed -1", "render --seed -1 --out {o}", "--seed must be an integer >= 0, got -1"),
    C("render --prior -1e-4", "render --prior -1e-4 --out {o}", "--prior must be a finite number >= 0, got -0.0001"),
    C("render --prior nan", "render --prior nan --out {o}", "--prior must be a finite number >= 0, got nan"),
    C("render --prior inf", "render --prior inf --out {o}", "--prior must be a finite number >= 0, got inf"),
    C("render --prior -inf", "render --prior -inf --out {o}", "--prior must be a finite number >= 0, got -inf"),
    C("render --converge 0", "render --converge 0 --out {o}", "--converge must be a finite number > 0, got 0.0"),
    C("render --converge -1e-3", "render --converge -1e-3 --out {o}", "--converge must be a finite number > 0"),
    C("render --converge nan", "render --converge nan --out {o}", "--converge must be a finite number > 0, got nan"),
    C("render --converge soon", "render --converge soon --out {o}",
      "argument --converge: expected a tolerance (e.g. 1e-3) or 'off', got 'soon'"),
    C("render --float32 and --float64-converge", "render --smooth --float32 --float64-converge 1e-8 --out {o}",
      "--float32 and --float64-converge contradict each other: give one"),
    C("render --float32 without --smooth", "render --float32 --out {o}",
      "--float32 has no effect without --smooth (it turns off smooth mode's float64 continuation)"),
    C("experiment --smooth --converge off --float64-converge", "experiment --smooth --converge off "
      "--float64-converge 1e-8 --out {o}", "float64_converge continues converged realizations, each sample alone"),
    C("render --max-lbfgs < --lbfgs", "render --converge 1e-3 --lbfgs 50 --max-lbfgs 10 --out {o}",
      "--max-lbfgs must be >= --lbfgs when converging, got 10 and 50"),
    C("render --max-lbfgs 0", "render --max-lbfgs 0 --out {o}", "--max-lbfgs must be an integer >= 1, got 0"),
    C("render --cossim-pow -1", "render --cossim-pow -1 --out {o}", "--cossim-pow must be a finite number >= 0"),
    C("render --decay-power nan", "render --decay-power nan --out {o}", "--decay-power must be a finite number >= 0"),
    C("render --smooth --relu-beta 0", "render --smooth --relu-beta 0 --out {o}",
      "--relu-beta must be a finite number > 0, got 0.0"),
    C("render --pool-temperature -0.1", "render --pool-temperature -0.1 --out {o}",
      "--pool-temperature must be a finite number > 0"),
    C("invert --prior -1", "invert --prior -1 --images {d}/grey28.png", "--prior must be a finite number >= 0, got -1.0"),
    C("invert --prior nan", "invert --prior nan --images {d}/grey28.png", "--prior must be a finite number >= 0, got nan"),
    C("invert --prior -1e-4", "invert --prior -1e-4 --images {d}/grey28.png", "--prior must be a finite number >= 0"),
    C("experiment --prior nan", "experiment --prior nan --out {o}", "prior_weight must be a finite number >= 0, got nan"),
    C("experiment --adam 0", "experiment --adam 0 --out {o}", "adam_steps must be an integer >= 1, got 0"),
    C("experiment --batch-size 0", "experiment --batch-size 0 --out {o}", "batch_size must be an integer >= 1, got 0"),
    C("experiment --n-hoyer -1", "experiment --n-hoyer -1 --out {o}", "n_hoyer must be an integer >= 0, got -1"),
    C("experiment --features -1 3", "experiment --features -1 3 --out {o}", "features must be channel indices >= 0, got [-1]"),
    C("experiment --warmup -5", "experiment --warmup -5 --out {o}", "warmup_steps must be an integer >= 0, got -5"),
    C("compare --prior nan", "compare --permuted 0 --prior nan --out {o}", "--prior must be a finite number >= 0, got nan"),
    C("compare --permuted -1", "compare --permuted -1 --out {o}", "--permuted must be an integer >= 0, got -1"),
    C("compare --batch-size 0", "compare --permuted 0 --batch-size 0 --out {o}", "--batch-size must be an integer >= 1"),
    C("compare --retries -1", "compare --permuted 0 --retries -1 --out {o}", "--retries must be an integer >= 0, got -1"),
    C("fidelity --betas 0", "fidelity --betas 10 0", "--betas must be finite numbers > 0, got 0.0"),
    C("fidelity --n 1", "fidelity --n 1", "--n must be an integer >= 2"),
    C("fidelity --min-median 2", "fidelity --min-median 2", "--min-median must be a number in (0, 1], got 2.0"),
    C("fidelity --images <none>", "fidelity --images {d}/no_such_file.png", "no image file at"),
    C("demo --n 0", "demo --n 0 --out {o}", "--n must be an integer >= 1, got 0"),
    C("demo --prior -1e-4", "demo --prior -1e-4 --out {o}", "--prior must be a finite number >= 0, got -0.0001"),
    C("critical --eps-lo 0", "critical --run {d} --eps-lo 0", "--eps-lo must be a finite number > 0, got 0.0"),
    C("critical --eps-lo > --eps-hi", "critical --run {d} --eps-lo 0.5 --eps-hi 0.1", "--eps-lo must be below --eps-hi"),
    C("critical --max-angle 120", "critical --run {d} --max-angle 120", "--max-angle must be an angle in (0, 90]"),
    # -- argparse, in one line ---------------------------------------------------------------
    C("render --adam abc", "render --adam abc --out {o}", "argument --adam: invalid int value: 'abc'"),
    C("render --prior (no value)", "render --out {o} --prior", "argument --prior: expected one argument"),
    C("render --param xyz", "render --param xyz --out {o}", "argument --param: invalid choice: 'xyz'"),
    C("render without --out", "render", "the following arguments are required: --out"),
    C("render --channel with --targets", "render --channel 1 --targets {d}/t5.npy --out {o}",
      "argument --targets: not allowed with argument --channel"),
    C("unknown subcommand", "paint", "argument command: invalid choice: 'paint'"),
    C("unknown option", "models --bogus", "unrecognized arguments: --bogus"),
    # -- models and folders given as arguments -----------------------------------------------
    C("render --model nope", "render --model nope --out {o}", "unknown model 'nope': expected one of"),
    C("render --model <folder>", "render --model {d} --out {o}", "is a folder; expected a shipped model name"),
    C("render --model <empty .pb>", "render --model {d}/empty.pb --out {o}", "empty.pb is empty (0 bytes)"),
    C("compare --model-b nope", "compare --model-b nope --out {o}", "unknown model 'nope'"),
    C("compare --model-b and --permuted", "compare --model-b mnist_small --permuted 0 --out {o}",
      "give --model-b or --permuted, not both"),
    C("compare without B", "compare --out {o}", "give --model-b (another network) or --permuted SEED"),
    C("compare --baseline on a .pb", "compare --model {d}/junk.pb --permuted 0 --baseline --out {o}",
      "--baseline needs a shipped --model"),
    C("invert --trivial <not .npy>", "invert --images {d}/grey28.png --trivial {d}/ok.npz",
      "--trivial {d}/ok.npz: expected a .npy file name"),
    C("invert --trivial <missing>", "invert --images {d}/grey28.png --trivial {d}/nothing.npy",
      "no --trivial file at {d}/nothing.npy"),
    C("invert --trivial <not orthonormal>", "invert --images {d}/grey28.png --trivial {d}/trivial_skew.npy",
      "columns are not orthonormal"),
    C("invert --trivial <no direction>", "invert --images {d}/grey28.png --trivial {d}/trivial_none.npy",
      "no trivial direction; omit --trivial instead"),
    C("critical --save <not .npy>", "critical --run {d}/badrun --save {d}/x.json", "--save {d}/x.json: expected a .npy file name"),
    C("critical --run <missing>", "critical --run {d}/nothing", "no experiment folder at"),
    C("critical --run <file>", "critical --run {d}/grey28.png", "is a file; expected the --out folder"),
    C("critical --run <no settings>", "critical --run {d}/emptydir", "has no settings.json"),
    C("critical --run <corrupt settings>", "critical --run {d}/badsettings", "is not a valid settings file"),
    C("critical --run <corrupt batch>", "critical --run {d}/badrun", "batch_0000.npz is truncated or corrupt"),
    # -- --out ---------------------------------------------------------------------------------
    C("render --out <a file>", "render --out {d}/grey28.png", "cannot use {d}/grey28.png as the output folder: it is a file"),
    C("render --out <under a file>", "render --out {d}/grey28.png/sub",
      "cannot write the output folder {d}/grey28.png/sub: Not a directory"),
    C("experiment --out <a file>", "experiment --out {d}/grey28.png",
      "cannot use {d}/grey28.png as the experiment folder: it is a file"),
    C("demo --out <a file>", "demo --out {d}/grey28.png", "as the output folder: it is a file"),
    C("compare --out <a file>", "compare --permuted 0 --out {d}/grey28.png", "as the output folder: it is a file"),
    C("invert --out <a folder>", "invert --images {d}/grey28.png --out {d}", "as the output file: it is a folder"),
    C("invert --out <under a file>", "invert --images {d}/grey28.png --out {d}/grey28.png/x.json",
      "it is a file"),
    # -- --targets files -----------------------------------------------------------------------
    C("--targets <missing>", "render --targets {d}/nothing.npy --out {o}", "no targets file at {d}/nothing.npy"),
    C("--targets <folder>", "render --targets {d}/emptydir --out {o}", "emptydir is a folder, not a file"),
    C("--targets <empty>", "render --targets {d}/empty.npy --out {o}", "empty.npy is empty (0 bytes)"),
    C("--targets <pickled>", "render --targets {d}/pickled.npy --out {o}", "holds Python objects (pickled data)"),
    C("--targets <truncated>", "render --targets {d}/truncated.npy --out {o}", "truncated.npy is truncated or corrupt"),
    C("--targets <not .npy>", "render --targets {d}/text.npy --out {o}", "is not a .npy file (no NumPy header)"),
    C("--targets <NaN>", "render --targets {d}/nan_targets.npy --out {o}", "non-finite value(s)"),
    C("--targets <a zero row>", "render --targets {d}/zero_targets.npy --out {o}", "every target must be non-zero"),
    C("--targets <3-D>", "render --targets {d}/targets3d.npy --out {o}", "expected [k] or [B, k]"),
    C("--targets <strings>", "render --targets {d}/strings.npy --out {o}", "holds <U1 values; expected a numeric"),
    C("--targets <.npz without targets>", "render --targets {d}/ok.npz --out {o}", "ok.npz has no 'targets' array (has ['images'])"),
    # -- --images files ------------------------------------------------------------------------
    C("--images <missing>", "invert --images {d}/nothing.png", "no image file at {d}/nothing.png"),
    C("--images <folder>", "invert --images {d}/emptydir", "emptydir is a folder, not a file"),
    C("--images <empty PNG>", "invert --images {d}/empty.png", "empty.png is empty (0 bytes)"),
    C("--images <truncated PNG>", "invert --images {d}/truncated.png", "cannot decode the image {d}/truncated.png"),
    C("--images <corrupt PNG data>", "invert --images {d}/corrupt.png", "cannot decode the image {d}/corrupt.png"),
    C("--images <text named .png>", "invert --images {d}/text.png", "is not a PNG file (no PNG signature)"),
    C("--images <huge PNG header>", "invert --images {d}/huge.png", "images larger than 16777216 pixels are refused"),
    C("--images <RGBA, transparent>", "invert --images {d}/rgba.png", "transparent images are refused, not composited"),
    C("--images <grey+alpha, transparent>", "invert --images {d}/la.png", "transparent pixel(s)"),
    C("--images <palette, transparent>", "invert --images {d}/palette.png", "transparent pixel(s)"),
    C("--images <empty .npz>", "invert --images {d}/empty.npz", "empty.npz is empty (0 bytes)"),
    C("--images <truncated .npz>", "invert --images {d}/truncated.npz", "truncated.npz is truncated or corrupt"),
    C("--images <.npz, bad CRC>", "invert --images {d}/badcrc.npz", "badcrc.npz is truncated or corrupt"),
    C("--images <.npz without images>", "invert --images {d}/no_images.npz", "has no 'images' array (has ['targets'])"),
    C("--images <pickled .npz>", "invert --images {d}/pickled.npz", "holds Python objects (pickled data)"),
    C("--images <strings .npy>", "invert --images {d}/strings.npy", "holds <U1 values; expected a numeric"),
    C("--images <values above 1>", "invert --images {d}/bright.npy", "image values must be in [0, 1], got [0, 2]"),
    C("--images <uint8 .npy>", "invert --images {d}/uint8.npy", "image values must be in [0, 1], got [0, 255]"),
    C("--images <NaN>", "invert --images {d}/nan_images.npy", "non-finite value(s)"),
    C("--images <4 channels>", "invert --images {d}/four.npy", "have 4 channels; expected 1 (greyscale) or 3 (RGB)"),
    C("--images <2-D array>", "invert --images {d}/flat.npy", "expected an image [H, W, C] or a batch [B, H, W, C]"),
    C("--images <no images>", "invert --images {d}/none.npy", "holds no images"),
    # -- empty values, repeated features, options that would be ignored ----------------------
    C("render --out ''", ["render", "--out", ""], "--out is empty ('')"),
    C("render --layer ''", ["render", "--layer", "", "--out", "{o}"], "--layer is empty ('')"),
    C("invert --images ''", ["invert", "--images", ""], "--images is empty"),
    C("experiment --features 3 3", "experiment --features 3 3 --out {o}", "features repeat [3]; expected distinct"),
    C("compare --features 1 2 1", "compare --permuted 0 --features 1 2 1 --out {o}", "--features repeat [1]"),
    C("render --relu-beta without --smooth", "render --relu-beta 5 --out {o}",
      "--relu-beta has no effect without --smooth"),
    C("render --channel with --cossim-pow", "render --channel 3 --cossim-pow 2 --out {o}",
      "--cossim-pow has no effect with --channel"),
    C("render --transforms standard --converge", "render --transforms standard --converge 1e-3 --out {o}",
      "--converge has no effect with --transforms standard"),
    C("render --targets with --batch", "render --targets {d}/t5.npy --batch 4 --out {o}",
      "--batch has no effect with --channel or --targets"),
    # -- what needs the model ------------------------------------------------------------------
    C("render --channel 32 (32 channels)", ["render", *MNIST, "--channel", "32", "--out", "{o}"],
      "--channel 32 is out of range: layer 'conv2' of mnist_small has 32 channels (valid: 0 to 31)", "model"),
    C("render --targets of length 5", ["render", *MNIST, "--targets", "{d}/t5.npy", "--out", "{o}"],
      "targets of length 5 (shape (1, 5)) for layer 'conv2' of mnist_small, which has 32 channels", "model"),
    C("render --layer conv9", ["render", *MNIST, "--layer", "conv9", "--out", "{o}"], "unknown layer 'conv9'", "model"),
    C("render --model <not a GraphDef>", ["render", "--model", "{d}/junk.pb", "--out", "{o}"],
      "is not a valid GraphDef", "model"),
    C("invert colour PNG, grey model", ["invert", *MNIST, "--images", "{d}/colour28.png"],
      "colour28.png is a colour image (its R, G and B differ) but the model takes greyscale", "model"),
    C("invert colour .npy, grey model", ["invert", *MNIST, "--images", "{d}/colour28.npy"],
      "colour28.npy is a colour image", "model"),
    C("invert PNG of the wrong size", ["invert", *MNIST, "--images", "{d}/grey32.png"],
      "the images are 32x32 pixels but model mnist_small takes 28x28", "model"),
    C("invert .npz targets of the wrong length", ["invert", *MNIST, "--images", "{d}/targets_k5.npz"],
      "'targets' has shape (2, 5); expected [2, 32]", "model"),
    C("invert .npz with more targets than images", ["invert", *MNIST, "--images", "{d}/targets_n3.npz"],
      "'targets' has shape (3, 32); expected [2, 32]", "model"),
    C("invert --trivial of the wrong length", ["invert", *MNIST, "--images", "{d}/grey28.png", "--trivial", "{d}/trivial_k5.npy"],
      "--trivial {d}/trivial_k5.npy has shape (5, 1); expected [32, r] with 1 <= r < 32", "model"),
    C("experiment --features 99", ["experiment", *MNIST, "--features", "99", "--out", "{o}"],
      "features of layer 'conv2' [99] out of range: the layer has 32 channels (valid: 0 to 31)", "model"),
    C("render --mask one on an image model", ["render", *MNIST, "--mask", "one", "--out", "{o}"],
      "mask='one' is for geometry-image models (their hit mask); model 'mnist_small' takes images", "model"),
    C("experiment --mask one on an image model", ["experiment", *MNIST, "--mask", "one", "--out", "{o}"],
      "mask='one' is for geometry-image models", "model"),
    C("render --layer input (the placeholder)", ["render", *MNIST, "--layer", "input", "--out", "{o}"],
      "layer 'input' of model 'mnist_small' is not computed from the input image", "model"),
    C("compare networks of different inputs", ["compare", *MNIST, "--model-b", "inception_small", "--out", "{o}"],
      "the networks take different inputs", "model"),
]


# -- the bad files ---------------------------------------------------------------------------
def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def make_bad_files(d: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    grey = (rng.random((28, 28)) * 255).astype(np.uint8)
    Image.fromarray(grey, "L").save(d / "grey28.png")
    Image.fromarray((rng.random((28, 28, 3)) * 255).astype(np.uint8), "RGB").save(d / "colour28.png")
    Image.fromarray((rng.random((32, 32)) * 255).astype(np.uint8), "L").save(d / "grey32.png")
    rgba = (rng.random((28, 28, 4)) * 255).astype(np.uint8)
    Image.fromarray(rgba, "RGBA").save(d / "rgba.png")
    Image.fromarray(np.stack([grey, np.full_like(grey, 128)], -1), "LA").save(d / "la.png")
    palette = Image.fromarray(grey, "L").convert("P")
    palette.info["transparency"] = int(np.asarray(palette)[0, 0])
    palette.save(d / "palette.png", transparency=palette.info["transparency"])
    png = (d / "grey28.png").read_bytes()
    (d / "truncated.png").write_bytes(png[: len(png) // 2])
    corrupt = bytearray(png)
    start = png.index(b"IDAT") + 8
    corrupt[start : start + 16] = bytes(16)  # zeroed compressed data, CRC left stale
    (d / "corrupt.png").write_bytes(bytes(corrupt))
    (d / "text.png").write_text("this is not an image\n")
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)  # a 10-gigapixel header, no data
    (d / "huge.png").write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IEND", b""))
    for name in ("empty.png", "empty.npz", "empty.npy", "empty.pb"):
        (d / name).write_bytes(b"")
    (d / "junk.pb").write_bytes(b"\x00\xffnot a graph" * 10)
    (d / "emptydir").mkdir()
    images = rng.random((2, 28, 28, 1)).astype(np.float32)
    np.savez(d / "ok.npz", images=images)
    npz = (d / "ok.npz").read_bytes()
    (d / "truncated.npz").write_bytes(npz[: len(npz) // 2])
    badcrc = bytearray(npz)
    data_at = npz.index(b"\x93NUMPY") + 200
    badcrc[data_at] ^= 0xFF
    (d / "badcrc.npz").write_bytes(bytes(badcrc))
    np.savez(d / "no_images.npz", targets=np.ones((2, 32)))
    np.savez(d / "pickled.npz", images=np.array([{"a": 1}], dtype=object))
    np.save(d / "pickled.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(d / "t5.npy", np.ones((1, 5)))
    np.save(d / "trivial_none.npy", np.zeros((32, 0)))
    np.save(d / "trivial_skew.npy", np.ones((32, 2)))
    np.save(d / "trivial_k5.npy", np.ones((5, 1)) / np.sqrt(5))
    arr = (d / "t5.npy").read_bytes()
    (d / "truncated.npy").write_bytes(arr[: len(arr) - 8])
    (d / "text.npy").write_text("0.1 0.2 0.3\n")
    np.save(d / "nan_targets.npy", np.array([[1.0, np.nan, 0.0]]))
    np.save(d / "zero_targets.npy", np.array([[1.0, 0.0], [0.0, 0.0]]))
    np.save(d / "targets3d.npy", np.ones((1, 2, 3)))
    np.save(d / "strings.npy", np.array(["a", "b"]))
    np.save(d / "bright.npy", images * 0 + np.linspace(0, 2, 28)[None, None, :, None])
    np.save(d / "uint8.npy", (images * 255).astype(np.uint8) * 0 + np.uint8(255) * (images > 0.5))
    nan_images = images.copy()
    nan_images[0, 0, 0, 0] = np.nan
    np.save(d / "nan_images.npy", nan_images)
    np.save(d / "four.npy", rng.random((28, 28, 4)))
    np.save(d / "flat.npy", rng.random((28, 28)))
    np.save(d / "none.npy", np.zeros((0, 28, 28, 1)))
    np.save(d / "colour28.npy", rng.random((28, 28, 3)))
    np.savez(d / "targets_k5.npz", images=images, targets=np.ones((2, 5)))
    np.savez(d / "targets_n3.npz", images=images, targets=np.ones((3, 32)))
    (d / "badsettings").mkdir()
    (d / "badsettings" / "settings.json").write_text("{not json")
    (d / "badrun" / "realizations").mkdir(parents=True)
    (d / "badrun" / "settings.json").write_text(json.dumps({"config": {"cossim_pow": 1}}))
    (d / "badrun" / "realizations" / "batch_0000.npz").write_bytes(npz[: len(npz) // 3])


@pytest.fixture(scope="module")
def bad_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("bad")
    make_bad_files(d)
    return d


def expand(argv, d: Path, o: Path) -> list:
    return [a.replace("{d}", str(d)).replace("{o}", str(o)) for a in argv]


# -- running the cases -----------------------------------------------------------------------
RUNNER = r"""
import contextlib, io, json, sys, traceback
from lucid_ifv.cli import main
results = []
for argv in json.load(sys.stdin):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = main(argv)
        except SystemExit as exc:
            rc = exc.code
        except BaseException:
            rc = "exception"
            err.write(traceback.format_exc())
    results.append({"rc": rc, "stderr": err.getvalue(), "tensorflow": "tensorflow" in sys.modules})
print(json.dumps(results))
"""


def run_fresh(argvs: list) -> list:
    """Run ``main(argv)`` for each argv in one new interpreter; report each status, stderr and
    whether TensorFlow had been imported by then."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, "-c", RUNNER], input=json.dumps(argvs), capture_output=True,
                          text=True, cwd=REPO, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def run_in_process(argv, capsys) -> tuple:
    from lucid_ifv.cli import main

    capsys.readouterr()
    try:
        rc = main(argv)
    except SystemExit as exc:
        rc = exc.code
    return rc, capsys.readouterr().err


def check_one_line_error(rc, stderr: str, fragment: str) -> None:
    assert "Traceback" not in stderr, stderr
    assert rc == 2, f"exit status {rc!r} (0 would be a silently accepted bad input); stderr: {stderr!r}"
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got {lines}"
    assert lines[0].startswith("error: "), lines[0]
    assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    assert "allow_pickle" not in lines[0]


ARG_CASES = [c for c in CLI_CASES if c.stage == "args"]
MODEL_CASES = [c for c in CLI_CASES if c.stage == "model"]


@pytest.fixture(scope="module")
def fresh_results(bad_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    argvs = [expand(c.argv, bad_dir, out / f"o{i}") for i, c in enumerate(ARG_CASES)]
    return dict(zip((c.id for c in ARG_CASES), run_fresh(argvs)))


@pytest.mark.parametrize("case", ARG_CASES, ids=[c.id for c in ARG_CASES])
def test_argument_errors_come_before_tensorflow(case, fresh_results, bad_dir):
    result = fresh_results[case.id]
    fragment = case.fragment.replace("{d}", str(bad_dir))
    check_one_line_error(result["rc"], result["stderr"], fragment)
    assert not result["tensorflow"], "TensorFlow was imported before this error"


@pytest.mark.parametrize("case", MODEL_CASES, ids=[c.id for c in MODEL_CASES])
def test_model_dependent_errors_come_before_any_work(case, bad_dir, tmp_path, capsys):
    out = tmp_path / "out"
    rc, stderr = run_in_process(expand(case.argv, bad_dir, out), capsys)
    check_one_line_error(rc, stderr, case.fragment.replace("{d}", str(bad_dir)))
    if case.argv[0] == "render":  # refused before rendering: nothing written
        assert not any(out.iterdir()) if out.exists() else True


def test_nothing_is_written_after_a_refusal(bad_dir, tmp_path):
    """Refused before any work: no output folder for number errors, no result files otherwise."""
    results = run_fresh([expand(["render", "--adam", "0", "--out", "{o}"], bad_dir, tmp_path / "a"),
                         expand(["invert", "--images", "{d}/rgba.png", "--out", "{o}/x.json"], bad_dir, tmp_path / "b")])
    assert [r["rc"] for r in results] == [2, 2]
    assert not (tmp_path / "a").exists() and not (tmp_path / "b" / "x.json").exists()


@pytest.mark.parametrize("argv, fragment", [
    (["render", "--prior", "-1e-4", "--out", "{o}"], "error: --prior must be a finite number >= 0, got -0.0001"),
    (["invert", "--images", "{d}/truncated.npz"], "truncated.npz is truncated or corrupt"),
    (["render", "--adam", "abc", "--out", "{o}"], "error: argument --adam: invalid int value: 'abc'"),
    (["render", "--model", "nope", "--out", "{o}"], "error: unknown model 'nope'"),
], ids=["number", "file", "argparse", "model name"])
def test_real_process_exit_status_and_stderr(argv, fragment, bad_dir, tmp_path):
    """As a user sees it: the whole of stderr is the one line, status 2."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, "-m", "lucid_ifv.cli", *expand(argv, bad_dir, tmp_path / "o")],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    check_one_line_error(proc.returncode, proc.stderr, fragment)
    assert proc.stdout == ""


def test_real_process_after_the_model_loads(bad_dir):
    """Once TensorFlow is loaded, our line is still the only error line and the last line
    (TensorFlow's own C++ log lines, e.g. about a missing GPU driver, are not ours)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, "-m", "lucid_ifv.cli", "invert", *MNIST, "--images",
                           str(bad_dir / "colour28.png")], capture_output=True, text=True, cwd=REPO, env=env,
                          timeout=600)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert [line for line in lines if line.startswith("error:")] == [lines[-1]]
    assert "is a colour image" in lines[-1]


# -- the Python API --------------------------------------------------------------------------
def _images(n=1, shape=(16, 16, 3)):
    return np.random.default_rng(0).random((n, *shape)).astype(np.float32)


def _render(small_model, objective, batch=1):
    from lucid_ifv import param
    from lucid_ifv.render import render_vis

    return render_vis(small_model, objective, param.image(16, batch=batch), transforms=[], thresholds=(1,),
                      progress=False)


def api_cases():
    """(id, call(small_model), fragment); small_model: conv2 has 6 channels, logits 4 classes,
    16x16x3 inputs."""
    from lucid_ifv import ifv, param
    from lucid_ifv import objectives as obj
    from lucid_ifv.render import render_vis

    t6 = np.ones(6)
    return [
        ("invert: values > 1", lambda m: ifv.invert(m, "conv2", _images() * 2),
         "image values must be in [0, 1], got [0.0"),
        ("invert: negative values", lambda m: ifv.invert(m, "conv2", _images() - 0.5), "image values must be in [0, 1]"),
        ("invert: uint8 range", lambda m: ifv.invert(m, "conv2", _images() * 255), "rescale them, e.g. uint8 / 255"),
        ("invert: NaN", lambda m: ifv.invert(m, "conv2", _images() * np.nan), "non-finite value(s)"),
        ("invert: empty batch", lambda m: ifv.invert(m, "conv2", np.zeros((0, 16, 16, 3))), "hold no pixels"),
        ("invert: not numbers", lambda m: ifv.invert(m, "conv2", "picture.png"), "must be a numeric array"),
        ("invert: critical space of the wrong length", lambda m: ifv.invert(m, "conv2", _images(), critical_space=np.eye(5)),
         "critical space basis of shape (5, 5); expected [6, d] for 6 features"),
        ("channel -1", lambda m: obj.channel("conv2", -1), "channel must be an integer index >= 0, got -1"),
        ("channel 1.5", lambda m: obj.channel("conv2", 1.5), "channel must be an integer index >= 0, got 1.5"),
        ("channel 6 of 6", lambda m: _render(m, obj.channel("conv2", 6)),
         "channel 6 is out of range: layer 'conv2' has 6 channels (valid: 0 to 5)"),
        ("'conv2:-1'", lambda m: obj.as_objective("conv2:-1"), "channel must be an integer index >= 0, got -1"),
        ("'conv2:6'", lambda m: _render(m, "conv2:6"), "channel 6 is out of range"),
        ("neuron channel 7", lambda m: _render(m, obj.neuron("conv2", 7)), "channel 7 is out of range"),
        ("neuron x 50", lambda m: _render(m, obj.neuron("conv2", 0, x=50)),
         "x 50 is out of range: layer 'conv2' has 12 rows of positions"),
        ("neuron y -1", lambda m: obj.neuron("conv2", 0, y=-1), "y must be an integer index >= 0, got -1"),
        ("direction_neuron x 12", lambda m: _render(m, obj.direction_neuron("conv2", t6, x=12)), "x 12 is out of range"),
        ("class_logit 4 of 4", lambda m: _render(m, obj.class_logit("logits", 4)),
         "label 4 is out of range: layer 'logits' has 4 classes (valid: 0 to 3)"),
        ("class_logit -1", lambda m: obj.class_logit("logits", -1), "label must be an integer index >= 0, got -1"),
        ("class_logit on a conv layer", lambda m: _render(m, obj.class_logit("conv2", 0)),
         "class_logit needs a dense layer [batch, classes]"),
        ("channel batch 2 of 1", lambda m: _render(m, obj.channel("conv2", 0, batch=2)),
         "batch 2 is out of range: 'conv2' has a batch of 1"),
        ("channel batch -1", lambda m: obj.channel("conv2", 0, batch=-1), "batch must be an integer index >= 0"),
        ("feature_objective features [0, 9]", lambda m: obj.feature_objective("conv2", np.ones(2), features=[0, 9], model=m),
         "features entry 9 is out of range: layer 'conv2' has 6 channels"),
        ("feature_objective features [-1]", lambda m: obj.feature_objective("conv2", np.ones(1), features=[-1]),
         "features must be channel indices >= 0, got [-1]"),
        ("feature_objective features [3, 3]", lambda m: obj.feature_objective("conv2", np.ones(2), features=[3, 3]),
         "features repeat [3]; expected distinct channel indices"),
        ("feature_objective cossim_pow -2", lambda m: obj.feature_objective("conv2", t6, cossim_pow=-2),
         "cossim_pow must be a finite number >= 0"),
        ("feature_objective strings", lambda m: obj.feature_objective("conv2", ["a"] * 6), "target must be numbers"),
        ("direction zeros", lambda m: obj.direction("conv2", np.zeros(6)), "vec is all zeros; expected a direction"),
        ("invert cossim_pow -1", lambda m: ifv.invert(m, "conv2", _images(), cossim_pow=-1),
         "cossim_pow must be a finite number >= 0"),
        ("invert cossim_pow nan", lambda m: ifv.invert(m, "conv2", _images(), cossim_pow=float("nan")),
         "cossim_pow must be a finite number >= 0"),
        ("invert prior 'L2'", lambda m: ifv.invert(m, "conv2", _images(), prior="L2"),
         "prior must be the FV's prior objective"),
        ("invert expected_prior_weight -1", lambda m: ifv.invert(m, "conv2", _images(), prior=obj.params_L2(),
                                                                 expected_prior_weight=-1.0),
         "expected_prior_weight must be a positive number"),
        ("invert a list of images", lambda m: ifv.invert(m, "conv2", [_images()[0], _images()[0]]),
         "np.stack a list of images"),
        ("invert features [1, 1]", lambda m: ifv.invert(m, "conv2", _images(), features=[1, 1]),
         "features repeat [1]"),
        ("render thresholds=5", lambda m: render_vis(m, "conv2:0", param.image(16), transforms=[], thresholds=5,
                                                     progress=False), "thresholds must be a sequence of step counts"),
        ("image batch=0", lambda m: param.image(16, batch=0), "batch must be an integer >= 1 or None"),
        ("image h=0", lambda m: param.image(16, h=0), "h must be an integer >= 1 or None"),
        ("image 16.5", lambda m: param.image(16.5), "positive integer sizes, got (1, 16.5, 16.5, 3)"),
        ("image decay_power nan", lambda m: param.image(16, decay_power=float("nan")),
         "decay_power must be a finite number"),
        ("image sd -1", lambda m: param.image(16, sd=-1), "sd (the initial values' standard deviation) must be"),
        ("feature_objective features [0.5]", lambda m: obj.feature_objective("conv2", np.ones(1), features=[0.5]),
         "features must be a non-empty list of channel indices"),
        ("feature_objective features at render", lambda m: _render(m, obj.feature_objective("conv2", np.ones(1), features=[8])),
         "features entry 8 is out of range: layer 'conv2' has 6 channels"),
        ("feature_objective target length", lambda m: obj.feature_objective("conv2", np.ones(5), model=m),
         "target has length 5 but layer 'conv2' gives 6 features"),
        ("response_scale features [6]", lambda m: obj.response_scale(m, "conv2", features=[6]),
         "features entry 6 is out of range"),
    ]


API_IDS = [case[0] for case in api_cases()]


@pytest.mark.parametrize("index", range(len(API_IDS)), ids=API_IDS)
def test_api_errors_are_ours_and_one_line(index, small_model):
    _, call, fragment = api_cases()[index]
    with pytest.raises(ValueError) as err:
        call(small_model)
    message = str(err.value)
    assert "\n" not in message and fragment in message, message
    assert not type(err.value).__module__.startswith("tensorflow"), type(err.value)


def test_thresholds_zero_returns_the_initial_images(small_model):
    """Lucid allows ``thresholds=(0,)``: no Adam step, the initial images."""
    from lucid_ifv import param
    from lucid_ifv.render import render_vis

    p = param.image(16, seed=3)
    start = p().numpy()
    result = render_vis(small_model, "conv2:1", p, transforms=[], thresholds=(0,), progress=False)
    assert result.steps == [0] and result.objective == []
    np.testing.assert_array_equal(result.final, start)
    both = render_vis(small_model, "conv2:1", param.image(16, seed=3), transforms=[], thresholds=(0, 3),
                      progress=False)
    assert both.steps == [0, 3] and len(both.objective) == 3
    np.testing.assert_array_equal(both.images[0], start)
    assert not np.array_equal(both.images[1], start)


def test_exact_conversions_are_accepted(bad_dir, tmp_path):
    """The conversions the loader does make are exact: opaque alpha dropped, R = G = B to grey,
    grey repeated to RGB, and save_png -> load_images is quantize_8bit."""
    from PIL import Image

    from lucid_ifv.imageio import load_images, quantize_8bit, save_png

    grey = np.asarray(Image.open(bad_dir / "grey28.png"), np.float32)[..., None] / 255
    rgba = np.concatenate([np.repeat(grey, 3, -1), np.ones_like(grey)], -1)
    Image.fromarray(np.round(rgba * 255).astype(np.uint8), "RGBA").save(tmp_path / "opaque.png")
    np.testing.assert_array_equal(load_images([tmp_path / "opaque.png"], channels=1)[0], grey)
    np.testing.assert_array_equal(load_images([bad_dir / "grey28.png"], channels=3)[0], np.repeat(grey, 3, -1))
    image = np.random.default_rng(1).random((9, 7, 3))
    save_png(image, tmp_path / "c.png")
    save_png(image[..., :1], tmp_path / "g.png")
    np.testing.assert_array_equal(load_images([tmp_path / "c.png"])[0], quantize_8bit(image))
    np.testing.assert_array_equal(load_images([tmp_path / "g.png"])[0], quantize_8bit(image[..., :1]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.png", "g.png", "opaque.png"]  # no temporary files left


def test_invert_paper_method_ignores_the_prior_weight(bad_dir, capsys):
    """`invert --method paper` with the default --prior used to fail after the Jacobian
    ("expected_prior_weight needs a prior-aware method"); the paper's solve has no prior."""
    rc, _ = run_in_process(["invert", *MNIST, "--param", "pixel", "--method", "paper", "--images",
                            str(bad_dir / "grey28.png")], capsys)
    assert rc == 0


def test_an_objective_combines_only_with_objectives_callables_and_numbers():
    from lucid_ifv import objectives as obj

    with pytest.raises(TypeError, match="an Objective \\+ str 'x': expected an Objective, a callable"):
        obj.channel("conv2", 0) + "x"
    with pytest.raises(TypeError, match="an Objective \\* NoneType"):
        obj.channel("conv2", 0) * None
    assert callable(obj.channel("conv2", 0) + (lambda T: 0.0)) and callable(2 * obj.channel("conv2", 0) - 1)
