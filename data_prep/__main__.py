"""`python -m data_prep <command> --help`: build schema datasets for the recipes.

Sources (each writes OUT/dataset (save_to_disk), OUT/report/ and OUT/README.md, the dataset card):
  python -m data_prep common-voice --path cv-corpus/ca --mapping data_prep/mappings/catalan_dialects.yaml --vote_filter --output_dir OUT
  python -m data_prep ljspeech --path LJSpeech-1.1 --dialect en --speaker lj --output_dir OUT
  python -m data_prep folder --path clips/ --label_levels dialect/speaker --output_dir OUT
  python -m data_prep manifest --path manifest.json --output_dir OUT
  python -m data_prep hf --name_or_path user/dataset --column_map text=sentence,speaker=client_id --dialect ca --output_dir OUT
Checks and demo data:
  python -m data_prep validate OUT/dataset --report_dir OUT/report
  python -m data_prep export-demo --out demo_formats      (the demo corpus in every source format)
  python -m data_prep demo-corpus --out bigger_corpus --clips_per_speaker 20   (needs espeak-ng)
  python -m data_prep demo --out outputs/demo             (what `make demo` runs first)
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def _column_map(text: str | None) -> dict[str, str]:
    if not text:
        return {}
    pairs = {}
    for item in text.split(","):
        if "=" not in item:
            raise argparse.ArgumentTypeError(f"--column_map items are schema=column, got {item!r}")
        key, value = item.split("=", 1)
        pairs[key.strip()] = value.strip()
    return pairs


# ----------------------------------------------------------------------------------------------
# shared option groups
# ----------------------------------------------------------------------------------------------

def add_processing_args(parser: argparse.ArgumentParser) -> None:
    from data_prep.schema import DEFAULT_SAMPLING_RATE

    g = parser.add_argument_group("processing and filters")
    g.add_argument("--sampling_rate", type=int, default=DEFAULT_SAMPLING_RATE, help="target rate (Hz)")
    g.add_argument("--min_duration", type=float, default=1.0, help="drop clips shorter than this (s)")
    g.add_argument("--max_duration", type=float, default=15.0, help="drop clips longer than this (s)")
    g.add_argument("--normalize", choices=("none", "peak", "loudness"), default="none",
                   help="peak: peak at --peak_dbfs; loudness: RMS at --loudness_dbfs (peak-limited)")
    g.add_argument("--peak_dbfs", type=float, default=-1.0)
    g.add_argument("--loudness_dbfs", type=float, default=-23.0)
    g.add_argument("--silence_dbfs", type=float, default=-50.0, help="clips whose RMS is below this are silence")
    g.add_argument("--allowed_channels", type=int, nargs="+", default=[1, 2], help="other channel counts are skipped")
    g.add_argument("--max_chars_per_second", type=float, default=30.0,
                   help="more characters per second than this means a wrong transcript")
    g.add_argument("--min_per_speaker", type=int, default=5, help="drop speakers with fewer clips (per dialect)")
    g.add_argument("--max_per_speaker", type=int, default=50, help="seeded subsample of speakers with more (0: no cap)")
    g.add_argument("--validation_fraction", type=float, default=0.1)
    g.add_argument("--speaker_disjoint_validation", action="store_true",
                   help="hold out whole speakers (per dialect) instead of clips of every speaker")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--num_proc", type=int, default=None, help="processes for decoding/resampling")
    g.add_argument("--trim_silence", action="store_true",
                   help="trim leading/trailing non-speech with silero-vad (noise-robust), keeping --trim_keep_after_s "
                        "after the last speech (the EOS point) and --trim_keep_before_s before the first")
    g.add_argument("--trim_keep_before_s", type=float, default=0.1)
    g.add_argument("--trim_keep_after_s", type=float, default=0.2)
    g.add_argument("--cache_dir", default=None,
                   help="scratch folder for processed shards (default: OUTPUT_DIR/cache, removed at the end). After a "
                        "crash or kill, rerunning the same command resumes from the shards finished there")
    g.add_argument("--shard_size", type=int, default=1000, help="rows per resumable shard")


def processing_config(args):
    from data_prep.processing import ProcessingConfig

    return ProcessingConfig(
        sampling_rate=args.sampling_rate, min_duration=args.min_duration, max_duration=args.max_duration,
        normalize=args.normalize, peak_dbfs=args.peak_dbfs, loudness_dbfs=args.loudness_dbfs,
        silence_dbfs=args.silence_dbfs, allowed_channels=tuple(args.allowed_channels),
        max_chars_per_second=args.max_chars_per_second, min_per_speaker=args.min_per_speaker,
        max_per_speaker=args.max_per_speaker or None, validation_fraction=args.validation_fraction,
        speaker_disjoint_validation=args.speaker_disjoint_validation, seed=args.seed, num_proc=args.num_proc,
        trim_silence=args.trim_silence, trim_keep_before_s=args.trim_keep_before_s,
        trim_keep_after_s=args.trim_keep_after_s,
        shard_size=args.shard_size,
        cache_dir=args.cache_dir or (os.path.join(args.output_dir, "cache") if getattr(args, "output_dir", None) else None),
    )


def add_output_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("output")
    g.add_argument("--output_dir", required=True,
                   help="writes OUTPUT_DIR/dataset (save_to_disk), OUTPUT_DIR/report/ and OUTPUT_DIR/README.md")
    g.add_argument("--purpose", choices=("auto", "pretraining", "single_voice"), default="auto",
                   help="which rules of thumb the report warns about")
    g.add_argument("--license", default="other", help="licence id for the dataset card (Common Voice: cc0-1.0)")
    g.add_argument("--pretty_name", default=None)
    g.add_argument("--push_to_hub", action="store_true", help="also push dataset + card to the Hub")
    g.add_argument("--repo_id", default=None, help="Hub dataset repo, e.g. user/catalan-dialects-tts")
    g.add_argument("--private", action="store_true")
    g.add_argument("--hub_config_name", default="default", help="dataset config name on the Hub (e.g. the language)")


def finish(prepared, args) -> dict:
    """Save, report, card, optional push; prints the human summary. Returns the report dict."""
    from data_prep.outputs import write_outputs

    report = write_outputs(prepared, args.output_dir, purpose=args.purpose, license=args.license,
                           pretty_name=args.pretty_name, repo_id=args.repo_id, push_to_hub=args.push_to_hub,
                           private=args.private, hub_config_name=args.hub_config_name)
    _remove_default_cache(args)
    return report


def _remove_default_cache(args) -> None:
    """The scratch cache is only needed until save_to_disk has copied the data."""
    import shutil

    if not args.cache_dir and getattr(args, "output_dir", None):
        shutil.rmtree(os.path.join(args.output_dir, "cache"), ignore_errors=True)


# ----------------------------------------------------------------------------------------------
# commands
# ----------------------------------------------------------------------------------------------

def cmd_common_voice(args):
    from data_prep.processing import prepare
    from data_prep.sources import from_common_voice

    source = from_common_voice(args.path, locale=args.locale, splits=args.splits, mapping=args.mapping,
                               keep_unmapped=args.keep_unmapped, default_dialect=args.default_dialect,
                               vote_filter=args.vote_filter)
    return finish(prepare(source, processing_config(args)), args)


def cmd_ljspeech(args):
    from data_prep.processing import prepare
    from data_prep.sources import from_ljspeech

    source = from_ljspeech(args.path, dialect=args.dialect, speaker=args.speaker, language=args.language,
                           use_normalized_text=not args.raw_text)
    return finish(prepare(source, processing_config(args)), args)


def cmd_folder(args):
    from data_prep.processing import prepare
    from data_prep.sources import from_folder

    source = from_folder(args.path, speaker=args.speaker, dialect=args.dialect, language=args.language,
                         label_levels=args.label_levels)
    return finish(prepare(source, processing_config(args)), args)


def cmd_manifest(args):
    from data_prep.processing import prepare
    from data_prep.sources import from_manifest

    source = from_manifest(args.path, speaker=args.speaker, dialect=args.dialect, language=args.language,
                           column_map=args.column_map)
    return finish(prepare(source, processing_config(args)), args)


def cmd_hf(args):
    from data_prep.processing import prepare
    from data_prep.sources import from_hf

    source = from_hf(args.name_or_path, split=args.split, config_name=args.config_name, column_map=args.column_map,
                     speaker=args.speaker, dialect=args.dialect, language=args.language, mapping=args.mapping,
                     keep_unmapped=args.keep_unmapped, revision=args.revision)
    return finish(prepare(source, processing_config(args)), args)


def cmd_validate(args):
    from datasets import DatasetDict, load_dataset, load_from_disk

    from data_prep.report import compute_stats, rule_of_thumb_warnings, summary_text, write_report
    from data_prep.schema import read_columns, validate_schema
    from data_prep.skips import SkipReport

    if args.dataset == "demo":
        from data_prep.loading import load_prepared_dataset

        data = load_prepared_dataset("demo", sampling_rate=args.sampling_rate)
    elif os.path.isdir(args.dataset):
        data = load_from_disk(args.dataset)
    else:
        from recipes.common import explain_hub_errors

        with explain_hub_errors(f"dataset {args.dataset!r}", "python -m data_prep validate demo"):
            data = load_dataset(args.dataset)
    validate_schema(data, args.sampling_rate, what=args.dataset)
    splits = dict(data.items()) if isinstance(data, DatasetDict) else {"all": data}
    for split, ds in splits.items():
        empty = sum(1 for t in read_columns(ds, ["text"])["text"] if not str(t or "").strip())
        if empty:
            raise SystemExit(f"{args.dataset}[{split}]: {empty} row(s) with empty text; re-run data_prep to filter them")
    skips = None
    skips_path = args.skips or (Path(args.dataset).parent / "report" / "skips.json")
    if os.path.exists(skips_path):
        skips = SkipReport.read(skips_path)
    report_dir = getattr(args, "out", None) or args.report_dir
    if report_dir:
        report = write_report(data, report_dir, skips, purpose=args.purpose)
        print(report["summary"])
        print(f"\nReport written to {report_dir}")
    else:
        stats = compute_stats(data)
        print(summary_text(stats, rule_of_thumb_warnings(stats, args.purpose), skips))
    print(f"\n{args.dataset}: schema OK")


def cmd_export_demo(args):
    from data_prep.exporters import export_all

    paths = export_all(args.corpus_dir, args.out, args.formats)
    for name, path in paths.items():
        print(f"{name:<13} {path}")


def cmd_demo_corpus(args):
    from data_prep.demo_corpus import generate_corpus

    manifest = generate_corpus(args.out, clips_per_speaker=args.clips_per_speaker,
                               speakers_per_dialect=args.speakers_per_dialect, sampling_rate=args.sampling_rate,
                               with_bad_files=not args.no_bad_files, seed=args.seed)
    print(f"wrote {manifest}")


def cmd_demo_recording(args):
    from data_prep.demo_corpus import synthetic_recording

    timeline = synthetic_recording(args.out, args.language, variant=args.variant, rate=args.rate)
    print(f"wrote {args.out} ({timeline[-1]['end']:.0f} s, {len(timeline)} sentences) and its timeline "
          f"{Path(args.out).with_suffix('.json')}")


def cmd_demo(args):
    """Demo corpus -> Common Voice layout -> back through the Common Voice source -> dataset + report."""
    import time

    from data_prep.exporters import export_common_voice
    from data_prep.mapping import CATALAN_DIALECTS
    from data_prep.processing import prepare
    from data_prep.sources import from_common_voice

    start = time.time()
    out = Path(args.out)
    cv_root = export_common_voice(args.corpus_dir, out / "common_voice")
    locales = sorted(p.name for p in cv_root.iterdir() if (p / "clips").is_dir())
    print(f"exported the demo corpus as a Common Voice release: {cv_root} (locales {locales})")
    sources = [from_common_voice(cv_root / locale, mapping=CATALAN_DIALECTS, vote_filter=True) for locale in locales]
    prepared = prepare(sources, processing_config(args))
    from data_prep.outputs import write_outputs

    write_outputs(prepared, out, license="cc0-1.0", pretty_name="tts-recipes demo corpus")
    print(f"\ndata step done in {time.time() - start:.1f} s")


# ----------------------------------------------------------------------------------------------
# parser
# ----------------------------------------------------------------------------------------------

def make_parser() -> argparse.ArgumentParser:
    from data_prep.demo_corpus import FIXTURE_DIR

    parser = argparse.ArgumentParser(prog="python -m data_prep", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")

    p = sub.add_parser("common-voice", help="a Common Voice release folder (validated.tsv or train/dev/test + clips/)")
    p.add_argument("--path", required=True, help="the locale folder (cv-corpus-XX/ca) or the release root with --locale")
    p.add_argument("--locale", default=None)
    p.add_argument("--splits", nargs="+", default=None, help="TSVs to read (default validated, else train dev test)")
    p.add_argument("--mapping", default=None, help="YAML/JSON dialect label mapping, e.g. data_prep/mappings/catalan_dialects.yaml")
    p.add_argument("--keep_unmapped", action="store_true", help="keep labels missing from the mapping (lower-cased)")
    p.add_argument("--default_dialect", default=None, help="dialect of rows with no label (default: the locale; '' skips them)")
    p.add_argument("--vote_filter", action="store_true", help="keep only rows with up_votes > down_votes")
    add_processing_args(p)
    add_output_args(p)
    p.set_defaults(func=cmd_common_voice)

    p = sub.add_parser("ljspeech", help="an LJSpeech folder (metadata.csv id|text[|normalized] + wavs/)")
    p.add_argument("--path", required=True)
    p.add_argument("--dialect", required=True, help="dialect/language label for every clip")
    p.add_argument("--speaker", default=None, help="speaker label (default: the folder name)")
    p.add_argument("--language", default=None)
    p.add_argument("--raw_text", action="store_true", help="use column 2 (raw text) even when a normalized column exists")
    add_processing_args(p)
    add_output_args(p)
    p.set_defaults(func=cmd_ljspeech)

    p = sub.add_parser("folder", help="audio files with sidecar .txt transcripts")
    p.add_argument("--path", required=True)
    p.add_argument("--label_levels", default=None, help="sub-folder meaning, e.g. dialect/speaker")
    p.add_argument("--speaker", default=None)
    p.add_argument("--dialect", default=None)
    p.add_argument("--language", default=None)
    add_processing_args(p)
    add_output_args(p)
    p.set_defaults(func=cmd_folder)

    p = sub.add_parser("manifest", help='a csv/json/jsonl manifest of {"audio_path","text",...} rows')
    p.add_argument("--path", required=True)
    p.add_argument("--column_map", type=_column_map, default=None, help="schema=key pairs, e.g. text=transcript")
    p.add_argument("--speaker", default=None, help="for rows without a speaker")
    p.add_argument("--dialect", default=None, help="for rows without a dialect (default: their language)")
    p.add_argument("--language", default=None)
    add_processing_args(p)
    add_output_args(p)
    p.set_defaults(func=cmd_manifest)

    p = sub.add_parser("hf", help="any Hugging Face dataset (Hub id or local path) with a column mapping")
    p.add_argument("--name_or_path", required=True)
    p.add_argument("--split", default="train")
    p.add_argument("--config_name", default=None)
    p.add_argument("--revision", default=None)
    p.add_argument("--column_map", type=_column_map, default=None,
                   help="schema=column pairs, e.g. audio=audio,text=sentence,speaker=client_id,dialect=accent")
    p.add_argument("--speaker", default=None, help="constant speaker when there is no speaker column")
    p.add_argument("--dialect", default=None, help="constant dialect when there is no dialect column")
    p.add_argument("--language", default=None)
    p.add_argument("--mapping", default=None, help="YAML/JSON dialect label mapping")
    p.add_argument("--keep_unmapped", action="store_true")
    add_processing_args(p)
    add_output_args(p)
    p.set_defaults(func=cmd_hf)

    for name, help_text in (("validate", "check a prepared dataset against the schema and summarise it"),
                            ("report", "write the report (json, txt, PNGs) of a prepared dataset")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("dataset", help="a save_to_disk folder, a Hub id, or 'demo'")
        if name == "report":
            p.add_argument("--out", required=True, help="report folder")
        p.add_argument("--report_dir", default=None, help="also write report files here")
        p.add_argument("--skips", default=None, help="skips.json to include (default: DATASET/../report/skips.json)")
        p.add_argument("--purpose", choices=("auto", "pretraining", "single_voice"), default="auto")
        p.add_argument("--sampling_rate", type=int, default=24000)
        p.set_defaults(func=cmd_validate)

    p = sub.add_parser("export-demo", help="write the demo corpus in every source format (with its bad files)")
    p.add_argument("--out", required=True)
    p.add_argument("--corpus_dir", default=str(FIXTURE_DIR))
    p.add_argument("--formats", nargs="+", default=None, help="common_voice ljspeech folder manifest hf (default: all)")
    p.set_defaults(func=cmd_export_demo)

    p = sub.add_parser("demo-corpus", help="synthesise a (bigger) demo corpus with espeak-ng")
    p.add_argument("--out", required=True)
    p.add_argument("--clips_per_speaker", type=int, default=None, help="default: 5 Catalan, 3 other")
    p.add_argument("--speakers_per_dialect", type=int, default=None, help="default 2 (at most 3)")
    p.add_argument("--sampling_rate", type=int, default=24000)
    p.add_argument("--no_bad_files", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_demo_corpus)

    p = sub.add_parser("demo-recording", help="synthesise a long recording (one voice, sentences with pauses) with espeak-ng")
    p.add_argument("--out", required=True, help="WAV path; the sentence timeline goes beside it as .json")
    p.add_argument("--language", default="en")
    p.add_argument("--variant", default="m1", help="espeak-ng voice variant")
    p.add_argument("--rate", type=int, default=140, help="words per minute (slow speech is recognised best)")
    p.set_defaults(func=cmd_demo_recording)

    p = sub.add_parser("demo", help="demo corpus -> Common Voice layout -> dataset + report (the `make demo` data step)")
    p.add_argument("--out", required=True, help="writes OUT/common_voice, OUT/dataset, OUT/report, OUT/README.md")
    p.add_argument("--corpus_dir", default=str(FIXTURE_DIR))
    add_processing_args(p)
    p.set_defaults(func=cmd_demo, min_per_speaker=3, purpose="auto")

    try:
        from data_prep.recordings import add_recordings_commands
    except ImportError:
        pass
    else:
        add_recordings_commands(sub)
    return parser


def main(argv: list[str] | None = None):
    args = make_parser().parse_args(argv)
    if getattr(args, "push_to_hub", False) and not getattr(args, "repo_id", None):
        raise SystemExit("--push_to_hub needs --repo_id (e.g. --repo_id your-name/catalan-tts)")
    return args.func(args)


if __name__ == "__main__":
    main()
