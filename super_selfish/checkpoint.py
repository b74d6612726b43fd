"""Checkpoints of a run: what a checkpoint holds, run names, save, load, restore, rebuild.

:class:`Checkpointing` is a mixin of :class:`super_selfish.Supervisor`. The file layer (atomic
writes, the store folder, run names, copies kept) is :mod:`super_selfish.store`; this module
decides what goes into a checkpoint (weights, hyper-parameters, optimizer, scheduler, RNG
streams, history, data provenance) and how a supervisor is rebuilt from one
(:meth:`Checkpointing.from_checkpoint`: the class that wrote it, else the method registered
under its name).
"""

from __future__ import annotations

import inspect
import os
import time
from typing import TYPE_CHECKING, Any, Optional

import torch

from . import augment, backbones, console, store
from . import distributed as dist_utils
from .distributed import is_main_process, rank, world_size
from .errors import CheckpointError, ConfigError
from .registry import METHODS
from .version import __version__

if TYPE_CHECKING:
    from .supervisor import Supervisor


def init_arguments(cls: type) -> dict[str, inspect.Parameter]:
    """Keyword arguments that ``cls(...)`` accepts: the named parameters of every
    ``__init__`` along its Supervisor hierarchy (a subclass passes ``**kwargs`` up), the
    most derived definition first.

    Args:
        cls: a :class:`Checkpointing` subclass (a method's supervisor).

    Returns:
        ``{argument name: inspect.Parameter}`` of the positional-or-keyword and keyword-only
        parameters (``self`` left out).
    """
    accepted: dict[str, inspect.Parameter] = {}
    for klass in cls.__mro__:
        if "__init__" in vars(klass) and issubclass(klass, Checkpointing):
            for p in inspect.signature(vars(klass)["__init__"]).parameters.values():
                if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "self":
                    accepted.setdefault(p.name, p)
    return accepted


def _read_run(name: str) -> dict[str, Any]:
    """A training checkpoint (:func:`store.read`); a backbone-only file is refused."""
    payload = store.read(name)
    if payload.get("kind") == backbones.BACKBONE_FILE:
        raise CheckpointError(
            f"{str(store.checkpoint_path(name))!r} holds a backbone alone "
            "(written by save_backbone): load it with backbones.load(path)."
        )
    return payload


def _plain_options(options: dict[str, Any]) -> dict[str, Any]:
    """``run_options`` as checkpoint-safe values (numbers, strings, lists, dicts, None)."""

    def plain(v: Any) -> Any:
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        return str(v)

    return {str(k): plain(v) for k, v in options.items()}


class Checkpointing:
    """Save, load, resume and rebuild a supervisor (a mixin of ``Supervisor``)."""

    if TYPE_CHECKING:  # the Supervisor's attributes, for type checkers reading the mixin alone

        def __getattr__(self, name: str) -> Any: ...

    def _new_run_name(self, save: bool) -> tuple[str, Optional[os.PathLike[str]]]:
        """``store/<method>-<YYYYmmdd-HHMMSS>`` (``-2``, ``-3``... when taken), the same on
        every process; its run folder is created at once (by the main process, when saving)
        so that two runs started in the same second cannot pick the same name.
        """
        stamp = int(time.time())
        if self._ddp is not None:
            stamp = dist_utils.broadcast_int(stamp)
        name, suffix, reserved = store.run_name(self.method, stamp), 1, None
        if is_main_process():
            name, suffix, reserved = store.new_run_name(self.method, stamp, reserve=save)
        if self._ddp is not None:
            suffix = dist_utils.broadcast_int(suffix)
            name = store.run_name(self.method, stamp, suffix)
        return name, reserved

    def _resume_needs_name(self) -> str:
        latest = store.latest_run(self.method)
        hint = f" The latest {self.method} run here is {latest!r}." if latest is not None else ""
        return (
            "Invalid name=None with pretrained=True: expected the name of the run to "
            "continue, e.g. name='store/" + self.method + "-20261202-141503' (a run "
            "started without a name gets a new one, printed when it starts, and is "
            f"never resumed by default).{hint}"
        )

    def _check_overwrite(self, name: str, overwrite: bool) -> None:
        """Refuse to replace another method's checkpoint at ``name`` unless ``overwrite``."""
        path = store.checkpoint_path(name)
        if overwrite or not path.exists():
            return
        theirs = store.peek_method(path)
        if theirs == self.method:
            console.warn(
                f"{path} holds an earlier {self.method} run: this run replaces it "
                "(pass another name= to keep both, or pretrained=True to continue "
                "it)."
            )
            return
        held = (
            f"a checkpoint of method {theirs!r}"
            if theirs is not None
            else "a file that is not a readable super_selfish checkpoint"
        )
        raise CheckpointError(
            f"{str(path)!r} holds {held}; this {self.method} run would "
            "overwrite it. Pass another name= (or none: each run then gets "
            "its own), or overwrite=True to replace it."
        )

    def _checkpoint_payload(self) -> dict[str, Any]:
        mid_epoch = getattr(self, "_resume_step_to_save", 0)
        payload: dict[str, Any] = {
            "format": store.FORMAT,
            "library_version": __version__,
            "method": self.method,
            # the class, so from_checkpoint can rebuild a user-defined subclass it can import
            "class": {"module": type(self).__module__, "qualname": type(self).__qualname__},
            "hparams": dict(self.hparams),
            "state": {k: v.detach().cpu() for k, v in self.state_dict().items()},
            "epoch": self.epoch,
            "global_step": self.global_step,
            "step_in_epoch": mid_epoch,
            "epoch_losses": list(getattr(self, "_epoch_losses", [])) if mid_epoch else [],
            "history": [dict(r) for r in self.history],
            "data": getattr(self, "data_record", None),
            "run_options": _plain_options(getattr(self, "run_options", None) or {}),
            # the EMA coefficient of the last step (methods with momentum copies)
            "momentum": getattr(self, "current_momentum", None),
        }
        if hasattr(self, "optimizer"):
            payload["optimizer"] = self.optimizer.state_dict()
            payload["scheduler"] = self.scheduler.state_dict() if self.scheduler else None
            payload["scaler"] = self._scaler.state_dict()
            payload["rng"] = {
                "torch": torch.get_rng_state(),
                "data": self._epoch_seed_state if mid_epoch else self._data_gen.get_state(),
                "augment": self._aug_gen.get_state(),
            }
            if self.device.type == "cuda":  # random ops a method runs on the GPU
                payload["rng"]["cuda"] = torch.cuda.get_rng_state(self.device)
            # what the mid-epoch position refers to: resuming needs the same batches
            payload["loader"] = [self.loader.batch_size, len(self.dataset), world_size()]
        return payload

    def save(self, name: Optional[str] = None) -> str:
        """Write one checkpoint file (atomically) with everything needed to resume.

        ``name`` defaults to the run's (``self.run_name``, set by :meth:`supervise`), else a
        new ``store/<method>-<time>`` name. Other processes of a distributed run write nothing.

        Args:
            name: the run name or checkpoint path.

        Returns:
            The checkpoint path (``.pt``).
        """
        if name is None:
            name = (
                getattr(self, "run_name", None)
                or store.new_run_name(self.method, reserve=is_main_process())[0]
            )
            self.run_name = name
        if not is_main_process():
            return str(store.checkpoint_path(name))
        return str(store.write(self._checkpoint_payload(), name))

    def save_backbone(self, path: str | os.PathLike) -> str:
        """Write the trained backbone alone (weights and how to rebuild it) to ``path``.

        :func:`super_selfish.backbones.load` reads it back without this method's heads,
        queues or optimizer; see :func:`super_selfish.backbones.save` for what is stored and
        how user-defined modules are handled.

        Args:
            path: the file to write (``.pt`` is appended when missing).

        Returns:
            The path written.
        """
        return str(
            backbones.save(
                self.get_backbone(),
                path,
                norm=self.hparams.get("norm"),
                probe_size=self.image_size,
                method=self.method,
            )
        )

    @staticmethod
    def _checkpoint_class(payload: dict[str, Any]) -> Optional[type]:
        """The Supervisor subclass recorded in ``payload`` when it can be imported, else None."""
        import importlib
        import sys

        recorded = payload.get("class")
        if not isinstance(recorded, dict):
            return None
        module_name, qualname = recorded.get("module"), recorded.get("qualname")
        if not isinstance(module_name, str) or not isinstance(qualname, str) or "<" in qualname:
            return None  # defined inside a function: not importable
        try:
            obj: Any = sys.modules.get(module_name) or importlib.import_module(module_name)
            for part in qualname.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError):
            return None
        if not (
            isinstance(obj, type)
            and issubclass(obj, Checkpointing)
            and getattr(obj, "method", None) == payload.get("method")
        ):
            return None
        return obj

    @classmethod
    def from_checkpoint(cls, name: str, dataset: Any = None, **overrides: Any) -> Supervisor:
        """Rebuild the supervisor that wrote checkpoint ``name`` and load it.

        The class comes from the file: the exact class that saved it (a user-defined subclass
        too) when it can be imported (``module.qualname`` is recorded), else the method
        registered under the saved method name (with a note). Every saved hyper-parameter
        (image size, norm, backbone, the method's own options) is passed back to
        ``__init__``, so every part has the saved shape; ``overrides`` replace saved values
        (e.g. ``augment=my_pipeline``).

        Args:
            name: the run name or checkpoint path.
            dataset: the training data to attach (None to only evaluate or export).
            **overrides: constructor arguments replacing the saved ones.

        Returns:
            The rebuilt supervisor with the checkpoint loaded.

        Raises:
            CheckpointError: the file cannot be read, holds a backbone alone, its method cannot
                be found, or it was written by another method than ``cls``.
        """
        payload = _read_run(name)
        method_cls = cls._checkpoint_class(payload)
        if method_cls is None:
            try:
                method_cls = METHODS.get(payload["method"])
            except KeyError as exc:
                recorded = payload.get("class") or {}
                raise CheckpointError(
                    f"{str(store.checkpoint_path(name))!r} was written by "
                    f"{recorded.get('module', '?')}.{recorded.get('qualname', '?')} (method "
                    f"{payload['method']!r}), which cannot be imported here: import the module "
                    "defining it (or register the method) first."
                ) from exc
            recorded = payload.get("class")
            if isinstance(recorded, dict) and (
                recorded.get("module"),
                recorded.get("qualname"),
            ) != (method_cls.__module__, method_cls.__qualname__):
                console.info(
                    f"{recorded.get('module')}.{recorded.get('qualname')}, which wrote "
                    f"{str(store.checkpoint_path(name))!r}, cannot be imported here: "
                    f"rebuilt as {method_cls.__name__} (method {payload['method']!r})."
                )
        if Checkpointing not in cls.__bases__ and not issubclass(method_cls, cls):
            raise CheckpointError(
                f"{str(store.checkpoint_path(name))!r} was written by method "
                f"{payload['method']!r}, not by {cls.__name__}: use "
                "Supervisor.from_checkpoint(name) to rebuild any method."
            )
        accepted = init_arguments(method_cls)
        saved = {k: v for k, v in payload["hparams"].items() if k in accepted}
        if not (isinstance(saved.get("augment"), str) and saved["augment"] in augment.available()):
            saved.pop("augment", None)  # a user pipeline object: the method's default stands in
        saved.update(overrides)
        return method_cls(dataset, **saved).load(name)

    def load(self, name: Optional[str] = None, *, strict: bool = True) -> Supervisor:
        """Load weights, buffers, epoch and history from ``name`` (default: this supervisor's
        run, ``self.run_name``).

        Args:
            name: the run name or checkpoint path.
            strict: require the saved state to match every parameter and buffer exactly.

        Returns:
            ``self``.

        Raises:
            CheckpointError: the file cannot be read, belongs to another method or backbone,
                or its weights do not fit.
            ConfigError: ``name`` is None and this supervisor has no run name.
        """
        name = self._run_name_or(name)
        payload = _read_run(name)
        path = store.checkpoint_path(name)
        if payload["method"] != self.method:
            raise CheckpointError(
                f"{str(path)!r} was written by method {payload['method']!r}, "
                f"but this is {self.method!r} ({type(self).__name__})."
            )
        theirs = payload["hparams"].get("backbone")
        if theirs != self.hparams["backbone"]:
            raise CheckpointError(
                f"{str(path)!r} holds backbone {theirs!r}, but this "
                f"supervisor uses {self.hparams['backbone']!r}: build it "
                f"with backbone={theirs!r}."
            )
        if getattr(self, "ema_backbone", None) is None and any(
            k.startswith("ema_backbone.") for k in payload["state"]
        ):
            from .momentum import frozen_copy  # the run kept a Polyak average (ema=)

            self.ema_backbone = frozen_copy(self.backbone).to(self.device)
        try:
            self.load_state_dict(payload["state"], strict=strict)
        except RuntimeError as exc:
            missing = [
                h
                for h in payload["hparams"].get("custom_heads", [])
                if h not in self.hparams.get("custom_heads", [])
            ]
            if missing:  # trained with a head of the user's own: it must be given again
                raise CheckpointError(
                    f"{str(path)!r} was trained with a {missing[0]} of your own, which a "
                    f"checkpoint cannot rebuild: pass the same kind of module again, e.g. "
                    f"{type(self).__name__}.from_checkpoint(name, {missing[0]}=my_"
                    f"{missing[0]})."
                ) from exc
            raise CheckpointError(
                f"{str(path)!r} does not fit this {type(self).__name__} "
                f"(different hyper-parameters? saved {payload['hparams']}): "
                f"{exc}"
            ) from exc
        self.epoch = payload["epoch"]
        self.global_step = payload["global_step"]
        self.history = list(payload.get("history", []))
        self.data_record = payload.get("data")
        if payload.get("run_options"):
            self.run_options = dict(payload["run_options"])
        if payload.get("momentum") is not None and hasattr(self, "current_momentum"):
            self.current_momentum = float(payload["momentum"])
        self.checkpoint = payload  # optimizer/RNG state, used when resuming
        return self

    def _run_name_or(self, name: Optional[str]) -> str:
        if name is not None:
            return name
        known = getattr(self, "run_name", None)
        if known is None:
            raise ConfigError(
                "Invalid name=None: expected the run to load, e.g. "
                f"name='store/{self.method}-20261202-141503' (this supervisor "
                "has not been trained or saved, so it has no run name)."
            )
        return known

    def _restore_training_state(self, payload: dict[str, Any]) -> None:
        if "optimizer" in payload:
            self.optimizer.load_state_dict(payload["optimizer"])
            if self.scheduler is not None and payload.get("scheduler") is not None:
                self.scheduler.load_state_dict(payload["scheduler"])
            self._scaler.load_state_dict(payload["scaler"])
            rng = payload["rng"]
            torch.set_rng_state(rng["torch"])
            self._data_gen.set_state(rng["data"])
            self._aug_gen.set_state(rng["augment"])
            if rank() > 0:  # rank 0's saved stream, made distinct for the other processes
                self._aug_gen.manual_seed(
                    int(torch.randint(2**62, (1,), generator=self._aug_gen)) + rank()
                )
            elif "cuda" in rng and self.device.type == "cuda":
                torch.cuda.set_rng_state(rng["cuda"], self.device)
        self._resume_step = payload.get("step_in_epoch", 0)
        saved, now = (
            payload.get("loader"),
            [self.loader.batch_size, len(self.dataset), world_size()],
        )
        if self._resume_step and saved is not None and list(saved) != now:
            raise ConfigError(
                f"Invalid batch_size={now[0]} (dataset of {now[1]} images, {now[2]} "
                f"process(es)) for resuming mid-epoch: the run was interrupted at step "
                f"{self._resume_step} of an epoch with batch_size={saved[0]} ({saved[1]} images, "
                f"{saved[2]} process(es)); expected the same batch size, dataset and processes."
            )
        self._resume_losses = list(payload.get("epoch_losses", []))
