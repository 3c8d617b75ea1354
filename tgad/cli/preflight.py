"""Preflight: every argument, output location, (k, seed) and weight source a command will need, checked
before any model is built, so bad input costs seconds and leaves nothing half-written.

Each check raises a one-line ``UsageError`` (or the data/asset error of the layer it asks) naming the option
and the fix; ``tgad.cli.errors`` prints it. Nothing here writes, except a probe file that is removed at once
and, once every check has passed, the healing of what a killed run left (``tgad.generate.heal``).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from tgad.assets.cache import file_kind
from tgad.cli.errors import UsageError
from tgad.data.shots import MAX_SEED
from tgad.recipe import MAX_IMAGE_SIZE, MIN_IMAGE_SIZE

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
    """A weight or checkpoint file is present and whole: a torch zip's members pass their CRCs, a safetensors
    header parses; nothing is unpickled."""
    path = Path(path).expanduser()
    if not path.exists():
        raise UsageError(f"{option} {path}: no such file; fix the path")
    if not path.is_file():
        raise UsageError(f"{option} {path}: {file_kind(path)}, not a checkpoint file; name the file")
    if path.stat().st_size == 0:
        raise UsageError(f"{option} {path}: the file is empty; replace it with a whole checkpoint")
    if path.suffix == ".safetensors":
        _check_safetensors(path, option)
        return
    with open(path, "rb") as handle:
        magic = handle.read(4)
    legacy = magic[:3] == b"\x80\x02\x8a"  # torch's pre-1.6 format: pickle protocol 2, then its magic number
    if magic == b"PK\x03\x04" or zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
        except (zipfile.BadZipFile, OSError, EOFError) as err:
            raise UsageError(
                f"{option} {path}: a damaged or truncated checkpoint ({err}); replace it with a whole file"
            ) from err
        if bad is not None:
            raise UsageError(f"{option} {path}: member {bad} is corrupt; replace it with a whole file")
    elif not legacy:
        raise UsageError(f"{option} {path}: not a PyTorch checkpoint (unknown format); name a .ckpt/.pt file")


def _check_safetensors(path: Path, option: str) -> None:
    try:
        with open(path, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(length))
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
        if path.stat().st_size < 8 + length + end:
            raise ValueError("shorter than its header says")
    except (struct.error, ValueError, KeyError, TypeError, MemoryError, OverflowError) as err:
        raise UsageError(
            f"{option} {path}: not a whole safetensors file ({err}); replace it with a whole file"
        ) from err


# Scorers that read CLIP when it has real weights; the others (defect_safe, shot_fidelity, none) never build it,
# so their runs need no CLIP weights and no --allow-random-clip.
SCORERS_READING_CLIP = ("auto", "clip_text", "combined")


def check_clip(preset: str, weights: str | None, allow_random: bool) -> None:
    """The CLIP weights of ``preset`` can be had as asked (a whole file, a known tag), or random is allowed."""
    from open_clip import list_pretrained_tags_by_model

    from tgad.assets.clip import CHECKPOINT_SUFFIXES, clip_weights_available
    from tgad.models.prompt_selector import PromptSelectorConfig

    model = PromptSelectorConfig.preset(preset).clip_model
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
    from tgad.data.leaks import check_no_leak
    from tgad.data.shots import choose_shots

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


def check_image_size(size: int | None, option: str = "--image-size") -> None:
    if size is not None and not MIN_IMAGE_SIZE <= size <= MAX_IMAGE_SIZE:
        raise UsageError(
            f"{option} {size}: an image side in pixels in {MIN_IMAGE_SIZE} .. {MAX_IMAGE_SIZE} (e.g. 256), or "
            "leave it out for the preset's"
        )


def _image_bytes(n: int, side: int) -> int:
    """Room for ``n`` PNGs of ``side`` px (uncompressed, the worst case) and a manifest and grid beside them."""
    return n * side * side * 3 + 2 * MIB


def benchmark_bytes(config, rows) -> int:
    """About how much the remaining ``rows`` write: their extra sets' images, plots and CSV lines."""
    side = max(config.size, config.recipe.run.generator_image_size)
    sets = {(r.category, r.shots, r.seed, r.condition, r.scorer) for r in rows if r.condition != "shots"}
    return len(sets) * _image_bytes(config.n_gen, side) + len(rows) * MIB + MIB


def runner_preflight(config) -> None:
    """The benchmark's own checks (models and their weights, keywords, categories), a BenchmarkError as a
    usage error."""
    from tgad.benchmark.plan import BenchmarkError
    from tgad.benchmark.runner import preflight

    try:
        preflight(config)
    except BenchmarkError as err:
        raise UsageError(str(err)) from err


def check_executor(executor: str, ray_address: str | None) -> None:
    if executor == "ray":
        import importlib.util

        from tgad.benchmark.ray_executor import RAY_MISSING

        if importlib.util.find_spec("ray") is None:
            raise UsageError(RAY_MISSING)
    elif ray_address:
        raise UsageError(f"--ray-address {ray_address}: only with --executor ray; add it or drop the address")


def preflight_benchmark(config, executor: str = "sequential", ray_address: str | None = None) -> None:
    """Check a ``BenchmarkConfig`` as a whole before its first row: numbers, the results folder, every
    category and (k, seed), CLIP for the generated conditions, Ray for ``--executor ray``, then room for what
    is left to run."""
    from tgad.benchmark.plan import GENERATED, make_plan
    from tgad.benchmark.results import ResultsCSV
    from tgad.benchmark.results_repair import heal_results_folder
    from tgad.benchmark.runner import make_datamodule

    check_seeds(config.seeds)
    check_image_size(config.image_size)
    check_executor(executor, ray_address)
    if not ray_address:  # on a cluster the workers, not this driver, must have the accelerator
        config.hardware.resolved()
    dms = [make_datamodule(config, category, None, 0, []) for category in config.categories]
    for dm in dms:  # before the write probe: not even that goes into a dataset
        check_outside_dataset(config.out_dir, "--results-dir", dm, config.results_dir)
    check_output_dir(config.out_dir, "--results-dir", given=config.results_dir)
    for dm in dms:
        dm.prepare_data()
        check_shot_grid(dm, config.shots, config.seeds)
    runner_preflight(config)  # models, keywords, categories: the checks a library caller gets too
    scorers = config.scorers or (config.recipe.integrator.scorer,)
    if set(config.conditions) & set(GENERATED) and set(scorers) & set(SCORERS_READING_CLIP):
        check_clip(config.preset, config.clip_weights, config.allow_random_clip)
    heal_results_folder(config.out_dir)  # every check passed: a damaged CSV or ExtraSet is moved aside
    rows = make_plan(config, ResultsCSV(config.out_dir / "results.csv").done_keys())
    check_output_dir(config.out_dir, "--results-dir", benchmark_bytes(config, rows), given=config.results_dir)


def preflight_generate(args) -> None:
    """Check ``tgad generate``'s arguments, ``--out`` and CLIP; then clear what a killed run left at ``--out``."""
    from tgad.cli.hardware_args import hardware_from_args
    from tgad.cli.overrides import parse_overrides
    from tgad.data import DATAMODULES
    from tgad.generate.chain_writer import check_out_dir
    from tgad.generate.heal import heal_extra_set, remove_stale_partials_of
    from tgad.generate.memory import final_draw_problem
    from tgad.recipe import Recipe

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
    check_output_dir(out, "--out", _image_bytes(args.n, recipe.run.generator_image_size))
    check_out_dir(out)  # new, empty, or an ExtraSet with none of the user's files in it
    if args.dataset == "embedded":
        dm.prepare_data()
    check_shot_grid(dm, [args.shots], [args.seed])
    if recipe.integrator.scorer in SCORERS_READING_CLIP:
        check_clip(args.preset, args.clip_weights, args.allow_random_clip)
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
    import yaml

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
    """The checkpoint loads with ``weights_only=True`` (tensors, numbers, containers), as Lightning will load
    it; otherwise one line naming the file and the foreign object, never torch's advice to unpickle it."""
    import pickle

    import torch

    path = Path(path).expanduser()
    try:
        try:
            torch.load(path, map_location="cpu", weights_only=True, mmap=True)  # mmap: tensors stay on disk
        except RuntimeError as err:  # the legacy (pre-1.6) format cannot be memory-mapped
            if "mmap" not in str(err):
                raise
            torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise UsageError(f"{option} {path}: {unpickling_problem(err)}") from err
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
        raise UsageError(f"{option} {path}: does not load as a checkpoint ({first}); replace it") from err


def unpickling_problem(err: BaseException) -> str:
    """torch's weights_only refusal as what it is, with the object it met; its advice to re-run with
    ``weights_only=False`` (run the file's code) is never repeated."""
    import re

    found = re.search(r"GLOBAL ([\w.]+)", str(err))
    what = f" ({found.group(1)})" if found else ""
    return (
        f"holds pickled Python objects{what} besides tensors, which tgad does not unpickle (unpickling runs "
        "code); use a checkpoint written by tgad, or save only its tensors (state_dict)"
    )
