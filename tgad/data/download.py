"""Getting a dataset onto disk: use what is there, else a verified archive, else anomalib's download."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from anomalib.data.utils import DownloadInfo, download_and_extract

from tgad.assets.cache import sha256_file
from tgad.data.errors import DataError

logger = logging.getLogger(__name__)


def offline() -> bool:
    """True when the user asked tgad (or the HF hub stack it runs beside) to stay off the network."""
    return any(
        os.environ.get(var, "").lower() in ("1", "true", "yes") for var in ("TGAD_OFFLINE", "HF_HUB_OFFLINE")
    )


def ensure_downloaded(
    root: Path,
    category: str,
    info: DownloadInfo | None,
    where_to_get: str,
    download: bool = True,
    inner_folder: str | None = None,
) -> Path:
    """Return ``root/category``, downloading and extracting the dataset archive into ``root`` if it is missing.

    An archive already in ``root`` (e.g. copied there by hand) is sha256-checked and extracted; otherwise
    anomalib downloads it (its extraction refuses path escapes). ``inner_folder`` is a wrapper folder the
    archive extracts into (BTAD's), whose contents are moved up into ``root``. Offline or without a download
    source, the error says where to put the data.
    """
    root, target = Path(root), Path(root) / category
    if target.is_dir():
        return target
    put_it = f"put the extracted category at {target} ({where_to_get})"
    if info is None:
        raise DataError(f"{target}: dataset not found and it has no automatic download; {put_it}")
    archive = root / (info.filename or info.url.split("/")[-1])
    if archive.is_file():
        digest = sha256_file(archive)
        if digest != info.hashsum:
            raise DataError(
                f"{archive}: sha256 {digest[:12]}... does not match the expected {info.hashsum[:12]}...; delete it and retry"
            )
    elif not download or offline():
        why = (
            "downloads are off (TGAD_OFFLINE/HF_HUB_OFFLINE set)"
            if offline()
            else "download=False (tgad data check never downloads; the datamodules and tgad benchmark do)"
        )
        raise DataError(f"{target}: dataset not found and {why}; {put_it}, or place {archive.name} in {root}")
    try:
        logger.info("fetching %s into %s", info.name, root)
        download_and_extract(root, info)
    except Exception as err:  # network, disk, archive errors all end the same way for the user
        raise DataError(
            f"{target}: download of {info.name} failed ({err.__class__.__name__}: {err}); {put_it}"
        ) from err
    wrapper = root / inner_folder if inner_folder else None
    if wrapper is not None and wrapper.is_dir():
        for child in wrapper.iterdir():
            if not (root / child.name).exists():
                child.rename(root / child.name)
    if not target.is_dir():
        raise DataError(
            f"{archive}: extracted, but {target} is not in it; check the archive or the category name"
        )
    return target
