"""``s2s train``: train a model from a YAML config.

A thin layer over :func:`seq2seq_lstm.training.trainer.train`."""

from __future__ import annotations

import click

from .options import PathType, config_options

# command-line device options -> training.* keys they override
DEVICE_OPTIONS = {
    "accelerator": "accelerator",
    "devices": "devices",
    "num_nodes": "num_nodes",
    "strategy": "strategy",
    "precision": "precision",
    "max_steps": "max_steps",
    "out_dir": "out_dir",
    "init_from": "init_from",
}


@click.command("train")
@config_options(
    "YAML config (configs/quickstart.yaml, ...); with --resume it defaults to OUT_DIR/config.yaml.",
    "model.hidden_size=256",
)
@click.option(
    "--resume", is_flag=True, help="Continue from OUT_DIR/checkpoints/last.ckpt exactly where it stopped."
)
@click.option(
    "--overwrite", is_flag=True, help="Start over in an OUT_DIR that already holds a run (deletes it)."
)
@click.option("--accelerator", help="Lightning accelerator: cpu, gpu or auto (training.accelerator).")
@click.option("--devices", help="Devices per node: 1, 4, auto or a list like 0,1 (training.devices).")
@click.option("--num-nodes", type=click.IntRange(1), help="Number of nodes (training.num_nodes).")
@click.option("--strategy", help="Lightning strategy: auto, ddp, ddp_spawn, ... (training.strategy).")
@click.option("--precision", help="32-true, bf16-mixed (CPU and GPU) or 16-mixed (GPU) (training.precision).")
@click.option("--max-steps", type=int, help="Stop after this many optimizer steps (training.max_steps).")
@click.option(
    "--out-dir",
    type=PathType(file_okay=False),
    help="Run directory for config, tokenizer, checkpoints and logs (training.out_dir).",
)
@click.option(
    "--init-from",
    type=PathType(),
    help="Fine-tune: start from this run's weights and tokenizer; fresh optimizer (training.init_from).",
)
@click.option("--verbose", "-v", is_flag=True, help="Log debug messages.")
def train(config_path, overrides, resume, overwrite, verbose, **device_options) -> None:
    """Train a translation model or language model as the config says.

    The run directory (training.out_dir) receives the resolved config, the tokenizer model(s),
    checkpoints/best.ckpt and last.ckpt, CSV logs, and the best weights as model.safetensors.
    """  # fmt: skip
    from pathlib import Path

    from tqdm.contrib.logging import logging_redirect_tqdm

    from ..checkpoint import RunDir
    from ..config import load_config
    from ..errors import UserError
    from ..files import check_output
    from ..training.trainer import train as run_training

    log = _log_to_stderr(verbose)
    if resume and overwrite:
        raise UserError("--resume and --overwrite contradict each other; pass one of them")
    if config_path is None:
        out_dir = device_options.get("out_dir")
        if not (resume and out_dir):
            raise UserError("pass --config FILE (or --resume with --out-dir to reuse the run's own config)")
        config_path = str(RunDir(out_dir).config)
        if not Path(config_path).is_file():
            raise UserError(f"{config_path} does not exist; pass --config FILE")
    sets = list(overrides)
    labels = {}  # so that an error names the option given (--max-steps 0), not the key it sets
    for option, key in DEVICE_OPTIONS.items():
        value = device_options.get(option)
        if value is not None:
            sets.append(f"training.{key}={value}")
            labels[sets[-1]] = f"--{option.replace('_', '-')} {value}"
    cfg = load_config(config_path, sets, labels)
    check_output(cfg.training.out_dir, "training.out_dir", directory=True)
    # our lines (a validation's BLEU) go through tqdm.write, which lifts the progress bars and puts them
    # back below the line; a plain handler wrote into the middle of the validation bar
    with logging_redirect_tqdm(loggers=[log]):
        summary = run_training(cfg, resume=resume, overwrite=overwrite)
    if not summary.is_global_zero:
        return
    lines = [f"trained {summary.steps} steps in {summary.seconds / 60:.1f} min"]
    if summary.best_val_bleu is not None:
        lines.append(
            f"best validation BLEU {summary.best_val_bleu:.2f}, chrF {summary.best_val_chrf:.2f} "
            f"(step {summary.best_step})"
        )
    elif summary.best_val_ppl is not None:
        lines.append(f"best validation perplexity {summary.best_val_ppl:.2f} (step {summary.best_step})")
    lines.append(f"model: {summary.weights} (run directory {summary.out_dir})")
    click.echo("\n".join(lines))


def _log_to_stderr(verbose: bool):
    """Our logger, printing plain lines to stderr (debug ones with ``--verbose``)."""
    import logging

    # our own logger only: Lightning's loggers already have a handler of their own. A handler left by
    # an earlier call in this process (tests, notebooks) would write to that call's stderr: replace it
    log = logging.getLogger("seq2seq_lstm")
    for old in [h for h in log.handlers if getattr(h, "s2s_cli", False)]:
        log.removeHandler(old)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.s2s_cli = True
    log.addHandler(handler)
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    return log
