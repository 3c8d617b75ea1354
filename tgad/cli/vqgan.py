"""``tgad vqgan import-check FILE``: does a taming-transformers VQGAN checkpoint load into tgad, and what of it."""

from __future__ import annotations

import argparse

from rich.console import Console

# what ``--preset auto`` prints of the layout it read from the file
LAYOUT_FIELDS = ("base_channels", "channel_mult", "num_res_blocks", "attn_levels", "z_channels", "latent_dim")
LAYOUT_FIELDS += ("codebook_size", "disc_channels", "disc_layers")
TAMING_PRESETS = ("auto", "taming_f16_1024", "taming_tiny")  # auto: the layout read from the file's tensors


def add_vqgan_parser(sub: argparse._SubParsersAction) -> None:
    vqgan = sub.add_parser("vqgan", help="generator weights: check a taming-transformers VQGAN checkpoint")
    vqgan_sub = vqgan.add_subparsers(dest="vqgan_command", metavar="VQGAN_COMMAND", required=True)
    check = vqgan_sub.add_parser(
        "import-check",
        help="load a taming VQGAN model.ckpt / last.ckpt into the VarianceVQGAN and report what was loaded",
        description="Reads FILE with torch.load(weights_only=True), maps taming's keys onto the preset's "
        "layout and checks every shape; a file that does not fit is one line naming the first key. "
        "In Python: VarianceVQGAN.from_taming(FILE, preset=...).",
    )
    check.add_argument(
        "file", metavar="FILE", help="taming model.ckpt / last.ckpt, or a file of its state dict"
    )
    check.add_argument(
        "--preset",
        choices=TAMING_PRESETS,
        default="auto",
        help="the layout to load into (auto: the file's own, read from its tensors, as --prior FILE does)",
    )
    check.add_argument(
        "--no-discriminator", action="store_true", help="skip taming's PatchGAN (loss.discriminator.*)"
    )


def run_import_check(args: argparse.Namespace, console: Console) -> int:
    from tgad.models.variance_vqgan.taming_import import load_taming_checkpoint

    loaded = load_taming_checkpoint(args.file, args.preset, with_discriminator=not args.no_discriminator)
    layout = args.preset
    if args.preset == "auto":
        cfg = loaded.model.config
        layout = "its own layout (" + ", ".join(f"{k}={getattr(cfg, k)}" for k in LAYOUT_FIELDS) + ")"
    report = loaded.report
    console.print(f"[green]OK[/green] {args.file} fits {layout}", highlight=False)
    console.print(f"  sha256: {report.weights.sha256}", highlight=False)
    console.print(
        f"  {report.tensors} generator tensors (encoder, codebook, decoder); discriminator "
        f"{'loaded' if report.discriminator_loaded else 'not loaded'}; {report.skipped} tensors skipped "
        f"(LPIPS); variance head new; global_step {report.global_step}",
        highlight=False,
    )
    return 0
