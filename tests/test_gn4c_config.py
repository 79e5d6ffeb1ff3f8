"""The paper's GN4c setting ships as a ready command (`experiments/gn4c.sh`): its arguments
parse and pass the CLI's checks, and name InceptionV1's mixed4c with the paper's numbers."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

from lucid_ifv import cli

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "gn4c.sh"


def test_gn4c_commands_parse_and_pass_the_checks(tmp_path):
    out = subprocess.run(["bash", str(SCRIPT), str(tmp_path), "--workers", "8"], capture_output=True, text=True,
                         check=True, env={**os.environ, "ECHO": "1", "IFV": "lucid-ifv"}).stdout
    commands = [shlex.split(line) for line in out.splitlines()]
    assert len(commands) == 2
    for words in commands:
        assert words[:2] == ["lucid-ifv", "experiment"]
        args = cli.build_parser().parse_args(words[1:])
        cli.check_args(args)  # numbers, model name, output folder: before any model is loaded
        assert (args.model, args.layer, args.n_hoyer, args.n_canonical, args.adam) == \
            ("InceptionV1", "mixed4c", 150, 150, 3000)
        assert args.workers == 8
    paper, smooth = (cli.build_parser().parse_args(w[1:]) for w in commands)
    assert paper.lbfgs == 500 and paper.prior == 0 and not paper.smooth
    assert smooth.smooth and smooth.converge == 1e-3


def test_inceptionv1_declares_mixed4c_with_512_channels():
    from modelzoo.vision import InceptionV1

    assert {layer.name: layer.depth for layer in InceptionV1.layers}["mixed4c"] == 512
