"""Every self-supervised method, registered by name (see :func:`available`)."""

from .barlow import BarlowTwinsSupervisor
from .bigan import BiGANSupervisor
from .byol import BYOLSupervisor
from .cmc import ContrastiveMultiviewCodingSupervisor
from .context import ContextSupervisor
from .cpc import ContrastivePredictiveCodingSupervisor
from .denoise import DenoiseSupervisor
from .dino import DINOSupervisor
from .exemplar import ExemplarSupervisor
from .instdisc import InstanceDiscriminationSupervisor
from .jigsaw import JigsawSupervisor
from .mae import MAESupervisor
from .moco import MomentumContrastSupervisor
from .nnclr import NNCLRSupervisor
from .pirl import PIRLSupervisor
from .registry import available, get, register
from .relpos import RelativePositionSupervisor
from .rotnet import RotateNetSupervisor
from .simclr import SimCLRSupervisor
from .simsiam import SimSiamSupervisor
from .splitbrain import SplitBrainSupervisor
from .swav import SwAVSupervisor
from .vicreg import VICRegSupervisor

# The original Super-Selfish's class names (the same classes).
JigsawNetSupervisor = JigsawSupervisor
ExemplarNetSupervisor = ExemplarSupervisor
DenoiseNetSupervisor = DenoiseSupervisor
ContextNetSupervisor = ContextSupervisor
SplitBrainNetSupervisor = SplitBrainSupervisor
BiGanSupervisor = BiGANSupervisor
ORIGINAL_NAMES = {
    "JigsawNetSupervisor": JigsawSupervisor,
    "ExemplarNetSupervisor": ExemplarSupervisor,
    "DenoiseNetSupervisor": DenoiseSupervisor,
    "ContextNetSupervisor": ContextSupervisor,
    "SplitBrainNetSupervisor": SplitBrainSupervisor,
    "BiGanSupervisor": BiGANSupervisor,
}

__all__ = [
    "InstanceDiscriminationSupervisor",
    "PIRLSupervisor",
    "ContrastiveMultiviewCodingSupervisor",
    "ContrastivePredictiveCodingSupervisor",
    "DINOSupervisor",
    "SwAVSupervisor",
    "RotateNetSupervisor",
    "JigsawSupervisor",
    "RelativePositionSupervisor",
    "ExemplarSupervisor",
    "DenoiseSupervisor",
    "ContextSupervisor",
    "SplitBrainSupervisor",
    "MAESupervisor",
    "BiGANSupervisor",
    "available",
    "get",
    "register",
    "SimCLRSupervisor",
    "BarlowTwinsSupervisor",
    "BYOLSupervisor",
    "MomentumContrastSupervisor",
    "NNCLRSupervisor",
    "SimSiamSupervisor",
    "VICRegSupervisor",
    *ORIGINAL_NAMES,
]
