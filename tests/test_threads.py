"""Thread settings: explicit, from a flag or LUCID_IFV_THREADS, reported; bad values are one line.

TensorFlow's pools are fixed once it runs an operation, so each case runs in a fresh process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

REPORT = ("import json; from lucid_ifv import threads; import tensorflow as tf; "
          "s = threads.configure_from_env(); tf.constant(1.0) + 1; print(json.dumps(threads.thread_settings()))")


def run(code, env_extra=None, args=()):
    env = {k: v for k, v in os.environ.items() if k != "LUCID_IFV_THREADS"}
    env.update({"TF_CPP_MIN_LOG_LEVEL": "2", **(env_extra or {})})
    command = [sys.executable, "-c", code] if code else [sys.executable, "-m", "lucid_ifv.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def test_environment_variable_sets_tensorflow_and_blas_pools():
    done = run(REPORT, {"LUCID_IFV_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    settings = json.loads(done.stdout.strip().splitlines()[-1])
    assert settings["tf_intra_op"] == 1 and settings["tf_inter_op"] == 1
    assert settings["blas"] and all(b["threads"] == 1 for b in settings["blas"])
    assert settings["env"]["LUCID_IFV_THREADS"] == "1"


def test_unset_leaves_tensorflow_its_own_choice():
    done = run(REPORT)
    assert done.returncode == 0, done.stderr
    settings = json.loads(done.stdout.strip().splitlines()[-1])
    assert settings["tf_intra_op"] == 0 and settings["tf_inter_op"] == 0


def test_too_late_is_a_clear_error():
    code = ("import tensorflow as tf; tf.constant(1.0) + 1; from lucid_ifv import threads\n"
            "try:\n    threads.configure_threads(1)\nexcept ValueError as e:\n    print('ERR', e)")
    done = run(code)
    assert "ERR TensorFlow's thread pools are fixed once it has run an operation" in done.stdout


@pytest.mark.parametrize("env,args,message", [
    ({"LUCID_IFV_THREADS": "two"}, ["models"], "error: LUCID_IFV_THREADS must be an integer >= 1, got 'two'"),
    ({"LUCID_IFV_THREADS": "0"}, ["models"], "error: LUCID_IFV_THREADS must be an integer >= 1, got '0'"),
    (None, ["--threads", "0", "models"], "error: --threads must be an integer >= 1, got 0"),
])
def test_bad_values_are_one_line_errors(env, args, message):
    done = run(None, env, args)
    assert done.returncode == 2 and done.stderr.strip() == message, done.stderr


def test_cli_flag_runs():
    done = run(None, None, ["--threads", "1", "models"])
    assert done.returncode == 0 and "inception_small" in done.stdout, done.stderr
