"""Preflight: every argument, output location, (k, seed) and weight source a command will need, checked
before any model is built, so bad input costs seconds and leaves nothing half-written.

Each check raises a one-line ``UsageError`` (or the data/asset error of the layer it asks) naming the option
and the fix; ``tgad.cli.errors`` prints it. Nothing here writes, except a probe file that is removed at once
and, once every check has passed, the healing of what a killed run left (``tgad.generate.heal``).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import yaml

from tgad.assets.cache import file_kind
from tgad.assets.clip import CHECKPOINT_SUFFIXES, clip_weights_available
from tgad.assets.weights import weight_file_problem, weights_only_problem
from tgad.benchmark.plan import GENERATED, BenchmarkError, benchmark_bytes, image_bytes
from tgad.cli.errors import UsageError
from tgad.cli.hardware_args import hardware_from_args
from tgad.cli.overrides import parse_overrides
from tgad.data.leaks import check_no_leak
from tgad.data.shots import MAX_SEED, choose_shots
from tgad.generate.chain_writer import check_out_dir
from tgad.generate.heal import heal_extra_set, remove_stale_partials_of
from tgad.generate.memory import final_draw_problem
from tgad.recipe import Recipe

MIB = 1 << 20
LIGHTNING_CKPT_WORDS = ("best", "last", "hpc")  # ckpt_path values Lightning resolves itself


def threads_from_env() -> int | None:
    """``$TGAD_THREADS`` as a positive int (None when unset)."""
    text = os.environ.get("TGAD_THREADS", "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise UsageError(
            f"TGAD_THREADS={text!r}: a positive whole number of threads (e.g. TGAD_THREADS=2), or unset it"
        )
    return int(text)


def check_output_dir(
    path: str | Path, option: str, need_bytes: int = 0, given: str | Path | None = None
) -> None:
    """``path`` (existing or not) can be made and written, is not under a file, and its device has room.
    ``given`` is the option's value as typed, when ``path`` is a folder below it (``<results-dir>/<dataset>``)."""
    path = Path(path).expanduser()
    where = f"{option} {given if given is not None else path}"
    probe = path
    while not os.path.lexists(probe) and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        kind = file_kind(probe)
        what = f"is {kind}" if probe in (path, Path(given or path).expanduser()) else f"{probe} is {kind}"
        raise UsageError(f"{where}: {what}, not a folder; choose a folder path")
    try:
        fd, name = tempfile.mkstemp(prefix=".tgad-write-probe-", dir=probe)
        os.close(fd)
        os.unlink(name)
    except OSError as err:
        raise UsageError(
            f"{where}: cannot write in {probe} ({err.strerror}); choose a writable folder"
        ) from err
    free = shutil.disk_usage(probe).free
    if free < need_bytes:
        raise UsageError(
            f"{where}: {_size(free)} free on its device ({probe}), the planned images need about "
            f"{_size(need_bytes)}; free space or choose another folder"
        )


def _size(n: int) -> str:
    return f"{n / MIB:.0f} MiB" if n >= 10 * MIB else f"{n / 1024:.0f} KiB"


def check_weight_file(path: str | Path, option: str) -> None:
    """A weight or checkpoint file is present and whole (``tgad.assets.weights.weight_file_problem``)."""
    path = Path(path).expanduser()
    if problem := weight_file_problem(path):
        raise UsageError(f"{option} {path}: {problem}")


# Scorers that read CLIP when it has real weights; the others (defect_safe, shot_fidelity, none) never build it,
# so their runs need no CLIP weights and no --allow-random-clip.
SCORERS_READING_CLIP = ("auto", "clip_text", "combined")


def check_clip(model: str, weights: str | None, allow_random: bool) -> None:
    """The weights of the CLIP ``model`` (a recipe's ``prompt.clip_model``) can be had as asked (a whole file, a
    known tag), or random is allowed."""
    from open_clip import list_pretrained_tags_by_model  # open_clip: ~2 s, only for runs that read CLIP

    text = str(weights) if weights else None
    if text and Path(text).expanduser().exists():
        check_weight_file(text, "--clip-weights")
        return
    if text and (text.endswith(CHECKPOINT_SUFFIXES) or os.sep in text):
        raise UsageError(f"--clip-weights {text}: no such file; fix the path, or pass an open_clip tag")
    tags = list_pretrained_tags_by_model(model)
    if text and text not in tags:
        shown = ", ".join(tags[:4]) or "none"
        raise UsageError(
            f"--clip-weights {text}: neither a file nor a pretrained tag of {model} (tags: {shown}); "
            "pass a checkpoint file or a tag"
        )
    if not allow_random and not clip_weights_available(model, text):
        why = (
            f"{text or 'its default tag'} is not in the local cache and downloads are off or failed"
            if tags
            else "it has no published weights"
        )
        raise UsageError(
            f"no CLIP weights for {model} ({why}); pass --clip-weights FILE, or --allow-random-clip for a "
            "smoke run (outputs are then marked RANDOM)"
        )


def check_shot_grid(dm, shots: Iterable[int | None], seeds: Iterable[int]) -> None:
    """Every (k, seed) draws from the category's train set (``dm`` indexed, not set up), and no shot it draws
    is a test image by content (``tgad.data.leaks``)."""
    samples = dm.index()
    train = list(samples[samples.split == "train"].image_path)
    names = [Path(p).name for p in train]
    by_name, test = dict(zip(names, train, strict=True)), list(samples[samples.split == "test"].image_path)
    for k in shots:
        if k is not None and k > len(set(names)):
            raise UsageError(
                f"--shots {k}: {dm.category_dir}/train has {len(set(names))} images; "
                f"use --shots <= {len(set(names))} (or full)"
            )
        for seed in seeds:
            shown = f"a shot (--shots {'full' if k is None else k}, seed {seed})"
            check_no_leak([by_name[n] for n in choose_shots(names, k, seed)], test, shown)


def check_outside_dataset(path: str | Path, option: str, dm, given: str | Path | None = None) -> None:
    """An output folder does not lie in the category folder it reads: tgad never writes into a dataset (its
    files would be indexed, or mixed with the test split)."""
    category = Path(os.path.realpath(dm.category_dir))
    if Path(os.path.realpath(Path(path).expanduser())).is_relative_to(category):
        raise UsageError(
            f"{option} {given if given is not None else path}: lies inside the dataset's category folder "
            f"{dm.category_dir}; tgad never writes into a dataset: choose a folder outside it"
        )


def check_seeds(seeds: Sequence[int], option: str = "--seeds") -> None:
    bad = [s for s in seeds if not 0 <= s <= MAX_SEED]
    if bad:
        raise UsageError(
            f"{option} {' '.join(map(str, bad))}: seeds are whole numbers in 0 .. {MAX_SEED}, e.g. {option} "
            + ("0 1 2" if option == "--seeds" else "0")
        )


def benchmark_checks(config, datamodules=None) -> None:
    """The benchmark's own checks (models and their weights, keywords, categories: what a library caller gets
    too, ``tgad.benchmark.prepare.check_benchmark``), a BenchmarkError as a usage error."""
    from tgad.benchmark.prepare import check_benchmark  # lazy: see preflight_benchmark

    try:
        check_benchmark(config, datamodules)
    except BenchmarkError as err:
        raise UsageError(str(err)) from err


def check_executor(executor: str, ray_address: str | None) -> None:
    if executor == "ray":
        from tgad.benchmark.ray_executor import RAY_MISSING  # lazy: see preflight_benchmark

        if importlib.util.find_spec("ray") is None:
            raise UsageError(RAY_MISSING)
    elif ray_address:
        raise UsageError(f"--ray-address {ray_address}: only with --executor ray; add it or drop the address")


def preflight_benchmark(config, executor: str = "sequential", ray_address: str | None = None):
    """Check a ``BenchmarkConfig`` as a whole before its first row: numbers, the results folder, every
    category and (k, seed), CLIP for the generated conditions, Ray for ``--executor ray``; then heal the
    results folder, plan, and check the room for what is left to run. Returns the ``PreparedRun``, for
    ``run_benchmark(..., prepared=...)``: none of it is done twice."""
    # lazy: the row functions import anomalib (~2700 modules, 11 s on the 2-core dev machine), which
    # `tgad --help` and `tgad generate` (this module is imported by tgad.cli.main) do not need
    from tgad.benchmark.prepare import plan_run
    from tgad.benchmark.row_task import make_datamodule

    check_seeds(config.grid.seeds)
    check_executor(executor, ray_address)
    if not ray_address:  # on a cluster the workers, not this driver, must have the accelerator
        config.hardware.resolved()
    dms = {category: make_datamodule(config, category, None, 0, []) for category in config.grid.categories}
    for dm in dms.values():  # before the write probe: not even that goes into a dataset
        check_outside_dataset(config.out_dir, "--results-dir", dm, config.output.results_dir)
    check_output_dir(config.out_dir, "--results-dir", given=config.output.results_dir)
    for dm in dms.values():
        dm.prepare_data()
        check_shot_grid(dm, config.grid.shots, config.grid.seeds)
    benchmark_checks(config, dms)  # models, keywords, categories: the checks a library caller gets too
    scorers = config.grid.scorers or (config.recipe.integrator.scorer,)
    if set(config.grid.conditions) & set(GENERATED) and set(scorers) & set(SCORERS_READING_CLIP):
        check_clip(
            config.recipe.prompt.clip_model, config.generator.clip_weights, config.generator.allow_random_clip
        )
    prepared = plan_run(config)  # every check passed: a damaged CSV or ExtraSet is moved aside, then planned
    need = benchmark_bytes(config, prepared.todo)
    check_output_dir(config.out_dir, "--results-dir", need, given=config.output.results_dir)
    return prepared


def preflight_generate(args) -> None:
    """Check ``tgad generate``'s arguments, ``--out`` and CLIP; then clear what a killed run left at ``--out``."""
    from tgad.data import DATAMODULES  # lazy: the datamodules import anomalib (~1400 modules, 4 s)

    for option, value in (("--shots", args.shots), ("--n", args.n)):
        if value < 1:
            raise UsageError(
                f"{option} {value}: must be a positive number, e.g. {option} {1 if option == '--shots' else 64}"
            )
    check_seeds([args.seed], "--seed")
    hardware_from_args(args)
    if args.vqgan_iterations is not None and args.vqgan_iterations < 1:
        raise UsageError(
            f"--vqgan-iterations {args.vqgan_iterations}: must be >= 1, e.g. --vqgan-iterations 300"
        )
    overrides = parse_overrides(args.overrides)  # a UsageError naming the bad pair
    try:  # the recipe the chain will build, so a bad combination fails before any work
        recipe = Recipe.build(
            args.preset,
            run={"vqgan_iterations": args.vqgan_iterations, "prior": getattr(args, "prior", None)},
            integrator={**overrides, "scorer": args.scorer},  # scorer None: the preset's
        )
    except (TypeError, ValueError) as err:
        raise UsageError(f"--{'prior' if 'prior' in str(err) else 'set'}: {err}") from err
    problem = final_draw_problem(recipe, args.n)
    if problem:
        raise UsageError(f"--n {args.n}: {problem}")
    out = Path(args.out).expanduser()
    dm = DATAMODULES[args.dataset](root=args.root, category=args.category, download=False)
    check_outside_dataset(out, "--out", dm)  # before the write probe: not even that goes into a dataset
    check_output_dir(out, "--out", image_bytes(args.n, recipe.run.generator_image_size))
    check_out_dir(out)  # new, empty, or an ExtraSet with none of the user's files in it
    if args.dataset == "embedded":
        dm.prepare_data()
    check_shot_grid(dm, [args.shots], [args.seed])
    if recipe.integrator.scorer in SCORERS_READING_CLIP:
        check_clip(recipe.prompt.clip_model, args.clip_weights, args.allow_random_clip)
    remove_stale_partials_of(out)
    if (out / "manifest.json").is_file():
        heal_extra_set(out)


def _option_values(argv: Sequence[str], names: Sequence[str]) -> list[str]:
    """The values given to any of ``names`` in ``argv`` (``--x v`` and ``--x=v``)."""
    values = []
    for i, arg in enumerate(argv):
        for name in names:
            if arg == name and i + 1 < len(argv):
                values.append(argv[i + 1])
            elif arg.startswith(name + "="):
                values.append(arg[len(name) + 1 :])
    return values


def preflight_lightning(argv: Sequence[str]) -> None:
    """``tgad fit|validate|test|predict``: each ``--config`` is a YAML file that parses, and ``--ckpt_path``
    (when a file) is a whole checkpoint, before Lightning builds anything."""
    for config in _option_values(argv, ("--config", "-c")):
        path = Path(config).expanduser()
        if not path.is_file():
            raise UsageError(
                f"--config {config}: no such file; fix the path (e.g. conf/variance_vqgan/tiny.yaml)"
            )
        try:
            yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise UsageError(f"--config {path}: YAML syntax error{where} ({problem}); fix the file") from err
        except UnicodeDecodeError as err:
            raise UsageError(f"--config {path}: not a text file ({err.reason}); name a YAML file") from err
    for ckpt in _option_values(argv, ("--ckpt_path",)):
        if ckpt in LIGHTNING_CKPT_WORDS or ckpt.startswith("registry") or ckpt in ("null", "None"):
            continue
        check_weight_file(ckpt, "--ckpt_path")
        if [v.lower() for v in _option_values(argv, ("--weights_only",))][-1:] != ["false"]:
            check_unpickles(ckpt, "--ckpt_path")  # unless the user opted out for a file they trust


def check_unpickles(path: str | Path, option: str) -> None:
    """The checkpoint loads with ``weights_only=True``, as Lightning will load it; otherwise one line naming the
    file and the foreign object, never torch's advice to unpickle it."""
    path = Path(path).expanduser()
    if problem := weights_only_problem(path):
        raise UsageError(f"{option} {path}: {problem}")
