"""The one dataset schema every recipe consumes.

A prepared dataset is a `datasets.Dataset` (or a `DatasetDict` with `train`/`validation`)
with these columns; recipes turn it into model inputs with their own collators.
"""

from __future__ import annotations

from typing import Iterable

DEFAULT_SAMPLING_RATE = 24_000

# column -> what it holds
SCHEMA_COLUMNS: dict[str, str] = {
    "id": "unique clip id (str)",
    "audio": f"datasets.Audio feature, mono, at the target rate ({DEFAULT_SAMPLING_RATE} Hz by default)",
    "text": "transcript (str, non-empty)",
    "speaker": "speaker label (str), e.g. Common Voice client_id",
    "dialect": "dialect or language label (str, normalised lower-case), e.g. 'balear' or 'pt-br'",
    "duration": "clip length in seconds (float)",
}
# Optional columns recipes may use when present.
OPTIONAL_COLUMNS: dict[str, str] = {
    "language": "ISO-ish language code of the text (str), e.g. 'ca', 'pt-br'",
    "source": "where the clip came from (str): file path or source dataset",
}


class SchemaError(ValueError):
    """A dataset does not follow the shared schema; the message names what is missing and the fix."""


def schema_features(sampling_rate: int = DEFAULT_SAMPLING_RATE, with_language: bool = True):
    """`datasets.Features` for the schema (audio decoded lazily at `sampling_rate`)."""
    from datasets import Audio, Features, Value

    features = {
        "id": Value("string"),
        "audio": Audio(sampling_rate=sampling_rate),
        "text": Value("string"),
        "speaker": Value("string"),
        "dialect": Value("string"),
        "duration": Value("float32"),
    }
    if with_language:
        features["language"] = Value("string")
    return Features(features)


def require_columns(column_names: Iterable[str], required: Iterable[str], what: str = "dataset") -> None:
    """Fail early, listing the columns that exist, when a required column is missing."""
    existing = list(column_names)
    missing = [c for c in required if c not in existing]
    if missing:
        raise SchemaError(
            f"{what} is missing column(s) {missing}. Available columns: {existing}. "
            "Map your columns onto the schema (see `python -m data_prep hf --help`, option --column_map) "
            "or prepare the data with `python -m data_prep`."
        )


def validate_schema(dataset, sampling_rate: int | None = DEFAULT_SAMPLING_RATE, what: str = "dataset") -> None:
    """Check a Dataset (or every split of a DatasetDict) against the schema.

    Checks column presence and the audio feature's sampling rate; cheap (decodes nothing).
    """
    from datasets import Audio, DatasetDict

    if isinstance(dataset, DatasetDict):
        for split, ds in dataset.items():
            validate_schema(ds, sampling_rate, what=f"{what}[{split}]")
        return
    require_columns(dataset.column_names, SCHEMA_COLUMNS, what)
    audio_feature = dataset.features["audio"]
    if not isinstance(audio_feature, Audio):
        raise SchemaError(f"{what}: column 'audio' must be a datasets.Audio feature, got {type(audio_feature).__name__}.")
    if sampling_rate is not None and audio_feature.sampling_rate != sampling_rate:
        raise SchemaError(
            f"{what}: audio is at {audio_feature.sampling_rate} Hz but {sampling_rate} Hz is required; "
            f"use dataset.cast_column('audio', Audio(sampling_rate={sampling_rate}))."
        )


def read_columns(dataset, names: Iterable[str]) -> dict[str, list]:
    """Python lists of the cheap columns `names` of a Dataset (or a dict of columns), read through Arrow.

    `dataset["speaker"]` formats row by row in datasets >= 4 (about 5 s per column at 150k rows, measured);
    one Arrow read of the selected columns takes 0.06 s and honours an indices mapping (`select`).
    """
    names = list(names)
    if isinstance(dataset, dict):
        return {name: list(dataset[name]) for name in names}
    table = _arrow_table(dataset, names)
    return {name: table.column(name).to_pylist() for name in names}


def _arrow_table(dataset, names: list[str]):
    """The columns `names` of a Dataset (indices mapping applied) or of a dict of columns, as a pyarrow Table."""
    import pyarrow as pa

    if isinstance(dataset, dict):
        return pa.table({name: pa.array(list(dataset[name])) for name in names})
    table = getattr(dataset.data, "table", None)
    if table is None:  # not the datasets.table.Table wrapper this was written against: the public (slow) path
        return dataset.select_columns(names).with_format("arrow")[:]
    table = table.select(names)
    indices = getattr(dataset, "_indices", None)  # set by select/shuffle/train_test_split
    # One Arrow take through the indices mapping. `with_format("arrow")[:]` gathers it as one record batch per
    # row: at 1.8 M rows that is 1.8 M chunks, ~1 GB and 3 s for one string column (measured), 0.4 s this way.
    return table.take(indices.column(0)) if indices is not None else table


def numeric_column(dataset, name: str):
    """A numeric column (duration, ...) of a Dataset or a dict of columns as a float64 numpy array."""
    import numpy as np

    return np.asarray(_arrow_table(dataset, [name]).column(name).to_numpy(), dtype=np.float64)


def label_codes(dataset, name: str):
    """A label column (speaker, dialect, ...) as `(labels, codes)`: its distinct values in sorted order and, per
    row, the index of the row's value in `labels` (a numpy int32 array).

    Grouping millions of rows by speaker through Python lists costs a string object per row (~100-200 bytes);
    the codes cost 4 bytes a row and only the distinct labels become Python strings. `labels` is sorted as
    Python sorts str (UTF-8 byte order is code point order), so grouping by code visits groups in the order
    `sorted()` of the labels would.
    """
    import numpy as np
    import pyarrow.compute as pc

    column = _arrow_table(dataset, [name]).column(name)
    labels = pc.unique(column)
    labels = labels.take(pc.sort_indices(labels))
    codes = np.asarray(pc.index_in(column, value_set=labels).to_numpy(zero_copy_only=False), dtype=np.int32)
    labels = labels.to_pylist()
    del column
    release_arrow_memory()
    return labels, codes


def release_arrow_memory() -> None:
    """Hand the pages Arrow's allocator keeps for reuse back to the OS (mimalloc holds the hash tables and copies
    of a column pass: ~45 MB at 200k rows), so the main process stays small for the decode workers it forks."""
    import pyarrow as pa

    pa.default_memory_pool().release_unused()


def grouped_rows(major, minor, n_minor: int):
    """Row indices grouped by the code pair (major[i], minor[i]): yields `(major code, minor code, indices)`
    with the groups in ascending (major, minor) order and each group's indices ascending."""
    import numpy as np

    key = np.asarray(major, dtype=np.int64) * n_minor + np.asarray(minor, dtype=np.int64)
    if key.size == 0:
        return
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    starts = np.flatnonzero(np.r_[True, sorted_key[1:] != sorted_key[:-1]])
    for start, stop in zip(starts.tolist(), np.r_[starts[1:], key.size].tolist()):
        group = int(sorted_key[start])
        yield group // n_minor, group % n_minor, order[start:stop]
