"""XTTS-v2 pieces for adapter training, built on the upstream `coqui-tts` classes.

Only the GPT-2 stack inside `Xtts.gpt` gets LoRA weights; the DVAE (which turns audio into the
codes the GPT predicts), the conditioning encoder/perceiver and the HiFi-GAN decoder stay frozen.
The loss is upstream's (0.01 x text CE + 1.0 x audio-code CE) except for the prompt mask: upstream
0.28.0 masks the conditioning span of the *last* batch item only (coqui-ai/TTS #3388) and divides
its sample indices by 256 instead of the 1024-sample code stride (#3631). `xtts_gpt_losses` masks
every item, in code units.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)

GPT_SAMPLE_RATE = 22_050  # the GPT, DVAE and conditioning mels all run at 22.05 kHz
OUTPUT_SAMPLE_RATE = 24_000  # HiFi-GAN output
IGNORE_INDEX = -1  # upstream's ignore index; kept so targets compare 1:1 with theirs

# The GPT-2 blocks' fused qkv, attention output, MLP in and MLP out projections (HF `Conv1D`).
GPT_LORA_TARGETS = r".*\.gpt\.gpt\.h\.\d+\.(attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj)"
# The perceiver resampler's cross-attention projections (plain nn.Linear).
PERCEIVER_LORA_TARGETS = r".*\.gpt\.conditioning_perceiver\.layers\.\d+\.0\.(to_q|to_kv|to_out)"

# Upstream GPTTrainer builds the DVAE from these hard-coded arguments (num_tokens = audio tokens - 2).
DVAE_ARGS = dict(channels=80, normalization=None, positional_dims=1, codebook_dim=512, hidden_dim=512,
                 num_resnet_blocks=3, kernel_size=3, num_layers=2, use_transposed_convs=False)
# Files a base folder needs; dvae.pth / mel_stats.pth are only for training.
BASE_FILES = ("config.json", "model.pth", "vocab.json", "dvae.pth", "mel_stats.pth")
OPTIONAL_BASE_FILES = ("speakers_xtts.pth", "dvae_args.json")
RECIPE_INFO = "xtts_adapter.json"  # training language + base model, beside the merged files


def resolve_base_model(base_model: str, cache_dir: str | None = None) -> Path:
    """A local folder with the XTTS files, downloading `base_model` from the Hub when it is an id."""
    path = Path(base_model)
    if path.is_dir():
        missing = [name for name in ("config.json", "model.pth", "vocab.json") if not (path / name).is_file()]
        if missing:
            raise FileNotFoundError(f"{path}: missing {missing}; an XTTS folder needs {list(BASE_FILES)}")
        return path
    from huggingface_hub import snapshot_download

    from recipes.common import explain_hub_errors

    with explain_hub_errors(f"XTTS base model '{base_model}'", "accelerate launch recipes/xtts/train_adapter.py "
                            "--config recipes/xtts/configs/demo.yaml"):
        local = snapshot_download(base_model, cache_dir=cache_dir,
                                  allow_patterns=list(BASE_FILES + OPTIONAL_BASE_FILES + ("LICENSE.txt",)))
    return Path(local)


def load_xtts_config(base_dir: Path):
    from TTS.tts.configs.xtts_config import XttsConfig

    config = XttsConfig()
    config.load_json(str(base_dir / "config.json"))
    return config


def load_xtts(base_dir: Path, device: str | torch.device = "cpu"):
    """Load `Xtts` for training: weights checked key by key, no inference-only modules attached.

    Upstream's `load_checkpoint(strict=False)` would leave any missing weight silently random, so the
    missing keys are checked here; `eval=False` keeps `gpt.gpt.wte` (tied to the mel embedding by
    `init_gpt_for_inference`) out of the module tree, which would otherwise break state-dict saving.
    """
    from TTS.tts.models.xtts import Xtts

    from recipes.xtts.text import load_tokenizer

    config = load_xtts_config(base_dir)
    tokenizer = load_tokenizer(base_dir)  # upstream's, plus what this folder was trained with (normaliser ...)
    set_text_token_args(config, tokenizer)
    xtts = Xtts(config)  # builds the GPT at once, as the text-token arguments are set
    xtts.tokenizer = tokenizer
    state = read_xtts_state_dict(base_dir / "model.pth")
    result = xtts.load_state_dict(state, strict=False)
    inference_only = ("gpt.gpt_inference.", "gpt.gpt.wte.")
    unexpected = [k for k in result.unexpected_keys if not k.startswith(inference_only)]
    if result.missing_keys or unexpected:
        raise ValueError(f"{base_dir / 'model.pth'} does not match config.json: missing {result.missing_keys[:8]} "
                         f"(of {len(result.missing_keys)}), unexpected {unexpected[:8]} (of {len(unexpected)}). "
                         "Check that config.json and vocab.json belong to this checkpoint.")
    return config, xtts.to(device)


def read_xtts_state_dict(model_path: Path) -> dict:
    """The `model` state dict of an XTTS checkpoint, read WITHOUT writing anything.

    Upstream `Xtts._load_checkpoint` converts the official `model.pth` (which pickles an `XttsConfig`,
    refused by torch's `weights_only` loader) and then saves the converted file over the original:
    that fails on a read-only Hub cache and silently alters the user's cache. The same conversion is
    done here in memory only; the key renames match `Xtts.get_compatible_checkpoint_state_dict`.
    """
    import pickle

    try:
        checkpoint = torch.load(model_path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        from TTS.tts.models.xtts import _legacy_safe_globals  # the legacy config classes, allow-listed

        with _legacy_safe_globals():
            checkpoint = torch.load(model_path, map_location="cpu", weights_only=True)
    state = checkpoint["model"]
    dropped = ("torch_mel_spectrogram_style_encoder", "torch_mel_spectrogram_dvae", "dvae")  # GPTTrainer extras
    out = {}
    for key, value in state.items():
        key = key[len("xtts."):] if key.startswith("xtts.") else key
        if key.split(".")[0] not in dropped:
            out[key] = value
    return out


def set_text_token_args(config, tokenizer) -> None:
    """The text-vocabulary arguments `Xtts.init_models` derives from the tokenizer, set up front so the
    model is built once (upstream builds it without a GPT, then again with one)."""
    args = config.model_args
    args.gpt_number_text_tokens = tokenizer.get_number_tokens()
    args.gpt_start_text_token = tokenizer.tokenizer.token_to_id("[START]")
    args.gpt_stop_text_token = tokenizer.tokenizer.token_to_id("[STOP]")
    if args.gpt_start_text_token is None or args.gpt_stop_text_token != 0:
        raise ValueError("vocab.json needs a [START] token and [STOP] with id 0 (XTTS pads text with id 0)")


class ConditioningMel(nn.Module):
    """The style-encoder mel (n_fft 2048, hop 256, win 1024, 80 bins) that `Xtts.get_gpt_cond_latents` uses."""

    def __init__(self, mel_stats: torch.Tensor, n_fft=2048, hop_length=256, win_length=1024):
        super().__init__()
        import torchaudio

        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=GPT_SAMPLE_RATE, n_fft=n_fft, hop_length=hop_length, win_length=win_length, power=2,
            normalized=False, f_min=0, f_max=8000, n_mels=80, norm="slaney")
        self.register_buffer("mel_stats", mel_stats.detach().clone().float(), persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        # Full precision even under bf16 autocast: log-mel of small powers loses too much in bf16.
        with torch.autocast(device_type=wave.device.type, enabled=False):
            mel = torch.log(torch.clamp(self.mel(wave.float()), min=1e-5))
            return mel / self.mel_stats[:, None]


class DvaeCoder(nn.Module):
    """Audio (22.05 kHz) -> discrete codes with the frozen DVAE; deterministic, so done once in data prep."""

    def __init__(self, dvae_path: Path, num_audio_tokens: int, mel_stats: torch.Tensor, dvae_args: dict | None = None):
        super().__init__()
        from TTS.tts.layers.xtts.dvae import DiscreteVAE

        self.dvae = DiscreteVAE(num_tokens=num_audio_tokens - 2, **(dvae_args or DVAE_ARGS))
        state = torch.load(dvae_path, map_location="cpu", weights_only=True)
        # The official dvae.pth carries the decoder too; only encoder + codebook must be present.
        result = self.dvae.load_state_dict(state, strict=False)
        needed = [k for k in result.missing_keys if k.startswith(("encoder", "codebook"))]
        if needed:
            raise ValueError(f"{dvae_path}: DVAE weights missing {needed[:8]}; is it the XTTS-v2 dvae.pth?")
        self.dvae.eval().requires_grad_(False)
        self.mel = ConditioningMel(mel_stats, n_fft=1024, hop_length=256, win_length=1024)

    @classmethod
    def from_base(cls, base_dir: Path, config, mel_stats: torch.Tensor | None = None) -> "DvaeCoder":
        if mel_stats is None:
            mel_stats = torch.load(base_dir / "mel_stats.pth", map_location="cpu", weights_only=True)
        args_file = base_dir / "dvae_args.json"
        dvae_args = {**DVAE_ARGS, **json.loads(args_file.read_text())} if args_file.is_file() else None
        return cls(base_dir / "dvae.pth", config.model_args.gpt_num_audio_tokens, mel_stats, dvae_args)

    @torch.no_grad()
    def encode(self, wave: torch.Tensor) -> torch.Tensor:
        """(T,) float wave at 22.05 kHz -> (ceil(T/1024),) long codes (upstream's code count)."""
        mel = self.mel(wave[None])
        codes = self.dvae.get_codebook_indices(mel)[0]
        return codes[: math.ceil(wave.shape[-1] / 1024)]


def code_span(prompt_start: int, prompt_end: int, code_stride: int = 1024) -> tuple[int, int]:
    """The codes a [start, end) sample span touches: code j covers samples [j*stride, (j+1)*stride)."""
    return prompt_start // code_stride, -(-prompt_end // code_stride)


def xtts_gpt_losses(gpt, text_ids, text_lengths, audio_codes, code_lengths, cond_latents, prompt_spans,
                    return_logits: bool = False):
    """Text CE and audio-code CE of upstream `GPT.forward`, with the prompt masked per item.

    text_ids (B, Tt) and audio_codes (B, Tc) are right-padded; code_lengths counts real codes;
    cond_latents is (B, 32, D); prompt_spans (B, 2) holds the [start, end) samples of the target clip
    that the conditioning slice was cut from, or (-1, -1) when it came from another clip.
    """
    batch = text_ids.shape[0]
    max_text = int(text_lengths.max())
    max_codes = int(code_lengths.max()) + 3  # upstream's "+3": real codes, then stop tokens
    text = F.pad(text_ids[:, :max_text], (0, 1), value=gpt.stop_text_token)
    codes = F.pad(audio_codes[:, :max_codes], (0, max_codes - min(max_codes, audio_codes.shape[1]) + 1),
                  value=gpt.stop_audio_token)
    positions = torch.arange(codes.shape[1], device=codes.device)[None]
    codes = codes.masked_fill(positions >= code_lengths[:, None], gpt.stop_audio_token)

    text_in, text_targets = F.pad(text, (1, 0), value=gpt.start_text_token), F.pad(text, (0, 1), value=gpt.stop_text_token)
    codes_in, code_targets = F.pad(codes, (1, 0), value=gpt.start_audio_token), F.pad(codes, (0, 1), value=gpt.stop_audio_token)

    # Attend to [START] + text and [START] + codes + 3 stops, as upstream; ignore the rest in the loss.
    text_pos = torch.arange(text_in.shape[1], device=text_in.device)[None]
    code_pos = torch.arange(codes_in.shape[1], device=codes_in.device)[None]
    text_keep = text_pos <= text_lengths[:, None]
    code_keep = code_pos <= (code_lengths + 3)[:, None]
    text_targets = text_targets.masked_fill(~text_keep, IGNORE_INDEX)
    code_targets = code_targets.masked_fill(~code_keep, IGNORE_INDEX)
    # Target j is code j, so the span's codes are masked in every item (not just the last), in code units.
    for item in range(batch):
        start, end = (int(v) for v in prompt_spans[item])
        if start >= 0 and end > start:
            first, last = code_span(start, end, gpt.code_stride_len)
            code_targets[item, first:last] = IGNORE_INDEX

    text_emb = gpt.text_embedding(text_in) + gpt.text_pos_embedding(text_in)
    code_emb = gpt.mel_embedding(codes_in) + gpt.mel_pos_embedding(codes_in)
    cond_mask = torch.ones(batch, cond_latents.shape[1], dtype=torch.bool, device=text_in.device)
    attention_mask = torch.cat([cond_mask, text_keep, code_keep], dim=1)
    hidden = gpt.gpt(inputs_embeds=torch.cat([cond_latents, text_emb, code_emb], dim=1),
                     attention_mask=attention_mask, return_dict=True).last_hidden_state
    hidden = gpt.final_norm(hidden[:, cond_latents.shape[1]:])
    text_logits = gpt.text_head(hidden[:, : text_in.shape[1]]).transpose(1, 2)
    code_logits = gpt.mel_head(hidden[:, text_in.shape[1]:]).transpose(1, 2)
    loss_text = F.cross_entropy(text_logits, text_targets, ignore_index=IGNORE_INDEX)
    loss_codes = F.cross_entropy(code_logits, code_targets, ignore_index=IGNORE_INDEX)
    if return_logits:  # (B, vocab, T) each, for checks on the text/audio predictions
        return loss_text, loss_codes, text_logits, code_logits
    return loss_text, loss_codes


class XttsAdapterModel(nn.Module):
    """The frozen XTTS plus the training forward: conditioning latents per item, then the GPT losses."""

    def __init__(self, xtts, text_ce_weight: float = 0.01, mel_ce_weight: float = 1.0):
        super().__init__()
        self.xtts = xtts
        self.text_ce_weight = text_ce_weight
        self.mel_ce_weight = mel_ce_weight
        self.cond_mel = ConditioningMel(xtts.mel_stats)

    def train(self, mode: bool = True):
        # Upstream trains with the whole model in eval() and only the GPT in train() (dropout on).
        super().train(False)
        self.xtts.gpt.train(mode)
        return self

    def conditioning_latents(self, cond_waves: torch.Tensor, cond_lengths: torch.Tensor) -> torch.Tensor:
        # One item at a time: the conditioning encoder has no padding mask, so a zero-padded clip
        # would change the style latents.
        latents = [self.xtts.gpt.get_style_emb(self.cond_mel(cond_waves[i : i + 1, : int(n)]))
                   for i, n in enumerate(cond_lengths)]
        return torch.cat(latents, dim=0).transpose(1, 2)

    def forward(self, text_ids, text_lengths, audio_codes, code_lengths, cond_waves, cond_lengths, prompt_spans):
        cond_latents = self.conditioning_latents(cond_waves, cond_lengths)
        loss_text, loss_mel = xtts_gpt_losses(self.xtts.gpt, text_ids, text_lengths, audio_codes, code_lengths,
                                              cond_latents, prompt_spans)
        loss_text, loss_mel = loss_text * self.text_ce_weight, loss_mel * self.mel_ce_weight
        return {"loss": loss_text + loss_mel, "loss_text_ce": loss_text.detach(), "loss_mel_ce": loss_mel.detach()}


class ExtendedEmbedding(nn.Module):
    """`nn.Embedding` grown by appended rows: the base rows are a frozen buffer, the new rows train.

    Base tokens keep exactly their vectors (old-language behaviour unchanged); under LoRA, peft's
    `modules_to_save` copies this module, so the new rows are trained and saved with the adapter.
    """

    def __init__(self, base_weight: torch.Tensor, new_weight: torch.Tensor):
        super().__init__()
        self.register_buffer("base_weight", base_weight.detach().clone(), persistent=False)
        self.new_weight = nn.Parameter(new_weight.detach().clone())

    @property
    def weight(self) -> torch.Tensor:
        return torch.cat([self.base_weight, self.new_weight])

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.weight)


class ExtendedLinear(nn.Module):
    """`nn.Linear` (the text head) with appended output rows: base rows/bias frozen, new ones train."""

    def __init__(self, base: nn.Linear, new_weight: torch.Tensor, new_bias: torch.Tensor):
        super().__init__()
        self.register_buffer("base_weight", base.weight.detach().clone(), persistent=False)
        self.register_buffer("base_bias", base.bias.detach().clone(), persistent=False)
        self.new_weight = nn.Parameter(new_weight.detach().clone())
        self.new_bias = nn.Parameter(new_bias.detach().clone())

    @property
    def weight(self) -> torch.Tensor:
        return torch.cat([self.base_weight, self.new_weight])

    @property
    def bias(self) -> torch.Tensor:
        return torch.cat([self.base_bias, self.new_bias])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)


TEXT_LAYERS = ("text_embedding", "text_head")  # peft modules_to_save when the vocabulary grew


def extend_text_layers(gpt, sources: list[list[int]]) -> int:
    """Grow `gpt.text_embedding` and `gpt.text_head` (weight and bias) by one row per entry of
    `sources`, each initialised as the mean of the listed old rows. Returns the new vocabulary size."""
    embedding, head = gpt.text_embedding, gpt.text_head
    with torch.no_grad():
        new_emb = torch.stack([embedding.weight[ids].mean(0) for ids in sources])
        new_head = torch.stack([head.weight[ids].mean(0) for ids in sources])
        new_bias = torch.stack([head.bias[ids].mean(0) for ids in sources])
    gpt.text_embedding = ExtendedEmbedding(embedding.weight, new_emb)
    gpt.text_head = ExtendedLinear(head, new_head, new_bias)
    gpt.number_text_tokens = embedding.weight.shape[0] + len(sources)
    return gpt.number_text_tokens


def finalize_text_layers(xtts):
    """Plain `nn.Embedding` / `nn.Linear` again (the layout upstream `Xtts` builds and loads)."""
    gpt = xtts.gpt
    if isinstance(gpt.text_embedding, ExtendedEmbedding):
        weight = gpt.text_embedding.weight.detach()
        gpt.text_embedding = nn.Embedding(*weight.shape).to(weight)
        gpt.text_embedding.weight.data.copy_(weight)
    if isinstance(gpt.text_head, ExtendedLinear):
        weight, bias = gpt.text_head.weight.detach(), gpt.text_head.bias.detach()
        gpt.text_head = nn.Linear(weight.shape[1], weight.shape[0]).to(weight)
        gpt.text_head.weight.data.copy_(weight)
        gpt.text_head.bias.data.copy_(bias)
    return xtts


def is_extended(xtts) -> bool:
    return isinstance(xtts.gpt.text_embedding, ExtendedEmbedding)


def prepare_for_adapter(xtts, config, adapter_dir: Path) -> None:
    """Make a freshly loaded base fit an adapter: the adapter's tokenizer (saved beside it: vocab.json
    and the `text` entry of xtts_adapter.json) and, when its vocabulary is larger, text layers grown to
    that size (their trained new rows come from the adapter's `modules_to_save`)."""
    from recipes.xtts.text import load_tokenizer

    if not (adapter_dir / "vocab.json").is_file():
        return
    tokenizer = load_tokenizer(adapter_dir)
    size = xtts.gpt.text_embedding.weight.shape[0]
    if tokenizer.get_number_tokens() > size:
        if tokenizer.base_vocab_size != size:
            raise ValueError(f"{adapter_dir}: its vocabulary extends a {tokenizer.base_vocab_size}-token base; "
                             f"this base has {size} text tokens. Pass the base it was trained on (--base_model).")
        extend_text_layers(xtts.gpt, [[0]] * (tokenizer.get_number_tokens() - size))  # rows come from the adapter
    xtts.tokenizer = tokenizer
    set_text_token_args(config, tokenizer)


@dataclass
class AdapterSpec:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    perceiver: bool = False


def add_lora(model: XttsAdapterModel, spec: AdapterSpec, base_model: str):
    """Freeze everything, then wrap the GPT-2 Conv1D projections (and optionally the perceiver) in LoRA."""
    from peft import LoraConfig, get_peft_model

    model.requires_grad_(False)
    targets = GPT_LORA_TARGETS + (f"|{PERCEIVER_LORA_TARGETS}" if spec.perceiver else "")
    # fan_in_fan_out: HF Conv1D stores weights [in, out]. peft flips the flag per module type while
    # wrapping (the perceiver's nn.Linear get False), so each layer gets the right layout either way.
    # Grown text layers are not LoRA-able: their new rows train whole and are saved with the adapter.
    modules_to_save = list(TEXT_LAYERS) if is_extended(model.xtts) else None
    config = LoraConfig(r=spec.r, lora_alpha=spec.alpha, lora_dropout=spec.dropout, target_modules=targets,
                        fan_in_fan_out=True, bias="none", base_model_name_or_path=base_model,
                        modules_to_save=modules_to_save)
    peft_model = get_peft_model(model, config)
    # Recorded values: the GPT Conv1D layout (see above) and where generate.py finds the base model.
    peft_model.peft_config["default"].fan_in_fan_out = True
    peft_model.peft_config["default"].base_model_name_or_path = base_model
    return peft_model


def enable_activation_checkpointing(gpt) -> None:
    """Recompute each GPT-2 block in the backward pass. transformers' public switch calls
    `get_input_embeddings()` (XTTS deletes `wte`) only to make inputs require grad, which the
    non-reentrant checkpoint used here does not need."""
    from functools import partial

    from torch.utils.checkpoint import checkpoint

    gpt.gpt._set_gradient_checkpointing(enable=True, gradient_checkpointing_func=partial(checkpoint, use_reentrant=False))


def sample_speech(xtts, text: str, language: str, reference: torch.Tensor, reference_sr: int,
                  cond_seconds: int = 6, **generate_kwargs) -> torch.Tensor:
    """Upstream inference on a model under training; removes the inference-only modules afterwards.

    `init_gpt_for_inference` ties `gpt.gpt.wte` to the mel embedding and adds `gpt_inference`; left
    in place, they would change the saved state dict, so they are deleted again (as upstream's
    GPTTrainer.test_run does).
    """
    was_training = xtts.gpt.training
    xtts.gpt.init_gpt_for_inference(kv_cache=True)
    xtts.gpt.eval()
    try:
        with torch.no_grad():
            latents = xtts.get_gpt_cond_latents(reference, reference_sr, length=cond_seconds, chunk_length=cond_seconds)
            speaker = xtts.get_speaker_embedding(reference, reference_sr)
            wave = xtts.inference(text, language, latents, speaker, **generate_kwargs)["wav"]
    finally:
        del xtts.gpt.gpt_inference
        del xtts.gpt.gpt.wte
        xtts.gpt.train(was_training)
    return torch.as_tensor(wave)


def save_merged(peft_model, base_dir: Path, out_dir: Path) -> Path:
    """Merge LoRA into the Conv1D weights and write what upstream `Xtts.load_checkpoint` reads."""
    out_dir.mkdir(parents=True, exist_ok=True)
    merged = peft_model.merge_and_unload()
    xtts = finalize_text_layers(merged.xtts)
    state = {k: v.detach().cpu().contiguous() for k, v in xtts.state_dict().items()}
    torch.save({"model": state}, out_dir / "model.pth")
    tokenizer = xtts.tokenizer
    config = load_xtts_config(base_dir)
    config.model_args.tokenizer_file = "vocab.json"
    set_text_token_args(config, tokenizer)  # a grown vocabulary: gpt_number_text_tokens follows it
    # Every tag the vocabulary has, so upstream `synthesize(language="ca_balear")` passes its check.
    config.languages = list(dict.fromkeys(list(config.languages) + list(getattr(tokenizer, "languages", []))))
    config.save_json(str(out_dir / "config.json"))
    shutil.copy(getattr(tokenizer, "vocab_file", None) or base_dir / "vocab.json", out_dir / "vocab.json")
    # The DVAE, its mel statistics (and a non-default DVAE's arguments) travel along, so `final/` is a
    # complete base folder: another run can start from it.
    for name in ("dvae.pth", "mel_stats.pth", "LICENSE.txt") + OPTIONAL_BASE_FILES:
        if (base_dir / name).is_file():
            shutil.copy(base_dir / name, out_dir / name)
    return out_dir
