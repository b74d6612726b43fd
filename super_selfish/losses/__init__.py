"""Self-supervised losses, each its own module with a reference-checkable ``forward``."""
from .ntxent import NTXentLoss

__all__ = ["NTXentLoss"]
