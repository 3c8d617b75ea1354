"""Every YAML under conf/ parses against the classes it names (LightningCLI's validation)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from jsonargparse import ArgumentParser
from lightning.pytorch import LightningDataModule

from tgad.cli.lightning import run_lightning_cli

CONF = Path(__file__).resolve().parents[1] / "conf"
DATA_CONFIGS = sorted((CONF / "data").glob("*.yaml"))
RUN_CONFIGS = sorted(p for p in CONF.rglob("*.yaml") if "model" in (yaml.safe_load(p.read_text()) or {}))


@pytest.mark.parametrize("path", DATA_CONFIGS, ids=lambda p: p.stem)
def test_data_configs_validate(path):
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(LightningDataModule, "data")
    cfg = parser.parse_path(str(path))
    assert cfg.data.class_path.startswith("tgad.data.")
    assert cfg.data.init_args.shots == 1


def test_embedded_config_instantiates_and_loads(tmp_path):
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(LightningDataModule, "data")
    cfg = parser.parse_path(str(CONF / "data" / "embedded.yaml"))
    cfg.data.init_args.build_size = 64  # the default build is 256 px; tests stay small
    cfg.data.init_args.image_size = 64
    dm = parser.instantiate_classes(cfg).data
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert batch.image.shape == (1, 3, 64, 64) and len(dm.shot_ids) == 1


def test_unknown_argument_is_refused():
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(LightningDataModule, "data")
    with pytest.raises(Exception, match="shotz"):
        parser.parse_object({"data": {"class_path": "tgad.data.MVTecAD", "init_args": {"shotz": 1}}})


@pytest.mark.parametrize("path", RUN_CONFIGS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_run_configs_print(path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_lightning_cli(["fit", "--config", str(path), "--print_config"])
    assert exit_info.value.code in (0, None)
    assert "class_path" in capsys.readouterr().out
