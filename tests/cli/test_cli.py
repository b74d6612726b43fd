"""The command line, called in-process (``cli.main([...])``): eval of a run, train's rate, bad
values refused before any work, errors, help, method options, configs, recipe flags."""

from __future__ import annotations

import io
import json
import sys

import numpy as np
import pytest
import yaml
from toys import sample_subset, write_images

from super_selfish import SimCLRSupervisor, Supervisor, cli, console, data, store
from super_selfish.errors import CheckpointError, ConfigError, UnknownNameError


@pytest.fixture(scope="module")
def ds() -> data.TensorImageDataset:
    return sample_subset(16)


def test_from_checkpoint_refuses_another_method_and_cli_eval_scores_a_run(tmp_path, capsys):
    from super_selfish import cli
    from super_selfish.methods import RotateNetSupervisor

    name = str(tmp_path / "run")
    SimCLRSupervisor(sample_subset(64), seed=0, temperature=0.2).supervise(
        epochs=1, batch_size=32, name=name, progress=False
    )
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
        assert (
            cli.main(
                [
                    "train",
                    "instdisc",
                    "--dataset",
                    str(tmp_path / "images"),
                    "--epochs",
                    "1",
                    "--batch-size",
                    "8",
                    "--schedule",
                    "constant",
                    "--name",
                    str(tmp_path / run),
                    *extra,
                ]
            )
            == 0
        )
    lrs = [json.loads((tmp_path / run / "history.json").read_text())[-1]["lr"] for run in runs]
    assert lrs == [pytest.approx(InstanceDiscriminationSupervisor.recipe().lr_for(8)), 2e-3]


# --------------------------------------------------------------------- 14. CLI behaviour
def test_cli_refuses_bad_values_before_any_work(capsys, monkeypatch):
    monkeypatch.setattr(data, "dataset", lambda *a, **k: pytest.fail("data was loaded"))
    for argv, flag in (
        (["--device", "gpu"], "argument --device"),
        (["--epochs", "-1"], "argument --epochs"),
        (["--lr", "0"], "argument --lr"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["train", "simclr", *argv])
        assert exit_info.value.code == 2 and flag in capsys.readouterr().err
    assert cli.main(["train", "simclr", "--set", "temprature=0.2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("[error]") and "Did you mean 'temperature'" in err
    assert cli.main(["train", "simclr", "--resume"]) == 2
    assert "--resume without --name" in capsys.readouterr().err


def test_cli_errors_use_flag_names_and_colour_only_on_a_terminal(capsys, monkeypatch):
    assert cli.main(["eval", "--name", "/no/such/run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("[error] ") and "\x1b[" not in err
    assert (
        cli._flagged(
            "Invalid size=0: expected a positive int.", cli.build_parser().commands["train"]
        )
        == "Invalid --size 0: expected a positive int."
    )

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stderr", Terminal())
    monkeypatch.delenv("NO_COLOR", raising=False)
    console.error("x")
    assert "\x1b[" in sys.stderr.getvalue()
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setattr(sys, "stderr", Terminal())
    console.error("x")
    assert sys.stderr.getvalue() == "[error] x\n"


def test_cli_version_and_every_help_shows_defaults(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0 and "super-selfish 0." in capsys.readouterr().out
    parser = cli.build_parser()
    for command, sub in parser.commands.items():
        formatter = sub._get_formatter()
        for action in sub._actions:
            if action.option_strings and action.dest not in ("help", "version"):
                text = formatter._get_help_string(action)
                assert "default" in text.lower(), f"{command} {action.option_strings}: {text}"


# --------------------------------------------------------------------- 15. CLI reaches the API
def test_method_options_are_parsed_and_checked():
    from super_selfish.methods import MomentumContrastSupervisor as MoCo

    assert cli.method_options(MoCo, ["temperature=0.2", "queue_size=4096"]) == {
        "temperature": 0.2,
        "queue_size": 4096,
    }
    assert cli.method_options(MoCo, ["temperature=1"]) == {"temperature": 1.0}
    with pytest.raises(UnknownNameError, match="Did you mean 'queue_size'"):
        cli.method_options(MoCo, ["queue_sise=4096"])
    with pytest.raises(ConfigError, match="--set temperature='hot'"):
        cli.method_options(MoCo, ["temperature=hot"])  # Optional[float]: a number or none
    assert cli.method_options(MoCo, ["temperature=none"]) == {"temperature": None}
    with pytest.raises(ConfigError, match="--set temperature=True: expected float"):
        cli.method_options(SimCLRSupervisor, ["temperature=true"])  # float = 0.5
    with pytest.raises(ConfigError, match="use the flag --backbone"):
        cli.method_options(MoCo, ["backbone=resnet18"])


def test_cli_config_is_written_and_repeats_the_run_and_embed_writes_features(
    ds, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    write_images(tmp_path / "imgs" / "a", ds.images[:8])
    write_images(tmp_path / "imgs" / "b", ds.images[8:16])
    argv = [
        "train",
        "simclr",
        "--dataset",
        "imgs",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--set",
        "temperature=0.2",
        "hidden_dim=64",
        "projection_dim=16",
        "--augment",
        "byol",
        "--lr",
        "2e-3",
        "--weight-decay",
        "1e-4",
        "--schedule",
        "constant",
        "--warmup-epochs",
        "0.5",
        "--keep-last",
        "1",
        "--image-size",
        "24",
    ]
    assert cli.main(argv) == 0
    (first,) = sorted((tmp_path / "store").glob("simclr-*.pt"))
    written = yaml.safe_load((first.with_suffix("") / "config.yaml").read_text())
    assert written["set"] == {"temperature": 0.2, "hidden_dim": 64, "projection_dim": 16}
    assert written["lr"] == 2e-3 and written["name"] is None
    assert written["resolved"]["hparams"]["augment"] == "byol"
    assert cli.main(["train", "--config", str(first.with_suffix("") / "config.yaml")]) == 0
    runs = sorted((tmp_path / "store").glob("simclr-*.pt"))
    assert len(runs) == 2
    configs = [yaml.safe_load((p.with_suffix("") / "config.yaml").read_text()) for p in runs]
    for config in configs:
        config["resolved"].pop("name")
    assert configs[0] == configs[1]
    hparams = [store.read(p)["hparams"] for p in runs]
    assert hparams[0] == hparams[1] and hparams[0]["image_size"] == 24
    assert (runs[1].with_suffix("") / "checkpoints" / "epoch_0001.pt").exists()
    history = json.loads((runs[1].with_suffix("") / "history.json").read_text())
    assert history[0]["lr"] == pytest.approx(2e-3)

    out = tmp_path / "feats.npy"
    assert (
        cli.main(
            [
                "embed",
                "--name",
                str(runs[0].with_suffix("")),
                "--dataset",
                "imgs",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    features, labels = np.load(out), np.load(tmp_path / "feats.labels.npy")
    assert features.shape == (16, 256) and labels.tolist() == [0] * 8 + [1] * 8
    sup = Supervisor.from_checkpoint(str(runs[0].with_suffix("")))
    expected = sup.get_backbone().eval()(data.materialize(data.dataset("imgs", size=24)).images)
    assert np.allclose(features, expected.detach().numpy(), atol=1e-5)


def test_cli_passes_recipe_flags_only_when_given_and_wires_monitors(ds, tmp_path, monkeypatch):
    from super_selfish import monitors

    write_images(tmp_path / "imgs" / "a", ds.images[:8])
    calls = []

    def fake_supervise(self, **options):  # records what the CLI passes; trains nothing
        calls.append(options)
        self.run_name = str(tmp_path / "run")
        return []

    monkeypatch.setattr(SimCLRSupervisor, "supervise", fake_supervise)
    base = [
        "train",
        "simclr",
        "--dataset",
        str(tmp_path / "imgs"),
        "--batch-size",
        "8",
        "--set",
        "hidden_dim=64",
        "projection_dim=16",
    ]
    assert cli.main(base) == 0
    assert not {"lr", "optimizer", "weight_decay", "warmup_epochs", "lr_scheduler"} & set(calls[0])
    assert (
        cli.main(
            [
                *base,
                "--lr",
                "0.1",
                "--optimizer",
                "sgd",
                "--schedule",
                "cosine",
                "--warmup-epochs",
                "2",
                "--weight-decay",
                "0",
                "--knn-every",
                "2",
                "--health",
                "--tensorboard",
                "--keep-best",
            ]
        )
        == 0
    )
    given = calls[1]
    assert (
        given["lr"],
        given["lr_scheduler"],
        given["warmup_epochs"],
        given["weight_decay"],
        given["keep_best"],
    ) == (0.1, "cosine", 2.0, 0.0, True)
    assert given["optimizer"] == "sgd"  # by name: the recipe builds it with its momentum
    kinds = [type(cb) for cb in given["callbacks"]]
    assert kinds[1:] == [monitors.KNNMonitor, monitors.HealthMonitor, monitors.TensorBoardLogger]
    assert given["callbacks"][1].every == 2
    flat = tmp_path / "flat"
    write_images(flat, ds.images[:8])
    assert (
        cli.main(
            ["train", "simclr", "--dataset", str(flat), "--batch-size", "8", "--knn-every", "1"]
        )
        == 2
    )  # unlabelled data: no kNN monitor
