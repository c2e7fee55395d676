"""Export a prepared dataset as a Pocket-style manifest (WAV files + `manifest.json`), or check one.

The manifest format is a JSON list of `{"audio_path", "text", "language", "duration"}` rows (paths
relative to the manifest; an optional `"speaker"`/`"client_id"` lets the recipe pick voice prompts
from another clip of the same speaker). `finetune_multilingual.py` reads one directly: `dataset: x.json`.

    python recipes/pocket/manifest.py export --dataset demo --languages fr es --output_dir outputs/demo-manifest
    python recipes/pocket/manifest.py check outputs/demo-manifest/manifest.json
"""

from __future__ import annotations

import argparse


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    export = commands.add_parser("export", help="dataset (demo | folder | Hub id) -> WAVs + manifest.json")
    export.add_argument("--dataset", required=True)
    export.add_argument("--languages", nargs="*", default=None)
    export.add_argument("--split", choices=["train", "validation", "all"], default="all")
    export.add_argument("--output_dir", required=True)
    check = commands.add_parser("check", help="read a manifest as the recipe would and report what it holds")
    check.add_argument("manifest")
    args = parser.parse_args(argv)

    from recipes.pocket.data import attach_prompt_candidates, load_recipe_dataset, read_manifest_dataset, write_manifest

    if args.command == "export":
        from datasets import concatenate_datasets

        data = load_recipe_dataset(args.dataset, languages=args.languages)
        dataset = concatenate_datasets([data["train"], data["validation"]]) if args.split == "all" else data[args.split]
        print(write_manifest(dataset, args.output_dir))
    else:
        dataset = read_manifest_dataset(args.manifest)
        usable, skipped = attach_prompt_candidates(dataset, max_duration=30.0, what=args.manifest)
        languages = sorted(set(dataset["language"]))
        print(f"{len(dataset)} rows, {len(set(dataset['speaker']))} speakers, languages {languages}, "
              f"{sum(dataset['duration']) / 3600:.2f} h; usable for training: {len(usable)}; skipped: {dict(skipped)}")


if __name__ == "__main__":
    main()
