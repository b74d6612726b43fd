r"""Train a self-supervised method on several GPUs (or CPU processes) with torchrun.

One node, 4 GPUs (``--batch-size`` is per GPU: the global batch is 4 x 256 = 1024):

    torchrun --standalone --nproc_per_node=4 examples/train_ddp.py \
        --method simclr --backbone cifar-resnet18 --batch-size 256 --precision bf16

Two nodes with 8 GPUs each (run the same command on both, ``--node_rank`` 0 and 1;
``node0.example.com`` is the first node's address, reachable from the second):

    torchrun --nnodes=2 --nproc_per_node=8 --node_rank=0 \\
        --rdzv_backend=c10d --rdzv_endpoint=node0.example.com:29500 --rdzv_id=ssl-run \\
        examples/train_ddp.py --batch-size 128

The same script runs unchanged as one plain process (``python examples/train_ddp.py``):
``supervise`` only goes distributed when a launcher sets ``WORLD_SIZE`` > 1. Only rank 0
prints, shows progress bars and writes ``<name>.pt`` and ``<name>/history.*``; resume with
``--resume`` (on any number of processes).
"""

from __future__ import annotations

import argparse

import torch

from super_selfish import data, distributed, evaluate, methods


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="simclr", choices=methods.available())
    parser.add_argument(
        "--dataset",
        default="cifar10-sample",
        help="a dataset name or an image folder (see super_selfish.data)",
    )
    parser.add_argument(
        "--subset",
        type=int,
        default=None,
        help="train on the first N images of a seeded shuffle (smoke tests)",
    )
    parser.add_argument(
        "--backbone", default="convnet-small", help="e.g. convnet-small, cifar-resnet18, resnet50"
    )
    parser.add_argument(
        "--hidden-dim",
        type=int,
        default=None,
        help="projector width (the method's default when omitted)",
    )
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=256, help="per process")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true", help="torch.compile the backbone")
    parser.add_argument(
        "--no-sync-bn",
        action="store_true",
        help="keep BatchNorm statistics per process (SyncBN is the default)",
    )
    parser.add_argument("--name", default="store/ddp_run")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--knn",
        action="store_true",
        help="report weighted-kNN accuracy on the test split at the end",
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    train = data.dataset(args.dataset)
    if args.subset is not None:
        train = data.materialize(train)
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(args.seed))
        train = train.subset(order[: args.subset])
    options = {} if args.hidden_dim is None else {"hidden_dim": args.hidden_dim}
    sup = methods.get(args.method)(train, backbone=args.backbone, seed=args.seed, **options)
    history = sup.supervise(
        lr=args.lr,
        epochs=args.epochs,
        batch_size=args.batch_size,
        name=args.name,
        pretrained=args.resume,
        precision=args.precision,
        channels_last=args.channels_last,
        compile=args.compile,
        sync_batchnorm=not args.no_sync_bn,
        progress=not args.no_progress,
    )
    if distributed.is_main_process() and history:
        print(f"{len(history)} epochs, last loss {history[-1]['loss']:.4f}")
        if args.knn:  # on rank 0 only (the evaluation is not distributed)
            test = data.dataset(args.dataset, "test")
            print(f"kNN accuracy {evaluate.knn_accuracy(sup.get_backbone(), train, test):.4f}")
    distributed.cleanup()  # the library leaves the process group to the script


if __name__ == "__main__":
    main()
