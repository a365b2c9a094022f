"""Settings and run states that once trained the wrong thing, or crashed, without saying so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from danlu.runs.store import hold_run
from tests.conftest import last_json


@pytest.mark.parametrize("args, needle", [
    (("digits-mlp", "train.monitor=accuracy"), "did you mean 'val_accuracy'"),
    (("digits-mlp", "train.early_stop={metric: val_los, patience: 2}"), "did you mean 'val_loss'"),
    (("diabetes-mlp", "train.monitor=val_accuracy"), "for regression it is auto or one of"),
    (("digits-mlp", "seed=-1"), "seed: Input should be greater than or equal to 0"),
])
def test_names_and_values_that_would_train_the_wrong_thing(cli, tmp_path, args, needle):
    code, _, err = cli("train", *args, "train.epochs=1")
    assert code == 2 and needle in err, err
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())


@pytest.fixture
def finished_run(cli) -> Path:
    code, out, err = cli("train", "digits-mlp", "train.epochs=2", "--json", "--quiet")
    assert code == 0, err
    return Path(last_json(out)["run"])


def test_resume_refuses_what_it_would_ignore_and_a_run_in_use(cli, finished_run):
    code, _, err = cli("train", "--resume", finished_run, "train.epochs=5")
    assert code == 2 and "takes no overrides" in err
    code, _, err = cli("train", "iris", "--resume", finished_run)
    assert code == 2 and "'iris' is not used" in err
    lock = hold_run(finished_run)  # as a training process holds it
    try:
        code, _, err = cli("train", "--resume", finished_run)
        assert code == 2 and "being trained by another process" in err
    finally:
        lock.close()
    (finished_run / "checkpoints" / "last.safetensors").write_bytes(b"garbage")
    code, _, err = cli("train", "--resume", finished_run)
    assert code == 2 and "is damaged" in err and "Traceback" not in err


def test_runs_show_json_and_a_runs_dir_that_is_a_file(cli, finished_run, tmp_path):
    code, out, _ = cli("runs", "show", finished_run.name, "--json")
    shown = json.loads(out)
    assert code == 0 and shown["recipe"]["name"] == "digits-mlp" and "accuracy" in shown["metrics"]
    afile = tmp_path / "afile"
    afile.write_text("x")
    import danlu
    from danlu.errors import DanluError

    with pytest.raises(DanluError, match="cannot create a run folder"):
        danlu.train("digits-mlp", "train.epochs=1", runs_dir=afile, progress=False)  # one string: one override


def test_recipe_file_mistakes_name_the_file_and_line(cli, tmp_path):
    bad = tmp_path / "r.yaml"
    bad.write_text("data:\n  name: digits\nmodel:\n  name: mlpp\n")
    code, _, err = cli("train", bad)
    assert code == 2 and f"{bad}, line 3: model: unknown model 'mlpp'" in err and "did you mean 'mlp'" in err
    bad.write_text("train:\n  optimizer: adamm\n")
    code, _, err = cli("train", bad)
    assert code == 2 and f"{bad}, line 2: train.optimizer: unknown optimizer 'adamm'" in err
    bad.write_text("")
    code, _, err = cli("train", bad)
    assert code == 2 and "is empty" in err


def test_a_failed_api_training_releases_its_run(tmp_path, monkeypatch):
    import danlu
    import danlu.training.loop

    def broken_fit(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(danlu.training.loop, "fit", broken_fit)
    with pytest.raises(RuntimeError, match="boom") as failure:
        danlu.train("digits-mlp", ["train.epochs=1"], runs_dir=tmp_path, progress=False)
    (run,) = tmp_path.iterdir()
    assert failure.tb is not None  # the traceback and its frames stay alive, as in a notebook (sys.last_traceback)
    hold_run(run).close()  # yet the run can be resumed right away: the failed call holds no lock
    assert json.loads((run / "status.json").read_text())["status"] == "failed"


def test_debug_after_the_verb_shows_the_traceback(cli):
    code, _, err = cli("train", "digits-mlp", "train.epochs=abc", "--debug")
    assert code == 2 and "Traceback" in err and "train.epochs" in err


def test_a_damaged_run_file_is_named_not_a_traceback(cli, finished_run):
    (finished_run / "recipe.yaml").write_text(": : [\n")
    for args in (("runs", "show", finished_run.name, "--json"), ("predict", finished_run, "1.png"),
                 ("train", "--resume", finished_run)):
        code, _, err = cli(*args)
        assert code == 2 and "recipe.yaml is damaged" in err and "Traceback" not in err, args
