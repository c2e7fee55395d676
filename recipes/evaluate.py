"""Evaluate a trained voice on a held-out set: WER/CER, speaker similarity, MCD, RTF, per dialect.

    python recipes/evaluate.py --config recipes/eval/configs/default.yaml \
        --recipe orpheus --model_path outputs/orpheus_ca --dataset my_prepared_dataset --output_dir outputs/eval_ca

    # offline demo after `make demo` (scores outputs/orpheus/demo with tiny random ASR/speaker models:
    # the numbers are NOT meaningful, the path is the real one)
    python recipes/evaluate.py --config recipes/eval/configs/demo.yaml

Every held-out text is synthesised in batches through the recipe's `recipes/<recipe>/generate.py:
load_synthesizer` (cloning recipes get another clip of the same speaker as prompt), transcribed by
Whisper with the row's language, normalised per language (recipes/eval/configs/languages.yaml) and
scored; the recordings themselves are scored the same way as the ceiling. Writes results.json,
results.md, charts/by_<dialect|language|speaker>.png and wavs/<dialect>/<id>.wav with wavs/index.html
under --output_dir, prints the per-dialect table, and with --push_to_hub adds an eval-results
section to the model's Hub card. Recipes' eval steps call `evaluate_synthesizer` in-process instead.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys

if __package__ in (None, ""):  # `python recipes/evaluate.py` puts recipes/ first on sys.path; we need the root
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from recipes.eval.runner import EvaluationConfig, EvaluationResult, evaluate_synthesizer  # noqa: E402

logger = logging.getLogger("recipes.evaluate")
__all__ = ["EvaluationConfig", "EvaluationResult", "evaluate_synthesizer", "load_recipe_synthesizer", "main"]


def load_recipe_synthesizer(recipe: str, model_path: str, device: str | None = None, **options):
    """`recipes.<recipe>.generate.load_synthesizer(model_path, device, **options)`, imported only now."""
    module_name = f"recipes.{recipe}.generate"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name not in (module_name, f"recipes.{recipe}"):
            raise
        available = sorted(name for name in os.listdir(os.path.dirname(os.path.abspath(__file__)))
                           if os.path.isfile(os.path.join(os.path.dirname(os.path.abspath(__file__)), name, "generate.py")))
        raise SystemExit(f"--recipe {recipe}: no {module_name} module. Recipes with a generate.py: {available}") from err
    return module.load_synthesizer(model_path, device=device, **options)


def held_out_split(config: EvaluationConfig):
    """(evaluation rows, reference pool) through the one shared loader, split as training split it."""
    from data_prep.loading import load_prepared_dataset

    data = load_prepared_dataset(config.dataset, config_name=config.dataset_config,
                                 validation_fraction=config.validation_fraction, seed=config.seed,
                                 dialects=config.dialects, languages=config.languages, speakers=config.speakers)
    if config.split not in data:
        raise SystemExit(f"--split {config.split}: {config.dataset} has splits {list(data)}")
    pool = data[config.reference_split] if config.reference_split and config.reference_split in data \
        and config.reference_split != config.split else None
    return data[config.split], pool


def main(config: EvaluationConfig, synthesizer=None) -> EvaluationResult:
    """Run the whole evaluation; pass `synthesizer` to skip loading one from --recipe/--model_path."""
    from recipes.eval.report import markdown_report, push_results_to_hub, write_report

    if synthesizer is None:
        if not (config.recipe and config.model_path):
            raise SystemExit("Give --recipe (orpheus | f5 | xtts | pocket) and --model_path (a trained model folder)")
        synthesizer = load_recipe_synthesizer(config.recipe, config.model_path, config.device, **config.options)
    run_name = config.run_name or (f"{config.recipe}-{os.path.basename(os.path.normpath(config.model_path))}"
                                   if config.recipe and config.model_path else type(synthesizer).__name__)
    dataset, pool = held_out_split(config)
    logger.info("Evaluating %s on %d %s rows of %s", run_name, len(dataset), config.split, config.dataset)
    result = evaluate_synthesizer(synthesizer, dataset, config, reference_pool=pool, model_label=run_name)
    paths = write_report(result, config.output_dir, wavs=config.write_wavs)
    report = markdown_report(result.summary)
    # The per-dialect table (and the overall one) on stdout, so `make eval-demo` shows the answer.
    print(report.split("## Per language")[0].split("## Per speaker")[0])
    print(f"Wrote {', '.join(str(p) for p in paths.values())}")
    if config.push_to_hub:
        repo_id = config.hub_model_id or config.model_path
        print("Updated", push_results_to_hub(config.output_dir, repo_id, result.summary, run_name))
    return result


if __name__ == "__main__":
    from recipes.common import parse_recipe_args

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    (parsed_config,) = parse_recipe_args(EvaluationConfig)
    main(parsed_config)
