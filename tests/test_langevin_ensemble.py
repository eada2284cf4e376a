"""Ensemble runner: identical results serially and in parallel, atomic files, resume."""

import os
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import numpy as np
import pytest

from dln_manifolds.langevin import langevin_task, run_ensemble, sweep_grid, task_name

TASKS = sweep_grid(
    d=[2],
    depth=[2, 3],
    beta=[1.0],
    kappa=[0.5],
    seed=[0, 1],
    t_final=[0.05],
    dt=[0.01],
    n_paths=[20],
    sampler=["end_to_end", "balanced"],
)


def _same(a, b):
    assert a.keys() == b.keys()
    for name in a:
        for key in a[name]:
            if key == "params":
                assert a[name][key] == b[name][key]
            else:
                np.testing.assert_array_equal(a[name][key], b[name][key])


def test_grid_and_names():
    grid = sweep_grid(a=[1, 2], b=["x", "y", "z"])
    assert len(grid) == 6 and grid[1] == {"a": 1, "b": "y"}
    assert task_name({"a": 1, "b": 2.5}) == task_name({"b": 2.5, "a": 1})
    assert task_name({"a": 1}) != task_name({"a": 2})
    assert "/" not in task_name({"path": "a/b"})


def test_serial_thread_process_agree(tmp_path):
    serial = run_ensemble(langevin_task, TASKS, tmp_path / "serial")
    assert len(serial) == len(TASKS)
    first = next(iter(serial.values()))
    assert first["singular_values"].shape == (20, 2) and "seed" in first["params"]
    with ThreadPoolExecutor(2) as pool:
        threads = run_ensemble(langevin_task, TASKS, tmp_path / "threads", executor=pool)
    with ProcessPoolExecutor(2) as pool:
        procs = run_ensemble(langevin_task, TASKS[:4], tmp_path / "procs", executor=pool)
    _same(serial, threads)
    _same({k: serial[k] for k in procs}, procs)
    assert not [f for f in os.listdir(tmp_path / "serial") if f.endswith(".tmp")]


def test_dask_local_cluster_agrees(tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
    ) as cluster:
        with distributed.Client(cluster) as client:
            via_dask = run_ensemble(langevin_task, TASKS[:4], tmp_path / "dask", executor=client)
    serial = run_ensemble(langevin_task, TASKS[:4], tmp_path / "serial")
    _same(serial, via_dask)


SCRIPT = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from dln_manifolds.langevin import run_ensemble

    BLOCK = sys.argv[3] == "block"  # first run: task 3 never finishes, so it gets killed

    def slow_task(i, log):
        with open(log, "a") as fh:
            fh.write(f"{i}\\n")
        if BLOCK and i >= 3:
            time.sleep(3600)
        return {"value": np.arange(3) * i}

    if __name__ == "__main__":
        tasks = [{"i": i, "log": sys.argv[2]} for i in range(8)]
        if sys.argv[4] == "pool":
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(2) as pool:
                run_ensemble(slow_task, tasks, sys.argv[1], executor=pool)
        else:
            run_ensemble(slow_task, tasks, sys.argv[1])
    """
)


@pytest.mark.parametrize("how", ["serial", "pool"])
def test_interrupted_sweep_resumes_without_redoing(tmp_path, how):
    script = tmp_path / "sweep.py"
    script.write_text(SCRIPT)
    out, log = tmp_path / "out", tmp_path / "log.txt"
    proc = subprocess.Popen([sys.executable, str(script), str(out), str(log), "block", how])
    deadline = time.time() + 120
    while time.time() < deadline:
        done = [f for f in os.listdir(out) if f.endswith(".npz")] if out.exists() else []
        if len(done) >= 3:
            break
        time.sleep(0.05)
    proc.kill()  # SIGKILL: no cleanup
    proc.wait()
    finished = sorted(f for f in os.listdir(out) if f.endswith(".npz"))
    assert len(finished) == 3, "the sweep should have been killed while task 3 ran"
    mtimes = {f: os.stat(out / f).st_mtime_ns for f in finished}
    subprocess.run([sys.executable, str(script), str(out), str(log), "resume", how], check=True)
    runs = [int(x) for x in log.read_text().split()]
    assert sorted(set(runs)) == list(range(8))
    done_before = {int(np.load(out / f)["value"][1]) for f in finished}
    for i in done_before:
        assert runs.count(i) == 1, f"task {i} finished before the kill and was rerun"
    assert all(os.stat(out / f).st_mtime_ns == mtimes[f] for f in finished)
    assert len([f for f in os.listdir(out) if f.endswith(".npz")]) == 8
    for f in os.listdir(out):  # every result file is complete
        if f.endswith(".npz"):
            assert np.load(out / f)["value"].shape == (3,)


def test_validation(tmp_path):
    with pytest.raises(TypeError, match="task"):
        run_ensemble("nope", TASKS, tmp_path)
    with pytest.raises(TypeError, match="executor"):
        run_ensemble(langevin_task, TASKS, tmp_path, executor=object())
    with pytest.raises(TypeError, match="params"):
        run_ensemble(langevin_task, [1, 2], tmp_path)
