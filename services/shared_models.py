"""One copy of a model per machine: a model's arrays in a file that every worker maps read-only.

Under Gunicorn, MODEL_SHARE_DIR is a directory of the server's own (ml_service/gunicorn.conf.py
makes a temporary one before forking). The first worker to load a model version reads it from
the model database and writes it there, one file per version; every other worker maps that
file instead of reading the database. The pages of a mapped file are in memory once, however
many workers map it: N workers cost one model plus N processes, not N models.

A file is written under another name and renamed into place, so a worker never maps half a
file, and a lock file per version keeps two workers from building the same one at once. A
worker's model is mapped for as long as it serves from it: a reload maps the new version
first, and the old one is unmapped when its last request ends. A model the catalog sync
extended (services/catalog_sync.py) is shared the same way, under a name that digests its
arrays, so workers that found the same new media map one file. Files no worker has mapped
for STALE_SECONDS are removed.

File layout: MAGIC, the header's length (8 bytes, little-endian), the header (JSON: the
model's info, names and each array's dtype, shape and offset), then the arrays, each at an
offset that is a multiple of ALIGN.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import mmap
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from database.records import ModelData, ModelInfo

log = logging.getLogger(__name__)

MAGIC = b"MLMODEL1"
ALIGN = 64
SUFFIX = ".model"
# Seconds after which a model file that this worker does not map is removed (another worker
# still mapping it keeps its pages: an unlinked file lives on until its last mapping ends).
STALE_SECONDS = 600.0


class SharedModels:
    """Model files in `directory`, mapped read-only (see the module docstring)."""

    def __init__(self, directory: Path | str) -> None:
        self._directory = Path(directory)
        self._directory.mkdir(parents=True, exist_ok=True)

    def version(self, version: int, load: Callable[[], ModelData | None]) -> ModelData | None:
        """Model `version`, mapped from its file; when there is none yet, `load()` (from the model
        database) is written to it first. None when `load()` finds no such model."""
        name = f"v{version}"
        with self._locked(name):
            if not self._path(name).exists():
                model = load()
                if model is None:
                    return None
                if model.info.version != version:
                    raise ValueError(f"asked for model {version}, loaded {model.info.version}")
                self._write(name, model)
                del model  # the database's copy: the mapped file replaces it
            return self._map(name)

    def share(self, model: ModelData) -> ModelData:
        """`model` mapped from a file holding the same arrays (written when no worker did yet):
        for a model built in this process, such as one the catalog sync extended."""
        digest = hashlib.blake2b(digest_size=12)
        for name, array in sorted(model.arrays().items()):
            digest.update(f"{name}:{array.dtype.str}:{array.shape}".encode())
            digest.update(np.ascontiguousarray(array).data)
        digest.update(json.dumps([model.genre_names, model.media_type_names, model.appended]).encode())
        name = f"v{model.info.version}-{digest.hexdigest()}"
        with self._locked(name):
            if not self._path(name).exists():
                self._write(name, model)
            return self._map(name)

    def remove_stale(self, in_use: Iterable[ModelData]) -> None:
        """Remove the files, but those of the models `in_use` here, that no worker mapped for
        STALE_SECONDS."""
        keep = {getattr(model, "_shared_path", None) for model in in_use}
        cutoff = time.time() - STALE_SECONDS
        for path in self._directory.glob(f"*{SUFFIX}"):
            with contextlib.suppress(FileNotFoundError):
                if path not in keep and path.stat().st_mtime < cutoff:
                    path.unlink()
                    log.debug("removed the model file %s", path.name)

    def _path(self, name: str) -> Path:
        return self._directory / f"{name}{SUFFIX}"

    @contextlib.contextmanager
    def _locked(self, name: str) -> Iterator[None]:
        """Hold the lock of model file `name` (other workers building it wait; released by the
        kernel if this process dies)."""
        with open(self._directory / f"{name}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _write(self, name: str, model: ModelData) -> None:
        arrays = {key: np.ascontiguousarray(value) for key, value in model.arrays().items()}
        header = {
            "info": _info_json(model.info),
            "genre_names": list(model.genre_names),
            "media_type_names": list(model.media_type_names),
            "appended": model.appended,
            "arrays": {},
        }
        offset = 0
        for key, array in arrays.items():
            header["arrays"][key] = {"dtype": array.dtype.str, "shape": list(array.shape), "offset": offset}
            offset += _aligned(array.nbytes)
        encoded = json.dumps(header).encode()
        start = _aligned(len(MAGIC) + 8 + len(encoded))
        temporary = self._directory / f".{name}.{os.getpid()}.tmp"
        with open(temporary, "wb") as out:
            out.write(MAGIC + len(encoded).to_bytes(8, "little") + encoded)
            for key, array in arrays.items():
                out.seek(start + header["arrays"][key]["offset"])
                out.write(array.data)
            out.truncate(start + offset)
        os.replace(temporary, self._path(name))
        log.info("model file %s written for the other workers to map (%.1f MB)", self._path(name).name,
                 (start + offset) / 1e6, extra={"model_version": model.info.version})

    def _map(self, name: str) -> ModelData:
        path = self._path(name)
        os.utime(path)  # mapped now: not stale
        with open(path, "rb") as file:
            # Plain arrays over a read-only mapping (np.memmap's subclass would cost a Python call
            # per slice); the mapping ends when the last array of it is freed.
            data = np.frombuffer(mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ), dtype=np.uint8)
        if bytes(data[:len(MAGIC)]) != MAGIC:
            raise ValueError(f"{path} is not a model file")
        length = int.from_bytes(bytes(data[len(MAGIC):len(MAGIC) + 8]), "little")
        header = json.loads(bytes(data[len(MAGIC) + 8:len(MAGIC) + 8 + length]))
        start = _aligned(len(MAGIC) + 8 + length)
        arrays = {}
        for key, spec in header["arrays"].items():
            dtype, shape = np.dtype(spec["dtype"]), tuple(spec["shape"])
            begin = start + spec["offset"]
            size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            arrays[key] = data[begin:begin + size].view(dtype).reshape(shape)
        model = ModelData.from_arrays(
            _info_from_json(header["info"]),
            tuple(header["genre_names"]),
            tuple(header["media_type_names"]),
            header["appended"],
            arrays,
        )
        object.__setattr__(model, "_shared_path", path)
        return model


def _aligned(size: int) -> int:
    return -(-size // ALIGN) * ALIGN


def _info_json(info: ModelInfo) -> dict:
    values = dataclasses.asdict(info)
    for key in ("built_at", "newest_interaction"):
        if values[key] is not None:
            values[key] = values[key].isoformat()
    return values


def _info_from_json(values: dict) -> ModelInfo:
    for key in ("built_at", "newest_interaction"):
        if values[key] is not None:
            values[key] = datetime.fromisoformat(values[key])
    return ModelInfo(**values)
