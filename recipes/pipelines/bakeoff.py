"""Bake-off: train every recipe that can take a language on the same data, score all with one evaluation.

    python recipes/pipelines/bakeoff.py --config recipes/pipelines/configs/bakeoff_demo.yaml     # make bakeoff-demo
    python recipes/pipelines/bakeoff.py --config recipes/pipelines/configs/bakeoff.yaml \
        --dataset outputs/cv_ca/dataset --language ca --dialects central balear valencia --recipes orpheus f5 pocket

Steps, top to bottom:
  1. The YAML names, per recipe, the languages it can take, its training command(s) (a recipe's own script
     and config: demo configs offline, real ones on GPUs) and the folder its model lands in. A recipe that
     cannot take the language is skipped with its reason (XTTS: only the languages its tokenizer knows).
  2. The prepared dataset must carry its own `validation` split (data_prep writes one): every recipe then
     trains on the same train split and is scored on the same held-out clips.
  3. Each training and evaluation is a resumable stage (recipes/pipelines/stages.py): a rerun skips what is
     done. Wall time and peak memory (GPU when present, else RSS) are measured per stage.
  4. `recipes/evaluate.py` scores every model with the same evaluation config: WER, CER, speaker
     similarity, MCD, RTF and EOS health, plus the recordings' own scores as the ceiling row.
  5. outputs/bakeoff/<name>/results.json, results.md and charts/*.png: one row per recipe.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import yaml  # noqa: E402

from recipes.pipelines.stages import (Stages, evaluation_config_copy, expand, trainable_parameters,
                                      training_steps)  # noqa: E402

METRICS = ("wer", "cer", "similarity", "mcd", "rtf")
EOS_KEYS = ("no_eos", "silent")
# One evaluation for every recipe (a YAML may replace it with `evaluate_command`, same placeholders).
EVALUATE_COMMAND = ["{python}", "recipes/evaluate.py", "--config", "{evaluation_config}", "--recipe", "{eval_recipe}",
                    "--model_path", "{model_path}", "--dataset", "{dataset}", "--dialects", "{dialects}",
                    "--languages", "{languages}", "--seed", "{seed}", "--output_dir", "{eval_dir}",
                    "--run_name", "{recipe}", "--synthesizer_options", "{synthesizer_options}"]


def accepts(entry: dict, language: str) -> tuple[bool, str]:
    """Can this recipe train `language`? (True, "") or (False, the reason shown in the table)."""
    languages = entry.get("languages", "any")
    if languages == "any" or language in languages:
        return True, ""
    return False, entry.get("declines", f"{language} is not among the languages it can take: {', '.join(languages)}")


def check_split(dataset: str) -> None:
    """A shared held-out set: the prepared dataset must have a validation split every recipe uses as is."""
    if dataset == "demo":
        return  # the embedded demo corpus is split by data_prep.loading with the seed the configs share
    path = Path(dataset)
    if path.exists() and not (path / "validation").exists() and not (path / "dataset_dict.json").exists():
        raise SystemExit(f"{dataset}: not a prepared DatasetDict folder (python -m data_prep ... --out X writes X/dataset)")
    if (path / "dataset_dict.json").exists():
        splits = json.loads((path / "dataset_dict.json").read_text()).get("splits", [])
        if "validation" not in splits:
            raise SystemExit(f"{dataset} has splits {splits} but no 'validation': every recipe must be scored on "
                             "the same held-out clips. Prepare it with data_prep (it writes a validation split).")


def _number(stats: dict | None, key: str):
    value = (stats or {}).get(key)
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None


def eos_counts(summary: dict) -> dict:
    """no_eos / silent totals wherever evaluation reports them (overall, then meta counts)."""
    found = {}
    for key in EOS_KEYS:
        for place in (summary.get("overall", {}), summary.get("eos", {}), summary.get("meta", {}).get("counts", {})):
            for candidate in (key, f"{key}_outputs"):
                if isinstance(place, dict) and isinstance(place.get(candidate), (int, float)):
                    found[key] = int(place[candidate])
                    break
            if key in found:
                break
    return found


def table(rows: list[dict], ceiling: dict | None) -> str:
    head = ["recipe", "WER", "CER", "spk sim", "MCD (dB)", "RTF", "no_eos", "silent", "train min", "steps",
            "trainable params", "peak mem (GB)"]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]

    def fmt(value, spec):
        return "–" if value is None else format(value, spec)

    for row in rows:
        if row.get("skipped"):
            lines.append(f"| {row['recipe']} | skipped: {row['skipped']} |" + " |" * (len(head) - 2))
            continue
        m = row["metrics"]
        mem = row.get("peak_gpu_mb") or row.get("peak_rss_mb")
        lines.append("| " + " | ".join([
            row["recipe"], fmt(m.get("wer"), ".3f"), fmt(m.get("cer"), ".3f"), fmt(m.get("similarity"), ".3f"),
            fmt(m.get("mcd"), ".2f"), fmt(m.get("rtf"), ".3f"), fmt(row["eos"].get("no_eos"), "d"),
            fmt(row["eos"].get("silent"), "d"), fmt(row["train_seconds"] / 60, ".1f"), fmt(row["steps"], "d"),
            fmt(row["trainable_parameters"], ",d"), fmt(mem / 1024 if mem else None, ".1f")]) + " |")
    if ceiling:
        lines.append("| recordings (ceiling) | " + " | ".join(
            [fmt(_number(ceiling, "wer"), ".3f"), fmt(_number(ceiling, "cer"), ".3f"),
             fmt(_number(ceiling, "similarity"), ".3f")] + ["–"] * (len(head) - 4)) + " |")
    return "\n".join(lines)


def charts(rows: list[dict], ceiling: dict | None, folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trained = [r for r in rows if not r.get("skipped")]
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for key, title in (("wer", "WER (lower is better)"), ("cer", "CER (lower is better)"),
                       ("similarity", "speaker similarity (higher is better)"), ("mcd", "MCD dB (lower is better)"),
                       ("rtf", "real-time factor (lower is faster)")):
        values = [r["metrics"].get(key) for r in trained]
        fig, ax = plt.subplots(figsize=(5, 3))
        ax.bar([r["recipe"] for r in trained], [v if v is not None else 0 for v in values], color="tab:blue")
        if ceiling and _number(ceiling, key) is not None:
            ax.axhline(ceiling[key], color="tab:green", linestyle="--", label="recordings")
            ax.legend()
        ax.set_title(title)
        fig.tight_layout()
        path = folder / f"{key}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="bake-off YAML (recipes/pipelines/configs/)")
    parser.add_argument("--dataset", default=None, help="prepared dataset folder (overrides the YAML)")
    parser.add_argument("--language", default=None, help="language code of the dataset (overrides the YAML)")
    parser.add_argument("--dialects", nargs="*", default=None, help="dialects to train and score (default: YAML)")
    parser.add_argument("--recipes", nargs="*", default=None, help="subset of the YAML's recipes, e.g. orpheus f5")
    parser.add_argument("--name", default=None, help="run name: outputs go to <output_root>/<name>")
    parser.add_argument("--output_root", default=None)
    args = parser.parse_args(argv)

    cfg = yaml.safe_load(Path(args.config).read_text())
    dataset = args.dataset or cfg["dataset"]
    language = args.language or cfg["language"]
    if not dataset or not language:
        raise SystemExit("which data? pass --dataset <prepared dataset> and --language <code> (make bakeoff DATA=... LANG=...)")
    dialects = args.dialects if args.dialects is not None else cfg.get("dialects")
    name = args.name or cfg.get("name") or f"{Path(dataset).name}-{language}"
    out = Path(args.output_root or cfg.get("output_root", "outputs/bakeoff")) / name
    selected = [r.strip() for r in (args.recipes or list(cfg["recipes"])) for r in r.split(",") if r.strip()]
    unknown = set(selected) - set(cfg["recipes"])
    if unknown:
        raise SystemExit(f"--recipes {sorted(unknown)}: the YAML defines {list(cfg['recipes'])}")
    check_split(dataset)

    stages = Stages(out)
    evaluation_config = evaluation_config_copy(cfg["evaluation_config"], out / "evaluation.yaml")
    values = {"python": sys.executable, "dataset": dataset, "language": language, "languages": [language],
              "dialects": dialects or None, "out": str(out), "seed": cfg.get("seed", 0)}
    rows, ceiling = [], None
    for recipe in selected:
        entry = cfg["recipes"][recipe]
        ok, why = accepts(entry, language)
        if not ok:
            print(f"[{recipe}] skipped: {why}")
            rows.append({"recipe": recipe, "skipped": why})
            continue
        recipe_values = {**values, "model_dir": str(out / recipe), "recipe": recipe}
        train = [stages.run(f"{recipe}-train-{i}", expand(cmd, recipe_values))
                 for i, cmd in enumerate(entry["train"])]
        model_path = entry.get("model_path", "{model_dir}").format(**recipe_values)
        eval_dir = out / "eval" / recipe
        recipe_values.update(model_path=model_path, eval_dir=str(eval_dir), eval_recipe=entry.get("eval_recipe", recipe),
                             synthesizer_options=json.dumps(entry["synthesizer_options"])
                             if entry.get("synthesizer_options") else None)
        evaluation = stages.run(f"{recipe}-eval", expand(cfg.get("evaluate_command", EVALUATE_COMMAND)
                                                         + [str(a) for a in cfg.get("evaluation_args", [])],
                                                         {**recipe_values, "evaluation_config": evaluation_config}))
        summary = json.loads((eval_dir / "results.json").read_text())
        ceiling = ceiling or summary.get("ground_truth")
        log_text = "\n".join(Path(t["log"]).read_text(errors="replace") for t in train if Path(t["log"]).exists())
        rows.append({
            "recipe": recipe, "config": [" ".join(t["command"][1:]) for t in train], "model_path": model_path,
            "metrics": {k: _number(summary.get("overall"), k) for k in METRICS}, "eos": eos_counts(summary),
            "train_seconds": sum(t["seconds"] for t in train), "eval_seconds": evaluation["seconds"],
            "steps": training_steps(model_path) or training_steps(recipe_values["model_dir"]),
            "trainable_parameters": trainable_parameters(log_text),
            "peak_rss_mb": max(t["peak_rss_mb"] for t in train),
            "peak_gpu_mb": max((t["peak_gpu_mb"] or 0) for t in train) or None,
            "meaningful": summary.get("meta", {}).get("meaningful"),
        })

    result = {"name": name, "dataset": dataset, "language": language, "dialects": dialects,
              "evaluation_config": cfg["evaluation_config"], "note": cfg.get("note", ""), "recipes": rows,
              "recordings": ceiling}
    (out / "results.json").write_text(json.dumps(result, indent=2, ensure_ascii=False))
    chart_paths = charts(rows, ceiling, out / "charts")
    markdown = [f"# Bake-off: {name}", "",
                f"Dataset `{dataset}` ({language}{', dialects ' + ', '.join(dialects) if dialects else ''}); "
                f"every model scored on its validation split with `{cfg['evaluation_config']}`.", ""]
    if cfg.get("note"):
        markdown += [f"> {cfg['note'].strip()}", ""]
    markdown += [table(rows, ceiling), ""]
    markdown += [f"![{p.stem}](charts/{p.name})" for p in chart_paths]
    (out / "results.md").write_text("\n".join(markdown) + "\n", encoding="utf-8")
    print("\n" + "\n".join(markdown[:-len(chart_paths)] if chart_paths else markdown))
    print(f"\nwritten: {out / 'results.md'}, {out / 'results.json'}, {out / 'charts'}/")
    return result


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
