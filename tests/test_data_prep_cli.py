"""The `python -m data_prep` command line: --help of every command, each source end to end (dataset, report,
card), `validate`/`report`, the `demo` data step, and the Hub push (mocked: tests never touch the network)."""

import json
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest

from data_prep.__main__ import main, make_parser

REPO = Path(__file__).resolve().parent.parent
COMMANDS = ["common-voice", "ljspeech", "folder", "manifest", "hf", "validate", "report", "export-demo",
            "demo-corpus", "demo"]


def test_module_help_lists_every_command():
    out = subprocess.run([sys.executable, "-m", "data_prep", "--help"], cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    for command in COMMANDS:
        assert command in out.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        make_parser().parse_args([command, "--help"])
    assert exit_info.value.code == 0
    assert f"python -m data_prep {command}" in capsys.readouterr().out


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli_formats")
    main(["export-demo", "--out", str(out), "--formats", "common_voice", "ljspeech", "folder", "manifest", "hf"])
    return out


def _source_args(name, exported):
    """The README's command for this source, pointed at the exported demo formats (output dir added by callers)."""
    argv = next(a for a in _readme_commands() if a[0] == name)
    argv = argv[: argv.index("--output_dir")]
    return [a.replace("demo_formats", str(exported)).replace("data_prep/mappings", str(REPO / "data_prep/mappings"))
            for a in argv]


@pytest.mark.parametrize("source", ["common-voice", "ljspeech", "folder", "manifest", "hf"])
def test_source_command_writes_dataset_report_and_card(source, exported, tmp_path, capsys):
    from data_prep.loading import load_prepared_dataset

    out = tmp_path / "out"
    main(_source_args(source, exported) + ["--output_dir", str(out)])
    printed = capsys.readouterr().out
    assert "truncated" in printed and "Dataset:" in printed
    data = load_prepared_dataset(str(out / "dataset"))
    assert len(data["train"]) > 0 and len(data["validation"]) > 0
    skips = json.loads((out / "report" / "skips.json").read_text())
    for reason in ("truncated", "empty_text", "silence", "too_long", "missing"):
        assert skips["counts"][reason] == 1
    for png in ("durations.png", "dialects.png"):
        assert (out / "report" / png).read_bytes()[:4] == b"\x89PNG"
    assert not (out / "cache").exists()  # the processing scratch space is removed once saved
    card = (out / "README.md").read_text()
    assert "task_categories" in card and "## Skipped rows" in card and "| truncated | 1 |" in card


def test_ljspeech_single_voice_warns_below_300_clips(exported, tmp_path):
    out = tmp_path / "lj"
    main(_source_args("ljspeech", exported) + ["--output_dir", str(out)])
    report = json.loads((out / "report" / "report.json").read_text())
    assert report["speakers"] == 1
    assert any("single voice" in w and "< 300" in w for w in report["warnings"])


def test_demo_data_step(tmp_path, capsys):
    from data_prep.loading import load_prepared_dataset

    out = tmp_path / "demo"
    main(["demo", "--out", str(out)])
    printed = capsys.readouterr().out
    data = load_prepared_dataset(str(out / "dataset"))
    # the Common Voice round trip keeps every dialect, mapped from the varied spellings
    assert set(data["train"]["dialect"]) == {"central", "balear", "valencia", "pt-br", "it", "fr", "es", "de"}
    assert set(data["validation"]["dialect"]) == set(data["train"]["dialect"])
    skips = json.loads((out / "report" / "skips.json").read_text())["counts"]
    assert skips == {"votes": 1, "truncated": 1, "empty_text": 1, "silence": 1, "too_long": 1, "missing": 1}
    assert (out / "report" / "dialects.png").exists() and (out / "report" / "durations.png").exists()
    samples = sorted(p.name for p in (out / "report" / "samples").glob("*.wav"))
    assert len(samples) == 8 and any(name.startswith("valencia_") for name in samples)  # one to listen to per dialect
    assert "pretraining: dialect 'balear'" in printed and "data step done" in printed

    # validate / report read it back
    main(["validate", str(out / "dataset")])
    assert "schema OK" in capsys.readouterr().out
    main(["report", str(out / "dataset"), "--out", str(tmp_path / "again")])
    again = json.loads((tmp_path / "again" / "report.json").read_text())
    assert again["clips"] == len(data["train"]) + len(data["validation"])
    assert again["skips"]["counts"]["votes"] == 1  # picked up from DATASET/../report/skips.json


def test_dataset_card_and_mocked_push(demo_corpus_dir):
    from datasets import DatasetDict

    from data_prep.card import make_dataset_card, push_dataset_to_hub
    from data_prep.processing import ProcessingConfig, prepare
    from data_prep.sources import from_manifest

    prepared = prepare(from_manifest(demo_corpus_dir / "manifest.jsonl"), ProcessingConfig(min_per_speaker=3))
    card = make_dataset_card(prepared.dataset, sources=prepared.sources, processing=prepared.config.to_dict(),
                             skips=prepared.skips, license="cc-by-4.0", repo_id="someone/demo-tts")
    assert card.data.license == "cc-by-4.0"
    assert card.data.task_categories == ["text-to-speech"]
    assert set(card.data.language) == {"ca", "pt-br", "it", "fr", "es", "de"}
    text = str(card)
    for expected in ("## Sources", "manifest.jsonl", "`min_duration`: 1.0", "`max_per_speaker`: 50",
                     "| balear | 10 |", "| too_long | 1 |", "60 clips"):
        assert expected in text, expected

    calls = []
    with mock.patch("huggingface_hub.HfApi") as api, \
            mock.patch.object(type(card), "push_to_hub", autospec=True,
                              side_effect=lambda self, *a, **k: calls.append(("card", a, k))), \
            mock.patch.object(DatasetDict, "push_to_hub", autospec=True,
                              side_effect=lambda self, *a, **k: calls.append(("data", a, k))):
        api.return_value.create_repo.return_value = "https://huggingface.co/datasets/someone/demo-tts"
        url = push_dataset_to_hub(prepared.dataset, "someone/demo-tts", card, private=True, config_name="ca")
    api.return_value.create_repo.assert_called_once_with("someone/demo-tts", repo_type="dataset", private=True,
                                                         exist_ok=True)
    # card first so the data push keeps its text and only adds dataset_info
    assert [c[0] for c in calls] == ["card", "data"]
    assert calls[0][1] == ("someone/demo-tts",) and calls[0][2]["repo_type"] == "dataset"
    assert calls[1][2]["config_name"] == "ca" and calls[1][2]["private"] is True
    assert url.endswith("someone/demo-tts")


def test_hub_dataset_offline_explains(capsys):
    with pytest.raises(SystemExit, match="Could not load dataset 'someone/not-cached'"):
        main(["hf", "--name_or_path", "someone/not-cached", "--dialect", "ca", "--output_dir", "unused"])


def test_push_flag_needs_repo_id(exported, tmp_path):
    with pytest.raises(SystemExit, match="--repo_id"):
        main(_source_args("ljspeech", exported) + ["--output_dir", str(tmp_path / "x"), "--push_to_hub"])


def _readme_commands():
    import shlex

    text = (REPO / "data_prep" / "README.md").read_text()
    commands, in_code = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            in_code = not in_code
            continue
        line = line.split("  #")[0].strip()
        if in_code and "-m data_prep " in line:
            commands.append(shlex.split(line.split("-m data_prep ", 1)[1]))
    return commands


def test_readme_commands_parse():
    """Every command in data_prep/README.md is accepted by the parser; the source ones also run end to end above."""
    commands = _readme_commands()
    assert len(commands) >= 15
    parser = make_parser()
    for argv in commands:
        args = parser.parse_args(argv)
        assert callable(args.func), argv
    assert {a[0] for a in commands} >= set(COMMANDS) | {"segment", "transcribe", "build", "from-recordings"}


def test_demo_corpus_command_synthesises_with_espeak(tmp_path):
    import shutil

    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (make install adds it)")
    from data_prep.demo_corpus import read_manifest

    main(["demo-corpus", "--out", str(tmp_path), "--clips_per_speaker", "1", "--speakers_per_dialect", "1"])
    rows = read_manifest(tmp_path)
    good = [r for r in rows if r["defect"] is None]
    assert len(good) == 8 and len(rows) == 13  # one clip per dialect + the five bad ones
    assert all(Path(r["audio_path"]).exists() for r in good)
