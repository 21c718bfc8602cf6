"""Which recipe should a user get with no preset and no options? Candidates over every protocol.

Usage::

    python bench/defaults.py --jobs 2 --cache /tmp/agmm-defaults-cache
    python bench/defaults.py --only speaker genre-midi --candidates speech music --no-cv
    python bench/defaults.py --format json > defaults.json
    python bench/defaults.py --auto-k --only speaker genre-midi   # -k auto against K=32

Runs each candidate recipe on every protocol of ``bench/accuracy.py`` (its protocol functions,
imported from there): accuracy on the protocol's test split and, unless ``--no-cv``, 5-fold
cross-validation grouped like the protocol on its training part (the numbers the default is
chosen on; the test split is reported beside them, never used to choose). It prints a table:
per protocol and candidate, test and CV accuracy, and the gap to the best *preset* on that
protocol (the higher of the ``speech`` and ``music`` presets, both run everywhere).

Candidates (``--candidates``):

============== ===============================================================================
k8-speech      what ``audiogmm train DATA`` gave before this benchmark: per-class K=8, speech
               features (40 mels)
speech         the speech preset: UBM of 128 components, means+weights MAP, speech features
music          the music preset: per-class K=32, 128 mels from 0 Hz
ubm-music      UBM of 128, means+weights, on the music preset's features (128 mels from 0 Hz)
k32-speech     per-class K=32 on the speech features
default        the no-preset default: the preset chosen from the protocol's training recordings
               (``pipeline.default_choice``, ``get_recipe(median_seconds=...)``)
============== ===============================================================================

``--auto-k`` measures ``n_components="auto"`` instead: per protocol (its preset's features,
per-class method), the K chosen for each class, the training time and the test accuracy,
beside a fixed K=32 on the same frames in the same run. ``--min-gain G`` overrides
``audiogmm.classifier.AUTO_MIN_GAIN`` (``-inf`` fits the whole grid: the held-out curve).

Each finished cell is also printed to stderr as one JSON line (``--log FILE`` appends them to a
file too), so a long run that is stopped still leaves its figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import accuracy  # noqa: E402  (the protocols and their runners; not edited here)
from audiogmm import classifier, evaluation, pipeline  # noqa: E402
from audiogmm.exceptions import ConvergenceWarning  # noqa: E402
from audiogmm.features import FeatureConfig  # noqa: E402
from audiogmm.recipes import Recipe, get_recipe  # noqa: E402


def candidates():
    """Name -> Recipe of every candidate (built when asked, so ``default`` is the current one)."""
    music = FeatureConfig.preset("music")
    return {
        "k8-speech": Recipe(FeatureConfig(), "per-class", {"n_components": 8}),
        "speech": get_recipe("speech"),
        "music": get_recipe("music"),
        "ubm-music": Recipe(music, "ubm", {"n_components": 128, "relevance_factor": 16.0,
                                           "adapt": "means,weights"}),
        "k32-speech": Recipe(FeatureConfig(), "per-class", {"n_components": 32}),
        "default": get_recipe(),
    }


PRESETS = ("speech", "music")


def _accuracy(X, y, splits, recipe, n_jobs):
    def make():
        return recipe.make_classifier(random_state=0, n_jobs=n_jobs)

    res = evaluation.run_splits(X, y, splits, make)
    t = res["tested"]
    return 100.0 * float(np.mean(np.array(res["y_pred"], dtype=object)[t] == np.array(y, dtype=object)[t]))


def run(names, cands, *, n_jobs, cache_dir, cv, log=None):
    """Per protocol, per candidate: ``{"test": %, "cv": %, "seconds": s}``."""
    recipes = candidates()
    results = {}
    features_memo = {}
    for name in names:
        make_rows, corpus = accuracy.PROTOCOLS[name]
        if not (accuracy.DATA / corpus).is_dir():
            print(f"skipping {name}: {accuracy.DATA / corpus} is absent", file=sys.stderr)
            continue
        rows, file_splits, groups, clip = make_rows()
        results[name] = {}
        choice = pipeline.default_choice(accuracy.train_rows(rows, file_splits))
        seconds = choice["median_seconds"]
        for cand in cands:
            # "default": what `audiogmm train DATA` with no options trains on these training recordings
            recipe = get_recipe(median_seconds=seconds) if cand == "default" else recipes[cand]
            key = (corpus, recipe.features, clip)
            if key not in features_memo:
                features_memo.clear()  # one corpus' features at a time in memory
                features_memo[key] = accuracy._features([r.path for r in rows], recipe.features, clip,
                                                        file_splits, n_jobs, cache_dir)
            X, y, g, splits = accuracy._items(features_memo[key], file_splits, [r.label for r in rows], groups)
            cell = {}
            t0 = time.perf_counter()
            cell["test"] = _accuracy(X, y, splits, recipe, n_jobs)
            cell["test_seconds"] = round(time.perf_counter() - t0, 1)
            if cv:
                tr = splits[0][0] if len(splits) == 1 else np.arange(len(X))
                Xt, yt, gt = [X[i] for i in tr], [y[i] for i in tr], [g[i] for i in tr]
                t0 = time.perf_counter()
                cell["cv"] = _accuracy(Xt, yt, evaluation.kfold_splits(yt, gt, 5, random_state=0), recipe, n_jobs)
                cell["cv_seconds"] = round(time.perf_counter() - t0, 1)
            if cand == "default":
                cell["chosen"] = {"preset": choice["preset"], "median_seconds": round(seconds, 2)}
            results[name][cand] = cell
            line = json.dumps({"protocol": name, "candidate": cand, **cell})
            print(line, file=sys.stderr, flush=True)
            if log:
                with open(log, "a", encoding="utf-8") as fh:
                    fh.write(line + "\n")
    return results


def auto_k(names, *, n_jobs, cache_dir, log=None):
    """Per protocol: ``n_components="auto"`` against K=32 (per-class, the preset's features)."""
    out = {}
    for name in names:
        make_rows, corpus = accuracy.PROTOCOLS[name]
        if not (accuracy.DATA / corpus).is_dir():
            continue
        rows, file_splits, groups, clip = make_rows()
        features = FeatureConfig.preset(accuracy.PRESET[name])
        feats = accuracy._features([r.path for r in rows], features, clip, file_splits, n_jobs, cache_dir)
        X, y, g, splits = accuracy._items(feats, file_splits, [r.label for r in rows], groups)
        tr, te = splits[0]
        cell = {}
        for k in ("auto", 32):
            clf = classifier.GMMClassifier(k, random_state=0, n_jobs=n_jobs)
            t0 = time.perf_counter()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ConvergenceWarning)
                clf.fit([X[i] for i in tr], [y[i] for i in tr])
            seconds = time.perf_counter() - t0
            pred = clf.predict([X[i] for i in te])
            cell[str(k)] = {
                "fit_seconds": round(seconds, 1),
                "test": round(100.0 * float(np.mean(pred == np.array([y[i] for i in te], dtype=object))), 1),
                "k": {str(c): int(n) for c, n in zip(clf.classes_, clf.n_components_)},
                "n_frames": int(sum(clf.n_frames_)),
                "warned_at_end": any("largest candidate" in str(w.message) for w in caught),
            }
            if k == "auto":
                cell["auto"]["heldout"] = {str(c): {int(kk): round(v, 3) for kk, v in s.items()}
                                           for c, s in zip(clf.classes_, clf.heldout_scores_)}
        cell["time_ratio"] = round(cell["auto"]["fit_seconds"] / cell["32"]["fit_seconds"], 2)
        out[name] = cell
        line = json.dumps({"protocol": name, "auto_k": cell})
        print(line, file=sys.stderr, flush=True)
        if log:
            with open(log, "a", encoding="utf-8") as fh:
                fh.write(line + "\n")
    return out


def table(results, cands, cv):
    """Markdown: one row per protocol, per candidate ``test (cv)`` and the gap to the best preset."""
    head = ["protocol"] + [c for c in cands] + ["best preset"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, cells in results.items():
        modes = ("test", "cv") if cv else ("test",)
        best = {m: max((cells[p][m] for p in PRESETS if p in cells and m in cells[p]), default=np.nan)
                for m in modes}
        row = [name]
        for c in cands:
            if c not in cells:
                row.append("")
                continue
            parts = []
            for m in modes:
                v = cells[c].get(m, np.nan)
                parts.append(f"{v:.1f} ({v - best[m]:+.1f})")
            row.append(" / ".join(parts))
        row.append(" / ".join(f"{best[m]:.1f}" for m in modes))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="+", choices=list(accuracy.PROTOCOLS), default=list(accuracy.PROTOCOLS))
    ap.add_argument("--candidates", nargs="+", choices=list(candidates()),
                    default=["k8-speech", "speech", "music", "ubm-music"])
    ap.add_argument("--jobs", type=int, default=2, help="extraction processes and training threads (default 2)")
    ap.add_argument("--cache", default=None, help="feature cache folder (default: none)")
    ap.add_argument("--no-cv", dest="cv", action="store_false", help="test split only, no grouped CV")
    ap.add_argument("--log", default=None, help="append each finished cell as a JSON line to this file")
    ap.add_argument("--format", choices=["table", "json"], default="table")
    ap.add_argument("--auto-k", action="store_true", help='measure n_components="auto" against K=32 instead')
    ap.add_argument("--min-gain", type=float, default=None, help="override classifier.AUTO_MIN_GAIN")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore", ConvergenceWarning)  # EM stopping at max_iter is expected here
    if args.min_gain is not None:
        classifier.AUTO_MIN_GAIN = args.min_gain
    t0 = time.perf_counter()
    if args.auto_k:
        res = auto_k(args.only, n_jobs=args.jobs, cache_dir=args.cache, log=args.log)
        if args.format == "json":
            print(json.dumps({"auto_k": res, "seconds": round(time.perf_counter() - t0, 1)}, indent=2))
            return
        print("| protocol | frames | auto: K per class | auto fit s | K=32 fit s | ratio | auto test | K=32 test "
              "| warned |\n|---|---|---|---|---|---|---|---|---|")
        for name, c in res.items():
            a, f = c["auto"], c["32"]
            print(f"| {name} | {a['n_frames']} | {' '.join(map(str, a['k'].values()))} | {a['fit_seconds']} | "
                  f"{f['fit_seconds']} | {c['time_ratio']} | {a['test']:.1f} | {f['test']:.1f} | "
                  f"{'yes' if a['warned_at_end'] else 'no'} |")
        print(f"\n(AUTO_MIN_GAIN = {classifier.AUTO_MIN_GAIN:g} nats per frame and feature; "
              f"{time.perf_counter() - t0:.0f} s in all)")
        return
    results = run(args.only, args.candidates, n_jobs=args.jobs, cache_dir=args.cache, cv=args.cv, log=args.log)
    total = time.perf_counter() - t0
    if args.format == "json":
        print(json.dumps({"results": results, "seconds": round(total, 1)}, indent=2))
    else:
        print(table(results, args.candidates, args.cv))
        print(f"\n(accuracy in %: test split" + (" / grouped 5-fold CV on the training part" if args.cv else "")
              + "; in brackets the difference to the best preset, speech or music, on that protocol; "
              f"{total:.0f} s in all)")


if __name__ == "__main__":
    main()
