"""The command line, called in-process (``cli.main([...])``): eval of a run, train's rate, bad
values refused before any work, errors, help, method options, configs, recipe flags."""
from __future__ import annotations

import pytest
from toys import sample_subset

from super_selfish import SimCLRSupervisor, Supervisor
from super_selfish.errors import CheckpointError


def test_from_checkpoint_refuses_another_method_and_cli_eval_scores_a_run(tmp_path, capsys):
    from super_selfish import cli
    from super_selfish.methods import RotateNetSupervisor
    name = str(tmp_path / "run")
    SimCLRSupervisor(sample_subset(64), seed=0, temperature=0.2).supervise(
        epochs=1, batch_size=32, name=name, progress=False)
    assert Supervisor.from_checkpoint(name).hparams["temperature"] == 0.2
    with pytest.raises(CheckpointError, match="simclr"):
        RotateNetSupervisor.from_checkpoint(name)
    # trained on an in-memory subset: the checkpoint names no dataset, so eval is told one
    assert cli.main(["eval", "--name", name, "--k", "20", "--dataset", "cifar10-sample"]) == 0
    assert "simclr epoch 1, kNN accuracy 0." in capsys.readouterr().err


def test_cli_train_uses_the_methods_recipe_lr_unless_given(tmp_path):
    import json

    from PIL import Image

    from super_selfish import InstanceDiscriminationSupervisor, cli
    folder = tmp_path / "images" / "any"
    folder.mkdir(parents=True)
    for i, image in enumerate(sample_subset(24).images):
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"{i}.png")
    runs = {"default": [], "given": ["--lr", "2e-3"]}
    for run, extra in runs.items():
        assert cli.main(["train", "instdisc", "--dataset", str(tmp_path / "images"), "--epochs",
                         "1", "--batch-size", "8", "--schedule", "constant", "--name",
                         str(tmp_path / run), *extra]) == 0
    lrs = [json.loads((tmp_path / run / "history.json").read_text())[-1]["lr"] for run in runs]
    assert lrs == [pytest.approx(InstanceDiscriminationSupervisor.recipe().lr_for(8)), 2e-3]
