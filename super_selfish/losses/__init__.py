"""Self-supervised losses, each its own module with a reference-checkable ``forward``."""
from .ntxent import NTXentLoss
from .barlow import BarlowTwinsLoss
from .infonce import InfoNCELoss
from .negative_cosine import NegativeCosineLoss
from .vicreg import VICRegLoss
from .reconstruction import MaskedMSELoss, MaskedPatchLoss
from .adversarial import AdversarialLoss
from .triplet import SemiHardTripletLoss
from .nce import MemoryBankNCELoss
from .cpc import CPCLoss
from .dino import DINOLoss
from .swav import SwAVLoss, sinkhorn

__all__ = ["SemiHardTripletLoss", "MemoryBankNCELoss", "CPCLoss", "DINOLoss", "SwAVLoss",
           "sinkhorn",
           "NTXentLoss", "BarlowTwinsLoss", "InfoNCELoss", "NegativeCosineLoss", "VICRegLoss",
           "MaskedMSELoss", "MaskedPatchLoss", "AdversarialLoss"]
