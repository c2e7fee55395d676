"""Write a prepared dataset: save_to_disk, report, dataset card, optional Hub push."""

from __future__ import annotations

from pathlib import Path


def write_outputs(prepared, output_dir, *, purpose: str = "auto", license: str = "other", pretty_name: str | None = None,
                  repo_id: str | None = None, push_to_hub: bool = False, private: bool = False,
                  hub_config_name: str = "default", verbose: bool = True) -> dict:
    """OUTPUT_DIR/dataset (save_to_disk), OUTPUT_DIR/report/, OUTPUT_DIR/README.md (card); push when asked.

    Returns the report dict; prints the human summary when `verbose`.
    """
    from data_prep.card import make_dataset_card, push_dataset_to_hub
    from data_prep.report import write_report

    if push_to_hub and not repo_id:
        raise SystemExit("--push_to_hub needs --repo_id (e.g. --repo_id your-name/catalan-tts)")
    out = Path(output_dir)
    dataset_dir = out / "dataset"
    prepared.dataset.save_to_disk(str(dataset_dir))
    extra = {"sources": prepared.sources, "processing": prepared.config.to_dict()}
    trimming = getattr(prepared, "trimming", None)
    if trimming is not None:
        extra["trimming"] = trimming
    report = write_report(prepared.dataset, out / "report", prepared.skips, purpose=purpose, extra=extra)
    if trimming is not None:
        report["summary"] += (f"\nSilence trimming (VAD): {trimming['clips_trimmed']} of {trimming['clips']} clips trimmed, "
                              f"{trimming['seconds_trimmed']:.1f} s removed ({trimming['seconds_trimmed_start']:.1f} s at "
                              f"starts, {trimming['seconds_trimmed_end']:.1f} s at ends); "
                              f"{trimming['clips_without_speech']} clips with no speech detected (kept as is)")
        (out / "report" / "report.txt").write_text(report["summary"] + "\n", encoding="utf-8")
    card = make_dataset_card(prepared.dataset, sources=prepared.sources, processing=prepared.config.to_dict(),
                             skips=prepared.skips, license=license, pretty_name=pretty_name, repo_id=repo_id,
                             stats=report)
    card.save(str(out / "README.md"))
    if verbose:
        print(report["summary"])
        print(f"\nDataset: {dataset_dir}  (recipes: `dataset: {dataset_dir}`)\nReport:  {out / 'report'} "
              f"(plots: durations.png, dialects.png; listen: samples/*.wav)\nCard:    {out / 'README.md'}")
    if push_to_hub:
        url = push_dataset_to_hub(prepared.dataset, repo_id, card, private=private, config_name=hub_config_name)
        if verbose:
            print(f"Pushed to {url}")
        report["hub_url"] = url
    return report
