"""Does loading from JPEG files keep up with training? SimCLR from a folder vs. from memory.

The same Imagenette images (128 px JPEGs) train SimCLR (``convnet-small``) twice at each size:
read from the folder (decoded and resized in the loader's worker processes, their number
chosen by ``data.default_num_workers()``; with ``--decode device``, JPEGs decoded on the GPU)
and held in memory as one uint8 tensor (no per-image work). Images/s is measured over the
steps after ``--warmup`` (worker start-up excluded), in ``--repeats`` alternating runs; the
table shows the median of each and the folder/memory ratio (target: at least 0.90).

    python benchmarks/data_throughput.py                      # 64 and 128 px, CPU or GPU
    python benchmarks/data_throughput.py --steps 5 --repeats 1    # a quick re-measure
    python benchmarks/data_throughput.py --device cuda --decode device --batch-size 256
    python benchmarks/data_throughput.py --cpu-cost   # CPU seconds, valid on a busy machine

``--cpu-cost`` measures, on one thread and in CPU time (not wall time, so other processes
on the machine do not distort it), what a loader worker spends per image (read, decode,
resize) and what a SimCLR step spends per image. If decoding took its CPU time away from
training (a CPU-only machine with no core to spare), the folder would reach
``train / (train + decode)`` of the in-memory rate.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from common import extracted

from super_selfish import SimCLRSupervisor, data
from super_selfish.supervisor import Callback


class StepClock(Callback):
    """Wall-clock time at the end of every step."""

    def __init__(self) -> None:
        self.times: list = []

    def on_step_end(self, sup, step, metrics) -> None:
        if sup.device.type == "cuda":
            torch.cuda.synchronize(sup.device)
        self.times.append(time.perf_counter())


def images_per_s(dataset, args, size: int) -> float:
    sup = SimCLRSupervisor(dataset, seed=0, image_size=size)
    clock = StepClock()
    steps = args.warmup + args.steps
    sup.supervise(
        epochs=1,
        batch_size=args.batch_size,
        progress=False,
        save=False,
        device=args.device,
        callbacks=[clock],
        seed=0,
    )
    if sup.interrupted:  # Ctrl-C stopped the run after a step: stop the benchmark too
        raise KeyboardInterrupt
    times = clock.times[args.warmup - 1 : steps]  # from the end of the last warm-up step
    return args.batch_size * (len(times) - 1) / (times[-1] - times[0])


def cpu_cost(folder, order: torch.Tensor, args) -> None:
    """CPU milliseconds per image: a worker's decoding vs. the training step (one thread)."""
    torch.set_num_threads(1)
    print("\n| size | decode + resize (ms/img) | SimCLR step (ms/img) | train / (train + decode) |")
    print("|---|---|---|---|")
    for size in args.sizes:
        files = data.dataset(str(folder), size=size)
        files.samples = [files.samples[i] for i in order.tolist()]
        started = time.process_time()
        images = torch.stack([files[i][0] for i in range(len(files))])
        decode = (time.process_time() - started) / len(files)
        sup = SimCLRSupervisor(data.TensorImageDataset(images), seed=0, image_size=size)
        started = time.process_time()
        sup.supervise(
            epochs=1,
            batch_size=args.batch_size,
            progress=False,
            save=False,
            num_workers=0,
            device="cpu",
        )
        train = (time.process_time() - started) / (len(images) // args.batch_size * args.batch_size)
        print(
            f"| {size} | {decode * 1e3:.2f} | {train * 1e3:.1f} | {train / (train + decode):.3f} |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10, help="measured steps per run")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default=None, help="default: cuda when available")
    parser.add_argument("--decode", default="cpu", choices=data.DECODE_MODES)
    parser.add_argument(
        "--cpu-cost",
        action="store_true",
        help="only the CPU-time accounting (valid on a busy machine)",
    )
    args = parser.parse_args()
    folder = extracted("imagenette-128-jpg.tar.gz") / "train"
    n_images = args.batch_size * (args.warmup + args.steps)  # one epoch is the measured run
    order = torch.randperm(9469, generator=torch.Generator().manual_seed(0))[:n_images]
    if args.cpu_cost:
        return cpu_cost(folder, order, args)
    print(
        f"{n_images} Imagenette JPEGs, batch {args.batch_size}, {args.steps} measured steps, "
        f"{args.repeats} repeat(s), {data.default_num_workers()} loader workers, "
        f"decode={args.decode}, {torch.get_num_threads()} torch threads"
    )
    rows = []
    for size in args.sizes:
        files = data.dataset(str(folder), size=size, decode=args.decode)
        files.samples = [files.samples[i] for i in order.tolist()]  # the same random subset
        in_memory = data.dataset(str(folder), size=size)
        in_memory.samples = files.samples
        memory = data.materialize(in_memory)  # the same decoded, resized images
        runs = {"memory": [], "folder": []}
        for _ in range(args.repeats):
            for kind, ds in (("memory", memory), ("folder", files)):
                runs[kind].append(images_per_s(ds, args, size))
                print(f"  {size} px {kind}: {runs[kind][-1]:.0f} images/s", flush=True)
        mem, fol = statistics.median(runs["memory"]), statistics.median(runs["folder"])
        rows.append((size, mem, fol, fol / mem))
    print("\n| size | in memory (img/s) | JPEG folder (img/s) | folder / memory |")
    print("|---|---|---|---|")
    for size, mem, fol, ratio in rows:
        print(f"| {size} | {mem:,.0f} | {fol:,.0f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
