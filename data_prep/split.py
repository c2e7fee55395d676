"""Train/validation split that covers every dialect with several speakers."""

from __future__ import annotations

import random
import warnings


def split_train_validation(dataset, validation_fraction: float = 0.1, seed: int = 0, speaker_disjoint: bool = False):
    """Split so the validation set holds clips of several speakers from every dialect.

    Default: `validation_fraction` of each dialect's clips (at least one when the dialect has two or more
    clips), drawn round-robin across that dialect's speakers, so validation never collapses onto one voice.
    `speaker_disjoint=True` instead holds out whole speakers per dialect (about `validation_fraction` of its
    clips, at least one speaker) so validation measures unseen voices; a dialect with a single speaker cannot
    be held out that way and stays in train (a warning says so).
    """
    import numpy as np
    from datasets import DatasetDict

    from data_prep.schema import grouped_rows, label_codes

    if not 0 < validation_fraction < 1:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
    # dialect -> speaker -> row indices, from integer label codes (4 bytes a row instead of two Python strings)
    dialects, dialect_codes = label_codes(dataset, "dialect")
    speaker_labels, speaker_codes = label_codes(dataset, "speaker")
    by_dialect: dict[str, dict[str, np.ndarray]] = {}
    for d, s, indices in grouped_rows(dialect_codes, speaker_codes, len(speaker_labels)):
        by_dialect.setdefault(dialects[d], {})[speaker_labels[s]] = indices

    validation: list[int] = []
    for dialect, speakers in sorted(by_dialect.items()):
        # one generator per dialect: a dialect's held-out clips must not depend on which other dialects are in
        # the dataset, or a run filtered to some dialects and its evaluation would disagree about the split
        rng = random.Random(f"{seed}:{dialect}")
        n_clips = sum(len(v) for v in speakers.values())
        if speaker_disjoint:
            if len(speakers) < 2:
                warnings.warn(f"dialect {dialect!r} has one speaker: it cannot be in a speaker-disjoint validation set")
                continue
            order = sorted(speakers)
            rng.shuffle(order)
            held, n_held = [], 0
            for speaker in order[:-1]:  # always leave a speaker of the dialect in train
                if held and n_held >= validation_fraction * n_clips:
                    break
                held.append(speaker)
                n_held += len(speakers[speaker])
            for speaker in held:
                validation.extend(speakers[speaker])
            continue
        n_take = max(1, round(n_clips * validation_fraction)) if n_clips >= 2 else 0
        # Each speaker's clips in a seeded random order, then speakers in a seeded order, taking one clip per
        # speaker per round from the end of its order. `rng.sample(range(n), n)` draws the same permutation
        # `rng.sample(clips, n)` would (it only depends on n), as numpy indices rather than a Python int per row.
        pools = [v[np.asarray(rng.sample(range(len(v)), len(v)), dtype=np.int64)] for _, v in sorted(speakers.items())]
        left = [len(pool) for pool in pools]
        order = list(range(len(pools)))
        rng.shuffle(order)
        while n_take > 0 and any(left):
            for k in order:
                if left[k] and n_take > 0:
                    left[k] -= 1
                    validation.append(int(pools[k][left[k]]))
                    n_take -= 1
    in_train = np.ones(len(dataset), dtype=bool)
    in_train[validation] = False
    return DatasetDict({"train": dataset.select(np.flatnonzero(in_train)), "validation": dataset.select(sorted(validation))})
