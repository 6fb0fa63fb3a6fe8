"""What people watching see: plain timestamped progress lines where the output is a log."""

from __future__ import annotations

import io
import re
import time

from automixer.views import PlainProgress, fit_progress, progress_bar


def test_a_log_gets_timestamped_lines_at_the_interval_and_at_the_end():
    out = io.StringIO()
    with PlainProgress("{task.fields[info]}", interval=0.05, stream=out) as bar:
        task = bar.add_task("sweep", total=10, info="")
        bar.update(task, completed=3, info="done 3 failed 0 12,000 tok/s")
        time.sleep(0.3)
        bar.update(task, completed=10, info="done 10 failed 0")
    lines = out.getvalue().splitlines()
    assert len(lines) >= 3  # heartbeats while nothing changed, then the last state
    stamp = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d sweep: "
    assert re.match(stamp + r"3/10 done 3 failed 0 12,000 tok/s \(0:00:00, about", lines[0])
    assert re.match(stamp + r"10/10 done 10 failed 0 \(0:00:0\d\)$", lines[-1])
    assert all(re.match(stamp, line) for line in lines)


def test_without_a_terminal_the_bar_is_plain_lines():
    # pytest captures stderr: not a terminal, as under a scheduler or in CI
    assert isinstance(progress_bar("{task.fields[info]}", True), PlainProgress)
    assert not isinstance(progress_bar("{task.fields[info]}", True, plain=False), PlainProgress)


def test_surrogate_fits_report_their_progress(capsys):
    import numpy as np

    from automixer.surrogates import cross_validate, make_surrogate

    rng = np.random.default_rng(0)
    X = rng.dirichlet(np.ones(3), 30)
    Y = np.sqrt(X) @ rng.normal(size=(3, 2))
    with fit_progress("fit"):
        cross_validate(X, Y, {m: make_surrogate(m) for m in ("linear", "gp")}, folds=3, repeats=1)
    err = capsys.readouterr().err
    # the last line holds the last thing heard: the GP's batched learning of the folds
    assert re.search(r"fit: .*gp: round \d+, \d+ kernels still learning", err), err
