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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10000, 50000, 200000])
    parser.add_argument("--num_proc", type=int, default=2, help="data_prep --num_proc (x RT per core divides by it)")
    parser.add_argument("--work_dir", default=None, help="scratch space (default: a temporary folder)")
    parser.add_argument("--out", default=str(REPO / "outputs/bench/data_prep_scale.json"))
    args = parser.parse_args(argv)

    from data_prep.exporters import export_common_voice
    from data_prep.schema import DEFAULT_SAMPLING_RATE

    work = Path(args.work_dir or tempfile.mkdtemp(prefix="data_prep_scale_"))
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
    if not args.work_dir:
        shutil.rmtree(work, ignore_errors=True)
    return results


if __name__ == "__main__":
    main()
