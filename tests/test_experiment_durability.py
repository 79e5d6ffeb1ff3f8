"""Experiments never record unfinished work (issue 10, `docs/reliability.md`).

A chain of real `lucid-ifv experiment` processes on one folder, each stopped at an exact point
(SIGKILL, SIGINT, SIGSTOP, a file-size limit) by the test hook `experiment._checkpoint`, each
followed by a resume; the final folder must equal an uninterrupted run with the same seed.

The processes are forked from a "zygote" that has imported TensorFlow once (no TF op has run
in it, so forking is safe): a fresh interpreter costs ~7 s of imports per process, which would
put a dozen processes far past the time budget. A forked child is a process like any other:
it is killed with real signals, loses its lock when it dies, and reports its exit code.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from lucid_ifv import experiment as ex

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["experiment", "--model", "mnist_small", "--n-hoyer", "6", "--batch-size", "2", "--adam", "10",
        "--lbfgs", "3", "--param", "pixel", "--prior-absolute", "--prior", "1e-3"]  # batches [0, 1], [2, 3], [4, 5]
VOLATILE = ("seconds_fv", "seconds_jacobian", "seconds_solve")  # wall-clock times differ between runs
TIMEOUT = 300

# Imports TensorFlow and the library once, then forks one child per request (a JSON line on
# stdin: argv, env, stdout/stderr files, optional file-size limit) running `lucid_ifv.cli.main`;
# answers {"started": pid}, then {"pid", "code"} (negative: killed by that signal) or
# {"pid", "stopped": true}; {"reap": pid} waits for a stopped child that was since killed.
# The point "render" is test-only: a checkpoint inside `render_vis` (before its L-BFGS phase),
# so that a SIGINT there is caught by `render_vis` itself.
ZYGOTE = r"""
import json, os, resource, signal, sys, traceback
import tensorflow
import scipy.optimize, scipy.stats
import modelzoo.shipped
import lucid_ifv.cli as cli, lucid_ifv.experiment as ex, lucid_ifv.plots, lucid_ifv.render as render

real_lbfgs = render._lbfgs

def lbfgs_after_checkpoint(*args, **kwargs):
    ex._checkpoint("render")
    return real_lbfgs(*args, **kwargs)

render._lbfgs = lbfgs_after_checkpoint

def child(request):
    os.environ.update(request["env"])
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if request.get("fsize"):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (request["fsize"], request["fsize"]))
    for fd, name in ((1, "stdout"), (2, "stderr")):
        os.dup2(os.open(request[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
    sys.argv = ["lucid-ifv", *request["argv"]]
    try:
        code = cli.main(request["argv"])
    except SystemExit as err:
        code = err.code if isinstance(err.code, int) else 1
    except BaseException:
        traceback.print_exc()
        code = 99
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)

def report(pid, status):
    answer = {"pid": pid, "stopped": True} if os.WIFSTOPPED(status) else {"pid": pid, "code": os.waitstatus_to_exitcode(status)}
    print(json.dumps(answer), flush=True)

print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    request = json.loads(line)
    if "reap" in request:
        report(request["reap"], os.waitpid(request["reap"], 0)[1])
        continue
    pid = os.fork()
    if pid == 0:
        child(request)
    print(json.dumps({"started": pid}), flush=True)
    report(pid, os.waitpid(pid, os.WUNTRACED)[1])
"""


class Zygote:
    """Runs `lucid-ifv` commands in processes forked from one pre-imported interpreter."""

    def __init__(self, logs: Path):
        self.logs, self.count, self.pending = logs, 0, b""
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        env.pop(ex.KILL_AT_ENV, None)
        with open(logs / "zygote.err", "wb") as err:
            self.proc = subprocess.Popen([sys.executable, "-c", ZYGOTE], cwd=ROOT, env=env, stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=err)
        assert self._answer() == {"ready": True}

    def _answer(self, child=None) -> dict:
        """The zygote's next JSON line (unbuffered reads: `select` must see every byte)."""
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.pending:
            if not select.select([fd], [], [], TIMEOUT)[0]:
                if child is not None:
                    os.kill(child, signal.SIGKILL)
                raise TimeoutError(f"no answer from the zygote in {TIMEOUT} s")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise RuntimeError(f"the zygote died: {(self.logs / 'zygote.err').read_text()[-2000:]}")
            self.pending += chunk
        line, self.pending = self.pending.split(b"\n", 1)
        return json.loads(line)

    def _send(self, request: dict) -> None:
        self.proc.stdin.write(json.dumps(request).encode() + b"\n")
        self.proc.stdin.flush()

    def run(self, out: Path, point: str = "", signal_name: str = "SIGKILL", fsize: int | None = None):
        """`lucid-ifv experiment` (`ARGS`) on ``out``, stopped at checkpoint ``point`` by
        ``signal_name``; returns pid, code (or stopped), stderr and seconds."""
        self.count += 1
        stdout, stderr = self.logs / f"{self.count:02d}.out", self.logs / f"{self.count:02d}.err"
        started = time.perf_counter()
        self._send({"argv": [*ARGS, "--out", str(out)], "stdout": str(stdout), "stderr": str(stderr), "fsize": fsize,
                    "env": {ex.KILL_AT_ENV: point, ex.KILL_SIGNAL_ENV: signal_name}})
        pid = self._answer()["started"]
        answer = self._answer(child=pid)
        return SimpleNamespace(pid=pid, code=answer.get("code"), stopped=answer.get("stopped", False),
                               seconds=time.perf_counter() - started, stderr_path=stderr,
                               stderr=stderr.read_text(errors="replace"))

    def reap(self, pid: int) -> int:
        self._send({"reap": pid})
        return self._answer()["code"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def snapshot(folder: Path) -> SimpleNamespace:
    """What a resume would find: complete record lines, realization and temporary files."""
    path = folder / "records.jsonl"
    raw = path.read_bytes() if path.exists() else b""
    lines = raw.split(b"\n")[:-1]
    realizations = folder / "realizations"
    return SimpleNamespace(
        raw=raw, indices=[json.loads(line)["index"] for line in lines], torn=bool(raw) and not raw.endswith(b"\n"),
        npz=sorted(p.name for p in realizations.glob("batch_*.npz")) if realizations.exists() else [],
        mtimes={p.name: p.stat().st_mtime_ns for p in realizations.glob("batch_*.npz")} if realizations.exists() else {},
        temp=sorted(str(p.relative_to(folder)) for p in folder.rglob(f"*{ex.TEMP_SUFFIX}")),
    )


def comparable(records: list) -> list:
    """Records without wall-clock times, as canonical JSON (NaN-safe equality)."""
    return [json.dumps({k: v for k, v in r.items() if k not in VOLATILE}, sort_keys=True) for r in records]


def message_lines(stderr: str, prefix: str) -> list:
    return [line for line in stderr.splitlines() if line.startswith(prefix)]


@pytest.fixture(scope="module")
def zygote(tmp_path_factory):
    z = Zygote(tmp_path_factory.mktemp("logs"))
    yield z
    z.close()


@pytest.fixture(scope="module")
def reference(zygote, tmp_path_factory):
    """One uninterrupted run, shared by every comparison."""
    folder = tmp_path_factory.mktemp("reference") / "run"
    result = zygote.run(folder)
    assert result.code == 0, result.stderr[-3000:]
    return SimpleNamespace(folder=folder, seconds=result.seconds, records=ex.load_records(folder / "records.jsonl"),
                           lines=(folder / "records.jsonl").read_bytes().split(b"\n")[:-1])


@pytest.fixture(scope="module")
def chain(zygote, reference, tmp_path_factory):
    """Interrupt one experiment folder at every point in turn, resuming each time.

    Batches B0 = [0, 1], B2 = [2, 3], B4 = [4, 5]; every step stops at the first time its
    process reaches its point (what it still has to do decides which batch that is)."""
    folder = tmp_path_factory.mktemp("chain") / "run"
    steps = {}

    def step(name, *args, **kwargs):
        before = snapshot(folder)
        result = zygote.run(folder, *args, **kwargs)
        result.before, result.after = before, snapshot(folder)
        steps[name] = result
        return result

    # SIGKILL during a batch, while a second process tries the same folder
    holder = step("sigkill_render", "render", "SIGSTOP")
    assert holder.stopped, holder.stderr[-3000:]
    steps["second_process"] = zygote.run(folder)
    os.kill(holder.pid, signal.SIGKILL)
    holder.code = zygote.reap(holder.pid)
    holder.after = snapshot(folder)
    step("sigint_render", "render", "SIGINT")  # caught by render_vis, which returns a partial result
    step("sigkill_npz_temp", "npz_temp")
    step("sigkill_arrays_written", "arrays_written")
    step("sigint_arrays_written", "arrays_written", "SIGINT")
    step("sigkill_record_flushed", "record_flushed")
    with open(folder / "records.jsonl", "ab") as fh:  # a torn line, as a hard kill mid-write leaves
        fh.write(reference.lines[2][:200])
    steps["torn"] = SimpleNamespace(after=snapshot(folder))
    step("sigint_jacobian", "jacobian", "SIGINT")
    step("sigkill_jacobian", "jacobian")
    last_batch = sum(len(line) + 1 for line in reference.lines[4:])
    fsize = len(b"\n".join(reference.lines)) + 1 - last_batch // 2  # B4's records do not fit, its arrays do
    assert max(p.stat().st_size for p in (reference.folder / "realizations").glob("*.npz")) < fsize
    step("write_fails", fsize=fsize)
    step("sigkill_summary", "summary")
    step("finished", "")
    return SimpleNamespace(folder=folder, steps=steps)


# -- the chain, promise by promise -----------------------------------------------------------
def test_every_interrupted_state_is_consistent(chain):
    """After every step: whole batches only, each sample once, no torn line (but the planted
    one), every recorded batch has its arrays."""
    for name, result in chain.steps.items():
        if name == "second_process":
            continue
        state = result.after
        assert len(set(state.indices)) == len(state.indices), name
        assert state.indices == list(range(len(state.indices))) and len(state.indices) % 2 == 0, name
        assert state.torn == (name == "torn"), name
        recorded = {f"batch_{i:04d}.npz" for i in state.indices[::2]}
        assert recorded <= set(state.npz), name


def test_sigkill_during_a_batch_records_nothing(chain):
    for name in ("sigkill_render", "sigkill_jacobian"):
        result = chain.steps[name]
        assert result.code == -signal.SIGKILL, name
        assert result.after.indices == result.before.indices, name
        assert result.after.npz == result.before.npz, name


def test_second_process_on_the_same_folder_refuses_naming_the_holder(chain):
    holder, second = chain.steps["sigkill_render"], chain.steps["second_process"]
    assert second.code == 2
    (line,) = message_lines(second.stderr, "error:")
    assert "in use by another experiment" in line and f"pid {holder.pid} on " in line
    assert "Traceback" not in second.stderr
    assert second.seconds < 30  # refused before any rendering (a batch takes longer here)


@pytest.mark.parametrize("name", ["sigint_render", "sigint_arrays_written", "sigint_jacobian"])
def test_sigint_exits_130_with_one_line_and_records_nothing(chain, name):
    result = chain.steps[name]
    assert result.code == 130, result.stderr[-3000:]
    assert len(message_lines(result.stderr, "interrupted:")) == 1
    assert "Traceback" not in result.stderr and "render_vis interrupted" not in result.stderr
    assert result.after.indices == result.before.indices
    assert not result.after.temp


def test_sigkill_while_writing_arrays_leaves_only_a_temporary_file(chain):
    result = chain.steps["sigkill_npz_temp"]
    assert result.code == -signal.SIGKILL
    assert result.after.npz == [] and len(result.after.temp) == 1 and result.after.indices == []
    assert chain.steps["sigkill_arrays_written"].after.temp == []  # the resume removed it


def test_sigkill_between_arrays_and_records_leaves_an_orphan_that_resume_redoes(chain):
    result = chain.steps["sigkill_arrays_written"]
    assert result.code == -signal.SIGKILL
    assert result.after.npz == ["batch_0000.npz"] and result.after.indices == []
    redone = chain.steps["sigint_arrays_written"].after  # rewritten by the next process
    assert redone.mtimes["batch_0000.npz"] > result.after.mtimes["batch_0000.npz"]


def test_sigkill_right_after_a_record_flush_keeps_that_batch(chain):
    result = chain.steps["sigkill_record_flushed"]
    assert result.code == -signal.SIGKILL
    assert result.after.indices == [0, 1] and result.after.npz == ["batch_0000.npz"]


def test_torn_last_line_is_truncated_on_resume(chain):
    torn, resumed = chain.steps["torn"].after, chain.steps["sigint_jacobian"].after
    assert torn.torn and torn.indices == [0, 1]
    assert resumed.raw == chain.steps["sigkill_record_flushed"].after.raw  # cut back to the last complete line


def test_failed_write_is_one_line_and_leaves_no_partial_record(chain):
    result = chain.steps["write_fails"]
    assert result.code == 2, result.stderr[-3000:]
    (line,) = message_lines(result.stderr, "error:")
    assert "cannot write" in line and "records.jsonl" in line
    assert result.after.indices == [0, 1, 2, 3] and not result.after.torn and not result.after.temp


def test_sigkill_during_the_summary_then_resuming_a_finished_run_does_nothing(chain):
    killed, finished = chain.steps["sigkill_summary"], chain.steps["finished"]
    assert killed.code == -signal.SIGKILL and killed.after.indices == list(range(6))
    assert finished.code == 0, finished.stderr[-3000:]
    assert finished.after.raw == killed.after.raw and finished.after.mtimes == killed.after.mtimes
    assert json.loads((chain.folder / "summary.json").read_text())["n"] == 6


def test_resumed_run_equals_the_uninterrupted_one(chain, reference):
    records = ex.load_records(chain.folder / "records.jsonl")
    assert [r["index"] for r in records] == list(range(6))
    assert comparable(records) == comparable(reference.records)  # same ids, same angles, bit for bit
    final = snapshot(chain.folder)
    assert final.npz == ["batch_0000.npz", "batch_0002.npz", "batch_0004.npz"] and final.temp == []
    for name in final.npz:
        got, want = np.load(chain.folder / "realizations" / name), np.load(reference.folder / "realizations" / name)
        assert sorted(got) == sorted(want)
        for key in want:
            np.testing.assert_array_equal(got[key], want[key], err_msg=f"{name}:{key}")


# -- a full disk -----------------------------------------------------------------------------
@contextlib.contextmanager
def mounted_tmpfs(path: Path, options: str):
    """A tmpfs at ``path`` (needs root / CAP_SYS_ADMIN; skips the test otherwise)."""
    path.mkdir(exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True,
                             check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs without root: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


def resize_tmpfs(path: Path, size: int) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(path)], check=True)


def test_full_disk_fails_cleanly_and_resumes(zygote, reference, tmp_path):
    """A tmpfs with room for less than a batch: one-line error, no partial file; after making
    room, the resume finishes equal to the reference."""
    with mounted_tmpfs(tmp_path / "disk", "size=1m") as disk:
        folder = disk / "run"
        shutil.copytree(reference.folder, folder)  # as if killed after B2: redo B4 only
        (folder / "records.jsonl").write_bytes(b"".join(line + b"\n" for line in reference.lines[:4]))
        (folder / "realizations" / "batch_0004.npz").unlink()
        stats = os.statvfs(disk)
        resize_tmpfs(disk, (stats.f_blocks - stats.f_bfree) * stats.f_frsize + 8192)
        full = zygote.run(folder)
        assert full.code == 2, full.stderr[-3000:]
        (line,) = message_lines(full.stderr, "error:")
        assert "No space left on device" in line
        state = snapshot(folder)
        assert state.indices == [0, 1, 2, 3] and not state.torn and state.temp == []
        assert "batch_0004.npz" not in state.npz
        resize_tmpfs(disk, 4 << 20)
        resumed = zygote.run(folder)
        assert resumed.code == 0, resumed.stderr[-3000:]
        assert comparable(ex.load_records(folder / "records.jsonl")) == comparable(reference.records)


# -- in-process checks (no TensorFlow work) ----------------------------------------------------
CONFIG = {"layer": "conv2_relu", "n_hoyer": 2, "adam_steps": 5, "lbfgs_steps": 0, "batch_size": 2, "fft": False,
          "decorrelate": False}


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if the experiment gets as far as preparing the model."""
    def refuse(*args, **kwargs):
        raise AssertionError("the experiment started working before refusing")

    monkeypatch.setattr(ex, "prepare", refuse)


@pytest.mark.parametrize("name, value", [
    ("prior_weight", float("nan")), ("prior_weight", -1e-4), ("cossim_pow", float("inf")),
    ("decay_power", float("nan")), ("relu_beta", -1.0), ("pool_temperature", float("nan")),
    ("converge", float("nan")), ("converge", 0.0), ("adam_steps", 0), ("lbfgs_steps", -1),
    ("max_lbfgs_steps", float("nan")), ("batch_size", 0), ("n_hoyer", -1), ("n_hoyer", 2.5),
    ("reoptimize_steps", -3), ("seed", -1),
])
def test_invalid_settings_refused_before_settings_json(small_model, tmp_path, no_work, name, value):
    config = ex.ExperimentConfig(**{**CONFIG, name: value})
    with pytest.raises(ValueError, match=f"{name} must be .* got {value!r}"):
        ex.run_experiment(small_model, config, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_cli_refuses_a_nan_prior_in_one_line(tmp_path, capsys):
    from lucid_ifv.cli import main

    assert main([*ARGS[:-1], "nan", "--out", str(tmp_path / "run")]) == 2
    assert message_lines(capsys.readouterr().err, "error:") == ["error: prior_weight must be a finite number >= 0, got nan"]
    assert not (tmp_path / "run").exists()


def unusable(kind: str, tmp_path: Path, stack: contextlib.ExitStack) -> Path:
    """An experiment folder of each unusable kind."""
    if kind == "a file":
        (tmp_path / "file").write_text("x")
        return tmp_path / "file"
    if kind == "under a file":
        (tmp_path / "file").write_text("x")
        return tmp_path / "file" / "run"
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o555)
    if os.access(folder, os.W_OK):  # root ignores permissions: a read-only mount instead
        stack.enter_context(mounted_tmpfs(folder, "ro,size=64k"))
    return folder


@pytest.mark.parametrize("kind", ["a file", "under a file", "read-only"])
def test_unusable_out_refused_before_any_work(small_model, tmp_path, no_work, kind):
    with contextlib.ExitStack() as stack:
        out = unusable(kind, tmp_path, stack)
        with pytest.raises(ex.ExperimentError) as err:
            ex.run_experiment(small_model, ex.ExperimentConfig(**CONFIG), out, progress=False)
        message = str(err.value)
        assert "\n" not in message and str(out) in message
        assert ("it is a file" if kind == "a file" else "cannot write the experiment folder") in message


def test_lock_names_its_holder_and_is_released(tmp_path):
    with ex.folder_lock(tmp_path):
        assert (tmp_path / ".lock").read_text().startswith(f"pid {os.getpid()} on ")
        busy = pytest.raises(ex.ExperimentError, match=f"in use by another experiment \\(pid {os.getpid()} on ")
        with busy, ex.folder_lock(tmp_path):  # a second open file description conflicts like a second process
            pass
    with ex.folder_lock(tmp_path):  # released
        pass


def test_resume_keeps_whole_batches_only(tmp_path):
    """Complete lines of a partly recorded batch, a duplicate and a torn line are all cut."""
    path = tmp_path / "records.jsonl"
    batches = ex.batch_indices(6, 2)
    assert batches == [[0, 1], [2, 3], [4, 5]]
    for indices, kept in (([0, 1, 2], [0, 1]), ([0, 1, 0, 1], [0, 1]), ([0, 1, 2, 3], [0, 1, 2, 3])):
        lines = [json.dumps({"index": i}) + "\n" for i in indices]
        path.write_text("".join(lines) + '{"index": 4, "ang')
        records, end = ex._whole_batches(path, batches)
        assert [r["index"] for r in records] == kept
        assert end == sum(len(line) for line in lines[:len(kept)])


def test_failed_append_is_cut_back(tmp_path, monkeypatch):
    """A disk that fills in the middle of a batch's records leaves the file as it was."""
    path = tmp_path / "records.jsonl"
    ex._append_records(path, [{"index": 0}, {"index": 1}])
    before = path.read_bytes()
    real_write = os.write

    def write_then_fail(fd, data):
        if len(data) > 10:
            return real_write(fd, data[:10])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ex.os, "write", write_then_fail)
    with pytest.raises(ex.ExperimentError, match="records.jsonl: No space left on device"):
        ex._append_records(path, [{"index": 2}, {"index": 3}])
    assert path.read_bytes() == before


def test_failed_atomic_write_leaves_nothing(tmp_path):
    target = tmp_path / "batch_0000.npz"
    target.write_bytes(b"old")

    def fail(fh):
        fh.write(b"partial")
        raise OSError(28, "No space left on device")

    with pytest.raises(ex.ExperimentError, match="No space left on device"):
        ex._atomic_write(target, fail)
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["batch_0000.npz"]
