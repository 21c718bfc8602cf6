#!/usr/bin/env python3
"""Write audiogmm's synthetic demo corpus (five vowel glides) to a folder.

Example:
    python data/make_demo_corpus.py data/demo
    audiogmm train data/demo/train ...   # then evaluate on data/demo/test

The files are synthesised by audiogmm.demo with NumPy (no download, no third-party
audio) and are byte-identical for the same arguments.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from audiogmm.demo import DEMO_LABELS, write_demo_corpus  # noqa: E402
from audiogmm.exceptions import AudiogmmError  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Labels: " + ", ".join(DEMO_LABELS)
        + ". Layout: DIRECTORY/{train,test}/<label>/<label>_NNN.wav (16-bit mono WAV).",
    )
    parser.add_argument("directory", type=Path, help="output folder (its train/ and test/ must be new or empty)")
    parser.add_argument("--n-train", type=int, default=20, help="training recordings per label (default 20)")
    parser.add_argument("--n-test", type=int, default=10, help="test recordings per label (default 10)")
    parser.add_argument("--seconds", type=float, default=1.5, help="duration of each recording (default 1.5)")
    parser.add_argument("--sample-rate", type=int, default=16000, help="sample rate in Hz (default 16000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; same seed, same files (default 0)")
    args = parser.parse_args(argv)
    try:
        train_dir, test_dir = write_demo_corpus(
            args.directory, n_train=args.n_train, n_test=args.n_test,
            seconds=args.seconds, sr=args.sample_rate, seed=args.seed,
        )
    except AudiogmmError as exc:
        parser.error(str(exc))  # exit 2
    print(train_dir)
    print(test_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
