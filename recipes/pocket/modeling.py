"""Pocket TTS model plumbing: build/load upstream `pocket_tts` modules, the training wrapper, export.

The model classes are upstream's (`pocket_tts.models.flow_lm.FlowLMModel`, `MimiModel`), so an
export is a plain `TTSModel.state_dict()` + config YAML that `TTSModel.load_model(config=...)` reads.

Training row (notes §4), one per clip, right-padded:
    [bos_before_voice | voice latents @ speaker_proj (p_drop 0.2) | text LUT (p_drop 0.2) | input_linear([bos, x1[:-1]])]
Dropped segments are removed, not zeroed (classifier-free guidance's null prefix is bos_before_voice
alone). The transformer runs without a streaming state, i.e. plainly causal, which matches the
KV-cached inference path.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch
from torch import nn

from recipes.pocket.losses import LSDDraws, TimeWeighting, eos_loss, lsd_flow_loss

logger = logging.getLogger(__name__)

TINY_MODEL_CONFIG = str(Path(__file__).parent / "model_configs" / "tiny.yaml")


def _reset_torch_threads(fn):
    """`import pocket_tts` pins torch to 1 thread (notes pitfall 9); undo that for training."""
    def wrapper(*args, **kwargs):
        threads = torch.get_num_threads()
        try:
            return fn(*args, **kwargs)
        finally:
            torch.set_num_threads(threads)
    return wrapper


@_reset_torch_threads
def load_base_config(base: str):
    """A pocket_tts `Config` from a released model name (e.g. `english_2026-04_24l`) or a YAML path."""
    from pocket_tts.utils.config import CONFIGS_DIR, load_config

    path = Path(base)
    if path.suffix not in (".yaml", ".yml") and not base.startswith(("hf://", "https://")):
        path = CONFIGS_DIR / f"{base}.yaml"
    return load_config(str(path))


def with_tokenizer(config, tokenizer_path: str, n_bins: int):
    """Config copy whose text LUT matches our SentencePiece model (n_bins must equal its size)."""
    config = config.model_copy(deep=True)
    config.flow_lm.lookup_table.tokenizer = "sentencepiece"
    config.flow_lm.lookup_table.tokenizer_path = str(tokenizer_path)
    config.flow_lm.lookup_table.n_bins = n_bins
    config.flow_lm.weights_path = None
    config.mimi.weights_path = None
    return config


@_reset_torch_threads
def build_tts_model(config, *, pretrained_weights: str | None, temp: float = 0.3, eos_threshold: float = -4.0):
    """A `TTSModel` for `config` (whose LUT is already ours). With `pretrained_weights` (a
    `model.safetensors` bundle of a released model) every tensor except the text embedding is
    loaded; the text embedding is re-initialised since the vocabulary changed."""
    import safetensors.torch
    from pocket_tts.models.mimi import build_mimi
    from pocket_tts.models.tts_model import TTSModel, stamp_state_names
    from pocket_tts.utils.utils import download_if_necessary

    model = TTSModel._from_pydantic_config(config, temp, 1, None, eos_threshold, origin=None)
    latent_dim = config.mimi.inner_dim or config.mimi.seanet.dimension
    model.flow_lm.speaker_proj_weight = nn.Parameter(torch.empty(config.flow_lm.transformer.d_model, latent_dim))
    model.mimi = build_mimi(config.mimi)
    if pretrained_weights:
        state = safetensors.torch.load_file(download_if_necessary(pretrained_weights))
        state.pop("flow_lm.conditioner.embed.weight", None)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or set(missing) != {"flow_lm.conditioner.embed.weight"}:
            raise ValueError(f"{pretrained_weights} does not match the base config: missing={missing[:8]} "
                             f"unexpected={unexpected[:8]}")
        encoder_norm = sum(p.abs().sum().item() for p in model.mimi.encoder.parameters())
        if encoder_norm == 0:
            raise ValueError(f"{pretrained_weights}: the Mimi encoder weights are all zero (the public "
                             "'without-voice-cloning' bundle): use the gated kyutai/pocket-tts weights.")
    else:
        init_from_scratch(model.flow_lm)
    init_text_embedding(model.flow_lm)
    model.mimi.eval()
    stamp_state_names(model)
    return model


def init_text_embedding(flow_lm) -> None:
    embed = flow_lm.conditioner.embed
    nn.init.trunc_normal_(embed.weight, std=1 / math.sqrt(embed.embedding_dim), a=-3 / math.sqrt(embed.embedding_dim),
                          b=3 / math.sqrt(embed.embedding_dim))


def init_from_scratch(flow_lm) -> None:
    """Scratch initialisation: 1/sqrt(fan_in) backbone, zero adaLN modulations and head output (the
    head starts by predicting zero velocity), and a non-zero voice projection (the loader's zeros
    would make voice prompts inert)."""
    for module in flow_lm.modules():
        if isinstance(module, nn.Linear):
            std = 1 / math.sqrt(module.in_features)
            nn.init.trunc_normal_(module.weight, std=std, a=-3 * std, b=3 * std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    head = flow_lm.flow_net
    for block in head.res_blocks:
        nn.init.zeros_(block.adaLN_modulation[-1].weight)
        nn.init.zeros_(block.adaLN_modulation[-1].bias)
    for layer in (head.final_layer.adaLN_modulation[-1], head.final_layer.linear):
        nn.init.zeros_(layer.weight)
        nn.init.zeros_(layer.bias)
    latent_dim = flow_lm.speaker_proj_weight.shape[1]
    nn.init.normal_(flow_lm.speaker_proj_weight, std=1 / math.sqrt(latent_dim))


class PocketTTSForTraining(nn.Module):
    """flow_lm (trained) + frozen Mimi encoder + the LSD time weighting (trained, not exported)."""

    def __init__(self, tts_model, *, flow_batch_multiplier: int = 4, eos_weight: float = 0.1,
                 text_dropout: float = 0.2, voice_dropout: float = 0.2, p_equal: float = 0.75,
                 distill_prob: float = 0.25, time_mean: float = 0.4, time_std: float = 1.0,
                 stats_ema_decay: float = 0.999, stats_ema_steps: int = 1000, seed: int = 0,
                 time_weighting_init: str = "official"):
        super().__init__()
        self.flow_lm = tts_model.flow_lm
        self.mimi = tts_model.mimi
        self.mimi.requires_grad_(False)
        self.time_weighting = TimeWeighting(init=time_weighting_init)
        self.pocket_config = tts_model.config  # not `config`: Trainer writes attributes on model.config
        self.flow_batch_multiplier = flow_batch_multiplier
        self.eos_weight = eos_weight
        self.text_dropout, self.voice_dropout = text_dropout, voice_dropout
        self.p_equal, self.distill_prob = p_equal, distill_prob
        self.time_mean, self.time_std = time_mean, time_std
        self.stats_ema_decay, self.stats_ema_steps = stats_ema_decay, stats_ema_steps
        self.register_buffer("stats_updates", torch.zeros((), dtype=torch.long))
        # Same seed on every rank: all ranks take the distillation branch on the same steps. The draw counter is a
        # buffer, so it is saved with every checkpoint and a resumed run takes the branches the first run would
        # have taken (a Generator object is not part of the state dict and would restart from the seed).
        self.branch_seed = seed
        self.register_buffer("branch_draws", torch.zeros((), dtype=torch.long))

    def train(self, mode: bool = True):
        super().train(mode)
        self.mimi.eval()  # frozen codec: never in training mode
        return self

    @property
    def frame_size(self) -> int:
        return self.mimi.frame_size

    @torch.no_grad()
    def encode(self, audio: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw Mimi latents [B, T, C] and the number of frames that hold each clip."""
        # Full precision even under bf16 autocast: inference encodes voice prompts in float32.
        with torch.autocast(device_type=audio.device.type, enabled=False):
            latents = self.mimi.encode_to_latent(audio.float()).float()
        frames = torch.div(lengths.to(latents.device) + self.frame_size - 1, self.frame_size, rounding_mode="floor")
        return latents, frames.clamp(max=latents.shape[1])

    @torch.no_grad()
    def _update_latent_stats(self, latents: torch.Tensor, valid: torch.Tensor) -> None:
        if not self.training or self.stats_updates.item() >= self.stats_ema_steps:
            return
        frames = latents[valid]
        decay = self.stats_ema_decay
        self.flow_lm.emb_mean.mul_(decay).add_(frames.mean(dim=0), alpha=1 - decay)
        self.flow_lm.emb_std.mul_(decay).add_(frames.std(dim=0), alpha=1 - decay)
        self.stats_updates += 1

    def _draw_branch(self) -> float:
        generator = torch.Generator().manual_seed(self.branch_seed * 1_000_003 + int(self.branch_draws))
        self.branch_draws += 1
        return float(torch.rand((), generator=generator))

    def build_rows(self, normalized: torch.Tensor, voice: torch.Tensor, voice_frames: torch.Tensor,
                   text_ids: torch.Tensor, text_lengths: torch.Tensor, *, keep_voice: torch.Tensor,
                   keep_text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs [B, L, d] of the causal transformer and each row's prefix length."""
        fl = self.flow_lm
        batch, frames, _ = normalized.shape
        bos = fl.bos_emb.expand(batch, 1, -1)
        audio_in = fl.input_linear(torch.cat([bos, normalized[:, :-1]], dim=1))
        voice_in = nn.functional.linear(voice, fl.speaker_proj_weight)
        text_in = fl.conditioner(text_ids)
        rows, prefix_lengths = [], []
        for b in range(batch):
            parts = [fl.bos_before_voice[0]]
            if keep_voice[b]:
                parts.append(voice_in[b, : voice_frames[b]])
            if keep_text[b]:
                parts.append(text_in[b, : text_lengths[b]])
            prefix = torch.cat(parts, dim=0)
            prefix_lengths.append(prefix.shape[0])
            rows.append(torch.cat([prefix, audio_in[b]], dim=0))
        width = max(r.shape[0] for r in rows)
        inputs = audio_in.new_zeros(batch, width, audio_in.shape[-1])
        for b, row in enumerate(rows):
            inputs[b, : row.shape[0]] = row
        # DDP needs every trained parameter in the graph on every step, even when dropout removed
        # all voice (or text) prefixes of the batch: a zero-weighted term keeps them there.
        inputs = inputs + 0.0 * (voice_in.sum() + text_in.sum())
        return inputs, torch.tensor(prefix_lengths, device=inputs.device)

    def backbone(self, inputs: torch.Tensor, prefix_lengths: torch.Tensor, frames: int) -> torch.Tensor:
        """Per-frame conditioning z [B, T, d]: z_t (the output at input x_{t-1}) predicts frame t."""
        fl = self.flow_lm
        hidden = fl.out_norm(fl.transformer(inputs, model_state=None))
        index = prefix_lengths[:, None] + torch.arange(frames, device=hidden.device)[None]
        z = hidden.gather(1, index[..., None].expand(-1, -1, hidden.shape[-1]))
        return z if fl.z_proj is None else fl.z_proj(z)

    def forward(self, audio, audio_lengths, prompt_audio, prompt_lengths, text_ids, text_lengths):
        fl = self.flow_lm
        latents, target_frames = self.encode(audio, audio_lengths)
        voice, voice_frames = self.encode(prompt_audio, prompt_lengths)
        batch, frames, _ = latents.shape
        valid = torch.arange(frames, device=latents.device)[None] < target_frames[:, None]
        self._update_latent_stats(latents, valid)
        normalized = (latents - fl.emb_mean) / fl.emb_std

        if self.training:
            keep_voice = torch.rand(batch) >= self.voice_dropout
            keep_text = torch.rand(batch) >= self.text_dropout
        else:
            keep_voice = keep_text = torch.ones(batch, dtype=torch.bool)
        inputs, prefix_lengths = self.build_rows(normalized, voice, voice_frames, text_ids, text_lengths,
                                                 keep_voice=keep_voice, keep_text=keep_text)
        z = self.backbone(inputs, prefix_lengths, frames)

        eos = eos_loss(fl.out_eos(z).squeeze(-1).float(), valid)
        # Several (noise, time) draws per backbone pass: the head is cheap, the transformer is not.
        fbm = self.flow_batch_multiplier
        z_frames = z[valid].float().repeat(fbm, 1)
        x1 = normalized[valid].repeat(fbm, 1)
        distill = not self.training or self._draw_branch() < self.distill_prob
        draws = LSDDraws.sample(x1, self.time_mean, self.time_std)
        per_frame, metrics = lsd_flow_loss(fl.flow_net, z_frames, x1, draws, self.time_weighting,
                                           with_distillation=distill, p_equal=self.p_equal,
                                           distill_prob=self.distill_prob if self.training else 1.0)
        flow = per_frame.mean()
        loss = flow + self.eos_weight * eos
        metrics.update(flow_loss=flow.detach(), eos_loss=eos.detach())
        return loss, metrics


# --- weight EMA ------------------------------------------------------------------------------------

class WeightEMA:
    """EMA of the trained flow_lm parameters (decay 0.999 by default; the export holds these).

    The effective decay ramps up as min(decay, (1 + n) / (10 + n)) over the first updates, so short
    runs (the demo) do not export weights still dominated by the initialisation.
    """

    def __init__(self, module: nn.Module, decay: float = 0.999):
        self.decay = decay
        self.updates = 0
        self.shadow = {k: p.detach().clone().float() for k, p in module.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for name, param in module.named_parameters():
            if name in self.shadow:
                shadow = self.shadow[name]
                if shadow.device != param.device:
                    shadow = self.shadow[name] = shadow.to(param.device)
                shadow.lerp_(param.detach().float(), 1 - decay)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {**{k: v.detach().cpu().contiguous() for k, v in self.shadow.items()},
                "__updates__": torch.tensor(self.updates)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        state = dict(state)
        self.updates = int(state.pop("__updates__", torch.tensor(0)))
        unknown = set(state) - set(self.shadow)
        if unknown:
            raise ValueError(f"EMA state has parameters the model lacks: {sorted(unknown)[:5]}")
        for k, v in state.items():
            self.shadow[k] = v.to(self.shadow[k].device).float()

    @torch.no_grad()
    def copy_to(self, module: nn.Module) -> dict[str, torch.Tensor]:
        """Load the EMA weights into `module`; returns the previous weights for `restore`."""
        backup = {}
        for name, param in module.named_parameters():
            if name in self.shadow:
                backup[name] = param.detach().clone()
                param.copy_(self.shadow[name].to(param.dtype))
        return backup

    @staticmethod
    @torch.no_grad()
    def restore(module: nn.Module, backup: dict[str, torch.Tensor]) -> None:
        for name, param in module.named_parameters():
            if name in backup:
                param.copy_(backup[name])


# --- export ----------------------------------------------------------------------------------------

def inference_model(training_model: PocketTTSForTraining, temp: float = 0.3, eos_threshold: float = -4.0):
    """A `pocket_tts.TTSModel` sharing the training model's modules (for eval-time synthesis)."""
    from pocket_tts.models.tts_model import TTSModel, stamp_state_names

    config = training_model.pocket_config
    model = TTSModel(training_model.flow_lm, temp, 1, None, eos_threshold, config,
                     remove_semicolons=config.remove_semicolons, replace_characters=config.replace_characters)
    model.mimi = training_model.mimi
    model.has_custom_weights = True
    stamp_state_names(model)
    return model


def minimal_config_dict(config, *, weights_path: str | None, tokenizer_path: str) -> dict:
    """The pocket_tts config as a dict holding only what differs from pocket_tts' defaults (plus the required
    fields). A full `model_dump` of 4.x writes keys that older versions' strict (extra="forbid") schema
    rejects, e.g. `default_eos_threshold` or `flow.type`; left out, every version fills in its own default."""
    config = config.model_copy(deep=True)
    config.weights_path = weights_path
    config.weights_path_without_voice_cloning = None
    config.flow_lm.lookup_table.tokenizer_path = tokenizer_path
    config.flow_lm.weights_path = None
    config.mimi.weights_path = None
    return config.model_dump(mode="json", exclude_defaults=True)


def flow_lm_export_state(training_model: PocketTTSForTraining, ema: "WeightEMA | None") -> dict[str, torch.Tensor]:
    """flow_lm tensors as pocket_tts names them (no prefix), EMA weights overlaid on the live ones."""
    flow_state = {k: v.detach().float().cpu() for k, v in training_model.flow_lm.state_dict().items()}
    if ema is not None:
        flow_state.update({k: v.detach().float().cpu() for k, v in ema.shadow.items()})
    return {k: v.contiguous() for k, v in flow_state.items()}


def write_training_checkpoint(training_model: PocketTTSForTraining, ema: "WeightEMA | None", folder: str,
                              tokenizer_path: str) -> Path:
    """Make a Trainer `checkpoint-N` folder usable by pocket-tts' `--checkpoint` (`load_model(config=,
    checkpoint=)`): `pocket_tts.pt` = {"model": {"flow_lm.*", "mimi.*"}, "ema": {"flow_lm.*"}} (the prefixed
    keys pocket_tts' training checkpoints use; Mimi included so the file stands alone) plus a minimal
    `config.yaml` and `tokenizer.model` beside it:
        pocket-tts generate --config checkpoint-N/config.yaml --checkpoint checkpoint-N/pocket_tts.pt ..."""
    import shutil

    import yaml

    out = Path(folder).resolve()
    out.mkdir(parents=True, exist_ok=True)
    live = {f"flow_lm.{k}": v.detach().float().cpu().contiguous() for k, v in training_model.flow_lm.state_dict().items()}
    live.update({f"mimi.{k}": v.detach().float().cpu().contiguous() for k, v in training_model.mimi.state_dict().items()})
    payload = {"model": live}
    if ema is not None:
        payload["ema"] = {f"flow_lm.{k}": v.detach().float().cpu().contiguous() for k, v in ema.shadow.items()}
    torch.save(payload, out / "pocket_tts.pt")
    shutil.copyfile(tokenizer_path, out / "tokenizer.model")
    config = minimal_config_dict(training_model.pocket_config, weights_path=None,
                                 tokenizer_path=str(out / "tokenizer.model"))
    (out / "config.yaml").write_text(
        "# pocket_tts config for this training checkpoint: load with\n"
        f"#   pocket-tts generate --config {out / 'config.yaml'} --checkpoint {out / 'pocket_tts.pt'}\n"
        + yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    return out / "pocket_tts.pt"


def export_pocket_model(training_model: PocketTTSForTraining, ema: WeightEMA | None, out_dir: str,
                        tokenizer_path: str, *, languages: list[str], use_language_tag: bool,
                        hub_repo_id: str | None = None) -> Path:
    """Write `model.safetensors` (TTSModel state dict, EMA weights, no `w_s_t`), `tokenizer.model`,
    `config.yaml` (minimal, see `minimal_config_dict`; absolute local paths: `TTSModel.load_model(config=...)`
    resolves paths against the working directory) and, when `hub_repo_id` is given, `config_hub.yaml` with `hf://` paths."""
    import json
    import shutil

    import safetensors.torch
    import yaml

    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    state = {f"flow_lm.{k}": v for k, v in flow_lm_export_state(training_model, ema).items()}
    state.update({f"mimi.{k}": v.float().cpu().contiguous() for k, v in training_model.mimi.state_dict().items()})
    safetensors.torch.save_file(state, str(out / "model.safetensors"))
    shutil.copyfile(tokenizer_path, out / "tokenizer.model")

    def config_with(prefix: str) -> dict:
        return minimal_config_dict(training_model.pocket_config, weights_path=f"{prefix}/model.safetensors",
                                   tokenizer_path=f"{prefix}/tokenizer.model")

    header = "# Pocket TTS config written by tts-recipes (recipes/pocket). Load with\n" \
             "#   TTSModel.load_model(config=<this file>)\n"
    (out / "config.yaml").write_text(header + yaml.safe_dump(config_with(str(out)), sort_keys=False, allow_unicode=True))
    if hub_repo_id:
        (out / "config_hub.yaml").write_text(
            header + yaml.safe_dump(config_with(f"hf://{hub_repo_id}"), sort_keys=False, allow_unicode=True))
    (out / "tts_recipes.json").write_text(json.dumps(
        {"languages": languages, "language_tag": use_language_tag,
         "language_tag_format": "<{language}> " if use_language_tag else None}, indent=1))
    return out


def push_export(export_dir, repo_id: str, private: bool = False) -> str:
    """Push a pocket_tts export: the Hub copy uses config_hub.yaml (weights referenced by repo) as config.yaml."""
    import shutil
    import tempfile

    from recipes.common import push_folder_to_hub

    staging = Path(tempfile.mkdtemp()) / "pocket_tts"
    shutil.copytree(export_dir, staging)
    (staging / "config_hub.yaml").replace(staging / "config.yaml")
    return push_folder_to_hub(str(staging), repo_id, private=private)
