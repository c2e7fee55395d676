"""Clips of the same speaker: where voice-cloning recipes and evaluation take their voice prompts."""

from __future__ import annotations

from collections import defaultdict


def other_clips_of_same_speaker(dataset, pool=None) -> list[list[int]]:
    """For each row of `dataset`, the indices into `pool` (default: `dataset`) of its speaker's other clips.

    "Other" means a different clip id, so a row is never its own voice prompt (a prompt that is the target
    lets the model copy instead of clone). Works on a `datasets.Dataset` or a dict of columns with `speaker`
    and `id`.
    """
    from data_prep.schema import read_columns

    rows = read_columns(dataset, ("speaker", "id"))
    pool_rows = rows if pool is None else read_columns(pool, ("speaker", "id"))
    by_speaker: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for index, (speaker, clip_id) in enumerate(zip(pool_rows["speaker"], pool_rows["id"])):
        by_speaker[speaker].append((index, clip_id))
    return [[index for index, clip_id in by_speaker.get(speaker, ()) if clip_id != row_id]
            for speaker, row_id in zip(rows["speaker"], rows["id"])]
