"""``import audiogmm.mixture`` stays light: no librosa, click, sklearn, joblib or dask."""

import subprocess
import sys


def test_mixture_import_is_light():
    code = ("import sys, audiogmm.mixture; bad = [m for m in ('librosa', 'click', 'sklearn', "
            "'joblib', 'dask', 'numba') if m in sys.modules]; print(bad); "
            "sys.exit(1 if bad else 0)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
