"""Self-supervised losses, each its own module with a reference-checkable ``forward``."""

from .adversarial import AdversarialLoss
from .barlow import BarlowTwinsLoss
from .cpc import CPCLoss
from .dino import DINOLoss
from .infonce import InfoNCELoss
from .nce import MemoryBankNCELoss
from .negative_cosine import NegativeCosineLoss
from .ntxent import NTXentLoss
from .reconstruction import MaskedMSELoss, MaskedPatchLoss
from .swav import SwAVLoss, sinkhorn
from .triplet import SemiHardTripletLoss
from .vicreg import VICRegLoss

__all__ = [
    "SemiHardTripletLoss",
    "MemoryBankNCELoss",
    "CPCLoss",
    "DINOLoss",
    "SwAVLoss",
    "sinkhorn",
    "NTXentLoss",
    "BarlowTwinsLoss",
    "InfoNCELoss",
    "NegativeCosineLoss",
    "VICRegLoss",
    "MaskedMSELoss",
    "MaskedPatchLoss",
    "AdversarialLoss",
]
