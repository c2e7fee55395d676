"""The Orpheus token layout: special ids, SNAC codes <-> audio tokens, TTS rows, prompts, tokenizer check.

Pure numpy/python (no torch, no model) so it is cheap to import and easy to test. The numbers come
from `shared/notes/orpheus.md` §1-3; Orpheus checkpoints carry them implicitly in their tokenizer,
so `check_tokenizer` verifies them before any training or generation starts.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

# --- special ids ------------------------------------------------------------------------------------
BEGIN_OF_TEXT = 128000      # <|begin_of_text|>
END_OF_TEXT = 128009        # <|eot_id|>
CUSTOM_TOKEN_OFFSET = 128256  # <custom_token_i> has id 128256 + i
START_OF_SPEECH = 128257
END_OF_SPEECH = 128258      # the stop id for generation
START_OF_HUMAN = 128259
END_OF_HUMAN = 128260
START_OF_AI = 128261
END_OF_AI = 128262
PAD = 128263
AUDIO_OFFSET = 128266       # <custom_token_10>

CODEBOOK_SIZE = 4096
TOKENS_PER_FRAME = 7
SAMPLES_PER_FRAME = 2048    # one coarse SNAC frame at 24 kHz (hop 512 x stride 4)
SAMPLING_RATE = 24_000
N_CUSTOM_TOKENS = TOKENS_PER_FRAME * CODEBOOK_SIZE + 11   # 0..28682, as upstream pretraining adds them
MIN_VOCAB_SIZE = CUSTOM_TOKEN_OFFSET + N_CUSTOM_TOKENS    # 156939 (`-pretrained`; `-ft` has 156940)
LAST_AUDIO_ID = AUDIO_OFFSET + TOKENS_PER_FRAME * CODEBOOK_SIZE - 1  # 156937
AUDIO_TOKENS_PER_SECOND = SAMPLING_RATE / SAMPLES_PER_FRAME * TOKENS_PER_FRAME  # 82.03

PROMPT_LABELS = ("dialect", "speaker", "both", "none")


def custom_token(i: int) -> str:
    return f"<custom_token_{i}>"


# --- SNAC codes <-> audio tokens ---------------------------------------------------------------------
# Position p inside a 7-token frame i reads (level, index) from the SNAC code levels; the level
# offsets are then spread so position p owns ids AUDIO_OFFSET + 4096 p ... + 4095.
def _frame_columns(l0: np.ndarray, l1: np.ndarray, l2: np.ndarray) -> np.ndarray:
    return np.stack([l0, l1[0::2], l2[0::4], l2[1::4], l1[1::2], l2[2::4], l2[3::4]], axis=1)


_POSITION_OFFSETS = AUDIO_OFFSET + CODEBOOK_SIZE * np.arange(TOKENS_PER_FRAME, dtype=np.int64)


def codes_to_tokens(l0, l1, l2) -> np.ndarray:
    """Three SNAC levels ([T], [2T], [4T], codes 0..4095) -> 7T audio token ids."""
    l0, l1, l2 = (np.asarray(x, dtype=np.int64).reshape(-1) for x in (l0, l1, l2))
    n_frames = len(l0)
    if len(l1) != 2 * n_frames or len(l2) != 4 * n_frames:
        raise ValueError(f"SNAC levels must have lengths T, 2T, 4T; got {len(l0)}, {len(l1)}, {len(l2)}")
    for level, codes in enumerate((l0, l1, l2)):
        if codes.size and (codes.min() < 0 or codes.max() >= CODEBOOK_SIZE):
            raise ValueError(f"SNAC level {level} has codes outside 0..{CODEBOOK_SIZE - 1}")
    return (_frame_columns(l0, l1, l2) + _POSITION_OFFSETS).reshape(-1)


def tokens_to_codes(tokens) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact inverse of `codes_to_tokens`. `tokens` must be whole frames of audio ids."""
    tokens = np.asarray(tokens, dtype=np.int64).reshape(-1)
    if len(tokens) % TOKENS_PER_FRAME:
        raise ValueError(f"{len(tokens)} audio tokens is not a multiple of {TOKENS_PER_FRAME}")
    frames = tokens.reshape(-1, TOKENS_PER_FRAME) - _POSITION_OFFSETS
    bad = (frames < 0) | (frames >= CODEBOOK_SIZE)
    if bad.any():
        frame, position = np.argwhere(bad)[0]
        raise ValueError(f"token {tokens[frame * 7 + position]} at frame {frame} position {position} is not an "
                         f"audio token for that position (expected {_POSITION_OFFSETS[position]}.."
                         f"{_POSITION_OFFSETS[position] + CODEBOOK_SIZE - 1})")
    n = len(frames)
    l0 = frames[:, 0].copy()
    l1 = np.empty(2 * n, dtype=np.int64)
    l1[0::2], l1[1::2] = frames[:, 1], frames[:, 4]
    l2 = np.empty(4 * n, dtype=np.int64)
    l2[0::4], l2[1::4], l2[2::4], l2[3::4] = frames[:, 2], frames[:, 3], frames[:, 5], frames[:, 6]
    return l0, l1, l2


def remove_duplicate_frames(tokens) -> tuple[np.ndarray, int]:
    """Upstream's lossy dedup: drop a frame (all 7 tokens) whose L0 code equals the last *kept* frame's.

    Returns the kept tokens and the number of frames dropped (each one is 85 ms of audio).
    """
    frames = np.asarray(tokens, dtype=np.int64).reshape(-1, TOKENS_PER_FRAME)
    keep = []
    last_l0 = None
    for i, l0 in enumerate(frames[:, 0]):
        if l0 != last_l0:
            keep.append(i)
            last_l0 = l0
    return frames[keep].reshape(-1), len(frames) - len(keep)


def audio_tokens_from_generation(generated: Sequence[int]) -> tuple[np.ndarray, int]:
    """Audio ids from a generated sequence: after the last start-of-speech, up to end-of-speech.

    Non-audio ids inside the span are removed and frames whose ids sit at the wrong position are
    dropped (both counted in the second return value); the result is whole frames only. Code 0 is a
    valid code: nothing is filtered by value other than the per-position range check.
    """
    ids = np.asarray(generated, dtype=np.int64).reshape(-1)
    starts = np.nonzero(ids == START_OF_SPEECH)[0]
    if len(starts):
        ids = ids[starts[-1] + 1:]
    stops = np.nonzero(ids == END_OF_SPEECH)[0]
    if len(stops):
        ids = ids[:stops[0]]
    is_audio = (ids >= AUDIO_OFFSET) & (ids <= LAST_AUDIO_ID)
    discarded = int((~is_audio).sum())
    ids = ids[is_audio]
    whole = len(ids) - len(ids) % TOKENS_PER_FRAME
    discarded += len(ids) - whole
    frames = ids[:whole].reshape(-1, TOKENS_PER_FRAME) - _POSITION_OFFSETS
    valid = ((frames >= 0) & (frames < CODEBOOK_SIZE)).all(axis=1)
    discarded += int((~valid).sum()) * TOKENS_PER_FRAME
    return (frames[valid] + _POSITION_OFFSETS).reshape(-1), discarded


# --- prompts and rows --------------------------------------------------------------------------------
def normalize_label(label: str) -> str:
    """One normalised spelling per label: lower case, spaces -> '-', e.g. 'Nord Occidental' -> 'nord-occidental'."""
    return "-".join(str(label).strip().lower().split())


def prompt_label(kind: str, *, dialect: str | None = None, speaker: str | None = None) -> str | None:
    """The conditioning label for `kind` in PROMPT_LABELS ('both' reads 'dialect speaker')."""
    if kind == "none":
        return None
    parts = {"dialect": [dialect], "speaker": [speaker], "both": [dialect, speaker]}[kind]
    if any(p is None or str(p).strip() == "" for p in parts):
        needs = {"dialect": "a dialect", "speaker": "a speaker", "both": "a dialect and a speaker"}[kind]
        raise ValueError(f"prompt_label={kind!r} needs {needs} for every row, got dialect={dialect!r} speaker={speaker!r}")
    return " ".join(normalize_label(p) for p in parts)


def format_prompt(label: str | None, text: str) -> str:
    """`{label}: {text}`, the only conditioning Orpheus has (upstream multi-speaker format)."""
    text = " ".join(str(text).split())
    return f"{label}: {text}" if label else text


def text_ids(tokenizer, prompt: str) -> list[int]:
    """Tokenised prompt starting with <|begin_of_text|>, whether or not the tokenizer adds it itself."""
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    return [BEGIN_OF_TEXT] + list(ids)


def tts_row(prompt_ids: Sequence[int], audio_tokens: Sequence[int]) -> tuple[list[int], int]:
    """The training row `[SOH] text [EOT EOH SOA SOS] audio [EOS EOA]` and the index where audio starts."""
    head = [START_OF_HUMAN, *prompt_ids, END_OF_TEXT, END_OF_HUMAN, START_OF_AI, START_OF_SPEECH]
    return head + [int(t) for t in audio_tokens] + [END_OF_SPEECH, END_OF_AI], len(head)


def inference_prompt(prompt_ids: Sequence[int]) -> list[int]:
    """What generation is conditioned on: the row up to and including start-of-speech."""
    return [START_OF_HUMAN, *prompt_ids, END_OF_TEXT, END_OF_HUMAN, START_OF_AI, START_OF_SPEECH]


def text_only_row(text_ids_with_bos: Sequence[int]) -> list[int]:
    """A plain text row for the optional text-retention mix: `<|begin_of_text|> text <|eot_id|>`."""
    return [*text_ids_with_bos, END_OF_TEXT]


# --- tokenizer check ---------------------------------------------------------------------------------
class OrpheusTokenizerError(ValueError):
    pass


EXPECTED_TOKEN_IDS = {
    "<|begin_of_text|>": BEGIN_OF_TEXT,
    "<|eot_id|>": END_OF_TEXT,
    **{custom_token(i): CUSTOM_TOKEN_OFFSET + i for i in (1, 2, 3, 4, 5, 6, 7, 10)},
    custom_token(LAST_AUDIO_ID - CUSTOM_TOKEN_OFFSET): LAST_AUDIO_ID,
}


def check_tokenizer(tokenizer, model_vocab_size: int | None = None, where: str = "tokenizer") -> None:
    """Stop early unless the tokenizer (and model) carry the Orpheus special/audio tokens at their ids."""
    fix = ("Fix: load the tokenizer saved with the Orpheus checkpoint (e.g. canopylabs/orpheus-3b-0.1-pretrained "
           "or unsloth/orpheus-3b-0.1-pretrained); when starting from a plain Llama-3 tokenizer call "
           "recipes.orpheus.layout.add_orpheus_tokens(tokenizer) and resize the model's embeddings to "
           f"{MIN_VOCAB_SIZE}; for the offline demo run `python recipes/orpheus/build_tiny.py`.")
    wrong = []
    for token, expected in EXPECTED_TOKEN_IDS.items():
        got = tokenizer.convert_tokens_to_ids(token)
        if got != expected:
            wrong.append(f"{token} -> {got} (expected {expected})")
    if wrong:
        raise OrpheusTokenizerError(f"{where} is not an Orpheus tokenizer: {'; '.join(wrong[:4])}"
                                    f"{' ...' if len(wrong) > 4 else ''}. {fix}")
    if model_vocab_size is not None:
        if model_vocab_size < MIN_VOCAB_SIZE:
            raise OrpheusTokenizerError(f"the model's vocab_size is {model_vocab_size}, below the {MIN_VOCAB_SIZE} "
                                        f"Orpheus needs for its audio ids (up to {LAST_AUDIO_ID}). {fix}")
        if len(tokenizer) > model_vocab_size:
            raise OrpheusTokenizerError(f"{where} has {len(tokenizer)} tokens but the model's vocab_size is "
                                        f"{model_vocab_size}: ids past the embedding would crash. {fix}")


def add_orpheus_tokens(tokenizer) -> int:
    """Add `<custom_token_0..28682>` to a plain Llama-3 tokenizer (128256 entries) as upstream pretraining does."""
    if len(tokenizer) != CUSTOM_TOKEN_OFFSET:
        raise OrpheusTokenizerError(f"expected a Llama-3 tokenizer with {CUSTOM_TOKEN_OFFSET} entries, got "
                                    f"{len(tokenizer)}; the custom tokens would land at the wrong ids")
    return tokenizer.add_tokens([custom_token(i) for i in range(N_CUSTOM_TOKENS)], special_tokens=True)
