"""Checkpoint forms, vocab extension, upstream-format export, and upstream inference on our output."""

import os

import numpy as np
import pytest
import torch

os.environ.setdefault("MPLCONFIGDIR", "/tmp/mplconfig-tests")

from recipes.f5.checkpoints import (  # noqa: E402
    TEXT_EMBEDDING_KEY, TINY_ARCH, build_model, convert_to_safetensors, extend_text_embedding, load_initial_weights,
    read_checkpoint, save_ema_safetensors, save_training_checkpoint,
)
from recipes.f5.data import read_vocab, upstream_vocab_path, write_vocab  # noqa: E402

VOCAB = read_vocab(upstream_vocab_path())


def _trained_pair(seed=0):
    """A tiny online model and its EMA whose weights differ from it (as in a real checkpoint)."""
    from ema_pytorch import EMA

    torch.manual_seed(seed)
    model = build_model(TINY_ARCH, VOCAB)
    ema = EMA(model, include_online_model=False, update_after_step=0, update_every=1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    ema.update()
    return model, ema


def _assert_same(a: dict, b: dict):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.fixture(scope="module")
def pair():
    return _trained_pair()


@pytest.mark.parametrize("form", ["full_pt", "ema_pt", "ema_safetensors", "raw_safetensors", "module_ema_safetensors",
                                  "ema_module_safetensors", "module_full_pt"])
def test_every_checkpoint_form_loads_ema_weights(tmp_path, pair, form):
    from safetensors.torch import save_file

    model, ema = pair
    ema_weights = ema.ema_model.state_dict()
    ema_state = ema.state_dict()
    flat = lambda prefix, sd: {prefix + k: v.contiguous() for k, v in sd.items()}  # noqa: E731
    path = tmp_path / ("ckpt.safetensors" if "safetensors" in form else "ckpt.pt")
    expected_form, expected_weights = "ema-only", ema_weights
    if form == "full_pt":
        save_training_checkpoint(path, model_state=model.state_dict(), ema_state=ema_state, optimizer_state={},
                                 scheduler_state={}, update=200000)
        expected_form = "full-training"
    elif form == "module_full_pt":  # saved from a DDP-wrapped model by a hand-written loop
        torch.save({"model_state_dict": flat("module.", model.state_dict()), "ema_model_state_dict": ema_state,
                    "step": 1000}, path)
        expected_form = "full-training"
    elif form == "ema_pt":
        torch.save({"ema_model_state_dict": ema_state}, path)
    elif form == "ema_safetensors":
        save_ema_safetensors(path, ema_state)
    elif form == "raw_safetensors":  # e.g. firstpixel's model_last.safetensors: bare transformer.* keys
        save_file(flat("", ema_weights), str(path))
        expected_form = "raw-weights"
    elif form == "module_ema_safetensors":
        save_file(flat("module.ema_model.", ema_weights), str(path))
    elif form == "ema_module_safetensors":
        save_file(flat("ema_model.module.", ema_weights) | {"initted": torch.tensor(True), "step": torch.tensor(7)},
                  str(path))
    contents = read_checkpoint(path)
    assert contents.form == expected_form
    fresh = build_model(TINY_ARCH, VOCAB)
    load_initial_weights(fresh, path, "ema")
    _assert_same(fresh.state_dict(), expected_weights)
    if form == "full_pt":
        assert contents.counter == 200000
        online = build_model(TINY_ARCH, VOCAB)
        load_initial_weights(online, path, "online")
        _assert_same(online.state_dict(), model.state_dict())


def test_wrong_vocab_or_config_fails_with_a_fix(tmp_path, pair):
    _, ema = pair
    path = save_ema_safetensors(tmp_path / "m.safetensors", ema.state_dict())
    with pytest.raises(ValueError, match="vocab"):
        load_initial_weights(build_model(TINY_ARCH, VOCAB + ["Ô"]), path)
    with pytest.raises(ValueError, match="model_config"):
        load_initial_weights(build_model(dict(TINY_ARCH, depth=3), VOCAB), path)


def test_vocab_extension_grows_model_and_ema_keeping_old_rows(tmp_path, pair):
    from ema_pytorch import EMA

    _, ema = pair
    path = save_ema_safetensors(tmp_path / "base.safetensors", ema.state_dict())
    old_rows = ema.ema_model.state_dict()[TEXT_EMBEDDING_KEY]
    model = build_model(TINY_ARCH, VOCAB)
    load_initial_weights(model, path)
    extend_text_embedding(model, 2)
    grown = model.state_dict()[TEXT_EMBEDDING_KEY]
    assert grown.shape == (len(VOCAB) + 1 + 2, TINY_ARCH["text_dim"])
    assert torch.equal(grown[: len(VOCAB) + 1], old_rows)
    assert grown[-2:].std() > 0.5  # N(0, 1) rows, not zeros
    new_ema = EMA(model, include_online_model=False)
    assert torch.equal(new_ema.ema_model.state_dict()[TEXT_EMBEDDING_KEY], grown)
    assert int(new_ema.state_dict()["step"]) == 0
    # The extended model still runs on ids of the new symbols.
    ids = torch.tensor([[len(VOCAB), len(VOCAB) + 1, 0, -1]])
    loss, _, _ = model(torch.randn(1, 40, 100), text=ids, lens=torch.tensor([40]))
    assert torch.isfinite(loss)


def test_converter_writes_release_layout(tmp_path, pair):
    from recipes.f5.checkpoints import main as convert_main

    model, ema = pair
    full = save_training_checkpoint(tmp_path / "model_200000.pt", model_state=model.state_dict(),
                                    ema_state=ema.state_dict(), optimizer_state={}, scheduler_state={}, update=200000)
    dst = tmp_path / "model_200000.safetensors"
    convert_main([str(full), str(dst)])
    from safetensors.torch import load_file

    tensors = load_file(str(dst))
    assert {"initted", "step"} <= tensors.keys() and int(tensors["step"]) == 200000
    assert all(k.startswith("ema_model.") for k in tensors if k not in ("initted", "step"))
    _assert_same({k[len("ema_model."):]: v for k, v in tensors.items() if k.startswith("ema_model.")},
                 ema.ema_model.state_dict())
    online_dst = convert_to_safetensors(full, tmp_path / "online.safetensors", use="online")
    assert read_checkpoint(online_dst).form == "ema-only"


def test_upstream_inference_loads_our_export_and_synthesises(tmp_path):
    """Upstream f5-tts's own loader and inference on what our recipe writes (tiny DiT, random init)."""
    from f5_tts.infer.utils_infer import infer_process, load_model, load_vocoder
    from f5_tts.model import DiT

    from data_prep.audio import write_audio
    from recipes.f5.checkpoints import write_random_vocos

    model, ema = _trained_pair(seed=1)
    vocab = VOCAB + ["Ô"]
    extend_text_embedding(model, 1)
    extend_text_embedding(ema.ema_model, 1)
    vocab_file = write_vocab(vocab, tmp_path / "vocab.txt")
    safetensors_path = save_ema_safetensors(tmp_path / "model_10.safetensors", ema.state_dict())
    full_path = save_training_checkpoint(tmp_path / "model_last.pt", model_state=model.state_dict(),
                                         ema_state=ema.state_dict(), optimizer_state={}, scheduler_state={}, update=10)
    vocoder = load_vocoder("vocos", is_local=True, local_path=str(write_random_vocos(tmp_path / "vocos")), device="cpu")
    ref = tmp_path / "ref.wav"
    t = np.arange(24000) / 24000
    write_audio(ref, (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32), 24000)
    for path, use_ema, expected in ((safetensors_path, True, ema.ema_model), (full_path, False, model),
                                    (full_path, True, ema.ema_model)):
        loaded = load_model(DiT, TINY_ARCH, str(path), vocab_file=str(vocab_file), use_ema=use_ema, device="cpu")
        _assert_same(loaded.state_dict(), expected.state_dict())
    wave, sr, spectrogram = infer_process(str(ref), "Uma frase de referência.", "Ônibus às três.", loaded, vocoder,
                                          nfe_step=4, device="cpu", show_info=lambda *a: None, progress=None)
    assert sr == 24000 and wave.ndim == 1 and wave.size > 24000 * 0.3
    assert np.isfinite(wave).all() and np.isfinite(spectrogram).all() and spectrogram.shape[0] == 100


def test_generate_online_weights_from_an_export_folder_loads_the_full_checkpoint(tmp_path, pair):
    """`generate.py --use_online_weights --model_path <export folder>`: the EMA-only safetensors has no online
    weights (upstream's loader fails on it with use_ema=False), so the folder's model_last.pt must be used."""
    from f5_tts.infer.utils_infer import load_model
    from f5_tts.model import DiT

    from recipes.f5.generate import find_checkpoint

    model, ema = pair
    vocab_file = write_vocab(VOCAB, tmp_path / "vocab.txt")
    save_ema_safetensors(tmp_path / "model_10.safetensors", ema.state_dict())
    save_training_checkpoint(tmp_path / "model_last.pt", model_state=model.state_dict(), ema_state=ema.state_dict(),
                             optimizer_state={}, scheduler_state={}, update=10)
    assert find_checkpoint(tmp_path).name == "model_10.safetensors"
    online = find_checkpoint(tmp_path, use_ema=False)
    assert online.name == "model_last.pt"
    loaded = load_model(DiT, TINY_ARCH, str(online), vocab_file=str(vocab_file), use_ema=False, device="cpu")
    _assert_same(loaded.state_dict(), model.state_dict())
    (tmp_path / "model_last.pt").unlink()
    with pytest.raises(FileNotFoundError, match="online"):
        find_checkpoint(tmp_path, use_ema=False)


def test_tiny_overfit_preset_is_used_by_training_and_inference(tmp_path):
    """scripts/prove_learning.py trains `tiny_overfit` (each character spread over the frames, a rough alignment a
    tiny model from scratch cannot learn in minutes; no dropout). The spread changes what every frame reads, so the
    export must carry it to generate.py: inference without it would read the text the way training never did."""
    import yaml

    from recipes.f5.checkpoints import resolve_model_config
    from recipes.f5.generate import load_synthesizer

    arch = resolve_model_config("tiny_overfit")
    assert arch == dict(TINY_ARCH, text_embedding_average_upsampling=True, dropout=0.0)
    assert "text_embedding_average_upsampling" not in resolve_model_config("tiny")
    torch.manual_seed(0)
    model = build_model(arch, VOCAB)
    text = torch.tensor([[VOCAB.index(c) for c in "ab"]])
    # Two characters over 10 frames: the second character's embedding reaches the last frame (with `tiny` the
    # frames after the text hold zeros).
    embedded = model.transformer.text_embed(text, seq_len=10)
    assert embedded[0, -1].abs().sum() > 0 and not torch.equal(embedded[0, 0], embedded[0, -1])
    assert build_model(TINY_ARCH, VOCAB).transformer.text_embed(text, seq_len=10)[0, -1].abs().sum() == 0
    save_ema_safetensors(tmp_path / "model_1.safetensors", {f"ema_model.{k}": v for k, v in model.state_dict().items()}
                         | {"initted": torch.tensor(True), "step": torch.tensor(1)})
    write_vocab(VOCAB, tmp_path / "vocab.txt")
    (tmp_path / "f5_config.yaml").write_text(yaml.safe_dump({"model_config": "tiny_overfit", "arch": arch}))
    synthesizer = load_synthesizer(str(tmp_path), device="cpu", vocoder="griffin-lim")
    assert synthesizer.model.transformer.text_embed.average_upsampling
    assert all(m.p == 0.0 for m in synthesizer.model.modules() if isinstance(m, torch.nn.Dropout))
