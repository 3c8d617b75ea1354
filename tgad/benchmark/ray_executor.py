"""The benchmark grid as a Ray task graph: one task per ExtraSet, one per row, the driver the only writer.

Why Ray and not a scheduler of our own: a paper-scale grid (23 classes x 5 seeds x 3 k x 6 conditions x up to
6 detectors) outgrows one machine, and Ray is what ML groups already run, on a laptop or a cluster.

The graph: every ExtraSet (plain augmentation, a generator fit + Integrator, a selection) is one task; a
``tgad_aug`` or ``tgad_select`` set depends on the ``tgad`` set it is made from. Every row is one task that
depends on the ExtraSet it needs (``shots`` rows on none). Tasks run ``row_task.make_extra`` /
``row_task.compute_row``, the very functions of the sequential run, and return the ExtraSet or the CSV row;
the driver appends rows as they finish, so the CSV, the report and the W&B run have one writer, and an
interrupted driver resumes from the CSV like a sequential run. ExtraSets live under the results folder, keyed
by their request, so a set another task or an earlier run finished is reused, never recomputed: on a cluster
the results folder (and the dataset root) must be on a filesystem every node sees.

Resources: every task asks for ``threads`` CPUs (``$TGAD_THREADS``, default 1) and uses that many torch
threads. On a GPU request (``--accelerator gpu``, or ``auto`` on a cluster that has GPUs) a generated set's
task asks for ``--devices`` GPUs (its generator fit uses DDP over them) and a row's task for one (the
detector); plain augmentation and selection sets ask for none. Each task resolves the hardware where it runs.
Without an address Ray starts locally with all the machine's cores, so as many tasks run at once as there are
cores.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path

import torch

from tgad.benchmark.defect_check import DefectCheck
from tgad.benchmark.plan import BenchmarkConfig, BenchmarkError, Row
from tgad.benchmark.row_task import compute_row, describe, extra_key, make_extra, stops_the_grid

log = logging.getLogger(__name__)

RAY_MISSING = "--executor ray: Ray is not installed; pip install 'tgad[ray]' (or make install)"
# Settings every worker process needs before Python starts (the malloc threshold) or before it imports them.
WORKER_ENV = ("MALLOC_MMAP_THRESHOLD_", "HF_HUB_OFFLINE", "TGAD_OFFLINE", "WANDB_MODE", "PYTHONHASHSEED")
DERIVED = ("tgad_aug", "tgad_select")  # ExtraSets made from the tgad set of the same scorer
LOCAL_OBJECT_STORE = 256 * 1024**2  # tasks pass paths and rows, never images: a small store is plenty

_checks: dict[str, DefectCheck] = {}  # per worker process, by config (feature network loaded once)


def absolute(config: BenchmarkConfig) -> BenchmarkConfig:
    """The config with the results folder and the dataset root as absolute paths: a worker's working folder
    is not the driver's."""
    root = str(Path(config.grid.root).resolve()) if config.grid.root else None
    return config.replace(results_dir=str(Path(config.output.results_dir).resolve()), root=root)


def task_cpus(config: BenchmarkConfig) -> int:
    return config.threads or 1


def task_gpus(config: BenchmarkConfig, devices: int, cluster_gpus: float) -> int:
    """GPUs a task asks Ray for: none on a CPU request; ``auto`` asks only where the cluster has GPUs."""
    accelerator = config.hardware.accelerator
    wants = accelerator in ("gpu", "cuda") or (accelerator == "auto" and cluster_gpus > 0)
    return devices if wants else 0


def _threads(config: BenchmarkConfig) -> None:
    torch.set_num_threads(task_cpus(config))


def extra_task(config: BenchmarkConfig, row: Row, plot: bool, *sources):
    """Ray task: the ExtraSet of ``row`` (``sources``: the sets it is made from, already finished)."""
    _threads(config)
    return make_extra(config, row, plot=plot)


def row_task(config: BenchmarkConfig, row: Row, extra, plot: bool) -> dict:
    """Ray task: the CSV row of ``row`` (``extra``: its finished ExtraSet, or None for ``shots``)."""
    _threads(config)
    checks = _checks.setdefault(repr(config), DefectCheck(config))
    return compute_row(row, config, extra, checks, plot=plot)


def _cause(err: BaseException) -> BaseException:
    """The exception a task raised, under Ray's wrappers (a failed ExtraSet reaches its rows wrapped twice)."""
    from ray.exceptions import RayTaskError  # optional (tgad[ray])

    while isinstance(err, RayTaskError) and getattr(err, "cause", None) is not None:
        err = err.cause
    return err


def start_ray(address: str | None, cpus: int | None = None) -> bool:
    """Join the cluster at ``address``, or start a local Ray with this machine's cores. True when this call
    started it (and the caller must shut it down)."""
    try:
        import ray  # optional (tgad[ray])
    except ImportError as err:
        raise BenchmarkError(RAY_MISSING) from err
    if ray.is_initialized():
        return False
    env = {name: os.environ[name] for name in WORKER_ENV if name in os.environ}
    options = {"runtime_env": {"env_vars": env}, "include_dashboard": False, "logging_level": logging.WARNING}
    try:
        if address:
            ray.init(address=address, **options)
        else:
            ray.init(num_cpus=cpus or os.cpu_count(), object_store_memory=LOCAL_OBJECT_STORE, **options)
    except (ConnectionError, RuntimeError, ValueError) as err:
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        raise BenchmarkError(f"--executor ray: could not start {where} ({err}); check --ray-address") from err
    return True


def run_on_ray(
    config: BenchmarkConfig,
    plan: list[Row],
    on_row,
    on_failure,
    address: str | None = None,
    cpus: int | None = None,
) -> None:
    """Run ``plan`` as Ray tasks; ``on_row(row, csv_row)`` / ``on_failure(row, error)`` are called in the
    driver as tasks finish. An error that fails every row alike (a wrong setting, missing data or weights, a
    full disk) cancels the rest and is raised, as in the sequential run."""
    import ray  # optional (tgad[ray]): imported only for a Ray run

    config = absolute(config)
    started = start_ray(address, cpus)
    try:
        resources = {"num_cpus": task_cpus(config), "max_retries": 0}
        gpus = ray.cluster_resources().get("GPU", 0)
        make_sets = {  # a generated set's task holds the GPUs of its generator fit; other sets need none
            gpu: ray.remote(extra_task).options(name="tgad-extra-set", num_gpus=gpu, **resources)
            for gpu in {0, task_gpus(config, config.hardware.devices, gpus)}
        }
        set_gpus = {"tgad": task_gpus(config, config.hardware.devices, gpus)}
        make_row = ray.remote(row_task).options(
            name="tgad-row", num_gpus=task_gpus(config, 1, gpus), **resources
        )
        first_seed = min(config.grid.seeds)
        extras: dict[tuple, ray.ObjectRef] = {}

        def extra_ref(row: Row) -> ray.ObjectRef:
            key = extra_key(row)
            if key not in extras:
                sources = [extra_ref(replace(row, condition="tgad"))] if row.condition in DERIVED else []
                make_set = make_sets[set_gpus.get(row.condition, 0)]
                extras[key] = make_set.remote(config, row, row.seed == first_seed, *sources)
            return extras[key]

        pending = {
            make_row.remote(
                config, row, None if row.condition == "shots" else extra_ref(row), row.seed == first_seed
            ): row
            for row in plan
        }
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            row = pending.pop(done[0])
            try:
                out = ray.get(done[0])
            except Exception as err:  # the task's own exception, under Ray's wrapper
                cause = _cause(err)
                if stops_the_grid(cause):
                    for ref in pending:
                        ray.cancel(ref, force=True)
                    raise cause from None
                log.error("row %s failed: %s: %s", describe(row), type(cause).__name__, cause)
                on_failure(row, cause)
                continue
            on_row(row, out)
    finally:
        if started:
            ray.shutdown()
