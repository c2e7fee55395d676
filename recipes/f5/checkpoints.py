"""F5-TTS checkpoints: model configs, reading every released/training form, vocab extension, upstream export.

Forms we read (detected from content, never from the file name):
- full training checkpoint `.pt`: {model_state_dict, optimizer_state_dict, ema_model_state_dict,
  scheduler_state_dict, update|step}. Upstream's trainer *resumes* these (firstpixel's model_200000.pt
  restarts at update 200000 and, on a small dataset, trains zero steps). We take the weights only and
  start at step 0.
- EMA-only `.pt`: {ema_model_state_dict} (v0 releases).
- `.safetensors`: `ema_model.transformer.*` + `initted` + `step` (v1 releases), or raw `transformer.*`;
  any of these may carry DDP's `module.` or torch.compile's `_orig_mod.` prefix.

Convert a `.pt` to an EMA-only `.safetensors` (what upstream inference and its trainer's `pretrained_*`
path both accept):

    python -m recipes.f5.checkpoints model_200000.pt model_200000.safetensors
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

TEXT_EMBEDDING_KEY = "transformer.text_embed.text_embed.weight"
COUNTER_KEYS = ("initted", "step", "update")
# Filterbank/window buffers that pre-305e3ea upstream versions stored in state dicts.
LEGACY_BUFFER_PREFIX = "mel_spec.mel_stft."
STRIPPED_PREFIXES = ("module.", "ema_model.", "_orig_mod.")

# For tests and the CPU demo; everything else names an upstream config explicitly (v0 vs v1 differ in RoPE
# and padding semantics but not in shapes, so the name is the only safeguard).
TINY_ARCH = dict(dim=64, depth=2, heads=2, dim_head=32, ff_mult=2, text_dim=32, conv_layers=1)
# For proving that training works (scripts/prove_learning.py: a few clips, from scratch, CPU minutes): `tiny` with
# upstream's `text_embedding_average_upsampling` (zipvoice-style: each character's embedding is spread evenly over
# the clip's frames instead of sitting on the first frames followed by fillers) and no dropout. F5 learns which
# frames say which character only through attention, which `tiny` does not learn in minutes (1500 steps on one
# clip still put the words in the wrong places); the even spread is a rough alignment to start from. Dropout only
# slows an overfit down (900 steps: Griffin-Lim mel rel L1 0.64-0.68 with 0.1, 0.39-0.59 with 0). Training and
# inference both read these flags from the arch (f5_config.yaml).
TINY_OVERFIT_ARCH = dict(TINY_ARCH, text_embedding_average_upsampling=True, dropout=0.0)
PRESETS = {"tiny": TINY_ARCH, "tiny_overfit": TINY_OVERFIT_ARCH}


def resolve_model_config(name_or_path: str) -> dict:
    """DiT kwargs for a preset (`tiny`, `tiny_overfit`), an upstream config name (F5TTS_Base = v0,
    F5TTS_v1_Base, ...), or a YAML file that is either an upstream-style config (model.arch) or a flat mapping of
    DiT kwargs."""
    import yaml

    if name_or_path in PRESETS:
        return dict(PRESETS[name_or_path])
    path = Path(name_or_path)
    if not path.is_file():
        path = Path(str(files("f5_tts").joinpath(f"configs/{name_or_path}.yaml")))
    if not path.is_file():
        shipped = sorted(p.stem for p in Path(str(files("f5_tts").joinpath("configs"))).glob("*.yaml"))
        raise ValueError(f"model_config {name_or_path!r} is neither a file nor an upstream config; use a preset "
                         f"{sorted(PRESETS)}, one of {shipped}, or a YAML path.")
    config = yaml.safe_load(path.read_text())
    arch = config.get("model", {}).get("arch", config) if isinstance(config, dict) else None
    if not isinstance(arch, dict):
        raise ValueError(f"{path}: expected `model: {{arch: ...}}` or a mapping of DiT arguments")
    if config.get("model", {}).get("backbone", "DiT") != "DiT":
        raise ValueError(f"{path}: this recipe trains the DiT backbone, the config names {config['model']['backbone']}")
    return dict(arch)


def build_model(arch: dict, vocab: list[str], mel_spec_type: str = "vocos"):
    """An upstream `CFM(DiT)` exactly as upstream inference (`load_model`) builds it for this vocab."""
    from f5_tts.model import CFM, DiT

    from recipes.f5.data import HOP_LENGTH, N_FFT, N_MELS, SAMPLING_RATE, WIN_LENGTH

    return CFM(
        transformer=DiT(**arch, text_num_embeds=len(vocab), mel_dim=N_MELS),
        mel_spec_kwargs=dict(n_fft=N_FFT, hop_length=HOP_LENGTH, win_length=WIN_LENGTH, n_mel_channels=N_MELS,
                             target_sample_rate=SAMPLING_RATE, mel_spec_type=mel_spec_type),
        odeint_kwargs=dict(method="euler"),
        vocab_char_map={symbol: i for i, symbol in enumerate(vocab)},
    )


# --- reading -------------------------------------------------------------------------------------------

@dataclass
class CheckpointContents:
    form: str  # "full-training" | "ema-only" | "raw-weights"
    ema: dict[str, torch.Tensor] | None  # normalised to CFM state-dict keys
    online: dict[str, torch.Tensor] | None
    counter: int | None  # the update/step the file was saved at (what upstream would resume from)

    @property
    def vocab_rows(self) -> int:
        weights = self.ema if self.ema is not None else self.online
        return weights[TEXT_EMBEDDING_KEY].shape[0]


def normalise_keys(state: dict) -> dict[str, torch.Tensor]:
    """Strip `module.`/`ema_model.`/`_orig_mod.` in any order; drop EMA counters and legacy mel buffers."""
    clean = {}
    for key, value in state.items():
        changed = True
        while changed:
            changed = False
            for prefix in STRIPPED_PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix):], True
        if key in COUNTER_KEYS or key.startswith(LEGACY_BUFFER_PREFIX):
            continue
        clean[key] = value
    return clean


def _has_ema_prefix(state: dict) -> bool:
    return any(k.replace("module.", "").startswith("ema_model.") for k in state)


def read_checkpoint(path: str | Path) -> CheckpointContents:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        raw = load_file(str(path), device="cpu")
    else:
        # mmap: the 5.4 GB full checkpoints are mostly optimizer moments we never touch. Files written before
        # torch 1.6 (legacy, non-zip format) cannot be mapped and are read whole.
        try:
            raw = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as err:
            if "mmap" not in str(err):
                raise
            raw = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a dict of tensors or a training checkpoint, got {type(raw).__name__}")

    if "ema_model_state_dict" in raw or "model_state_dict" in raw:
        counter = raw.get("update", raw.get("step"))
        full = counter is not None or "optimizer_state_dict" in raw
        ema = normalise_keys(raw["ema_model_state_dict"]) if "ema_model_state_dict" in raw else None
        online = normalise_keys(raw["model_state_dict"]) if "model_state_dict" in raw else None
        if counter is None and raw.get("ema_model_state_dict", {}).get("step") is not None:
            counter = int(raw["ema_model_state_dict"]["step"])
        contents = CheckpointContents("full-training" if full else "ema-only", ema, online,
                                      None if counter is None else int(counter))
    elif all(isinstance(v, torch.Tensor) for v in raw.values()):
        step = raw.get("step", raw.get("module.step"))
        if _has_ema_prefix(raw):
            contents = CheckpointContents("ema-only", normalise_keys(raw), None, None if step is None else int(step))
        else:
            contents = CheckpointContents("raw-weights", None, normalise_keys(raw), None)
    else:
        raise ValueError(f"{path}: unrecognised checkpoint layout, top-level keys {sorted(raw)[:10]}")
    weights = contents.ema if contents.ema is not None else contents.online
    if TEXT_EMBEDDING_KEY not in weights:
        raise ValueError(f"{path}: no {TEXT_EMBEDDING_KEY}; keys start {sorted(weights)[:5]}. Is this an F5-TTS DiT?")
    return contents


def load_initial_weights(model, path: str | Path, init_from: str = "ema") -> CheckpointContents:
    """Load weights for fine-tuning. Whatever counter the file holds, training starts at step 0."""
    contents = read_checkpoint(path)
    if init_from == "ema":
        weights = contents.ema
        if weights is None:
            logger.warning("%s holds no EMA weights (%s); initialising from its plain weights.", path, contents.form)
            weights = contents.online
    elif init_from == "online":
        weights = contents.online
        if weights is None:
            raise ValueError(f"{path} is an {contents.form} checkpoint without online weights; use init_from=ema")
    else:
        raise ValueError(f"init_from must be 'ema' or 'online', got {init_from!r}")

    expected_rows = model.transformer.text_embed.text_embed.weight.shape[0]
    rows = weights[TEXT_EMBEDDING_KEY].shape[0]
    if rows != expected_rows:
        raise ValueError(f"{path}: text embedding has {rows} rows (vocab of {rows - 1} symbols) but the vocab file gives "
                         f"{expected_rows - 1}. Use the vocab.txt the checkpoint was trained with (vocab_file).")
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{path} does not match model_config: {str(err).splitlines()[0]} ... Check model_config "
                         f"(F5TTS_Base for v0-era checkpoints, F5TTS_v1_Base for v1).") from err
    logger.info("Loaded %s checkpoint %s (%s weights%s); fine-tuning starts at step 0.", contents.form, path, init_from,
                f", saved at update {contents.counter}" if contents.counter is not None else "")
    return contents


# --- vocab extension -------------------------------------------------------------------------------------

def extend_text_embedding(model, new_symbols: int, seed: int = 666, init_from: list[int | None] | None = None) -> None:
    """Append `new_symbols` rows to the DiT text embedding; existing rows are kept bit-for-bit. New row i is a
    copy of the row of vocab id `init_from[i]` (e.g. Ô starts as ô: see `data.initial_rows`), else N(0, 1)
    like upstream's `expand_model_embeddings` (a random row reads as noise until enough data trains it)."""
    if new_symbols <= 0:
        return
    old = model.transformer.text_embed.text_embed
    generator = torch.Generator().manual_seed(seed)
    extra = torch.randn(new_symbols, old.embedding_dim, generator=generator).to(old.weight)
    for i, source_id in enumerate(init_from or []):
        if source_id is not None:
            extra[i] = old.weight.detach()[source_id + 1]  # row 0 is the filler: vocab id k sits at row k + 1
    grown = torch.nn.Embedding(old.num_embeddings + new_symbols, old.embedding_dim).to(old.weight)
    with torch.no_grad():
        grown.weight.copy_(torch.cat([old.weight, extra]))
    model.transformer.text_embed.text_embed = grown


# --- writing (upstream formats) ----------------------------------------------------------------------------

def ema_state_for_upstream(ema_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`ema_model.*` + `initted` + `step`, as ema_pytorch.EMA(include_online_model=False).state_dict() has them."""
    out = {k: v for k, v in ema_state.items() if k.startswith("ema_model.") or k in ("initted", "step")}
    out.setdefault("initted", torch.tensor(True))
    out.setdefault("step", torch.tensor(0))
    return out


def save_training_checkpoint(path: str | Path, *, model_state: dict, ema_state: dict, optimizer_state: dict,
                             scheduler_state: dict, update: int) -> Path:
    """The five-key file upstream's `Trainer.save_checkpoint` writes; upstream's trainer resumes from it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(dict(model_state_dict=model_state, optimizer_state_dict=optimizer_state,
                    ema_model_state_dict=ema_state_for_upstream(ema_state), scheduler_state_dict=scheduler_state,
                    update=int(update)), path)
    return path


def save_ema_safetensors(path: str | Path, ema_state: dict) -> Path:
    """EMA-only weights in the v1 release layout: upstream inference loads it with use_ema=True, and upstream's
    trainer takes it as a `pretrained_*` file starting at update 0."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in ema_state_for_upstream(ema_state).items()}
    save_file(tensors, str(path))
    return path


def convert_to_safetensors(src: str | Path, dst: str | Path, use: str = "ema") -> Path:
    contents = read_checkpoint(src)
    weights = contents.ema if use == "ema" else contents.online
    if weights is None:
        raise ValueError(f"{src} ({contents.form}) has no {use} weights; pick --use {'online' if use == 'ema' else 'ema'}")
    state = {f"ema_model.{k}": v for k, v in weights.items()}
    state["step"] = torch.tensor(contents.counter or 0)
    return save_ema_safetensors(dst, state)


# --- vocoder -------------------------------------------------------------------------------------------------

VOCOS_24KHZ_CONFIG = """\
feature_extractor:
  class_path: vocos.feature_extractors.MelSpectrogramFeatures
  init_args: {sample_rate: 24000, n_fft: 1024, hop_length: 256, n_mels: 100, padding: center}
backbone:
  class_path: vocos.models.VocosBackbone
  init_args: {input_channels: 100, dim: 512, intermediate_dim: 1536, num_layers: 8}
head:
  class_path: vocos.heads.ISTFTHead
  init_args: {dim: 512, n_fft: 1024, hop_length: 256, padding: same}
"""


def write_random_vocos(folder: str | Path, seed: int = 0) -> Path:
    """A random-weight Vocos with the architecture of charactr/vocos-mel-24khz, saved the way upstream's
    `load_vocoder("vocos", is_local=True, local_path=folder)` reads it. It produces noise-like audio: for
    offline tests and demos only; real runs point `vocoder_path` at the real files."""
    from vocos import Vocos

    folder = Path(folder)
    if (folder / "pytorch_model.bin").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(VOCOS_24KHZ_CONFIG)
    torch.manual_seed(seed)
    vocoder = Vocos.from_hparams(str(folder / "config.yaml"))
    torch.save(vocoder.state_dict(), folder / "pytorch_model.bin")
    return folder


def load_vocoder(vocoder_path: str | None, mel_spec_type: str, device: str, scratch_dir: str | Path):
    """Upstream's vocoder loader: None -> the Hub release, "random" -> a random-weight Vocos, else a local folder."""
    from f5_tts.infer.utils_infer import load_vocoder as upstream_load_vocoder

    from recipes.common import explain_hub_errors

    if vocoder_path == "random":
        if mel_spec_type != "vocos":
            raise ValueError("vocoder_path=random builds a Vocos; bigvgan needs its real local files")
        vocoder_path = str(write_random_vocos(Path(scratch_dir) / "random_vocos"))
    if vocoder_path:
        return upstream_load_vocoder(mel_spec_type, is_local=True, local_path=vocoder_path, device=device)
    with explain_hub_errors(f"the {mel_spec_type} vocoder", "set vocoder_path: random (recipes/f5/configs/demo.yaml)"):
        return upstream_load_vocoder(mel_spec_type, is_local=False, device=device)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Convert any F5-TTS checkpoint to an EMA-only .safetensors.")
    parser.add_argument("src", help="a full training .pt, an EMA-only .pt or a .safetensors")
    parser.add_argument("dst", help="output .safetensors")
    parser.add_argument("--use", choices=("ema", "online"), default="ema", help="which weights to keep (default ema)")
    args = parser.parse_args(argv)
    contents = read_checkpoint(args.src)
    print(f"{args.src}: {contents.form} checkpoint, vocab rows {contents.vocab_rows}, counter {contents.counter}")
    print(f"wrote {convert_to_safetensors(args.src, args.dst, args.use)}")


if __name__ == "__main__":
    main()
