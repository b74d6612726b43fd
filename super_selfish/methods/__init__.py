"""Every self-supervised method, registered by name (see :func:`available`)."""
from .registry import available, get, register
from .simclr import SimCLRSupervisor
from .barlow import BarlowTwinsSupervisor
from .byol import BYOLSupervisor
from .moco import MomentumContrastSupervisor
from .nnclr import NNCLRSupervisor
from .simsiam import SimSiamSupervisor
from .vicreg import VICRegSupervisor
from .rotnet import RotateNetSupervisor
from .jigsaw import JigsawSupervisor
from .relpos import RelativePositionSupervisor
from .exemplar import ExemplarSupervisor
from .denoise import DenoiseSupervisor
from .context import ContextSupervisor
from .splitbrain import SplitBrainSupervisor
from .mae import MAESupervisor
from .bigan import BiGANSupervisor
from .instdisc import InstanceDiscriminationSupervisor
from .pirl import PIRLSupervisor
from .cmc import ContrastiveMultiviewCodingSupervisor
from .cpc import ContrastivePredictiveCodingSupervisor
from .dino import DINOSupervisor
from .swav import SwAVSupervisor

# The original Super-Selfish's class names (the same classes).
JigsawNetSupervisor = JigsawSupervisor
ExemplarNetSupervisor = ExemplarSupervisor
DenoiseNetSupervisor = DenoiseSupervisor
ContextNetSupervisor = ContextSupervisor
SplitBrainNetSupervisor = SplitBrainSupervisor
BiGanSupervisor = BiGANSupervisor
ORIGINAL_NAMES = {"JigsawNetSupervisor": JigsawSupervisor,
                  "ExemplarNetSupervisor": ExemplarSupervisor,
                  "DenoiseNetSupervisor": DenoiseSupervisor,
                  "ContextNetSupervisor": ContextSupervisor,
                  "SplitBrainNetSupervisor": SplitBrainSupervisor,
                  "BiGanSupervisor": BiGANSupervisor}

__all__ = ["InstanceDiscriminationSupervisor", "PIRLSupervisor",
           "ContrastiveMultiviewCodingSupervisor", "ContrastivePredictiveCodingSupervisor",
           "DINOSupervisor", "SwAVSupervisor", "RotateNetSupervisor", "JigsawSupervisor",
           "RelativePositionSupervisor",
           "ExemplarSupervisor", "DenoiseSupervisor", "ContextSupervisor", "SplitBrainSupervisor",
           "MAESupervisor", "BiGANSupervisor", "available", "get", "register", "SimCLRSupervisor",
           "BarlowTwinsSupervisor", "BYOLSupervisor", "MomentumContrastSupervisor",
           "NNCLRSupervisor", "SimSiamSupervisor", "VICRegSupervisor", *ORIGINAL_NAMES]
