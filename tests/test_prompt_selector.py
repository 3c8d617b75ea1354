"""PromptSelector: P* = argmax cosine(text, mean shot embedding), its saved table, and the Lightning CLI run."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tests.helpers.datasets import write_mvtec
from tgad.assets.clip import TINY_CLIP, resolve_clip
from tgad.assets.weights import AssetError
from tgad.models.prompt_selector import PromptSelector, PromptSelectorConfig, save_selection, select_prompt
from tgad.text.keywords import resolve_keyword
from tgad.text.templates import DEFAULT_TEMPLATE, PHOTO_TEMPLATES

CONF = Path(__file__).resolve().parents[1] / "conf" / "prompt_selector"


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return resolve_clip(TINY_CLIP, allow_random=True)


def _shots(seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(3, 48, 64, generator=g), torch.rand(3, 64, 64, generator=g)]


def test_selected_prompt_is_the_independent_argmax(tiny):
    model, tokenizer, resolved = tiny
    templates = (DEFAULT_TEMPLATE, PHOTO_TEMPLATES[1])
    sel = select_prompt(model, tokenizer, _shots(), resolve_keyword("screw"), resolved, 16, templates)
    prompts = [r.prompt for r in sel.table]
    assert len(prompts) == len(set(prompts)) == 32 and len(sel.words) == 16

    # independent: open_clip's own encoders, our own resize/normalise, plain cosine similarity
    cfg = model.visual.preprocess_cfg
    mean, std = torch.tensor(cfg["mean"]).view(1, 3, 1, 1), torch.tensor(cfg["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        x = torch.cat(
            [
                F.interpolate(
                    s[None],
                    size=(64, 64 * s.shape[2] // s.shape[1]),
                    mode="bicubic",
                    align_corners=False,
                    antialias=True,
                )
                for s in _shots()[:1]
            ]
        )
        left = (x.shape[-1] - 64) // 2
        x = torch.cat([x[..., left : left + 64], _shots()[1][None]]).clamp(0, 1)
        img = F.normalize(model.encode_image((x - mean) / std), dim=-1).mean(0)
        txt = model.encode_text(tokenizer(prompts))
    cosine = F.cosine_similarity(txt, img[None], dim=-1)
    assert sel.best_prompt == prompts[int(cosine.argmax())]
    assert torch.allclose(torch.tensor([r.score for r in sel.table]), cosine, atol=1e-4)
    assert all(a.score >= b.score for a, b in zip(sel.table, sel.table[1:], strict=False))
    assert sel.best_score == sel.table[0].score and sel.random_clip


def test_selection_is_deterministic(tiny):
    model, tokenizer, resolved = tiny
    a = select_prompt(model, tokenizer, _shots(), resolve_keyword("bottle"), resolved, 16)
    torch.manual_seed(0)
    fresh, fresh_tok, fresh_res = resolve_clip(TINY_CLIP, allow_random=True)  # same seed, new model
    b = select_prompt(fresh, fresh_tok, _shots(), resolve_keyword("bottle"), fresh_res, 16)
    assert a == b


def test_outputs_record_random_clip(tiny, tmp_path):
    model, tokenizer, resolved = tiny
    sel = select_prompt(model, tokenizer, _shots(), resolve_keyword("hazelnut"), resolved, 16)
    json_path, csv_path = save_selection(sel, tmp_path, category="hazelnut")
    record = json.loads(json_path.read_text())
    assert record["clip_weights"] == f"{TINY_CLIP}:RANDOM" and record["random_clip"] is True
    assert record["best_prompt"] == sel.best_prompt == record["table"][0]["prompt"]
    rows = list(csv.DictReader(csv_path.open()))
    assert len(rows) == 16 and {r["clip_weights"] for r in rows} == {f"{TINY_CLIP}:RANDOM"}
    assert rows[0]["prompt"] == sel.best_prompt and rows[0]["rank"] == "1"
    assert not list(tmp_path.glob(".*partial"))  # atomic writes leave no temporary files


def test_module_refuses_random_clip_unless_allowed():
    selector = PromptSelector(
        config=PromptSelectorConfig.preset("cpu", num_words=16, clip_model=TINY_CLIP), category="bottle"
    )
    with pytest.raises(AssetError, match="allow_random_clip"):
        selector.select(_shots())
    with pytest.raises(ValueError, match="no WordNet noun sense"):
        PromptSelector(config=PromptSelectorConfig.preset("tiny"), keyword="qwxzt").select(_shots())


def test_tgad_test_runs_the_selector_on_the_shots(tmp_path, capsys):
    from tgad.cli.lightning import prompt_table, run_lightning_cli

    write_mvtec(tmp_path / "data", category="bottle", size=48)
    out = tmp_path / "out"
    args = [
        "test",
        "--config",
        str(CONF / "tiny.yaml"),
        "--data.init_args.root",
        str(tmp_path / "data"),
        "--trainer.default_root_dir",
        str(tmp_path / "run"),
        "--model.init_args.output_dir",
        str(out),
    ]
    cli = run_lightning_cli(args)
    sel = cli.model.selection
    record = json.loads((out / "prompt_selection.json").read_text())
    assert record["best_prompt"] == sel.best_prompt and record["clip_weights"] == f"{TINY_CLIP}:RANDOM"
    assert record["category"] == "bottle" and record["synset"] == "bottle.n.01"
    assert len(record["shots"]) == 2 and all("/train/good/" in p for p in record["shots"])
    assert len(record["table"]) == 16  # the tiny preset: 16 words x 1 template
    assert (out / "prompt_table.csv").is_file()
    assert prompt_table(cli.model.selection).row_count == 10
    assert "P* for bottle" in capsys.readouterr().out  # the CLI printed the table
    assert (tmp_path / "run" / "config.yaml").is_file()  # LightningCLI's saved config stays in the run folder
