"""run_ensemble: result files are checked before reuse, stale temporaries are cleaned, concurrent
sweeps into one directory share the work, pool workers die with their parent, and directory errors
are named before any task runs."""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from dln_manifolds.langevin import ensemble, run_ensemble, task_name

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and /proc")

ROOT = Path(__file__).resolve().parent.parent
DEADLINE = 60.0  # seconds; only reached when something hangs


def value_task(i, log):
    """Counts its runs in ``log`` (one line per run) and returns values that identify ``i``."""
    with open(log, "a") as fh:
        fh.write(f"{i}\n")
    return {"value": np.arange(3.0) * i + 0.25, "i": np.asarray(i)}


def _runs(log: Path) -> list[int]:
    return [int(x) for x in log.read_text().split()] if log.exists() else []


def _wait_for(predicate, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _python(script: Path, *args) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, str(script), *map(str, args)], env=env)


def _first_sweep(tmp_path):
    out, log = tmp_path / "out", tmp_path / "log.txt"
    tasks = [{"i": 1, "log": str(log)}, {"i": 2, "log": str(log)}]
    first = run_ensemble(value_task, tasks, out)
    return out, log, tasks, first


def test_foreign_file_is_recomputed_not_returned(tmp_path):
    out, log, tasks, first = _first_sweep(tmp_path)
    a, b = (out / f"{task_name(p)}.npz" for p in tasks)
    shutil.copyfile(a, b)  # a valid result file of task 1 under the name of task 2
    with pytest.warns(ensemble.ResultFileWarning, match="another task") as record:
        again = run_ensemble(value_task, tasks, out)
    assert str(b) in str(record[0].message)
    name_b = task_name(tasks[1])
    np.testing.assert_array_equal(again[name_b]["value"], first[name_b]["value"])
    assert again[name_b]["params"] == {"i": 2, "log": str(log)}
    assert _runs(log) == [1, 2, 2]  # task 2 recomputed, task 1 reused
    assert b.with_name(b.name + ".rejected").is_file()  # kept aside, not deleted
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run_ensemble(value_task, tasks, out)  # the recomputed file is reused silently
    assert _runs(log) == [1, 2, 2]


def _damage(path: Path, how: str, value: np.ndarray) -> None:
    data = path.read_bytes()
    if how == "zero-byte":
        path.write_bytes(b"")
    elif how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "flipped-byte":  # one byte of the stored array: only the zip CRC-32 can tell
        at = data.index(value.tobytes()) + 9
        path.write_bytes(data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :])
    elif how == "npy":
        with open(path, "wb") as fh:
            np.save(fh, value)


@pytest.mark.parametrize("how", ["zero-byte", "truncated", "flipped-byte", "npy"])
def test_damaged_file_is_recomputed(tmp_path, how):
    out, log, tasks, first = _first_sweep(tmp_path)
    name = task_name(tasks[1])
    path = out / f"{name}.npz"
    _damage(path, how, first[name]["value"])
    with pytest.warns(ensemble.ResultFileWarning) as record:
        again = run_ensemble(value_task, tasks, out)
    assert len(record) == 1 and str(path) in str(record[0].message)
    for key in ("value", "i"):
        np.testing.assert_array_equal(again[name][key], first[name][key])
    assert _runs(log) == [1, 2, 2]
    assert not [f for f in os.listdir(out) if f.endswith(".tmp")]


def test_directory_errors_are_named_before_any_task(tmp_path):
    log = tmp_path / "log.txt"
    tasks = [{"i": 1, "log": str(log)}]
    a_file = tmp_path / "a_file"
    a_file.write_text("not a directory")
    for bad in (a_file, a_file / "sub"):
        with pytest.raises(OSError, match="directory=") as info:
            run_ensemble(value_task, tasks, bad)
        assert str(bad) in str(info.value)
    locked_out = tmp_path / "locked_out"
    (locked_out / ".sweep.lock").mkdir(parents=True)  # the directory lock cannot be created
    with pytest.raises(OSError, match="cannot write to the results directory directory="):
        run_ensemble(value_task, tasks, locked_out)
    assert not log.exists()  # no task ran
    assert a_file.read_text() == "not a directory"


BLOCKING_WRITER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from test_ensemble_files import value_task
    from dln_manifolds.langevin import run_ensemble

    out, log, marker = sys.argv[1:4]
    real_replace = os.replace

    def blocking_replace(src, dst):  # the temporary is complete; the writer stops before renaming
        if str(dst).endswith(".npz"):
            Path(marker).write_text(str(src))
            time.sleep(3600)
        real_replace(src, dst)

    os.replace = blocking_replace
    run_ensemble(value_task, [{"i": 0, "log": log}], out)
    """
)


def _tmp_files(out: Path) -> set[str]:
    return {f for f in os.listdir(out) if f.endswith(".tmp")}


def test_stale_temporaries_are_cleaned_but_not_a_live_writers(tmp_path):
    out, log, marker = tmp_path / "out", tmp_path / "log.txt", tmp_path / "writing"
    script = tmp_path / "writer.py"
    script.write_text(
        f"import sys; sys.path.insert(0, {str(ROOT / 'tests')!r})\n" + BLOCKING_WRITER
    )
    writer = _python(script, out, log, marker)
    try:
        _wait_for(marker.exists, "the writer to block before its rename")
        live = _tmp_files(out)
        assert len(live) == 1 and Path(marker.read_text()).name in live
        legacy = out / f".{task_name({'i': 7})}.abcd1234.tmp"  # tempfile.mkstemp name, no owner
        legacy.write_bytes(b"x" * 1000)
        os.utime(legacy, (time.time() - 3600, time.time() - 3600))
        # another sweep into the same directory leaves the live writer's temporary alone
        other = run_ensemble(value_task, [{"i": 1, "log": str(log)}], out)
        assert len(other) == 1
        assert _tmp_files(out) == live
    finally:
        writer.kill()  # SIGKILL while writing: the temporary stays behind
        writer.wait()
    assert _tmp_files(out) == live
    tasks = [{"i": 0, "log": str(log)}, {"i": 1, "log": str(log)}]
    results = run_ensemble(value_task, tasks, out)
    assert not _tmp_files(out)
    assert not [f for f in os.listdir(out) if f.endswith(".claim") or f.startswith(".owner")]
    np.testing.assert_array_equal(results[task_name(tasks[0])]["value"], [0.25, 0.25, 0.25])
    assert sorted(_runs(log)) == [0, 0, 1]  # the killed writer's task ran again, task 1 did not


SHARED_SWEEP = textwrap.dedent(
    """
    import json, os, sys, time
    from pathlib import Path
    import numpy as np
    from dln_manifolds.langevin import run_ensemble

    def gated_task(i, log, gate):
        with open(log, "a") as fh:  # one line per computation: "task pid"
            fh.write(f"{i} {os.getpid()}\\n")
        deadline = time.monotonic() + 60
        while not os.path.exists(gate):  # both sweeps are inside a task before any finishes
            if time.monotonic() > deadline:
                raise RuntimeError("gate never opened")
            time.sleep(0.01)
        return {"value": np.arange(3.0) * i}

    if __name__ == "__main__":
        out, log, gate, summary = sys.argv[1:5]
        tasks = [{"i": i, "log": log, "gate": gate} for i in range(6)]
        results = run_ensemble(gated_task, tasks, out)
        Path(summary).write_text(json.dumps(sorted(int(r["value"][1]) for r in results.values())))
    """
)


def test_two_concurrent_sweeps_compute_each_task_once(tmp_path):
    out, log, gate = tmp_path / "out", tmp_path / "log.txt", tmp_path / "gate"
    script = tmp_path / "shared.py"
    script.write_text(SHARED_SWEEP)
    procs = [_python(script, out, log, gate, tmp_path / f"summary{k}.json") for k in range(2)]
    try:

        def both_computing():
            lines = log.read_text().split("\n") if log.exists() else []
            return len({line.split()[1] for line in lines if line}) == 2

        _wait_for(both_computing, "both sweeps to start a task")
        gate.touch()
        for proc in procs:
            assert proc.wait(timeout=DEADLINE) == 0
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    computed = [int(line.split()[0]) for line in log.read_text().splitlines()]
    assert sorted(computed) == list(range(6)), f"tasks computed {sorted(computed)}"
    assert len({line.split()[1] for line in log.read_text().splitlines()}) == 2
    for k in range(2):
        assert json.loads((tmp_path / f"summary{k}.json").read_text()) == list(range(6))
    assert {f for f in os.listdir(out) if not f.endswith(".npz")} <= {".sweep.lock"}


POOL_SWEEP = textwrap.dedent(
    """
    import os, sys, time
    from concurrent.futures import ProcessPoolExecutor
    from pathlib import Path
    from dln_manifolds.langevin import run_ensemble

    def stuck_task(pidfile):
        Path(pidfile).write_text(str(os.getpid()))
        time.sleep(3600)

    if __name__ == "__main__":
        with ProcessPoolExecutor(1) as pool:
            run_ensemble(stuck_task, [{"pidfile": sys.argv[2]}], sys.argv[1], executor=pool)
    """
)


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_pool_workers_die_with_their_parent(tmp_path):
    out, pidfile = tmp_path / "out", tmp_path / "worker.pid"
    script = tmp_path / "pool.py"
    script.write_text(POOL_SWEEP)
    parent = _python(script, out, pidfile)
    worker = None
    try:
        _wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), "the worker's pid")
        worker = int(pidfile.read_text())
        assert _running(worker)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 10.0
        while _running(worker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _running(worker), "the pool worker outlived its SIGKILLed parent"
    finally:
        parent.kill()
        parent.wait()
        if worker is not None and _running(worker):
            os.kill(worker, signal.SIGKILL)
