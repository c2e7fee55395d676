"""Dataset card and Hub push for prepared datasets."""

from __future__ import annotations

import json

from data_prep.report import compute_stats
from data_prep.schema import label_codes

SCRIPT_URL = "`python -m data_prep`, see data_prep/__main__.py"


def make_dataset_card(dataset, *, sources: list[dict], processing: dict, skips=None, license: str = "other",
                      languages: list[str] | None = None, pretty_name: str | None = None, repo_id: str | None = None,
                      stats: dict | None = None):
    """A `huggingface_hub.DatasetCard` stating sources, filters, counts and the licence.

    `license` is an SPDX-style id as the Hub expects it (Common Voice is "cc0-1.0"); say "other" and explain
    in the sources when a corpus mixes licences. `stats` is `compute_stats(dataset)` when the caller already
    has it (the report): counting a corpus of millions of rows twice costs minutes.
    """
    from huggingface_hub import DatasetCard, DatasetCardData

    stats = stats if stats is not None else compute_stats(dataset)
    if languages is None:
        languages = sorted({lang for split in _splits(dataset) if "language" in split.column_names
                            for lang in label_codes(split, "language")[0] if lang})
    card_data = DatasetCardData(
        license=license, language=languages or None, pretty_name=pretty_name or (repo_id or "tts dataset"),
        task_categories=["text-to-speech"], tags=["tts-recipes", "audio", "speech"],
    )
    dialect_rows = "\n".join(f"| {d} | {v['clips']} | {v['hours']:.3f} | {v['speakers']} |"
                             for d, v in stats["per_dialect"].items())
    split_rows = "\n".join(f"| {s} | {v['clips']} | {v['hours']:.3f} | {v['speakers']} |" for s, v in stats["splits"].items())
    skip_rows = "\n".join(f"| {reason} | {n} |" for reason, n in (skips.counts().items() if skips else []))
    source_lines = "\n".join(f"- `{json.dumps(s, ensure_ascii=False, default=str)}`" for s in sources)
    filter_lines = "\n".join(f"- `{k}`: {v}" for k, v in processing.items())
    content = f"""---
{card_data.to_yaml()}
---

# {pretty_name or repo_id or 'TTS dataset'}

Speech prepared for text-to-speech training with the tts-recipes `data_prep` package ({SCRIPT_URL}),
in the shared schema: `id`, `audio` (mono, {processing.get('sampling_rate', 24000)} Hz), `text`, `speaker`,
`dialect`, `duration`, `language`, `source`. Every recipe of the repository reads it with
`data_prep.loading.load_prepared_dataset`.

## Licence

`{license}`. Check the licence of each source below before redistributing; this card does not change it.

## Sources

{source_lines}

## Processing and filters

{filter_lines}

## Counts

{stats['clips']} clips, {stats['hours']:.3f} hours, {stats['speakers']} speakers, {stats['dialects']} dialects.

| split | clips | hours | speakers |
|---|---|---|---|
{split_rows}

| dialect | clips | hours | speakers |
|---|---|---|---|
{dialect_rows}

## Skipped rows

{'| reason | rows |' + chr(10) + '|---|---|' + chr(10) + skip_rows if skip_rows else 'None.'}
"""
    return DatasetCard(content)


def _splits(dataset):
    from datasets import DatasetDict

    return list(dataset.values()) if isinstance(dataset, DatasetDict) else [dataset]


def push_dataset_to_hub(dataset, repo_id: str, card, *, private: bool = False, token: str | None = None,
                        config_name: str = "default") -> str:
    """Create the dataset repo, upload the card, then the data (datasets keeps the card's text and adds its
    own `dataset_info`/`configs` metadata to it). Returns the repo URL."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    url = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    card.push_to_hub(repo_id, repo_type="dataset", token=token, commit_message="Dataset card from tts-recipes data_prep")
    dataset.push_to_hub(repo_id, config_name=config_name, private=private, token=token,
                        commit_message="Data from tts-recipes data_prep")
    return str(url)
