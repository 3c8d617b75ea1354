"""Bad dataset input: one clear line naming the path and the fix, and nothing written."""

from __future__ import annotations

import logging
import os
import shutil
import tarfile

import pytest
from anomalib.data.utils import DownloadInfo

from tests.helpers.datasets import write_mvtec
from tgad.assets.cache import sha256_file
from tgad.cli.main import main
from tgad.data import DataError, MVTecAD
from tgad.data.download import ensure_downloaded


def _setup(root, **kwargs):
    dm = MVTecAD(root=str(root), category=kwargs.pop("category", "widget"), download=False, **kwargs)
    dm.setup()
    return dm


def _one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


def test_missing_root(tmp_path):
    with pytest.raises(DataError) as err:
        _setup(tmp_path / "nowhere")
    assert "nowhere" in _one_line(err) and (
        "download=False" in str(err.value) or "downloads are off" in str(err.value)
    )


def test_unknown_category_lists_the_real_ones(mvtec_root):
    with pytest.raises(DataError) as err:
        _setup(mvtec_root, category="gadget")
    assert "gadget" in _one_line(err) and "widget" in str(err.value)


def test_wrong_layout(mvtec_root):
    shutil.rmtree(mvtec_root / "widget" / "train")
    with pytest.raises(DataError) as err:
        _setup(mvtec_root)
    assert "train/good" in _one_line(err) and "layout" in str(err.value)


def test_empty_train_good(mvtec_root):
    for f in (mvtec_root / "widget" / "train" / "good").iterdir():
        f.unlink()
    with pytest.raises(DataError, match="no images in train/good"):
        _setup(mvtec_root)


def test_missing_mask(mvtec_root):
    (mvtec_root / "widget" / "ground_truth" / "hole" / "001_mask.png").unlink()
    with pytest.raises(DataError) as err:
        _setup(mvtec_root)
    assert "hole/001.png" in _one_line(err) and "no mask" in str(err.value)


def test_mask_of_another_size(mvtec_root):
    from PIL import Image

    Image.new("L", (10, 10)).save(mvtec_root / "widget" / "ground_truth" / "hole" / "000_mask.png")
    with pytest.raises(DataError) as err:
        _setup(mvtec_root)
    assert "000_mask.png" in _one_line(err) and "10x10" in str(err.value)


def test_corrupt_image(mvtec_root):
    (mvtec_root / "widget" / "train" / "good" / "002.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(64))
    with pytest.raises(DataError) as err:
        _setup(mvtec_root)
    assert "002.png" in _one_line(err) and "corrupt" in str(err.value)


def test_too_many_shots(mvtec_root):
    with pytest.raises(DataError) as err:
        _setup(mvtec_root, shots=7)
    assert "shots=7" in _one_line(err) and "6 images" in str(err.value)


def test_unknown_shot_id(mvtec_root):
    with pytest.raises(DataError, match="'999.png' is not a training image"):
        _setup(mvtec_root, shot_ids=["999.png"])


def test_non_image_file_is_ignored_with_a_warning(mvtec_root, caplog):
    (mvtec_root / "widget" / "train" / "good" / "notes.txt").write_text("taken on Monday")
    with caplog.at_level(logging.WARNING):
        dm = _setup(mvtec_root)
    assert len(dm.train_data) == 6
    assert any("notes.txt" in r.getMessage() for r in caplog.records)


def test_cli_data_check_reports_one_line_and_writes_nothing(mvtec_root, capsys):
    (mvtec_root / "widget" / "ground_truth" / "hole" / "001_mask.png").unlink()
    before = sorted(p for p in mvtec_root.rglob("*"))
    assert (
        main(["data", "check", "--dataset", "mvtec", "--root", str(mvtec_root), "--category", "widget"]) == 2
    )
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "hole/001.png" in err and len(err.splitlines()) == 1
    assert sorted(p for p in mvtec_root.rglob("*")) == before


def test_cli_data_check_prints_inventory(mvtec_root, capsys):
    assert (
        main(
            [
                "data",
                "check",
                "--dataset",
                "mvtec",
                "--root",
                str(mvtec_root),
                "--category",
                "widget",
                "--shots",
                "2",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "scratch" in out and "4/4" in out and "32x32 (12)" in out and "OK" in out


# --- downloads, exercised on an archive the test makes itself ---------------------------------------------------


def _archive(tmp_path):
    src = tmp_path / "src"
    write_mvtec(src, category="widget")
    archive = tmp_path / "mvtec.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(src / "widget", arcname="widget")
    return archive


def test_download_extracts_a_verified_archive(tmp_path):
    archive = _archive(tmp_path)
    info = DownloadInfo(
        name="fixture", url="https://example.invalid/mvtec.tar.gz", hashsum=sha256_file(archive)
    )
    root = tmp_path / "data"
    root.mkdir()
    shutil.copy(archive, root / "mvtec.tar.gz")
    target = ensure_downloaded(root, "widget", info, "from the fixture")
    assert (target / "train" / "good" / "000.png").is_file()


def test_download_refuses_a_wrong_hash(tmp_path):
    archive = _archive(tmp_path)
    info = DownloadInfo(name="fixture", url="https://example.invalid/mvtec.tar.gz", hashsum="0" * 64)
    root = tmp_path / "data"
    root.mkdir()
    shutil.copy(archive, root / "mvtec.tar.gz")
    with pytest.raises(DataError, match="sha256"):
        ensure_downloaded(root, "widget", info, "from the fixture")
    assert not (root / "widget").exists()


def test_offline_and_missing_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TGAD_OFFLINE", "1")
    info = DownloadInfo(name="fixture", url="https://example.invalid/mvtec.tar.gz", hashsum="0" * 64)
    with pytest.raises(DataError) as err:
        ensure_downloaded(tmp_path, "widget", info, "from the fixture")
    assert "offline" in _one_line(err) and str(tmp_path / "widget") in str(err.value)


def test_loco_without_data_says_where_to_get_it(tmp_path):
    from tgad.data import LOCO

    with pytest.raises(DataError) as err:
        LOCO(root=str(tmp_path), category="pushpins").prepare_data()
    assert "mvtec-loco" in _one_line(err)
