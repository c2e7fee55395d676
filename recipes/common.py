"""Plumbing shared by every recipe: config parsing, resume, audio logging, cards, Hub errors.

Recipes stay thin and linear; anything two recipes need lives here (or in `data_prep`).
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

logger = logging.getLogger(__name__)

REPO_URL = "https://github.com/tts-recipes/tts-recipes"
_VERSIONED_PACKAGES = (
    "torch", "transformers", "accelerate", "datasets", "peft", "trl", "snac", "f5-tts", "coqui-tts", "pocket-tts",
)


def parse_recipe_args(*dataclass_types, default_config: str | os.PathLike | None = None, argv: list[str] | None = None):
    """Parse dataclasses with TRL's parser: dataclass defaults < `--config recipe.yaml` < CLI flags.

    `default_config` is used when no `--config` is given (and not for `--help`), so running a script
    with no arguments runs its real recipe. `argv` replaces the command line (tests).
    """
    import sys

    from trl import TrlParser

    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    args = sys.argv[1:]
    if default_config is not None and not any(a == "--config" or a.startswith("--config=") for a in args) \
            and not any(a in ("-h", "--help") for a in args):
        sys.argv[1:1] = ["--config", str(default_config)]
    return TrlParser(dataclass_types).parse_args_and_config()


def finish_distributed() -> None:
    """Let every rank reach the end, then tear the process group down before the interpreter exits.

    Without it, a rank that finishes first can exit while another still holds the gloo/NCCL connection, and
    one of them aborts at shutdown (seen as SIGABRT on a 2-rank CPU run under load) after a good run.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def library_versions(packages: Iterable[str] = _VERSIONED_PACKAGES) -> dict[str, str]:
    """Installed versions of the packages a run depends on (for model cards and logs)."""
    versions = {}
    for name in packages:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def resume_checkpoint(training_args) -> str | None:
    """The checkpoint to resume from: the explicit `resume_from_checkpoint`, else the last one in output_dir."""
    from transformers.trainer_utils import get_last_checkpoint

    if training_args.resume_from_checkpoint:
        return training_args.resume_from_checkpoint
    if os.path.isdir(training_args.output_dir):
        last = get_last_checkpoint(training_args.output_dir)
        if last is not None:
            logger.info("Resuming from %s (set --resume_from_checkpoint or a new --output_dir to change).", last)
        return last
    return None


@contextmanager
def explain_hub_errors(what: str, demo_hint: str):
    """Turn 'no network / not cached' failures into one message naming the model and the offline demo."""
    try:
        yield
    except (OSError, ValueError) as err:
        text = str(err)
        offline_markers = ("offline", "couldn't connect", "not find", "cannot find", "connection", "does not appear",
                           "is not a local folder", "LocalEntryNotFoundError", "Repository Not Found", "gated")
        if any(marker.lower() in text.lower() for marker in offline_markers) or os.environ.get("HF_HUB_OFFLINE") == "1":
            raise SystemExit(
                f"Could not load {what}: it is neither cached nor reachable ({type(err).__name__}: {text.splitlines()[0]}).\n"
                f"Log in (`hf auth login`, accept the licence on the Hub) and run online once, point the config at a "
                f"local copy, or try the offline demo: {demo_hint}"
            ) from err
        raise


class AudioSampleLogger:
    """Writes generated audio samples to TensorBoard (and W&B when it is a report target).

    Recipes call `log(samples, step)` from their eval hook, with `samples` mapping a tag
    (e.g. "samples/balear") to `(waveform, sampling_rate)`. Files are also written as WAVs under
    `<output_dir>/samples/step-<N>/` so they can be listened to without TensorBoard.
    """

    def __init__(self, logging_dir: str, output_dir: str, report_to: Iterable[str] | str | None = ("tensorboard",)):
        if isinstance(report_to, str):
            report_to = [report_to]
        self.report_to = set(report_to or [])
        self.output_dir = Path(output_dir)
        self._writer = None
        self._logging_dir = logging_dir

    def _tensorboard(self):
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=self._logging_dir)
        return self._writer

    def log(self, samples: dict[str, tuple[np.ndarray, int]], step: int) -> list[Path]:
        from data_prep.audio import write_audio

        written = []
        for tag, (waveform, sr) in samples.items():
            waveform = np.asarray(waveform, dtype=np.float32).reshape(-1)
            path = self.output_dir / "samples" / f"step-{step}" / f"{tag.replace('/', '_')}.wav"
            write_audio(path, waveform, sr)
            written.append(path)
            if "tensorboard" in self.report_to or "all" in self.report_to:
                import torch

                self._tensorboard().add_audio(tag, torch.from_numpy(np.clip(waveform, -1, 1))[None], step, sample_rate=sr)
            if "wandb" in self.report_to:
                import wandb

                if wandb.run is not None:
                    wandb.log({tag: wandb.Audio(waveform, sample_rate=sr)}, step=step)
        if self._writer is not None:
            self._writer.flush()
        return written


def hub_repo_id(name: str | None) -> str | None:
    """`name` if it can be a Hub repo id, else None.

    The Hub refuses a push whose card metadata names a local folder as `base_model` or in `datasets`
    (400 "is not valid"), so local paths stay in the card's text only.
    """
    if not name or os.path.exists(name) or name.startswith(("/", ".", "~")) or name.count("/") > 1 or name == "demo":
        return None
    return name


def write_model_card(
    output_dir: str,
    *,
    title: str,
    base_model: str | None,
    license: str,
    language: list[str] | None,
    summary: str,
    sections: dict[str, str] | None = None,
    tags: Iterable[str] = (),
    datasets: Iterable[str] = (),
    metrics: dict[str, float] | None = None,
    library_name: str = "transformers",
) -> Path:
    """Write README.md (a Hub model card) with metadata, the training summary and library versions."""
    from huggingface_hub import ModelCard, ModelCardData

    data = ModelCardData(
        license=license,
        language=language or None,
        base_model=hub_repo_id(base_model),
        library_name=library_name,
        pipeline_tag="text-to-speech",
        tags=["text-to-speech", "tts-recipes", *tags],
        datasets=[d for d in map(hub_repo_id, datasets) if d] or None,
    )
    body = [f"# {title}", "", summary, ""]
    for heading, text in (sections or {}).items():
        body += [f"## {heading}", "", text.strip(), ""]
    if metrics:
        body += ["## Metrics", "", "| metric | value |", "|---|---|"]
        body += [f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in metrics.items()]
        body += [""]
    body += ["## Framework versions", ""] + [f"- {k}: {v}" for k, v in library_versions().items()]
    body += ["", f"Trained with [tts-recipes]({REPO_URL})."]
    card = ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body) + "\n")
    path = Path(output_dir) / "README.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    card.save(path)
    return path


def push_folder_to_hub(folder: str, repo_id: str, private: bool = False, ignore_patterns: list[str] | None = None,
                       commit_message: str = "Upload with tts-recipes") -> str:
    """Create (if needed) and upload a folder to a model repo. Returns the repo URL."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, private=private, exist_ok=True)
    api.upload_folder(folder_path=folder, repo_id=repo_id, commit_message=commit_message,
                      ignore_patterns=ignore_patterns or ["checkpoint-*", "*.pt", "*.pth", "optimizer*", "runs/*"])
    return f"https://huggingface.co/{repo_id}"


def every_n_steps(step: int, n: int | None) -> bool:
    return bool(n) and step > 0 and step % n == 0


def count_parameters(model) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def log_trainable_parameters(model, log: Callable[[str], None] = logger.info) -> tuple[int, int]:
    trainable, total = count_parameters(model)
    log(f"trainable params: {trainable:,} / {total:,} ({100 * trainable / max(total, 1):.3f}%)")
    return trainable, total


# --- The interface every recipe's generate.py exposes (used by recipes/evaluate.py) -----------------
#
#   recipes/<model>/generate.py defines
#       def load_synthesizer(model_path: str, device: str | None = None, **options) -> Synthesizer
#   returning an object with the attributes below. Evaluation loads it once and calls it in batches.

try:
    from typing import Protocol, runtime_checkable
except ImportError:  # pragma: no cover
    from typing_extensions import Protocol, runtime_checkable


@runtime_checkable
class Synthesizer(Protocol):
    sampling_rate: int
    # True for voice-cloning models (F5, XTTS, Pocket) that need `reference_audio`.
    needs_reference: bool
    # Optional attribute `last_hit_length_cap` (read with `getattr(s, "last_hit_length_cap", None)`): after
    # `synthesize`, one bool per text, True where generation stopped at the length cap instead of an
    # end-of-speech decision. Autoregressive recipes set it; absent or None means "not known" (e.g. F5,
    # whose length comes from a duration). The evaluation counts these as `no_eos` per dialect/language.
    # It is deliberately not a Protocol member: `isinstance(x, Synthesizer)` checks members, and
    # synthesizers without it must still pass.

    def synthesize(
        self,
        texts: list[str],
        *,
        speakers: list[str | None] | None = None,
        dialects: list[str | None] | None = None,
        languages: list[str | None] | None = None,
        reference_audio: list[tuple[np.ndarray, int] | None] | None = None,
        reference_texts: list[str | None] | None = None,
    ) -> list[np.ndarray]:
        """One mono float32 waveform at `sampling_rate` per text, in order."""
        ...


# ---- the CLI every recipes/<model>/generate.py shares ------------------------------------------------
def add_generate_arguments(parser, *, model_help: str, voice_help: str, voice_required: bool = False,
                           default_out: str = "generated.wav") -> None:
    """One CLI shape for the four generate.py scripts: --model --text --out --voice --language --dialect.

    The older per-recipe spellings (--model_path, --output, --output_file, --reference, --ref_audio) stay as
    aliases so commands written for earlier versions keep working.
    """
    parser.add_argument("--model", "--model_path", dest="model", required=True, help=model_help)
    parser.add_argument("--text", action="append", required=True,
                        help="text to speak (repeat for several: --out is then a folder)")
    parser.add_argument("--out", "--output", "--output_file", dest="out", default=default_out,
                        help="a path ending in .wav for one text; otherwise a folder with one numbered WAV per text")
    parser.add_argument("--voice", "--reference", "--ref_audio", dest="voice", required=voice_required, default=None,
                        help=voice_help)
    parser.add_argument("--language", default=None, help="language code of the text (multilingual models)")
    parser.add_argument("--dialect", default=None, help="dialect label, for models trained with dialect prompts/tags")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")


def output_wav_paths(out: str | os.PathLike, n_texts: int) -> list[Path]:
    """Where generate.py writes: `x.wav` is that file for one text; anything else is a folder of 000.wav, 001.wav ..."""
    out = Path(out)
    if out.suffix.lower() == ".wav":
        if n_texts != 1:
            raise ValueError(f"--out {out} names one WAV file but {n_texts} texts were given: "
                             "pass a folder (no .wav suffix) to get one WAV per text")
        out.parent.mkdir(parents=True, exist_ok=True)
        return [out]
    out.mkdir(parents=True, exist_ok=True)
    return [out / f"{i:03d}.wav" for i in range(n_texts)]
