"""Pocket TTS loss: LSD + EOS against direct implementations of the formulas, and learning on real clips."""

import copy

import pytest
import torch

from recipes.pocket.losses import LSDDraws, TimeWeighting, eos_loss, lsd_flow_loss

D, DZ, N = 8, 12, 6


def _head():
    from pocket_tts.modules.mlp import SimpleMLPAdaLN

    torch.manual_seed(0)
    head = SimpleMLPAdaLN(D, 16, D, DZ, 2, num_time_conds=2).double()
    # Upstream zero-initialises the adaLN modulations; randomise them so every path carries signal.
    with torch.no_grad():
        for p in head.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return head


def _weighting():
    torch.manual_seed(1)
    w = TimeWeighting().double()
    with torch.no_grad():
        for p in w.parameters():
            p.normal_(0, 0.3)
    return w


def _fixed():
    g = torch.Generator().manual_seed(2)
    z = torch.randn(N, DZ, generator=g, dtype=torch.float64)
    x1 = torch.randn(N, D, generator=g, dtype=torch.float64)
    draws = LSDDraws(noise=torch.randn(N, D, generator=g, dtype=torch.float64),
                     t_diag=torch.rand(N, 1, generator=g, dtype=torch.float64),
                     s=torch.rand(N, 1, generator=g, dtype=torch.float64) * 0.5,
                     t=0.5 + torch.rand(N, 1, generator=g, dtype=torch.float64) * 0.5)
    return z, x1, draws


def _direct(head, weighting, z, x1, d, p_equal=0.75, distill_prob=0.25):
    """The notes' formula written out, with the time derivative by central finite differences and the
    stop-gradient by a parameter-frozen copy of the head."""
    frozen = copy.deepcopy(head).requires_grad_(False)
    x0 = d.noise
    i_t = d.t_diag * x1 + (1 - d.t_diag) * x0
    l_diag = ((head(z, d.t_diag, d.t_diag, i_t) - (x1 - x0)) ** 2).sum(-1)
    w = weighting(d.t_diag, d.t_diag)
    l_diag = l_diag * torch.exp(w) / D - w
    x_s = d.s * x1 + (1 - d.s) * x0
    h = 1e-5
    v = head(z, d.s, d.t, x_s)
    dv_dt = (head(z, d.s, d.t + h, x_s) - head(z, d.s, d.t - h, x_s)) / (2 * h)
    big_x = x_s + (d.t - d.s) * v
    d_big_x = v + (d.t - d.s) * dv_dt
    target = frozen(z.detach(), d.t, d.t, big_x)
    l_lsd = ((d_big_x - target) ** 2).sum(-1)
    w = weighting(d.s, d.t)
    l_lsd = l_lsd * torch.exp(w) / D - w
    return p_equal * l_diag + (1 - p_equal) / distill_prob * l_lsd


def test_lsd_loss_and_gradients_match_direct_formula():
    head, weighting = _head(), _weighting()
    z, x1, draws = _fixed()
    z_ours = z.clone().requires_grad_(True)
    ours, metrics = lsd_flow_loss(head, z_ours, x1, draws, weighting, with_distillation=True)
    ours_grads = torch.autograd.grad(ours.sum(), [z_ours, *head.parameters(), *weighting.parameters()])

    z_ref = z.clone().requires_grad_(True)
    ref = _direct(head, weighting, z_ref, x1, draws)
    ref_grads = torch.autograd.grad(ref.sum(), [z_ref, *head.parameters(), *weighting.parameters()])

    assert ours.shape == (N,)
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-7)
    for a, b in zip(ours_grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    assert metrics["flow_distill"] > 0 and metrics["flow_diag"] > 0


def test_distillation_target_is_stop_gradient_on_parameters():
    """Minimal stop-gradient: the target passes gradient to its input X, never to the head's weights."""
    head = _head()
    z, x1, draws = _fixed()
    with_target, _ = lsd_flow_loss(head, z, x1, draws, None, with_distillation=True, p_equal=0.0, distill_prob=1.0)
    grads = torch.autograd.grad(with_target.sum(), list(head.parameters()))

    # Same loss with the target's parameter path made differentiable: gradients must differ.
    x0 = draws.noise
    x_s = draws.s * x1 + (1 - draws.s) * x0
    v, dv = torch.func.jvp(lambda s, t, x: head(z, s, t, x), (draws.s, draws.t, x_s),
                           (torch.zeros_like(draws.s), torch.ones_like(draws.t), torch.zeros_like(x_s)))
    full = ((v + (draws.t - draws.s) * dv - head(z, draws.t, draws.t, x_s + (draws.t - draws.s) * v)) ** 2).sum(-1)
    torch.testing.assert_close(with_target, full)
    full_grads = torch.autograd.grad(full.sum(), list(head.parameters()))
    assert any(not torch.allclose(a, b) for a, b in zip(grads, full_grads))


def test_diagonal_only_step_and_zero_initialised_weighting():
    head = _head()
    z, x1, draws = _fixed()
    loss, metrics = lsd_flow_loss(head, z, x1, draws, TimeWeighting().double(), with_distillation=False)
    plain = ((head(z, draws.t_diag, draws.t_diag, draws.t_diag * x1 + (1 - draws.t_diag) * draws.noise)
              - (x1 - draws.noise)) ** 2).sum(-1)
    # w == 0 at initialisation: l * e^0 / D - 0.
    torch.testing.assert_close(loss, 0.75 * plain / D)
    assert "flow_distill" not in metrics


def test_time_draws_are_logit_normal_and_ordered():
    torch.manual_seed(0)
    d = LSDDraws.sample(torch.zeros(20000, 4), mean=0.4, std=1.0)
    assert torch.all(d.s <= d.t) and torch.all((d.t_diag > 0) & (d.t_diag < 1))
    logit = torch.logit(d.t_diag)
    assert abs(logit.mean().item() - 0.4) < 0.03 and abs(logit.std().item() - 1.0) < 0.03


def test_eos_loss_direct():
    logits = torch.tensor([[0.5, -1.0, 2.0, 0.3, -0.7], [1.5, 0.2, -0.3, 0.9, 0.1]])
    valid = torch.tensor([[1, 1, 0, 0, 0], [1, 1, 1, 1, 0]], dtype=torch.bool)
    terms = []
    for b in range(2):
        n = int(valid[b].sum())
        for t in range(n + 1):  # valid frames (label 0) + the first invalid one (label 1)
            p = torch.sigmoid(logits[b, t])
            terms.append(-torch.log(p) if t == n else -torch.log(1 - p))
    torch.testing.assert_close(eos_loss(logits, valid), torch.stack(terms).mean())


def _tiny_training_model(tokenizer_path, n_bins):
    from recipes.pocket import modeling

    config = modeling.with_tokenizer(modeling.load_base_config(modeling.TINY_MODEL_CONFIG), tokenizer_path, n_bins)
    torch.manual_seed(0)
    tts = modeling.build_tts_model(config, pretrained_weights=None)
    return modeling.PocketTTSForTraining(tts, stats_ema_steps=0, text_dropout=0.0, voice_dropout=0.0)


def _overfit(tmp_path, steps, n_clips, lr=1e-2):
    import sentencepiece

    from recipes.pocket.data import PocketCollator, attach_prompt_candidates, load_recipe_dataset
    from recipes.pocket.train_tokenizer import tokenizer_texts, train_tokenizer

    train = load_recipe_dataset("demo", languages=["fr", "es"])["train"]
    train, _ = attach_prompt_candidates(train, 30.0)
    tok = str(train_tokenizer(tokenizer_texts(train, True), str(tmp_path / "tok"), vocab_size=80,
                              user_symbols=["<fr>", "<es>"]))
    model = _tiny_training_model(tok, sentencepiece.SentencePieceProcessor(model_file=tok).vocab_size())
    batch = PocketCollator(train, tok, use_language_tag=True)([train[i] for i in range(n_clips)])
    with torch.no_grad():  # normalise with this batch's statistics, as the stats EMA would converge to
        latents, frames = model.encode(batch["audio"], batch["audio_lengths"])
        valid = torch.arange(latents.shape[1])[None] < frames[:, None]
        model.flow_lm.emb_mean.copy_(latents[valid].mean(0))
        model.flow_lm.emb_std.copy_(latents[valid].std(0))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.95), weight_decay=0.1)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    model.train()
    history = []
    for _ in range(steps):
        loss, metrics = model(**batch)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        history.append((float(metrics["flow_diag"]), float(metrics["eos_loss"])))
    changed = [n for n, p in model.named_parameters() if p.requires_grad and not torch.equal(p, before[n])]
    return history, changed, before


def _mean(values):
    return sum(values) / len(values)


def test_tiny_model_loss_falls_on_a_few_clips(tmp_path):
    history, changed, before = _overfit(tmp_path, steps=30, n_clips=3)
    diag_start, diag_end = _mean([h[0] for h in history[:3]]), _mean([h[0] for h in history[-3:]])
    eos_start, eos_end = _mean([h[1] for h in history[:3]]), _mean([h[1] for h in history[-3:]])
    assert diag_end < diag_start / 1.4, (diag_start, diag_end)
    assert eos_end < eos_start / 2, (eos_start, eos_end)
    # Every trained tensor moved, except w(s,t)'s layers under the official all-zero init: only its output bias
    # gets gradient (ReLU'(0) = 0), which is what makes w one learned constant.
    frozen_by_design = {n for n in before if n.startswith("time_weighting.") and n != "time_weighting.net.6.bias"}
    assert set(changed) == set(before) - frozen_by_design, set(before) - set(changed)


@pytest.mark.slow
def test_tiny_model_overfits_a_handful_of_clips(tmp_path):
    # Measured: flow_diag 57 -> 12 over 300 steps on 3 clips (random Mimi latents, normalised).
    history, _, _ = _overfit(tmp_path, steps=300, n_clips=3)
    start, end = _mean([sum(h) for h in history[:5]]), _mean([sum(h) for h in history[-5:]])
    assert end < start / 4, (start, end)


def _train_weighting(init):
    """A few AdamW steps of w(s, t) alone on a loss that rewards a (s, t)-dependent w."""
    torch.manual_seed(0)
    weighting = TimeWeighting(init=init)
    optimizer = torch.optim.AdamW(weighting.parameters(), lr=1e-2)
    for _ in range(20):
        s, t = torch.rand(64, 1), torch.rand(64, 1)
        per_sample = 1 + 10 * t.squeeze(-1)  # losses that grow with t: the best w would follow t
        loss = (per_sample * weighting(s, t).exp() - weighting(s, t)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    grid = torch.linspace(0.05, 0.95, 7)[:, None]
    return weighting, weighting(grid, grid)


def test_official_time_weighting_init_is_one_learned_constant():
    """Kyutai's init zeroes every layer of w(s,t): only the output bias ever moves, so w is one constant.
    The earlier output-only init lets w depend on (s, t)."""
    weighting, values = _train_weighting("official")
    assert values.std() == 0 and values.abs().max() > 1e-3, values  # learned, and constant
    hidden = [m for m in weighting.net if isinstance(m, torch.nn.Linear)][:-1]
    assert all(torch.count_nonzero(m.weight) == 0 for m in hidden)
    _, varying = _train_weighting("output_only")
    assert varying.std() > 1e-4, varying
    with pytest.raises(ValueError, match="time weighting init"):
        TimeWeighting(init="xavier")


def test_ddp_ranks_get_different_seeds():
    """seed + rank at train start: two ranks must not draw the same LSD noise and prefix dropout."""
    from types import SimpleNamespace

    from recipes.pocket.finetune_multilingual import _RankSeed

    draws = []
    for rank in (0, 1):
        _RankSeed().on_train_begin(SimpleNamespace(seed=7, process_index=rank), None, None)
        draws.append(torch.randn(4))
    torch.manual_seed(8)
    assert not torch.equal(draws[0], draws[1]) and torch.equal(draws[1], torch.randn(4))
