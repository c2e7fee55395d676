"""Load a prepared (schema) dataset for a recipe: the demo corpus, a `save_to_disk` folder, or a Hub id."""

from __future__ import annotations

import os

from data_prep.schema import DEFAULT_SAMPLING_RATE, validate_schema
from data_prep.split import split_train_validation  # noqa: F401  (re-exported: recipes import it from here)

DEMO = "demo"


def load_prepared_dataset(
    name_or_path: str,
    *,
    config_name: str | None = None,
    sampling_rate: int = DEFAULT_SAMPLING_RATE,
    validation_fraction: float = 0.1,
    seed: int = 0,
    dialects: list[str] | None = None,
    languages: list[str] | None = None,
    speakers: list[str] | None = None,
):
    """Return a `DatasetDict` with `train` and `validation` splits in the shared schema.

    `name_or_path` is `"demo"` (the committed espeak-ng corpus), a folder written by
    `Dataset.save_to_disk` / `python -m data_prep ...`, or a Hub dataset id. Audio is cast to
    `sampling_rate`; rows are filtered to the given dialects/languages/speakers; when the source has no
    validation split, one is carved out so that it covers several speakers of every dialect.
    """
    from datasets import Audio, Dataset, DatasetDict, load_dataset, load_from_disk

    if name_or_path == DEMO:
        from data_prep.demo_corpus import load_demo_dataset

        data = load_demo_dataset(sampling_rate=sampling_rate)
    elif os.path.isdir(name_or_path):
        data = load_from_disk(name_or_path)
    else:
        data = load_dataset(name_or_path, config_name)

    if isinstance(data, DatasetDict) and "train" not in data:
        raise ValueError(f"{name_or_path}: expected a 'train' split, found {list(data)}")
    if isinstance(data, DatasetDict):
        data = DatasetDict({("validation" if k in ("validation", "dev", "test") and "validation" not in data else k): v
                            for k, v in data.items()})

    def keep(ds):
        for column, wanted in (("dialect", dialects), ("language", languages), ("speaker", speakers)):
            if wanted:
                if column not in ds.column_names:
                    raise ValueError(f"{name_or_path}: cannot filter on '{column}': columns are {ds.column_names}")
                wanted_set = set(wanted)
                ds = ds.filter(lambda v: v in wanted_set, input_columns=[column])
        return ds

    if isinstance(data, Dataset):
        data = keep(data)
        if len(data) == 0:
            raise ValueError(f"{name_or_path}: no rows left after filtering dialects={dialects} "
                             f"languages={languages} speakers={speakers}")
        data = split_train_validation(data, validation_fraction, seed)
    else:
        data = DatasetDict({k: keep(v) for k, v in data.items()})
        if "validation" not in data:
            data = split_train_validation(data["train"], validation_fraction, seed)
    data = DatasetDict({k: v.cast_column("audio", Audio(sampling_rate=sampling_rate)) for k, v in data.items()})
    validate_schema(data, sampling_rate, what=name_or_path)
    return data
