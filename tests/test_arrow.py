"""outputs/arrow.py: pyarrow without NumPy in the command's own process, and as usual elsewhere."""
from __future__ import annotations

import subprocess
import sys

import pyarrow.parquet as pq

from helpers import child_env, pipeline_cmd, read_csv, write_catalog


def _python(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_the_command_writes_the_parquet_twin_without_importing_numpy(sandbox, tmp_path):
    config = write_catalog(tmp_path, 4, base_url=sandbox.base_url, config={"qa": {"min_fidelity": 0}})
    run = subprocess.run([sys.executable, "-X", "importtime", *pipeline_cmd("run", str(config), "--yes")[1:]],
                         env=child_env(), capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in run.stderr.splitlines() if line.startswith("import time:")}
    assert "pyarrow.parquet" in imported and "pyarrow.csv" in imported
    assert not {name for name in imported if name.split(".")[0] == "numpy"}
    table = read_csv(tmp_path / "out" / "results.csv")
    twin = pq.read_table(tmp_path / "out" / "results.parquet").to_pylist()
    assert [row["id"] for row in twin] == [row["id"] for row in table] == [f"sku-{i:03d}" for i in range(4)]
    assert [row["status"] for row in twin] == ["done"] * 4


def test_numpy_imports_after_a_load_that_hid_it():
    out = _python(
        "import sys; from pipeline.outputs import arrow\n"
        "arrow.without_numpy(); arrow.load()\n"
        "hidden = 'numpy' not in sys.modules\n"
        "import pyarrow as pa, pyarrow.parquet as pq, io\n"
        "buf = io.BytesIO(); pq.write_table(pa.table({'id': ['007', None]}), buf)\n"
        "back = pq.read_table(io.BytesIO(buf.getvalue())).column('id').to_pylist()\n"
        "np = arrow.numpy(); import numpy\n"
        "print(hidden, back, int(np.arange(4).sum()), numpy is np)")
    assert out == "True ['007', None] 6 True"


def test_a_library_process_imports_pyarrow_with_numpy():
    """A caller of pipeline.run may hand pyarrow NumPy or pandas data later: nothing is hidden there."""
    out = _python("import sys; from pipeline.outputs import arrow; arrow.load(); import pyarrow as pa\n"
                  "print('numpy' in sys.modules, pa.array([1, 2]).to_numpy().tolist())")
    assert out == "True [1, 2]"


def test_numpy_waits_for_a_load_in_progress_rather_than_fail():
    out = _python(
        "import sys, threading; from pipeline.outputs import arrow\n"
        "class Watched:  # the module's lock, telling when another thread asks for it\n"
        "    def __init__(self): self.lock, self.asked = threading.Lock(), threading.Event()\n"
        "    def __enter__(self):\n"
        "        if threading.current_thread() is not threading.main_thread(): self.asked.set()\n"
        "        self.lock.acquire()\n"
        "    def __exit__(self, *exc): self.lock.release()\n"
        "arrow._lock = watched = Watched()\n"
        "got = []\n"
        "with watched:  # as load() holds it while NumPy is hidden\n"
        "    sys.modules['numpy'] = None\n"
        "    t = threading.Thread(target=lambda: got.append(arrow.numpy().__name__)); t.start()\n"
        "    asked = watched.asked.wait(30)\n"
        "    del sys.modules['numpy']\n"
        "t.join(); print(asked, got)")
    assert out == "True ['numpy']"
