"""Runnable usage examples of every supervisor (two lines to train, then transfer).

    python test.py                 # every method, 1 short epoch each on the bundled sample
    python test.py simclr rotnet   # only these (registry names)

Each example trains on unlabeled images, takes the backbone out and scores it with a kNN and a
linear probe on the labelled test split, exactly as a user would on their own data. Without
``lr=``, ``supervise()`` trains on the method's own recipe (``Supervisor.recipe()``, see
"Training recipes" in the README).
"""

import sys

import torch

from super_selfish import (
    BarlowTwinsSupervisor,
    BiGANSupervisor,
    BYOLSupervisor,
    CombinedNet,
    ContextSupervisor,
    ContrastiveMultiviewCodingSupervisor,
    ContrastivePredictiveCodingSupervisor,
    DenoiseSupervisor,
    DINOSupervisor,
    ExemplarSupervisor,
    InstanceDiscriminationSupervisor,
    JigsawSupervisor,
    MAESupervisor,
    MomentumContrastSupervisor,
    NNCLRSupervisor,
    PIRLSupervisor,
    RelativePositionSupervisor,
    RotateNetSupervisor,
    SimCLRSupervisor,
    SimSiamSupervisor,
    SplitBrainSupervisor,
    SwAVSupervisor,
    VICRegSupervisor,
    data,
    evaluate,
)

EPOCHS, BATCH = 1, 64
full = data.dataset("cifar10-sample", "train")  # 5,000 real CIFAR-10 images, ships offline
train = full.subset(torch.randperm(len(full), generator=torch.Generator().manual_seed(0))[:1024])
test = data.dataset("cifar10-sample", "test")
unlabeled = train.images  # no labels needed: a plain uint8 tensor (N, 3, H, W) works


def transfer(sup, method):
    """What a user does after training: take the backbone, probe it, build a classifier."""
    backbone = sup.get_backbone()
    knn = evaluate.knn_accuracy(backbone, train, test, k=50)
    linear = evaluate.linear_probe(backbone, train, test, epochs=20)
    classifier = CombinedNet(
        backbone, torch.nn.Linear(backbone.feature_dim, 10), freeze_backbone=True
    )
    logits = classifier(test.images[:4])
    print(
        f"{method:>10}: kNN {knn:.3f}, linear {linear:.3f}, classifier output "
        f"{tuple(logits.shape)}",
        flush=True,
    )


def example(method):
    if method == "simclr":
        sup = SimCLRSupervisor(unlabeled)
        sup.supervise(epochs=EPOCHS, batch_size=BATCH, name="store/simclr")
    elif method == "moco":
        sup = MomentumContrastSupervisor(unlabeled, queue_size=512)
        sup.supervise(epochs=EPOCHS, batch_size=BATCH, name="store/moco")
    elif method == "byol":
        sup = BYOLSupervisor(unlabeled)
        sup.supervise(epochs=EPOCHS, batch_size=BATCH, name="store/byol")
    elif method == "simsiam":
        sup = SimSiamSupervisor(unlabeled)
        sup.supervise(epochs=EPOCHS, batch_size=BATCH, name="store/simsiam")
    elif method == "barlow":
        sup = BarlowTwinsSupervisor(unlabeled)
        sup.supervise(epochs=EPOCHS, batch_size=BATCH, name="store/barlow")
    elif method == "vicreg":
        sup = VICRegSupervisor(unlabeled)
        sup.supervise(epochs=EPOCHS, batch_size=BATCH, name="store/vicreg")
    elif method == "nnclr":
        sup = NNCLRSupervisor(unlabeled)
        sup.supervise(epochs=EPOCHS, batch_size=BATCH, name="store/nnclr")
    elif method == "dino":
        sup = DINOSupervisor(unlabeled)
        sup.supervise(epochs=EPOCHS, batch_size=BATCH, name="store/dino")
    elif method == "swav":
        sup = SwAVSupervisor(unlabeled)
        sup.supervise(epochs=EPOCHS, batch_size=BATCH, name="store/swav")
    elif method == "instdisc":
        sup = InstanceDiscriminationSupervisor(unlabeled)
        sup.supervise(epochs=EPOCHS, batch_size=BATCH, name="store/instdisc")
    elif method == "pirl":
        sup = PIRLSupervisor(unlabeled)
        sup.supervise(epochs=EPOCHS, batch_size=BATCH, name="store/pirl")
    elif method == "cmc":
        sup = ContrastiveMultiviewCodingSupervisor(unlabeled)
        sup.supervise(epochs=EPOCHS, batch_size=BATCH, name="store/cmc")
    elif method == "cpc":
        sup = ContrastivePredictiveCodingSupervisor(unlabeled)
        sup.supervise(epochs=EPOCHS, batch_size=BATCH, name="store/cpc")
    elif method == "rotnet":
        sup = RotateNetSupervisor(unlabeled)
        sup.supervise(epochs=EPOCHS, batch_size=BATCH, name="store/rotnet")
    elif method == "jigsaw":
        sup = JigsawSupervisor(unlabeled)
        sup.supervise(epochs=EPOCHS, batch_size=BATCH, name="store/jigsaw")
    elif method == "relpos":
        sup = RelativePositionSupervisor(unlabeled)
        sup.supervise(epochs=EPOCHS, batch_size=BATCH, name="store/relpos")
    elif method == "exemplar":
        sup = ExemplarSupervisor(unlabeled)
        sup.supervise(epochs=EPOCHS, batch_size=BATCH, name="store/exemplar")
    elif method == "denoise":
        sup = DenoiseSupervisor(unlabeled)
        sup.supervise(epochs=EPOCHS, batch_size=BATCH, name="store/denoise")
    elif method == "context":
        sup = ContextSupervisor(unlabeled)
        sup.supervise(epochs=EPOCHS, batch_size=BATCH, name="store/context")
    elif method == "splitbrain":
        sup = SplitBrainSupervisor(unlabeled)
        sup.supervise(epochs=EPOCHS, batch_size=BATCH, name="store/splitbrain")
    elif method == "mae":
        sup = MAESupervisor(unlabeled, backbone="vit-tiny")
        sup.supervise(epochs=EPOCHS, batch_size=BATCH, name="store/mae")
    elif method == "bigan":
        sup = BiGANSupervisor(unlabeled)
        sup.supervise(epochs=EPOCHS, batch_size=BATCH, name="store/bigan")
    else:
        raise SystemExit(f"no example for {method!r}")
    transfer(sup, method)


ALL = [
    "simclr",
    "moco",
    "byol",
    "simsiam",
    "barlow",
    "vicreg",
    "nnclr",
    "dino",
    "swav",
    "instdisc",
    "pirl",
    "cmc",
    "cpc",
    "rotnet",
    "jigsaw",
    "relpos",
    "exemplar",
    "denoise",
    "context",
    "splitbrain",
    "mae",
    "bigan",
]

if __name__ == "__main__":
    for name in sys.argv[1:] or ALL:
        example(name)
