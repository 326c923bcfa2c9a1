"""The bench's runner: child processes measured from outside (wall, CPU, peak RSS by os.wait4), the
sandbox as its own process, catalogs on disk, and the table of figures. The cases are bench_cases.py;
the command line is bench.py."""
from __future__ import annotations

import csv
import json
import math
import os
import platform
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

SANDBOX_KEY = "sandbox-key"
REPO = Path(__file__).resolve().parent.parent

# Used only if `pipeline sandbox` lacks --host/--port: the same server, started the same way.
_SANDBOX_FALLBACK = ("import json, sys\n"
                     "from pipeline.sandbox import SandboxOptions, serve\n"
                     "serve(sys.argv[2], int(sys.argv[3]), SandboxOptions(**json.loads(sys.argv[1])))\n")


# -- child processes --------------------------------------------------------------------------------

@dataclass
class ChildRun:
    """One finished child process, measured from outside."""

    argv: list[str]
    returncode: int
    wall_s: float
    user_s: float
    sys_s: float
    max_rss_mb: float
    stdout: str
    stderr: str

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.sys_s

    def check(self, what: str, ok: tuple[int, ...] = (0,)) -> "ChildRun":
        if self.returncode not in ok:
            sys.exit(f"bench: {what} exited {self.returncode}\n  $ {' '.join(self.argv)}\n"
                     f"{_tail(self.stderr)}{_tail(self.stdout)}")
        return self


def _tail(text: str, lines: int = 15) -> str:
    return "".join(f"  | {line}\n" for line in text.strip().splitlines()[-lines:]) if text.strip() else ""


def _wait(proc: subprocess.Popen) -> tuple[int, os.struct_rusage]:
    """Reap ``proc`` with wait4, which reports that child's own rusage; keeps Popen consistent."""
    while True:
        try:
            _, status, usage = os.wait4(proc.pid, 0)
            break
        except InterruptedError:
            continue
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage


def run_child(argv: list[str], *, env: dict[str, str], cwd: Path, timeout_s: float) -> ChildRun:
    """Run ``argv`` to completion; wall time, CPU and peak RSS are of that process alone."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env, cwd=cwd)
        killer = threading.Timer(timeout_s, proc.kill)  # a blocking wait4 keeps this process idle
        killer.start()
        try:
            code, usage = _wait(proc)
        finally:
            killer.cancel()
        wall = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        # ru_maxrss is in KiB on Linux (bytes on macOS).
        rss_mb = usage.ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)
        return ChildRun(argv, code, wall, usage.ru_utime, usage.ru_stime, rss_mb, out.read(), err.read())


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["LIGHTX_API_KEY"] = SANDBOX_KEY
    env.pop("LIGHTX_BASE_URL", None)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def pipeline_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "pipeline", *args]




# -- the sandbox, as its own process ----------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sandbox:
    """``pipeline sandbox --fast`` in a child process; ``stop()`` returns its CPU seconds."""

    def __init__(self, **options):
        self.options = {"fast": True, **options}
        self.port = free_port()
        self.base_url = ""
        self.launcher = "pipeline sandbox"
        self._log = tempfile.TemporaryFile("w+")
        self._proc: subprocess.Popen | None = None

    def __enter__(self) -> "Sandbox":
        flags = []
        for name, value in self.options.items():
            flag = "--" + name.replace("_", "-")
            flags += [flag] if value is True else [] if value is False else [flag, str(value)]
        cli = pipeline_argv("sandbox", *flags, "--port", str(self.port))
        line = self._start(cli)
        if line is None:  # an older or broken CLI: run the same server through the library
            self.launcher = "pipeline.sandbox.serve (the CLI could not start it)"
            self.port = free_port()
            line = self._start([sys.executable, "-c", _SANDBOX_FALLBACK, json.dumps(self.options),
                                "127.0.0.1", str(self.port)])
        if line is None:
            self._log.seek(0)
            sys.exit(f"bench: the sandbox did not start\n{_tail(self._log.read())}")
        self.base_url = line.split("sandbox listening on", 1)[1].split()[0].rstrip("/")
        return self

    def _start(self, argv: list[str], timeout_s: float = 30.0) -> str | None:
        self._log.seek(0)
        self._log.truncate()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._log,
                                text=True, env=child_env(), cwd=REPO)
        selector = selectors.DefaultSelector()
        selector.register(proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not selector.select(timeout=0.2):
                if proc.poll() is not None:
                    break
                continue
            line = proc.stdout.readline()
            if not line:
                break
            if "sandbox listening on" in line:
                self._proc = proc
                return line
        proc.kill()
        proc.wait()
        return None

    def ledger(self) -> dict:
        with urllib.request.urlopen(f"{self.base_url}/__ledger", timeout=60) as resp:
            return json.load(resp)

    def reset(self) -> None:
        req = urllib.request.Request(f"{self.base_url}/__reset", data=b"{}", method="POST")
        with urllib.request.urlopen(req, timeout=60):
            pass

    def stop(self) -> float:
        """Stop with SIGTERM (the sandbox's own clean shutdown); its CPU seconds over its life."""
        if self._proc is None:
            return 0.0
        self._proc.send_signal(signal.SIGTERM)
        killer = threading.Timer(15, self._proc.kill)
        killer.start()
        try:
            _, usage = _wait(self._proc)
        finally:
            killer.cancel()
        self._proc.stdout.close()
        self._proc = None
        return usage.ru_utime + usage.ru_stime

    def __exit__(self, *exc) -> None:
        self.stop()
        self._log.close()


def total_requests(ledger: dict) -> int:
    return sum(ledger.get("requests", {}).values())


# -- catalogs on disk --------------------------------------------------------------------------------

def make_images(folder: Path, count: int, size: int = 64) -> list[str]:
    """``count`` distinct small JPEGs (distinct bytes, so none is shared by upload dedup)."""
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(count):
        im = Image.new("RGB", (size, size), (255, 255, 255))
        draw = ImageDraw.Draw(im)
        colour = ((i * 37) % 256, (i * 91 + 40) % 256, (i * 53 + 90) % 256)
        box = (size // 4, size // 5, size * 3 // 4, size * 4 // 5)
        (draw.ellipse if i % 2 else draw.rectangle)(box, fill=colour)
        draw.text((2, 2), str(i), fill=(0, 0, 0))  # makes every file's bytes differ
        name = f"images/p{i:06d}.jpg"
        im.save(folder / f"p{i:06d}.jpg", quality=90)
        names.append(name)
    return names


def write_manifest(path: Path, rows: int, images: list[str]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "image", "title", "scene"])
        for i in range(rows):
            writer.writerow([f"sku-{i:07d}", images[i % len(images)], f"product {i} in colour {i % 97}",
                             "a white marble counter"])


def write_config(root: Path, *, base_url: str, concurrency: int, poll_interval: float,
                 transfers: int | None = None, min_fidelity: float | None = None, out: str = "out",
                 name: str = "config.yaml") -> Path:
    # JSON is YAML; written by hand so this script needs nothing beyond the standard library here.
    doc = {
        "manifest": "catalog.csv",
        "prompt": "{title} on {scene}, soft natural light",
        "output": {"dir": out, "filename": "{id}.jpg"},
        "limits": {"concurrency": concurrency, **({"transfers": transfers} if transfers else {})},
        "poll": {"interval_s": poll_interval},
        "api": {"base_url": base_url},
        "budget": {"confirm_over": 10_000_000},
        **({"qa": {"min_fidelity": min_fidelity}} if min_fidelity is not None else {}),
    }
    path = root / name
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return path


def max_polls(processing_s: float, poll_interval: float) -> int:
    """maxRetriesAllowed that lets every order finish within its polls, with room to spare."""
    return max(5, math.ceil(processing_s / poll_interval) * 2 + 10)


# -- phases --------------------------------------------------------------------------------------------

@dataclass
class Row:
    """One line of the final table."""

    measure: str
    value: str
    target: str = ""
    met: bool | None = None


@dataclass
class Results:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, measure: str, value: str, target: str = "", met: bool | None = None) -> None:
        self.rows.append(Row(measure, value, target, met))


def _json_summary(stdout: str) -> dict:
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    return {}



# -- report ----------------------------------------------------------------------------------------------

def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        model = platform.processor() or model
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (f"{model}, {cores} cores, Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}")


def _met(met: bool | None) -> str:
    return "" if met is None else ("yes" if met else "NO")


def print_table(res: Results) -> None:
    widths = [max(len(r.measure) for r in res.rows), max(len(r.value) for r in res.rows),
              max(len(r.target) for r in res.rows)]
    print()
    for r in res.rows:
        print(f"{r.measure:<{widths[0]}}  {r.value:<{widths[1]}}  {r.target:<{widths[2]}}  {_met(r.met)}".rstrip())
    for note in res.notes:
        print(f"note: {note}")
    print(f"machine: {machine()}")


def print_markdown(res: Results, argv: list[str]) -> None:
    print()
    print(f"Measured with `python benchmarks/bench.py {' '.join(argv)}`".rstrip() + f" on {machine()}.")
    print()
    print("| measure | value | target | met |")
    print("| --- | --- | --- | --- |")
    for r in res.rows:
        print(f"| {r.measure.strip()} | {r.value} | {r.target} | {_met(r.met)} |")



def compile_bytecode(res: Results) -> None:
    """Write the package's .pyc files first, as `pip install .` does. An editable install under
    PYTHONDONTWRITEBYTECODE=1 (set on some CI and sandbox machines) would otherwise compile every
    module from source in every child, about 0.15 s of CPU each that no installed copy pays."""
    import compileall
    import pipeline
    compileall.compile_dir(str(Path(pipeline.__file__).parent), quiet=1)
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        res.notes.append("PYTHONDONTWRITEBYTECODE is set: the package's bytecode was compiled once up front")

