"""data_prep at Common Voice scale: wall time, x real time per core and peak memory vs the number of clips.

For each N of `--sizes` it builds a synthetic Common Voice release of N clips (symlinks to the demo corpus
exported as Common Voice mp3s, so its bad files -- truncated, silent, too long, empty text, missing -- come
along in proportion; several speakers and dialect labels), runs `python -m data_prep common-voice` on it, and
samples the anonymous RSS of that process and all its children (the decode workers) every 0.2 s. Beside it,
in the same run, the floor: decode + resample of the same mp3s in one process with nothing else (torchcodec +
soxr VHQ, what data_prep itself calls).

    nice python benchmarks/data_prep_scale.py                         # 10000 50000 200000 clips
    nice python benchmarks/data_prep_scale.py --sizes 2000 10000 --num_proc 2

Prints a table and writes outputs/bench/data_prep_scale.json: a list of
{"clips", "seconds", "x_rt_per_core", "peak_anon_rss_mb", "floor_x_rt_per_core"}.
Goals (issue 17): peak memory flat (within +25 %) from the smallest to the largest N, throughput >= 50 % of
the floor.

Common Voice Catalan's ~2 M validated clips would take hours to decode here, so `--bookkeeping_clips` measures
what grows with N in the main process without decoding: the Common Voice reader, the duplicate-id check and the
resume key over an N-row release, then speaker balancing, the split, save_to_disk, the report and the card over
N kept rows (tiny FLACs standing in for the decoded shards). It prints the peak anonymous RSS of each phase and
what the main process still holds when the decode workers would be forked (each worker maps those pages), and
writes outputs/bench/data_prep_bookkeeping.json:

    nice python benchmarks/data_prep_scale.py --sizes --bookkeeping_clips 200000 2000000
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CV_COLUMNS = ("client_id", "path", "sentence", "up_votes", "down_votes", "age", "gender", "accents", "variant",
              "locale", "segment")
SPEAKERS = 400
LABELS = ("balear", "central", "nord-occidental", "valencià", "septentrional")


def build_release(template: Path, n: int, out: Path) -> tuple[Path, float]:
    """A Common Voice locale folder of `n` clips cycling over the template's clips (good and bad).

    Returns (locale folder, seconds of audio the TSV declares for the clips that exist)."""
    import csv

    src = template / "ca"
    with open(src / "validated.tsv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    with open(src / "clip_durations.tsv", encoding="utf-8", newline="") as f:
        durations = {r["clip"]: int(r["duration[ms]"]) for r in csv.DictReader(f, delimiter="\t")}
    locale = out / "ca"
    clips = locale / "clips"
    clips.mkdir(parents=True)
    audio_seconds = 0.0
    with open(locale / "validated.tsv", "w", encoding="utf-8", newline="") as tsv, \
            open(locale / "clip_durations.tsv", "w", encoding="utf-8", newline="") as dur:
        tsv.write("\t".join(CV_COLUMNS) + "\n")
        dur.write("clip\tduration[ms]\n")
        for i in range(n):
            row = dict(rows[i % len(rows)])
            name = f"common_voice_ca_{i:08d}.mp3"
            target = src / "clips" / row["path"]
            if target.exists():  # the template's "missing" clip stays missing
                os.symlink(target, clips / name)
                audio_seconds += durations.get(row["path"], 0) / 1000
                dur.write(f"{name}\t{durations.get(row['path'], 0)}\n")
            speaker = i % SPEAKERS
            row.update(path=name, client_id=hashlib.sha256(f"speaker{speaker}".encode()).hexdigest(),
                       variant=LABELS[speaker % len(LABELS)] if row["variant"] or row["accents"] else "",
                       accents="")
            tsv.write("\t".join(str(row.get(c) or "") for c in CV_COLUMNS) + "\n")
    return locale, audio_seconds


def anon_rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def run_data_prep(locale: Path, out: Path, num_proc: int) -> tuple[float, float]:
    """(wall seconds, peak anonymous RSS in MB summed over the process tree)."""
    cmd = [sys.executable, "-m", "data_prep", "common-voice", "--path", str(locale), "--mapping",
           str(REPO / "data_prep/mappings/catalan_dialects.yaml"), "--max_per_speaker", "0", "--min_per_speaker", "1",
           "--num_proc", str(num_proc), "--output_dir", str(out)]
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1",
               MPLCONFIGDIR=os.path.join(tempfile.gettempdir(), "mplconfig"))
    # stderr goes to a file, not a pipe: nobody reads a pipe while the run lasts, and once the progress bars and
    # warnings of a 50k-clip run pass the 64 KB pipe buffer every writer blocks (the 50k run hung that way).
    log = tempfile.TemporaryFile(mode="w+")
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=log, text=True)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, sum(anon_rss_kb(pid) for pid in process_tree(proc.pid)))
        time.sleep(0.2)
    seconds = time.perf_counter() - start
    log.seek(0)
    stderr = log.read()
    if proc.returncode != 0:
        raise SystemExit(f"data_prep failed on {locale}:\n{stderr[-3000:]}")
    return seconds, peak / 1024


def floor_x_rt(template: Path, target_sr: int, repeats: int) -> float:
    """Decode + resample of the template's readable clips in this process, x real time (one core)."""
    from data_prep.audio import decode_audio, resample

    paths = sorted((template / "ca" / "clips").glob("*.mp3"))
    # One untimed decode first: the first call imports torchcodec (seconds of CPU), which is not per-clip work
    # (counting it made the floor swing between 443x and 803x from run to run).
    for path in paths:
        try:
            decode_audio(str(path))
            break
        except Exception:
            continue
    audio = busy = 0.0
    for _ in range(repeats):
        for path in paths:
            start = time.process_time()
            try:
                samples, sr = decode_audio(str(path))
            except Exception:
                continue
            resample(samples, sr, target_sr)
            busy += time.process_time() - start
            audio += len(samples) / sr
    return audio / busy


def write_bookkeeping_inputs(n: int, folder: Path) -> None:
    """An n-clip Common Voice locale without the clips (validated.tsv + clip_durations.tsv: read, not decoded)
    and kept.arrow, the kept rows process_rows would leave in its shards for them, with a 0.1 s FLAC standing
    in for each clip's audio (what grows with N here is the row count, not the bytes)."""
    import numpy as np
    from datasets import Value
    from datasets.arrow_writer import ArrowWriter

    from data_prep.processing import encode_flac
    from data_prep.schema import DEFAULT_SAMPLING_RATE, schema_features

    locale = folder / "ca"
    (locale / "clips").mkdir(parents=True)
    features = schema_features(DEFAULT_SAMPLING_RATE)
    features["source"] = Value("string")
    audio = {"bytes": encode_flac(np.full(2400, 0.01, np.float32), DEFAULT_SAMPLING_RATE), "path": None}
    speakers = max(SPEAKERS, n // 60)  # Common Voice Catalan: ~2 M validated clips from tens of thousands of voices
    with open(locale / "validated.tsv", "w", encoding="utf-8") as tsv, \
            open(locale / "clip_durations.tsv", "w", encoding="utf-8") as durations, \
            ArrowWriter(features=features, path=str(folder / "kept.arrow"), writer_batch_size=10_000) as kept:
        tsv.write("\t".join(CV_COLUMNS) + "\n")
        durations.write("clip\tduration[ms]\n")
        for i in range(n):
            name = f"common_voice_ca_{i:08d}.mp3"
            speaker_index = (i * 7919) % speakers
            row = {"client_id": hashlib.sha256(f"speaker{speaker_index}".encode()).hexdigest(), "path": name,
                   "sentence": f"Frase de prova número {i}.", "up_votes": "2", "down_votes": "0",
                   "variant": LABELS[speaker_index % len(LABELS)], "locale": "ca"}
            tsv.write("\t".join(row.get(c, "") for c in CV_COLUMNS) + "\n")
            durations.write(f"{name}\t{3000 + i % 5000}\n")
            kept.write(features.encode_example({
                "id": name[:-4], "audio": audio, "text": row["sentence"], "speaker": row["client_id"],
                "dialect": row["variant"], "language": "ca", "duration": 3 + i % 5000 / 1000,
                "source": f"common_voice:validated.tsv:{i + 2}"}))
        kept.finalize()


def bookkeeping_child(n: int, work: Path) -> dict:
    """In a fresh process: the main process's per-row work at n rows, phase by phase, peak anonymous RSS."""
    import threading

    state = {"peak": 0, "stop": False}

    def sample():
        while not state["stop"]:
            state["peak"] = max(state["peak"], anon_rss_kb(os.getpid()))
            time.sleep(0.02)

    threading.Thread(target=sample, daemon=True).start()
    phases = {}

    def phase(name):
        time.sleep(0.05)
        phases[name] = {"peak_mb": round(state["peak"] / 1024), "held_mb": round(anon_rss_kb(os.getpid()) / 1024)}
        state["peak"] = 0

    from datasets import Dataset

    from data_prep.outputs import write_outputs
    from data_prep.processing import (PreparedData, ProcessingConfig, _duplicate_rows, _work_key, balance_speakers)
    from data_prep.sources import from_common_voice
    from data_prep.split import split_train_validation

    phase("imports")
    source = from_common_voice(work / "ca", mapping=REPO / "data_prep/mappings/catalan_dialects.yaml")
    assert len(source.dataset) == n, (len(source.dataset), n)
    phase("read Common Voice TSVs")
    cfg = ProcessingConfig(min_per_speaker=1, max_per_speaker=None)
    _work_key(source.dataset, cfg)
    _duplicate_rows(source.dataset)
    phase("resume key + duplicate ids")
    from data_prep.audio import warm_up_decoder

    warm_up_decoder()
    phase("decoder import (held = what each forked decode worker maps)")
    del source
    kept = Dataset.from_file(str(work / "kept.arrow"))
    balanced, skips = balance_speakers(kept, cfg.min_per_speaker, cfg.max_per_speaker, cfg.seed)
    splits = split_train_validation(balanced, cfg.validation_fraction, cfg.seed)
    phase("balance + split")
    write_outputs(PreparedData(splits, skips, cfg, [{"kind": "benchmark"}]), work / "out", verbose=False)
    phase("save_to_disk + report + card")
    state["stop"] = True
    return phases


def run_bookkeeping(sizes: list[int], work: Path, out: Path) -> list[dict]:
    results = []
    print("\nmain-process bookkeeping without decoding (peak anonymous RSS MB of each phase; held = after it)")
    for n in sizes:
        folder = work / f"bookkeeping-{n}"
        write_bookkeeping_inputs(n, folder)
        proc = subprocess.run([sys.executable, __file__, "--bookkeeping_child", str(n), str(folder)], cwd=REPO,
                              env=dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1"),
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"bookkeeping run at {n} rows failed:\n{proc.stderr[-3000:]}")
        phases = json.loads(proc.stdout.strip().splitlines()[-1])
        for name, figures in phases.items():
            print(f"{n:>9} rows  {name:<66} peak {figures['peak_mb']:>6} MB  held {figures['held_mb']:>6} MB")
        results.append({"clips": n, "phases": phases, "peak_mb": max(f["peak_mb"] for f in phases.values())})
        shutil.rmtree(folder, ignore_errors=True)
    if len(results) > 1:
        growth = results[-1]["peak_mb"] / results[0]["peak_mb"] - 1
        print(f"main-process peak {results[0]['clips']} -> {results[-1]['clips']} rows: {results[0]['peak_mb']} -> "
              f"{results[-1]['peak_mb']} MB ({growth:+.0%})")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="*", default=[10000, 50000, 200000])
    parser.add_argument("--num_proc", type=int, default=2, help="data_prep --num_proc (x RT per core divides by it)")
    parser.add_argument("--work_dir", default=None, help="scratch space (default: a temporary folder)")
    parser.add_argument("--out", default=str(REPO / "outputs/bench/data_prep_scale.json"))
    parser.add_argument("--bookkeeping_clips", type=int, nargs="*", default=[],
                        help="also measure the main process's per-row bookkeeping at these row counts, no decoding")
    parser.add_argument("--bookkeeping_child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.bookkeeping_child:
        print(json.dumps(bookkeeping_child(int(args.bookkeeping_child[0]), Path(args.bookkeeping_child[1]))))
        return []

    work = Path(args.work_dir or tempfile.mkdtemp(prefix="data_prep_scale_"))
    results = run_decoding(args, work) if args.sizes else []
    if args.bookkeeping_clips:
        run_bookkeeping(args.bookkeeping_clips, work, Path(args.out).with_name("data_prep_bookkeeping.json"))
    if not args.work_dir:
        shutil.rmtree(work, ignore_errors=True)
    return results


def run_decoding(args, work: Path) -> list[dict]:
    """The importer at each size of --sizes beside the floor; the table accumulates in --out."""
    from data_prep.exporters import export_common_voice
    from data_prep.schema import DEFAULT_SAMPLING_RATE

    template = export_common_voice(out_dir=work / "template", languages=["ca"])
    floor = floor_x_rt(template, DEFAULT_SAMPLING_RATE, repeats=5)
    results = []
    print(f"{'clips':>8} {'audio h':>8} {'wall s':>8} {'x RT/core':>10} {'peak anon RSS MB':>17} {'floor x RT/core':>16}"
          f" {'of floor':>9}")
    for n in args.sizes:
        locale, audio_seconds = build_release(template, n, work / f"cv-{n}")
        seconds, peak_mb = run_data_prep(locale, work / f"out-{n}", args.num_proc)
        x_rt = audio_seconds / seconds / args.num_proc
        results.append({"clips": n, "seconds": round(seconds, 1), "x_rt_per_core": round(x_rt, 1),
                        "peak_anon_rss_mb": round(peak_mb), "floor_x_rt_per_core": round(floor, 1)})
        print(f"{n:>8} {audio_seconds / 3600:>8.1f} {seconds:>8.1f} {x_rt:>10.1f} {peak_mb:>17.0f} {floor:>16.1f}"
              f" {x_rt / floor:>8.0%}", flush=True)
        shutil.rmtree(work / f"cv-{n}", ignore_errors=True)
        shutil.rmtree(work / f"out-{n}", ignore_errors=True)
    # Sizes run separately (a 200k run takes the better part of an hour here) accumulate in one file: a size
    # measured again replaces its row.
    out = Path(args.out)
    earlier = json.loads(out.read_text()) if out.is_file() else []
    measured = {r["clips"] for r in results}
    table = sorted([r for r in earlier if r["clips"] not in measured] + results, key=lambda r: r["clips"])
    if len(table) > 1:
        growth = table[-1]["peak_anon_rss_mb"] / table[0]["peak_anon_rss_mb"] - 1
        print(f"peak memory {table[0]['clips']} -> {table[-1]['clips']} clips: {growth:+.0%} (goal <= +25 %)")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(table, indent=2) + "\n")
    print(f"wrote {args.out}")
    return results


if __name__ == "__main__":
    main()
