"""Evaluation shared by `recipes/evaluate.py` and the recipes' in-training eval steps.

- `text`: per-language transcript normaliser driven by `configs/languages.yaml`.
- `metrics`: WER/CER, MFCC-based mel-cepstral distortion with DTW, cosine similarity, RTF.
- `models`: the ASR and speaker-embedding backends (Whisper / WavLM x-vector, or tiny random ones
  built from configs for offline demos), loaded once and cached.
- `runner`: synthesise a held-out set through any `recipes.common.Synthesizer` and score it.
- `report`: results.json, Markdown tables, PNG charts, the browsable WAV folder, the Hub card section.
"""
