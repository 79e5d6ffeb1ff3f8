"""Experiment batches as tasks on a Dask cluster (``pip install lucid-ifv[dask]``).

`run_experiment` (``lucid_ifv.experiment``) is the single writer: it decides which batches are
left, writes each finished batch (arrays, then records) and resumes after an interruption.
This module only computes batches elsewhere. `dask_runner(client, model_source)` returns a
runner with the same interface as the in-process one, ``runner(batches, targets) -> iterator
of (batch, records, arrays)``, yielding batches as they finish:

- each batch is one task ``run_batch_task(model_source, config, targets, seed)``; the seed is
  fixed by the batch's first sample index (`experiment.batch_seed`), so any schedule gives the
  records of a serial run (the lines of ``records.jsonl`` may come in another order; every
  consumer sorts by ``index``);
- a worker loads the model once, by its source (a shipped model's name, ``InceptionV1`` or a
  ``.pb`` path/URL, see `modelzoo.load_any`), and keeps it with its prepared setup;
- a worker that dies mid-batch loses only that task: Dask runs it again elsewhere (its
  ``allowed-failures``), and the driver records each batch once, when its result arrives;
- Ctrl-C on the driver cancels the tasks not yet finished; nothing unfinished is recorded.

Clusters: `local_cluster(workers)` starts one of processes on this machine (one thread each;
``lucid-ifv experiment --workers N``); ``--scheduler ADDRESS`` connects to a running one,
e.g. started by ``dask-jobqueue`` on Slurm or PBS (docs/distributed.md).
"""

from __future__ import annotations

import os

from lucid_ifv.threads import ENV_VAR as ENV_THREADS

#: per worker process: model source -> (model, {config key: setup})
_WORKER_MODELS: dict = {}


def _import_distributed():
    try:
        import distributed
    except ImportError:
        raise ImportError("running experiments on Dask needs dask.distributed: pip install 'lucid-ifv[dask]'") from None
    return distributed


def _worker_setup(model_source: str, config):
    """The model of ``model_source`` and its `experiment.Setup` for ``config``, loaded once
    per worker process."""
    from lucid_ifv import experiment
    from modelzoo import load_any

    if model_source not in _WORKER_MODELS:
        _WORKER_MODELS[model_source] = (load_any(model_source), {})
    model, setups = _WORKER_MODELS[model_source]
    key = repr(config)
    if key not in setups:
        setups[key] = experiment.prepare(model, config)
    return model, setups[key]


KILL_ONCE_ENV = "LUCID_IFV_TEST_KILL_WORKER_ONCE"


def _test_kill_once() -> None:
    """Test hook: when ``$LUCID_IFV_TEST_KILL_WORKER_ONCE`` names a file that does not exist
    yet, create it and end this worker process abruptly (a lost worker, mid-batch)."""
    marker = os.environ.get(KILL_ONCE_ENV)
    if marker and not os.path.exists(marker):
        with open(marker, "w"):
            pass
        os._exit(1)


def run_batch_task(model_source: str, config, targets, seed: int):
    """One batch on a worker: `experiment.run_batch` on the worker's model; (records, arrays)."""
    from lucid_ifv import experiment

    from lucid_ifv import threads

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    threads.configure_from_env()  # the cluster's thread share (a no-op once set)
    _test_kill_once()
    model, setup = _worker_setup(model_source, config)
    return experiment.run_batch(model, config, targets, seed, setup)


def dask_runner(client, model_source: str):
    """A batch runner (see the module docstring) computing on ``client``'s cluster."""
    distributed = _import_distributed()

    def runner(config, batches, targets):
        from lucid_ifv.experiment import batch_seed

        futures = {}
        for batch in batches:
            future = client.submit(run_batch_task, model_source, config, targets[batch], batch_seed(config, batch),
                                   key=f"lucid-ifv-batch-{batch[0]}-{os.getpid()}-{id(futures)}", pure=False)
            futures[future] = batch
        try:
            for future in distributed.as_completed(list(futures)):
                records, arrays = future.result()
                yield futures[future], records, arrays
        finally:
            client.cancel([f for f in futures if not f.done()])

    return runner


def local_cluster(workers: int):
    """A `distributed.Client` on a local cluster of ``workers`` processes, one task at a time
    each, sharing the cores: each worker's TensorFlow and BLAS get ``cpu_count // workers``
    threads (at least 1; `lucid_ifv.threads`). Closing the client closes the cluster."""
    distributed = _import_distributed()
    threads = max(1, (os.cpu_count() or 1) // int(workers))
    return distributed.Client(n_workers=int(workers), threads_per_worker=1, processes=True, dashboard_address=None,
                              env={ENV_THREADS: str(threads), "TF_CPP_MIN_LOG_LEVEL": "2"})


def connect(address: str):
    """A `distributed.Client` connected to the scheduler at ``address`` (e.g. ``tcp://host:8786``)."""
    return _import_distributed().Client(address)
