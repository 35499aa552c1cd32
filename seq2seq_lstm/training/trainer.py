"""``train(cfg)``: everything `s2s train` does, as a library function.

Seeds, tokenizer (trained on the training split into ``out_dir/tokenizer``, or reused on resume),
DataModule, model, system, callbacks, logger and Trainer; then ``fit``, a final ``last.ckpt`` for
``--resume``, and the best weights exported as ``model.safetensors`` + ``model.json``.

    summary = train(load_config("configs/tiny.yaml"))
    summary.best_val_bleu, summary.weights
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import lightning as L
import torch
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from ..checkpoint import (
    CKPT_KEY,
    RunDir,
    check_state_dict,
    export_weights,
    load_checkpoint_file,
    load_for_inference,
    load_run_config,
    locate_run,
    model_state_from_checkpoint,
)
from ..config import TASK_NAMES, Config, TrainingConfig, load_config, save_config
from ..errors import CheckpointError, ConfigError, UserError
from .checkpoint_io import AtomicCheckpointIO, remove_orphans
from .interrupt import GracefulStop, interrupted
from .keep import KeepCheckpoints
from .progress import ProgressBar, StepClock
from .resume import check_resume, check_resume_checkpoint, resume_point
from .run_lock import LOCK_NAME, run_lock

logger = logging.getLogger(__name__)
T = TypeVar("T")

RANK_ZERO_WAIT_S = 3600.0  # how long other ranks wait for rank 0 to write the tokenizer (torchrun, SLURM)


class _NoAdverts(logging.Filter):
    """Drops Lightning's "Tip: try installing litlogger" line: an advert for a cloud service, printed on
    every run, that a user of this toolkit can do nothing with."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage()


_LIGHTNING_INFO = logging.getLogger("lightning.pytorch.utilities.rank_zero")
if not any(isinstance(f, _NoAdverts) for f in _LIGHTNING_INFO.filters):
    _LIGHTNING_INFO.addFilter(_NoAdverts())


@dataclass(frozen=True)
class TrainSummary:
    """What a training run left behind."""

    out_dir: Path
    steps: int  # optimizer steps done (all runs of this directory)
    best_step: int | None  # step of the exported weights
    best_val_bleu: float | None  # translation; None without a validation set
    best_val_chrf: float | None
    best_val_ppl: float | None
    weights: Path | None  # model.safetensors (written by rank 0 only)
    is_global_zero: bool  # only rank 0 reports; the CLI prints nothing on the others
    seconds: float


def train(
    cfg: Config,
    resume: bool = False,
    overwrite: bool = False,
    callbacks: Sequence[Any] = (),
    trainer_kwargs: dict[str, Any] | None = None,
) -> TrainSummary:
    """Train ``cfg`` into ``cfg.training.out_dir``; ``resume`` continues from its ``checkpoints/last.ckpt``
    (or, when that does not load, from the newest checkpoint that does).

    ``callbacks`` and ``trainer_kwargs`` are added to Lightning's Trainer (for tools and tests).
    """
    start = time.perf_counter()
    t = cfg.training
    run = RunDir(t.out_dir)
    launch = check_trainer_options(cfg)
    if overwrite:
        check_overwrite(launch, run)
    rank = launch.rank
    if t.num_threads:
        torch.set_num_threads(t.num_threads)
    if resume:
        check_resume(cfg, run)
    made = _topmost_missing(run.root)  # before the lock file creates the directory
    trainer: L.Trainer | None = None

    def trained() -> bool:  # asked only when something fails: by then ``trainer`` may be set below
        return trainer is not None and trainer.global_step > 0

    # one process per launch holds the directory: rank 0 (under DDP the other ranks are its helpers)
    with run_lock(run.root) if rank == 0 else contextlib.nullcontext(), _quiet_datasets():
        fresh = _fresh_run(run, made) if not resume and rank == 0 else None
        with _removed_on_failure(run, fresh, trained):
            if rank == 0:
                for orphan in remove_orphans(run.checkpoints):
                    logger.debug("removed %s, left by a process killed while saving", orphan)
            resumed = resume_point(run, verbose=rank == 0) if resume else None
            if not resume and run.last_ckpt.exists() and not overwrite:
                raise UserError(
                    f"{run.root} already holds a training run ({run.last_ckpt}); pass --resume to continue "
                    "it, --overwrite to start over, or another --out-dir"
                )
            L.seed_everything(t.seed, workers=True, verbose=False)
            tokenizer = _prepare_run(cfg, run, resume, overwrite, rank)
            system, datamodule = _build_system(cfg, tokenizer, run, resumed)
            with _lightning_warnings():
                trainer = L.Trainer(
                    **_trainer_options(cfg, run, system, list(callbacks)), **(trainer_kwargs or {})
                )
            final_val = _fit(trainer, system, datamodule, cfg, resumed)
            return _finish(cfg, run, trainer, system, final_val, resumed, time.perf_counter() - start)


def _build_system(
    cfg: Config, tokenizer: Any, run: RunDir, resumed: tuple[Path, int] | None
) -> tuple[Any, Any]:
    """The Lightning system (model from the config: fresh, fine-tuned, or checked against the checkpoint
    a resume starts from) and the DataModule."""
    from ..data.datamodule import LMDataModule, TranslationDataModule
    from ..model.seq2seq import build_model, model_summary
    from .system import SYSTEMS

    datamodules = {"translation": TranslationDataModule, "lm": LMDataModule}
    datamodule = datamodules[cfg.task](cfg, tokenizer)
    model = build_model(cfg, tokenizer.src_vocab_size, tokenizer.tgt_vocab_size)
    if resumed is not None:
        check_resume_checkpoint(resumed[0], model, tokenizer, run)
    elif cfg.training.init_from:
        _init_weights(model, cfg)
    logger.info("model: %s", model_summary(model))
    return SYSTEMS[cfg.task](cfg, model, tokenizer), datamodule


@contextlib.contextmanager
def _lightning_warnings() -> Iterator[None]:
    with warnings.catch_warnings():
        # The plateau scheduler is stepped only on fresh validation results (lr_scheduler_step);
        # before the first validation Lightning finds no score and says so once: expected, not news.
        warnings.filterwarnings("ignore", message="ReduceLROnPlateau conditioned on metric")
        # Lightning's own use of a torch.utils._pytree name that newer torch deprecates: not ours
        warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
        yield


def _fit(
    trainer: L.Trainer, system: Any, datamodule: Any, cfg: Config, resumed: tuple[Path, int] | None
) -> bool:
    """Lightning's ``fit`` (Ctrl-C stops it after a step), then a validation of the final state when no
    scheduled one scored it; returns whether that validation ran."""
    stop = _callback(trainer, GracefulStop)
    ckpt_path = resumed[0] if resumed is not None else None
    with _lightning_warnings():
        try:
            with stop.installed():
                trainer.fit(system, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        except SystemExit as e:  # Lightning's answer to SIGTERM, and to a second Ctrl-C
            if not (stop.requested and trainer.is_global_zero):
                raise
            if isinstance(e, SIGTERMException):
                return False  # after the step GracefulStop saved: finish as after a first Ctrl-C
            raise _interrupted(trainer, RunDir(cfg.training.out_dir), resumed) from None
        # Validations come every val_every_steps (and at a max_time stop); a run that ends at
        # max_steps or at its last epoch between two of them would export a model up to
        # val_every_steps - 1 steps old. Score the final state too (after fit: a validation inside
        # the loop at an unscheduled step would leave a last.ckpt that Lightning cannot resume from).
        final_val = (
            bool(cfg.data.valid)
            and not trainer.interrupted
            and not stop.requested
            and trainer.global_step > 0
            and system.val_step != trainer.global_step
        )
        if final_val:
            trainer.validate(system, datamodule=datamodule, verbose=False)
    return final_val


def _finish(
    cfg: Config, run: RunDir, trainer: L.Trainer, system: Any, final_val: bool,
    resumed: tuple[Path, int] | None, seconds: float,
) -> TrainSummary:  # fmt: skip
    """Export the best weights (and the shortlist the config decodes with) and draw the curves into the
    run directory; an interrupted run then stops with the line that says how to continue it."""
    summary_info = _export_best(trainer, system, run, final_val) if trainer.is_global_zero else {}
    if trainer.is_global_zero and cfg.task == "translation" and cfg.generation.shortlist:
        from .shortlist import build_shortlist

        # the config decodes with a shortlist: build it now, or `s2s translate` on the run would stop
        logger.info("%s", build_shortlist(run.root))
    if trainer.is_global_zero and cfg.training.logger == "csv":
        _plot_curves(run)
    if _callback(trainer, GracefulStop).requested and trainer.is_global_zero:
        raise _interrupted(trainer, run, resumed)
    return TrainSummary(
        out_dir=run.root,
        steps=trainer.global_step,
        best_step=summary_info.get("step"),
        best_val_bleu=summary_info.get("val_bleu"),
        best_val_chrf=summary_info.get("val_chrf"),
        best_val_ppl=summary_info.get("val_ppl"),
        weights=run.weights if trainer.is_global_zero else None,
        is_global_zero=trainer.is_global_zero,
        seconds=seconds,
    )


def _plot_curves(run: RunDir) -> None:
    """The run's curves as a PNG in its directory: something to look at, never a reason to fail."""
    try:
        from ..runs.plot import write_run_curves

        logger.info("curves: %s", write_run_curves(run.root))
    except Exception as e:  # noqa: BLE001 (a picture must not lose a finished training)
        logger.warning("the curves of %s were not plotted: %s", run.root, e)


def _callback(trainer: L.Trainer, kind: type[T]) -> T:
    return next(c for c in trainer.callbacks if isinstance(c, kind))


def _interrupted(trainer: L.Trainer, run: RunDir, resumed: tuple[Path, int] | None) -> UserError:
    """What a Ctrl-C left: the step last.ckpt holds from this process, else the checkpoint resumed from."""
    by = _callback(trainer, GracefulStop).requested or "Ctrl-C"
    io = trainer.strategy.checkpoint_io
    saved = io.saved_step(run.last_ckpt) if isinstance(io, AtomicCheckpointIO) else None
    if saved is not None:
        return interrupted(by, run.root, run.last_ckpt, saved, trainer.global_step)
    if resumed is not None:
        return interrupted(by, run.root, resumed[0], resumed[1], trainer.global_step)
    return interrupted(by, run.root, run.last_ckpt, None, trainer.global_step)


@contextlib.contextmanager
def _quiet_datasets() -> Iterator[None]:
    """`datasets` draws a "Generating train split" bar for every corpus it reads: noise in a training log,
    and in front of a corpus error it breaks the one-line rule."""
    import datasets

    shown = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if shown:
            datasets.enable_progress_bars()


# --------------------------------------------------------------------------------------------------
# Checks


@dataclass(frozen=True)
class Launch:
    """How this process was started, as Lightning sees it before training."""

    rank: int  # global rank: 0 writes the run directory
    world_size: int
    # every process starts at once (other nodes, torchrun, SLURM), rather than being started by rank 0
    # after it has prepared the run directory (Lightning's own launcher on one node)
    started_together: bool


def check_trainer_options(cfg: Config) -> Launch:
    """The trainer settings, checked before anything is written to the run directory; returns how
    this process was launched.

    Lightning finds a bad device option (``devices: abc``, an unknown strategy or precision) only when
    its Trainer is built, after the tokenizer is trained, and says so with a traceback: a throwaway
    Trainer with the same device options finds it first, and the error becomes one line. The same
    Trainer reads the launch (torchrun's ``RANK``, SLURM's ``SLURM_PROCID``, or ``NODE_RANK`` x devices
    + ``LOCAL_RANK`` for a manual launch) exactly as the real one will, so the run directory is written
    by the process that Lightning makes rank 0, and by no other: the main process of node 1 has no
    ``RANK`` or ``LOCAL_RANK`` of its own, yet is rank ``devices``.
    """
    from lightning.fabric.plugins.environments import LightningEnvironment
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    t = cfg.training
    validate = bool(cfg.data.valid)
    if t.schedule == "plateau" and not validate:
        raise ConfigError("training.schedule=plateau needs a validation set; set data.valid")
    if t.patience and not validate:
        raise ConfigError("training.patience needs a validation set; set data.valid or training.patience=0")
    if t.keep_checkpoints and not validate:
        raise ConfigError(
            "training.keep_checkpoints keeps validation checkpoints; set data.valid or "
            "training.keep_checkpoints=0"
        )
    check_accelerator(t.accelerator)
    check_cpu_devices(t)
    chosen = (
        f"accelerator={t.accelerator}, devices={t.devices}, strategy={t.strategy}, "
        f"num_nodes={t.num_nodes}, precision={t.precision}"
    )
    lightning_log = logging.getLogger("lightning.pytorch")
    level = lightning_log.level
    lightning_log.setLevel(logging.WARNING)  # its "GPU available: ..." lines come with the real Trainer
    try:
        probe = L.Trainer(
            **_device_options(t, t.precision),  # as asked: cpu_precision's fallback would warn twice
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
    except (MisconfigurationException, ValueError, TypeError, RuntimeError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"Lightning refuses the device options (training.{chosen}): {reason}") from None
    finally:
        lightning_log.setLevel(level)
    # on one node only Lightning's own launcher (LightningEnvironment) starts ranks after rank 0 is ready
    own = isinstance(getattr(probe.strategy, "cluster_environment", None), LightningEnvironment)
    together = probe.num_nodes > 1 or (probe.world_size > 1 and not own)
    return Launch(probe.global_rank, probe.world_size, together)


def check_overwrite(launch: Launch, run: RunDir) -> None:
    """``--overwrite`` needs the other ranks to start after rank 0 has cleared and refilled the run
    directory, as Lightning's launcher starts them on one node; ranks that start together (other
    nodes, torchrun, SLURM) could load the old tokenizer while rank 0 deletes it."""
    if launch.started_together:
        raise UserError(
            "--overwrite cannot start over a run whose processes start together (several nodes, torchrun, "
            f"SLURM): the other ranks could read the old run while rank 0 deletes it; delete {run.root} "
            "first, or train into another --out-dir"
        )


def check_accelerator(accelerator: str) -> None:
    """A GPU request on a machine without CUDA is a user error, not a Lightning traceback."""
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise UserError(
            f"training.accelerator={accelerator} but no CUDA device is available; use --accelerator cpu"
        )


def _on_cpu(t: TrainingConfig) -> bool:
    return t.accelerator == "cpu" or (t.accelerator == "auto" and not torch.cuda.is_available())


def check_cpu_devices(t: TrainingConfig) -> None:
    """On a CPU each device is a training process of its own: Lightning starts as many as asked, and a
    thousand of them (``--devices 1000``) hang the machine. More than its cores is refused; ``auto``
    and GPU lists (``0,1``) are Lightning's to judge. Only this node's cores count (``num_nodes``
    multiplies machines, not processes here)."""
    cores = os.cpu_count() or 1
    devices = t.devices.strip()
    if _on_cpu(t) and devices.isdigit() and int(devices) > cores:
        raise UserError(
            f"training.devices={devices} asks for {devices} CPU training processes but this machine has "
            f"{cores} CPU cores; use --devices {cores} or fewer, or train on a GPU (--accelerator gpu)"
        )


def cpu_precision(t: TrainingConfig) -> str:
    """The precision to train in: ``t.precision``, except 32-true for bf16-mixed on a CPU without bf16.

    On AVX2 CPUs oneDNN emulates bf16 matrix products, so bf16-mixed trains several times slower than
    32-true there, and a config written for AVX-512/AMX machines falls back (the run's
    config.yaml keeps what was asked for, so the same run resumed on such a machine uses bf16 again).
    """
    from ..model.cells import cpu_supports_bf16

    if t.precision != "bf16-mixed" or not _on_cpu(t) or cpu_supports_bf16():
        return t.precision
    logger.warning(
        "training.precision=bf16-mixed: this CPU has no bf16 kernels (they need AVX-512), so bf16 would "
        "be about 10x slower than float32 here; training in 32-true instead"
    )
    return "32-true"


# --------------------------------------------------------------------------------------------------
# Run directory


def _topmost_missing(root: Path) -> Path | None:
    """The topmost folder a run into ``root`` creates (parents included); None when ``root`` exists."""
    made = None if root.exists() or root.is_symlink() else root
    while made is not None and not made.parent.exists():
        made = made.parent
    return made


@dataclass(frozen=True)
class _FreshRun:
    """A run directory that was missing or empty (but for the lock file) when this run took it."""

    root: Path
    made: Path | None  # the topmost folder this run created; None: ``root`` existed


def _fresh_run(run: RunDir, made: Path | None) -> _FreshRun | None:
    """``run`` as a fresh run, or None when it already held something (looked at under the lock)."""
    root = run.root
    if root.is_symlink() or not root.is_dir() or any(p.name != LOCK_NAME for p in root.iterdir()):
        return None
    return _FreshRun(root, made)


@contextlib.contextmanager
def _removed_on_failure(run: RunDir, fresh: _FreshRun | None, trained: Callable[[], bool]) -> Iterator[None]:
    """A fresh run that fails before its first optimizer step (data that cannot be read or leaves no
    pairs, a tokenizer that cannot be trained, a loss that is NaN at once) takes away what it made:
    config.yaml, tokenizer/ and logs/ alone are no run. Only a directory that was missing or empty
    before is cleared; a run that ``trained()`` keeps its logs, and its checkpoints for ``--resume``."""
    try:
        yield
    except BaseException:
        if (
            fresh is not None
            and not trained()
            and not (run.checkpoints.is_dir() and any(run.checkpoints.glob("*.ckpt")))
        ):
            for path in [fresh.made] if fresh.made is not None else list(fresh.root.iterdir()):
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
        raise


def _prepare_run(cfg: Config, run: RunDir, resume: bool, overwrite: bool, rank: int) -> Any:
    """Rank 0 writes the config and trains the tokenizer; other ranks wait until both are there."""
    from ..data.tokenizer import Tokenizer

    if resume:
        return Tokenizer.load(run.tokenizer)
    if rank != 0:
        _wait_for(run, cfg)
        return Tokenizer.load(run.tokenizer)
    if overwrite:
        for path in (run.checkpoints, run.tokenizer):
            shutil.rmtree(path, ignore_errors=True)
        for path in (run.config, run.weights, run.meta):
            path.unlink(missing_ok=True)
    run.root.mkdir(parents=True, exist_ok=True)
    if cfg.training.init_from:
        tokenizer = _copy_tokenizer(_fine_tuning_source(cfg), run)
    else:
        tokenizer = train_tokenizer(cfg, run.tokenizer)
    save_config(cfg, run.config)  # last: other ranks take its presence as "the run directory is ready"
    return tokenizer


def _copy_tokenizer(source: RunDir, run: RunDir) -> Any:
    """Fine-tuning keeps the vocabulary its weights were trained with: the source run's tokenizer."""
    from ..data.tokenizer import Tokenizer

    tokenizer = Tokenizer.load(source.tokenizer)
    tokenizer.save(run.tokenizer)
    return tokenizer


def _fine_tuning_source(cfg: Config) -> RunDir:
    """The run ``training.init_from`` names, checked to hold a model of this config's task."""
    try:
        source = locate_run(cfg.training.init_from)
        task = load_run_config(source).task
    except CheckpointError as e:
        raise CheckpointError(f"training.init_from: {e}") from None
    if task != cfg.task:
        raise ConfigError(
            f"training.init_from: {cfg.training.init_from} holds a {TASK_NAMES[task]} but this config trains "
            f"a {TASK_NAMES[cfg.task]}; fine-tune from a run of the same task"
        )
    return source


def _init_weights(model: Any, cfg: Config) -> None:
    """Start from the weights of ``training.init_from`` (fine-tuning), checked against this config.

    Only the weights come along: the optimizer, the schedule and the step count start afresh (OpenNMT-py's
    ``-train_from`` with ``-reset_optim all``); ``--resume`` is what continues a run exactly.
    """
    # checks the source's tokenizer (copied into this run by _prepare_run) against its weights
    source_model = load_for_inference(cfg.training.init_from)[0]
    state = source_model.state_dict()
    check_state_dict(model, state, cfg.training.init_from, "this config")
    model.load_state_dict(state)
    logger.info("weights from %s (fine-tuning: optimizer and schedule start afresh)", cfg.training.init_from)


def _wait_for(run: RunDir, cfg: Config) -> None:
    deadline = time.monotonic() + RANK_ZERO_WAIT_S
    while time.monotonic() < deadline:
        if run.config.is_file() and run.tokenizer.is_dir():
            try:
                if load_config(run.config) == cfg:
                    return
            except ConfigError:
                pass  # being written
        time.sleep(1.0)
    raise UserError(f"rank 0 did not write {run.config} within {RANK_ZERO_WAIT_S:.0f} s; is out_dir shared?")


def train_tokenizer(cfg: Config, out_dir: Path) -> Any:
    """SentencePiece model(s) trained on the training split (source+target, or the LM text)."""
    from ..data.stream_rows import tokenizer_texts
    from ..data.tokenizer import Tokenizer

    src, tgt = tokenizer_texts(cfg)
    return Tokenizer.train(src, tgt, cfg.tokenizer, out_dir)


# --------------------------------------------------------------------------------------------------
# Trainer


def _devices(value: str) -> int | str | list[int]:
    value = value.strip()
    if value.lstrip("-").isdigit():
        return int(value)
    if "," in value:
        return [int(x) for x in value.split(",") if x.strip()]
    return value


def _device_options(t: TrainingConfig, precision: str) -> dict[str, Any]:
    """The Trainer's device options from the config (the probe in check_trainer_options and the real
    Trainer build them here, so they cannot drift apart)."""
    return {
        "accelerator": t.accelerator,
        "devices": _devices(t.devices),
        "num_nodes": t.num_nodes,
        "strategy": t.strategy,
        "precision": precision,
    }


def _trainer_options(cfg: Config, run: RunDir, system: Any, extra: list[Any]) -> dict[str, Any]:
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

    t = cfg.training
    validate = bool(cfg.data.valid)  # the settings that need it were checked by check_trainer_options
    # best.ckpt only: last.ckpt is LastCheckpoint's alone (ModelCheckpoint's save_last also writes it
    # when training ends, after Lightning has closed the epoch, and a resume then skipped the rest of it)
    checkpoint = ModelCheckpoint(
        dirpath=run.checkpoints,
        filename="best",
        monitor=system.monitor if validate else None,
        mode=system.monitor_mode,
        save_last=False,
        save_top_k=1 if validate else 0,
        auto_insert_metric_name=False,
        enable_version_counter=False,
    )
    clock = StepClock()
    kept = [KeepCheckpoints(run, t.keep_checkpoints)] if validate and t.keep_checkpoints else []
    last = LastCheckpoint(run.last_ckpt, every=None if validate else t.val_every_steps)
    # last.ckpt before a validation's step checkpoint: a kill between the two leaves it the newest
    callbacks: list[Any] = [checkpoint, last, *kept, GracefulStop(), clock, *extra]
    if t.patience:
        callbacks.append(EarlyStopping(monitor=system.monitor, mode=system.monitor_mode, patience=t.patience))
    if t.progress_bar:
        callbacks.append(ProgressBar(clock, refresh_rate=1))
    every = t.val_every_steps * t.accumulate  # Lightning counts batches, our config counts optimizer steps
    return {
        **_device_options(t, cpu_precision(t)),
        "max_steps": t.max_steps,
        "max_epochs": t.max_epochs,
        "max_time": {"minutes": t.max_time} if t.max_time else None,
        "val_check_interval": every if (validate and every) else None,
        "check_val_every_n_epoch": None if (validate and every) else 1,
        "limit_val_batches": None if validate else 0,
        "accumulate_grad_batches": t.accumulate,
        "gradient_clip_val": t.clip_norm or None,
        "gradient_clip_algorithm": "norm",
        "log_every_n_steps": t.log_every_steps,
        "callbacks": callbacks,
        "plugins": [AtomicCheckpointIO()],  # the temp file beside the checkpoint, not in $TMPDIR
        "logger": _logger(cfg, run),
        "enable_progress_bar": t.progress_bar,
        "enable_model_summary": False,
        "use_distributed_sampler": False,  # TokenBatchSampler shards by rank itself
        "num_sanity_val_steps": 0,
        "default_root_dir": run.root,
    }


def _logger(cfg: Config, run: RunDir) -> Any:
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    if cfg.training.logger == "csv":
        return CSVLogger(run.root, name="logs")
    if cfg.training.logger == "tensorboard":
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            raise ConfigError(
                'training.logger=tensorboard needs TensorBoard: pip install "seq2seq-lstm[tensorboard]"; '
                "or use csv"
            ) from None
        return TensorBoardLogger(run.root, name="logs")
    return False


class LastCheckpoint(Checkpoint):
    """Writes last.ckpt, the state ``--resume`` continues: after every validation and at the final
    step; nothing else writes it. Without validation (``every`` given: ``training.val_every_steps``)
    also where the validations would have come: every ``every`` optimizer steps, or at each epoch's
    last batch when ``every`` is 0.

    Lightning's ModelCheckpoint rewrites ``last`` at a validation only when the score improved, so a
    run stopped after a worse validation would resume from an older state (and its plateau scheduler
    and early stopping would miss that validation). The final step is saved inside the loop (like
    step checkpoints) rather than after ``fit``: by then Lightning has closed the epoch, and a resume
    would skip the rest of it. Being a ``Checkpoint`` this runs after the Timer that sets
    ``should_stop`` at ``max_time`` and after EarlyStopping; a validation due at the final step saves
    last.ckpt again afterwards, with the later state.
    """

    def __init__(self, path: Path, every: int | None = None) -> None:
        self.path = path
        self.every = every
        self._saved_step = -1  # the step last saved (a step's accumulated batches save it once)

    def on_train_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        self._saved_step = trainer.global_step  # the step a run starts from needs no save

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        last_epoch = trainer.max_epochs is not None and 0 < trainer.max_epochs <= trainer.current_epoch + 1
        # the loader's end as Lightning found it (it fetches one batch ahead): a streamed epoch has no
        # length to compare batch_idx with
        last_batch = trainer.fit_loop.epoch_loop.batch_progress.is_last_batch
        if (
            trainer.should_stop
            or (trainer.max_steps > 0 and step >= trainer.max_steps)
            or (last_epoch and last_batch)
            or (self._due(step, last_batch) and step != self._saved_step)
        ):
            trainer.save_checkpoint(self.path, weights_only=False)
            self._saved_step = step

    def _due(self, step: int, last_batch: bool) -> bool:
        if self.every is None:
            return False
        return step % self.every == 0 if self.every > 0 else last_batch

    def on_validation_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        # not for the final state's validation after fit (trainer.validate): last.ckpt already holds
        # that state, written inside the loop where a resume can continue from it
        if not trainer.sanity_checking and trainer.state.fn == TrainerFn.FITTING:
            trainer.save_checkpoint(self.path, weights_only=False)


# --------------------------------------------------------------------------------------------------
# Export


def _beats(score: float | None, cb: Any, mode: str) -> bool:
    """Whether a validation ``score`` is better than the best checkpoint's (ties keep the checkpoint)."""
    if score is None:
        return False
    best = None if cb is None or cb.best_model_score is None else float(cb.best_model_score)
    if best is None or not cb.best_model_path or not Path(cb.best_model_path).is_file():
        return True
    return score > best if mode == "max" else score < best


def _export_best(trainer: Any, system: Any, run: RunDir, final_val: bool = False) -> dict[str, Any]:
    """Best checkpoint (or the last, without validation) -> model.safetensors + model.json.

    ``final_val``: the final state was validated after ``fit`` (it is last.ckpt, written at the final
    step); it is exported instead of the best checkpoint when it scores better."""
    cb = trainer.checkpoint_callback
    best = Path(cb.best_model_path) if cb is not None and cb.best_model_path else run.last_ckpt
    if not best.is_file():
        best = run.last_ckpt
    if final_val and _beats(system.val_metrics.get(system.monitor), cb, system.monitor_mode):
        best = run.last_ckpt
    ckpt = load_checkpoint_file(best)
    system.model.load_state_dict(model_state_from_checkpoint(ckpt, str(best)))
    info = ckpt.get(CKPT_KEY, {})
    # last.ckpt was written before the final validation: its scores are that validation's
    val = system.val_metrics if final_val and best == run.last_ckpt else info.get("val", {})
    meta = {
        "task": info.get("task"),
        "src_vocab": info.get("src_vocab"),
        "tgt_vocab": info.get("tgt_vocab"),
        "tokenizer_sha256": info.get("tokenizer_sha256"),
        "step": int(ckpt.get("global_step", 0)),
        "checkpoint": best.name,
        **{k: round(float(v), 4) for k, v in val.items()},
    }
    export_weights(system.model, run, meta)
    logger.info("exported %s (step %d) to %s", best.name, meta["step"], run.weights)
    return meta
