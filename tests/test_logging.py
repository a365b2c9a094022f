"""Notes and warnings through Python's logging (logger ``danlu``); --quiet and -v on every verb."""

from __future__ import annotations

import logging

from danlu.api import train
from danlu.cli.dispatch import build_parser
from danlu.training.tracking import Tracker


class FlakyOutlet(Tracker):
    """An outlet whose server went away: every epoch fails to log."""

    calls = 0

    def log_epoch(self, epoch, metrics):
        FlakyOutlet.calls += 1
        raise ConnectionError("server gone")


def test_a_tracking_outage_is_one_logged_warning_and_training_goes_on(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="danlu")
    flaky = FlakyOutlet(tmp_path, None)
    result = train("digits-mlp", ["train.epochs=2"], runs_dir=tmp_path, progress=False, callbacks=[flaky])
    assert result.status == "done" and FlakyOutlet.calls == 2
    warnings = [r for r in caplog.records if r.name == "danlu.training.tracking" and r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "server gone" in warnings[0].getMessage()
    notes = [r.getMessage() for r in caplog.records if r.name == "danlu.training.progress"]
    assert any(n.startswith("run: ") for n in notes)  # progress notes reach logging with progress off


def test_every_verb_takes_quiet_and_verbose():
    parser = build_parser()
    verbs = parser._subparsers._group_actions[0].choices
    for name, verb in verbs.items():
        assert "--quiet" in verb._option_string_actions and "-v" in verb._option_string_actions, name


def test_cli_levels(cli):
    from danlu.log import configure_cli

    log = logging.getLogger("danlu")
    configure_cli(0, quiet=True)
    assert log.level == logging.ERROR
    configure_cli(2)
    assert log.level == logging.DEBUG
    code, out, err = cli("runs", "-v")
    assert code == 0 and log.level == logging.INFO
    configure_cli(0)
