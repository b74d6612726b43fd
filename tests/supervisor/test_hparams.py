"""Constructor arguments become hyper-parameters automatically (checkpoint, from_checkpoint)."""

import inspect

import torch
import torch.nn as nn
from toys import ToyRotation

from super_selfish import Supervisor
from super_selfish.methods import registry


class ToyWithOptions(ToyRotation):
    """A method that records nothing by hand."""

    def __init__(
        self,
        dataset=None,
        backbone="convnet-small",
        *,
        width: int = 4,
        tags=("a", "b"),
        head=None,
        scale=None,
        **kwargs,
    ):
        super().__init__(dataset, backbone, **kwargs)
        self.extra = head if head is not None else nn.Linear(self.backbone.feature_dim, width)


def test_plain_constructor_arguments_are_recorded_and_rebuilt(tmp_path):
    images = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8)
    sup = ToyWithOptions(images, width=7, image_size=16, head=None)
    assert sup.hparams["width"] == 7 and sup.hparams["tags"] == ("a", "b")
    assert sup.hparams["scale"] is None and sup.hparams["head"] is None  # None is a value
    user_head = ToyWithOptions(images, image_size=16, head=nn.Linear(256, 3))
    assert "head" not in user_head.hparams  # a module is not a hyper-parameter
    path = sup.save(str(tmp_path / "run"))
    rebuilt = Supervisor.from_checkpoint(str(tmp_path / "run"))
    assert isinstance(rebuilt, ToyWithOptions) and path.endswith("run.pt")
    assert rebuilt.hparams["width"] == 7 and rebuilt.extra.out_features == 7


def test_every_method_records_its_plain_arguments():
    for name in registry.available():
        cls = registry.get(name)
        sup = cls(None)
        for klass in cls.__mro__:
            init = vars(klass).get("__init__")
            if init is None or not issubclass(klass, Supervisor) or klass is Supervisor:
                continue
            for p in inspect.signature(inspect.unwrap(init)).parameters.values():
                plain = p.default is None or isinstance(p.default, (bool, int, float, str))
                if p.kind is p.KEYWORD_ONLY and plain:
                    assert p.name in sup.hparams, (name, p.name)
