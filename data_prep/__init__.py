"""data_prep: turn speech corpora into the one dataset schema every recipe reads.

Run `python -m data_prep --help` for the command line. The library entry points:

- sources: `data_prep.sources.from_common_voice`, `from_ljspeech`, `from_folder`, `from_manifest`, `from_hf`
- processing: `data_prep.processing.prepare` (decode, filter, balance, split; counted skips)
- reports and cards: `data_prep.report.write_report`, `data_prep.card.make_dataset_card`, `push_dataset_to_hub`
- recipes load the result with `data_prep.loading.load_prepared_dataset`

Submodules are imported lazily so `python -m data_prep --help` stays fast.
"""
