"""WebDataset shards: datasets larger than memory, or than one disk, streamed from tar files.

A shard is a tar file of samples: files sharing a key (``000123.jpg``, ``000123.cls``) form one
sample. ``data.dataset("shards/train-{000..009}.tar")`` (brace patterns, lists of paths, or any
URL WebDataset opens: ``https://``, ``pipe:curl ...``) gives a :class:`ShardDataset` whose
training loader reads shards from start to end, never loading a dataset into memory:

* every epoch the shard order is shuffled with the run's data seed (the same on every
  process), and samples pass through a seeded shuffle buffer (``shuffle_buffer`` samples);
* the shards are split between the processes of a distributed run and, within a process,
  between its loader workers: each (process, worker) reads its own shards (or, with fewer
  shards than readers, its own share of every shard's samples);
* every process yields the same number of batches per epoch, ``len(dataset) // processes //
  batch_size``, so DistributedDataParallel never waits on a process that ran out: a reader
  whose shards are exhausted starts them over in a new order. Shard counts that are a
  multiple of processes x workers, and shards of equal size, give every sample once per epoch.

Each sample has a stable index (its shard's first index plus its position), so memory-bank
methods work. Local shards are counted (tar headers only) when the dataset is made; shards
elsewhere need ``shard_sizes``. Images are decoded in the loader workers (or, with
``decode="device"``, JPEGs on the training device; see :mod:`super_selfish.decode`).
"""

from __future__ import annotations

import bisect
import io
import itertools
import os
import random
import re
import tarfile
from collections.abc import Iterator, Sequence
from typing import Any, Optional

import numpy as np
import torch
from PIL import Image
from torch.utils.data import IterableDataset, get_worker_info

from . import validate
from .data import NO_LABEL, ImageDataset, to_uint8_image
from .distributed import rank, world_size
from .errors import DataError, check
from .extras import require

SHARD_SUFFIXES = (".tar", ".tar.gz", ".tgz")
IMAGE_KEYS = ("jpg", "jpeg", "png", "webp", "ppm", "bmp", "tif", "tiff", "npy")
LABEL_KEYS = ("cls", "label", "target", "class")
_META_FILE = re.compile(r"__[^/]*__($|/)")  # WebDataset's metadata entries, not samples
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:")


def is_shard_source(source: Any) -> bool:
    """True for a shard path/pattern/URL ending in ``.tar`` (``.tar.gz``, ``.tgz``) or a
    non-empty list of them.

    Args:
        source: anything :func:`super_selfish.data.dataset` may receive.

    Returns:
        Whether ``source`` names WebDataset shards.
    """
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source).endswith(SHARD_SUFFIXES)
    return (
        isinstance(source, (list, tuple))
        and len(source) > 0
        and all(
            isinstance(s, (str, os.PathLike)) and os.fspath(s).endswith(SHARD_SUFFIXES)
            for s in source
        )
    )


def _expand(source: Any) -> list[str]:
    wds = require("webdataset", "webdataset", "Reading WebDataset shards")
    items = [source] if isinstance(source, (str, os.PathLike)) else list(source)
    return [url for item in items for url in wds.shardlists.expand_urls(os.fspath(item))]


def _local_path(url: str) -> Optional[str]:
    """The file behind ``url`` when it is one on this machine, else None."""
    path = url[len("file:") :] if url.startswith("file:") else url
    if _SCHEME.match(path) and not os.path.exists(path):
        return None
    return path if os.path.isfile(path) else None


def _split_name(name: str) -> tuple[Optional[str], Optional[str]]:
    """(sample key, extension) of a file in a shard, as WebDataset groups them."""
    match = re.match(r"^((?:.*/|)[^.]+)[.]([^/]*)$", name)
    return (match.group(1), match.group(2).lower()) if match else (None, None)


def _member_table(path: str) -> list[dict[str, tuple[int, int]]]:
    """Every sample of a local shard as {extension: (byte offset, size)}; reads headers only."""
    samples: list[dict[str, tuple[int, int]]] = []
    key = None
    with tarfile.open(path) as tar:
        for member in tar:
            if not member.isreg() or _META_FILE.match(member.name):
                continue
            name, ext = _split_name(member.name)
            if name is None or ext is None:
                continue
            if name != key:
                samples.append({})
                key = name
            samples[-1][ext] = (member.offset_data, member.size)
    return samples


def _shuffled(items: Iterator[Any], buffer_size: int, rng: random.Random) -> Iterator[Any]:
    """A shuffle buffer: each item waits among ``buffer_size`` others and leaves at random."""
    buffer: list[Any] = []
    for item in items:
        if len(buffer) < buffer_size:
            buffer.append(item)
            continue
        slot = rng.randrange(buffer_size)
        yield buffer[slot]
        buffer[slot] = item
    rng.shuffle(buffer)
    yield from buffer


class ShardDataset(ImageDataset):
    """WebDataset shards as a streamed dataset (see the module docstring).

    Args:
        source: a path, brace pattern (``"train-{000..009}.tar"``), URL or list of them.
        size: side every image is resized to; None keeps the stored size.
        channels: channels to deliver (see :func:`super_selfish.data.to_uint8_image`).
        resize: ``"squash"`` or ``"crop"``.
        decode: ``"cpu"``, or ``"device"`` to decode JPEGs on the training device.
        image_key: the sample extension holding the image; default: the first of
            :data:`IMAGE_KEYS` present in the first sample.
        label_key: the extension holding the integer label; default: the first of
            :data:`LABEL_KEYS` in the first sample (none: unlabelled).
        shard_sizes: samples per shard (one int for all, or one per shard); counted from the
            tar headers when not given, which needs local files.
        shuffle_buffer: samples held by each reader's shuffle buffer.

    Indexing (``ds[i]``) reads one sample: cheap for local shards (by byte offset), by reading
    the shard up to the sample otherwise; training streams instead.

    Raises:
        MissingExtraError: webdataset is not installed.
        ConfigError: ``shuffle_buffer`` or ``shard_sizes`` is invalid.
        DataError: the source names no shards or no samples, a remote shard has no
            ``shard_sizes``, or a key is missing from the first sample.
    """

    streaming = True

    def __init__(
        self,
        source: Any,
        *,
        size: Optional[int] = None,
        channels: int = 3,
        resize: str = "squash",
        decode: str = "cpu",
        image_key: Optional[str] = None,
        label_key: Optional[str] = None,
        shard_sizes: Optional[int | Sequence[int]] = None,
        shuffle_buffer: int = 1000,
    ):
        validate.positive_int(shuffle_buffer, "shuffle_buffer", " (samples)")
        self.urls = _expand(source)
        if not self.urls:
            raise DataError(f"WebDataset source {source!r} names no shards.")
        self.size, self.channels, self.resize, self.decode = size, channels, resize, decode
        self.shuffle_buffer = shuffle_buffer
        self.classes: list[str] = []
        self._table: tuple[int, Optional[list]] = (-1, None)  # one shard's member table
        sizes = self._shard_sizes(shard_sizes)
        self.offsets = [0, *itertools.accumulate(sizes)]
        if self.offsets[-1] == 0:
            raise DataError(f"WebDataset shards {self.urls[:3]} hold no samples.")
        first = next(self._read_shard(0))
        self.image_key = self._pick_key(first, image_key, IMAGE_KEYS, "image_key", True)
        self.label_key = self._pick_key(first, label_key, LABEL_KEYS, "label_key", False)

    # ------------------------------------------------------------------ layout
    def _shard_sizes(self, shard_sizes: Any) -> list[int]:
        n = len(self.urls)
        if shard_sizes is None:
            paths = [_local_path(url) for url in self.urls]
            missing = [url for url, path in zip(self.urls, paths) if path is None]
            if missing:
                raise DataError(
                    f"WebDataset shard {missing[0]!r} is not a local file, so its "
                    "samples cannot be counted: pass shard_sizes=<samples per "
                    "shard> (an int, or one per shard), e.g. the writer's maxcount, "
                    "or check the path."
                )
            return [len(_member_table(path)) for path in paths]  # type: ignore[arg-type]
        if isinstance(shard_sizes, int) and not isinstance(shard_sizes, bool):
            shard_sizes = [shard_sizes] * n
        check(
            isinstance(shard_sizes, (list, tuple))
            and len(shard_sizes) == n
            and all(isinstance(s, int) and s >= 0 for s in shard_sizes),
            "shard_sizes",
            shard_sizes,
            f"a non-negative int or a list of {n} ints (one per shard)",
        )
        return list(shard_sizes)

    @staticmethod
    def _pick_key(
        sample: dict[str, Any],
        given: Optional[str],
        candidates: Sequence[str],
        argument: str,
        required: bool,
    ) -> Optional[str]:
        present = [k for k in sample if not k.startswith("__")]
        if given is not None:
            if given not in sample:
                raise DataError(
                    f"Invalid {argument}={given!r}: the first sample "
                    f"({sample.get('__key__')!r}) has the keys {present}."
                )
            return given
        found = next((k for k in candidates if k in sample), None)
        if found is None and required:
            raise DataError(
                f"WebDataset sample {sample.get('__key__')!r} has no image among "
                f"its keys {present}: pass image_column='<extension>'."
            )
        return found

    @property
    def has_labels(self) -> bool:
        """Whether the samples carry a label file (``label_key`` was found or given)."""
        return self.label_key is not None

    def __len__(self) -> int:
        return self.offsets[-1]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_table"] = (-1, None)  # a cache, not worth sending to every worker
        return state

    # ------------------------------------------------------------------ reading
    def _read_shard(self, shard: int) -> Iterator[dict[str, Any]]:
        """The samples of one shard, in order, as {extension: bytes} (plus ``__key__``)."""
        wds = require("webdataset", "webdataset", "Reading WebDataset shards")
        yield from wds.tariterators.tarfile_samples([{"url": self.urls[shard]}])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} is out of range for {len(self)} samples")
        shard = bisect.bisect_right(self.offsets, index) - 1
        position = index - self.offsets[shard]
        path = _local_path(self.urls[shard])
        if path is None:
            sample = next(itertools.islice(self._read_shard(shard), position, None))
        else:
            if self._table[0] != shard:
                self._table = (shard, _member_table(path))
            members = self._table[1][position]  # type: ignore[index]
            sample = {"__key__": str(index)}
            with open(path, "rb") as handle:
                for ext, (offset, length) in members.items():
                    handle.seek(offset)
                    sample[ext] = handle.read(length)
        image, label = self.decode_sample(sample, encoded=False)
        return image, label

    def decode_sample(self, sample: dict[str, Any], encoded: bool = True) -> tuple[Any, int]:
        """(image, label) of a raw sample; with ``encoded`` and ``decode="device"``, JPEG
        bytes are left for the device (:class:`~super_selfish.decode.EncodedImage`).

        Args:
            sample: ``{extension: bytes}`` plus WebDataset's ``__key__``/``__url__``.
            encoded: allow leaving JPEG bytes undecoded.

        Returns:
            ``(image, label)``: a uint8 tensor or an ``EncodedImage``, and the label (-1 when
            unlabelled).

        Raises:
            DataError: the sample has no image file.
        """
        data = sample.get(self.image_key)  # type: ignore[arg-type]
        if data is None:
            raise DataError(
                f"WebDataset sample {sample.get('__key__')!r} from "
                f"{sample.get('__url__', 'a shard')!r} has no {self.image_key!r} "
                f"file (keys: {[k for k in sample if not k.startswith('__')]})."
            )
        label = NO_LABEL
        if self.label_key is not None:
            label = int(sample[self.label_key].decode().strip())
        if self.image_key == "npy":
            return to_uint8_image(
                np.load(io.BytesIO(data)), self.size, self.channels, self.resize
            ), label
        if (
            encoded
            and self.decode == "device"
            and self.image_key in ("jpg", "jpeg")
            and self.channels in (1, 3)
        ):
            from .decode import EncodedImage

            raw = torch.frombuffer(bytearray(data), dtype=torch.uint8)
            return EncodedImage(raw, self.size, self.channels, self.resize), label
        with Image.open(io.BytesIO(data)) as image:
            return to_uint8_image(image, self.size, self.channels, self.resize), label

    def samples(
        self, reader: int, readers: int, seed: int, shuffle: bool = True
    ) -> Iterator[tuple[int, dict[str, Any]]]:
        """Endless (index, raw sample) stream of reader ``reader`` of ``readers``.

        Pass after pass, the shards are ordered by ``seed`` and the pass number (the same
        order for every reader), dealt out to the readers (or, with fewer shards than readers,
        every reader takes every ``readers``-th sample) and, with ``shuffle``, mixed in a
        shuffle buffer seeded by ``seed``, the pass and the reader.

        Args:
            reader: this reader's index (process rank x workers + worker).
            readers: readers in all.
            seed: the epoch's seed.
            shuffle: shuffle the shard order and the samples.

        Yields:
            ``(global index, raw sample)`` pairs, without end.

        Raises:
            DataError: a pass gave this reader no sample.
        """
        n = len(self.urls)
        for cycle in itertools.count():
            order = list(range(n))
            if shuffle:
                random.Random(f"shards-{seed}-{cycle}").shuffle(order)
            mine = order[reader::readers] if n >= readers else order
            stream: Iterator[tuple[int, dict[str, Any]]] = (
                (self.offsets[shard] + position, sample)
                for shard in mine
                for position, sample in enumerate(self._read_shard(shard))
            )
            if n < readers:
                stream = (item for k, item in enumerate(stream) if k % readers == reader)
            if shuffle:
                stream = _shuffled(
                    stream, self.shuffle_buffer, random.Random(f"buffer-{seed}-{cycle}-{reader}")
                )
            produced = 0
            for item in stream:
                produced += 1
                yield item
            if produced == 0:
                raise DataError(
                    f"WebDataset reader {reader} of {readers} got no samples from "
                    f"shards {[self.urls[s] for s in mine][:3]}."
                )

    def stream(self, batch_size: int, shuffle: bool = True) -> ShardStream:
        """The training stream of this process (see :class:`ShardStream`).

        Args:
            batch_size: images per batch.
            shuffle: shuffle shards and samples each epoch.

        Returns:
            The :class:`ShardStream` for a DataLoader.
        """
        return ShardStream(self, batch_size, shuffle)


class ShardStream(IterableDataset):
    """What a DataLoader iterates for a :class:`ShardDataset`: this process's share, split
    between the loader's workers, ``len(dataset) // processes // batch_size`` batches of
    ``(index, (image, label))`` items per epoch in all.

    Worker ``w`` of ``W`` yields the samples of batches ``w, w + W, ...``: the DataLoader,
    which takes batches from its workers in turn, gets exactly the epoch's batches. The epoch's
    seed is set by :meth:`start_epoch` in shared memory, so persistent workers see it.

    Args:
        shards: the dataset to stream.
        batch_size: images per batch.
        shuffle: shuffle shards and samples each epoch.
    """

    def __init__(self, shards: ShardDataset, batch_size: int, shuffle: bool = True):
        self.shards, self.batch_size, self.shuffle = shards, batch_size, shuffle
        self.rank, self.world = rank(), world_size()
        self._seed = torch.zeros(1, dtype=torch.int64).share_memory_()

    def start_epoch(self, seed: int) -> None:
        """Set the seed of the next epoch's order, in memory shared with the workers."""
        self._seed[0] = seed

    def __len__(self) -> int:
        return len(self.shards) // self.world // self.batch_size * self.batch_size

    def __iter__(self) -> Iterator[tuple[int, tuple[Any, int]]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        batches = len(self.shards) // self.world // self.batch_size
        quota = len(range(worker, batches, workers)) * self.batch_size
        reader, readers = self.rank * workers + worker, self.world * workers
        stream = self.shards.samples(reader, readers, int(self._seed[0]), self.shuffle)
        for index, sample in itertools.islice(stream, quota):
            yield index, self.shards.decode_sample(sample)
