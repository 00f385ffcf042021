"""Embedders: the local MiniLM (offline, numpy) and the OpenAI-compatible HTTP client."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest

from huddle.search.embeddings import (
    DIMENSIONS,
    LOCAL_MODEL,
    EmbeddingError,
    LocalEmbedder,
    MiniLM,
    OpenAIEmbedder,
    build_embedder,
    load_minilm,
    packaged_model_dir,
)

LONG_TEXT = " ".join(
    f"Paragraph {i}: the on-call engineer restarts the PgBouncer pods after a failover."
    for i in range(120)
)
SAMPLES = [
    "How do I reset my password?",
    "The quarterly planning meeting moved to Thursday afternoon.",
    "",
    "Ünïcödé café — naïve résumé, Straße, 東京は日本の首都です。 🎉",
    LONG_TEXT,
]


@pytest.fixture(scope="module")
def local() -> LocalEmbedder:
    load_minilm()  # once per process (cached); fails loudly when the model is not installed
    return LocalEmbedder()


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


# --- the local model ---------------------------------------------------------------------


async def test_vectors_have_the_model_shape_and_unit_length(local: LocalEmbedder) -> None:
    vectors = await local.embed(SAMPLES)

    assert local.name == LOCAL_MODEL == "all-MiniLM-L6-v2"
    assert local.dimensions == DIMENSIONS == 384
    assert vectors.shape == (len(SAMPLES), 384)
    assert vectors.dtype == np.float32
    assert np.all(np.isfinite(vectors))
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


async def test_a_paraphrase_ranks_above_an_unrelated_sentence(local: LocalEmbedder) -> None:
    query, paraphrase, unrelated = await local.embed(
        [
            "How many days of paid holiday do employees get?",
            "Every full-time colleague is entitled to 28 days of vacation a year.",
            "Restart the PgBouncer pods so they resolve the new database leader.",
        ]
    )

    assert cosine(query, paraphrase) > cosine(query, unrelated) + 0.2


async def test_batches_of_32_keep_the_input_order(
    local: LocalEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = [f"Ticket {i}: {'the release train leaves on Thursday ' * (i % 7)}" for i in range(70)]
    model = load_minilm()
    batch_sizes: list[int] = []
    forward = model._forward

    def spy(batch: list[list[int]]) -> np.ndarray:
        batch_sizes.append(len(batch))
        return forward(batch)

    monkeypatch.setattr(model, "_forward", spy)
    together = await local.embed(texts)
    monkeypatch.undo()

    assert sorted(batch_sizes) == [6, 32, 32]
    for i in (0, 1, 33, 69):
        alone = await local.embed([texts[i]])
        assert cosine(together[i], alone[0]) > 0.9999  # same text, same vector, same row


async def test_empty_inputs(local: LocalEmbedder) -> None:
    none = await local.embed([])
    empty_string, again = await local.embed(["", ""])

    assert none.shape == (0, 384)
    assert none.dtype == np.float32
    assert np.isclose(np.linalg.norm(empty_string), 1.0, atol=1e-5)
    np.testing.assert_array_equal(empty_string, again)


async def test_text_past_256_word_pieces_is_truncated_not_rejected(
    local: LocalEmbedder,
) -> None:
    model = load_minilm()
    assert model.count_tokens(LONG_TEXT) > 1000

    long, longer = await local.embed([LONG_TEXT, LONG_TEXT + " A completely different ending."])

    assert cosine(long, longer) > 0.99999  # only the first 256 pieces are read


async def test_embedding_does_not_block_the_event_loop(local: LocalEmbedder) -> None:
    texts = [f"{i} " + " ".join(["incident commander timeline postmortem"] * 25) for i in range(12)]
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0.005)

    ticking = asyncio.create_task(ticker())
    started = time.perf_counter()
    await local.embed(texts)
    elapsed = time.perf_counter() - started
    done.set()
    await ticking

    # Run on the loop, the embedding would let the ticker run once at most.
    assert elapsed > 0.05, "too quick to tell; make the input longer"
    assert ticks >= 5, f"the loop ran {ticks} times in {elapsed:.2f}s of embedding"


def test_a_missing_model_directory_is_a_clear_error(tmp_path: Any) -> None:
    with pytest.raises(EmbeddingError, match="Cannot load all-MiniLM-L6-v2"):
        MiniLM(tmp_path)


def test_the_model_ships_inside_an_installed_package() -> None:
    model_dir = packaged_model_dir()

    assert (model_dir / "model.safetensors").is_file()
    assert (model_dir / "tokenizer.json").is_file()
    assert "site-packages" in str(model_dir) or "dist-packages" in str(model_dir)


async def test_vectors_match_sentence_transformers(local: LocalEmbedder) -> None:
    """The numpy forward pass against the reference implementation (needs the
    ``reference`` extra: torch and sentence-transformers)."""
    pytest.importorskip("torch", reason="torch is not installed: pip install -e '.[reference]'")
    with warnings.catch_warnings():
        # Their own deprecation notices are not ours to fix.
        warnings.simplefilter("ignore")
        sentence_transformers = pytest.importorskip("sentence_transformers")
        reference = sentence_transformers.SentenceTransformer(
            str(packaged_model_dir()), device="cpu"
        )
        expected = reference.encode(SAMPLES, batch_size=32, normalize_embeddings=True)

    vectors = await local.embed(SAMPLES)

    similarities = [cosine(a, b) for a, b in zip(vectors, expected, strict=True)]
    print(f"min cosine vs sentence-transformers: {min(similarities):.8f}")
    assert reference.max_seq_length == 256
    assert min(similarities) >= 0.999


# --- an OpenAI-compatible endpoint -------------------------------------------------------


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # None: a correct answer; bytes: sent as is; else JSON-encoded
    delay: float = 0.0
    dimensions: int = DIMENSIONS
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


class EmbeddingsServer:
    """A local HTTP server speaking OpenAI's embeddings protocol, recording requests.

    A correct answer encodes input ``i`` as the unit vector along axis ``i`` scaled by 3,
    and lists the items in reverse order, so tests can check ordering and normalising."""

    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.received: list[Received] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                body = json.loads(raw)
                server.received.append(
                    Received(
                        "POST",
                        self.path,
                        {k.lower(): v for k, v in self.headers.items()},
                        body,
                    )
                )
                reply = server.replies.pop(0) if server.replies else Reply()
                time.sleep(reply.delay)
                payload = reply.body if reply.body is not None else server.answer(body, reply)
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout tests)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @staticmethod
    def answer(body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        items = []
        for index, _ in enumerate(body["input"]):
            vector = [0.0] * reply.dimensions
            vector[index % reply.dimensions] = 3.0
            items.append({"object": "embedding", "index": index, "embedding": vector})
        return {"object": "list", "data": items[::-1], "model": body["model"]}

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"


@pytest.fixture
def server() -> Iterator[EmbeddingsServer]:
    running = EmbeddingsServer()
    running.thread.start()
    yield running
    running.httpd.shutdown()
    running.httpd.server_close()


def remote(server: EmbeddingsServer, **options: Any) -> OpenAIEmbedder:
    options.setdefault("backoff", 0.01)
    return OpenAIEmbedder(server.base_url, "sk-test", "text-embedding-3-small", 5.0, **options)


async def test_remote_request_and_response(server: EmbeddingsServer) -> None:
    embedder = remote(server)
    try:
        vectors = await embedder.embed(["first", "second", "third"])
    finally:
        await embedder.aclose()

    [request] = server.received
    assert request.path == "/v1/embeddings"
    assert request.headers["authorization"] == "Bearer sk-test"
    assert request.headers["content-type"] == "application/json"
    assert request.body == {
        "model": "text-embedding-3-small",
        "input": ["first", "second", "third"],
        "dimensions": 384,
    }
    assert embedder.name == "text-embedding-3-small"
    assert vectors.shape == (3, 384)
    assert vectors.dtype == np.float32
    # Ordered by "index" although the server listed them backwards; scaled to length 1.
    np.testing.assert_array_equal(vectors[:, :3], np.eye(3, dtype=np.float32))


async def test_remote_without_key_sends_no_authorization(server: EmbeddingsServer) -> None:
    embedder = OpenAIEmbedder(server.base_url + "/", None, "nomic-embed-text", 5.0)
    try:
        await embedder.embed(["hello"])
    finally:
        await embedder.aclose()

    [request] = server.received
    assert request.path == "/v1/embeddings"
    assert "authorization" not in request.headers


async def test_remote_batches_keep_the_order(server: EmbeddingsServer) -> None:
    embedder = remote(server, batch_size=2)
    try:
        vectors = await embedder.embed(["a", "b", "c", "d", "e"])
        nothing = await embedder.embed([])
    finally:
        await embedder.aclose()

    assert [r.body["input"] for r in server.received] == [["a", "b"], ["c", "d"], ["e"]]
    assert [int(np.argmax(v)) for v in vectors] == [0, 1, 0, 1, 0]
    assert nothing.shape == (0, 384)


async def test_remote_retries_rate_limits_and_server_errors(server: EmbeddingsServer) -> None:
    server.replies = [
        Reply(429, {"error": {"message": "slow down"}}, headers={"Retry-After": "0"}),
        Reply(503, b"upstream unavailable"),
    ]
    embedder = remote(server)
    try:
        vectors = await embedder.embed(["x"])
    finally:
        await embedder.aclose()

    assert len(server.received) == 3
    assert vectors.shape == (1, 384)


async def test_remote_gives_up_after_three_attempts(server: EmbeddingsServer) -> None:
    server.replies = [Reply(502, b"bad gateway") for _ in range(5)]
    embedder = remote(server)
    try:
        with pytest.raises(EmbeddingError, match=r"HTTP 502: bad gateway"):
            await embedder.embed(["x"])
    finally:
        await embedder.aclose()

    assert len(server.received) == 3


async def test_remote_client_errors_are_not_retried(server: EmbeddingsServer) -> None:
    server.replies = [Reply(401, {"error": {"message": "Incorrect API key provided"}})]
    embedder = remote(server)
    try:
        with pytest.raises(EmbeddingError, match=r"HTTP 401: .*Incorrect API key"):
            await embedder.embed(["x"])
    finally:
        await embedder.aclose()

    assert len(server.received) == 1


async def test_remote_wrong_dimensions(server: EmbeddingsServer) -> None:
    server.replies = [Reply(dimensions=1536)]
    embedder = remote(server)
    try:
        with pytest.raises(EmbeddingError, match=r"1536-dimensional vectors .* 384 are needed"):
            await embedder.embed(["x", "y"])
    finally:
        await embedder.aclose()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html>proxy error</html>", "not JSON"),
        ({"object": "list"}, "malformed embeddings JSON"),
        ({"data": [{"index": 0, "embedding": "abc"}]}, "malformed embeddings JSON"),
        ({"data": [{"index": 5, "embedding": [1.0] * 384}]}, r"indexes \[5\]"),
    ],
)
async def test_remote_malformed_answers(server: EmbeddingsServer, body: Any, message: str) -> None:
    server.replies = [Reply(body=body)]
    embedder = remote(server)
    try:
        with pytest.raises(EmbeddingError, match=message):
            await embedder.embed(["x"])
    finally:
        await embedder.aclose()


async def test_remote_timeout(server: EmbeddingsServer) -> None:
    server.replies = [Reply(delay=0.5), Reply(delay=0.5)]
    embedder = OpenAIEmbedder(server.base_url, None, "m", 0.1, attempts=2, backoff=0.01)
    try:
        with pytest.raises(EmbeddingError, match=r"timed out \(2 attempts\)"):
            await embedder.embed(["x"])
    finally:
        await embedder.aclose()

    assert len(server.received) == 2


async def test_remote_unreachable() -> None:
    embedder = OpenAIEmbedder("http://127.0.0.1:9/v1", None, "m", 1.0, backoff=0.01)
    try:
        with pytest.raises(EmbeddingError, match=r"cannot reach http://127.0.0.1:9/v1/embeddings"):
            await embedder.embed(["x"])
    finally:
        await embedder.aclose()


# --- choosing one ------------------------------------------------------------------------


async def test_build_embedder() -> None:
    for name in ("all-MiniLM-L6-v2", "local"):
        assert isinstance(build_embedder(name, None, None, 30.0), LocalEmbedder)

    remote_one = build_embedder("text-embedding-3-small", "http://127.0.0.1:1/v1", "k", 30.0)
    assert isinstance(remote_one, OpenAIEmbedder)
    assert (remote_one.name, remote_one.dimensions) == ("text-embedding-3-small", 384)
    await remote_one.aclose()

    with pytest.raises(ValueError, match="set HUDDLE_LLM_BASE_URL"):
        build_embedder("text-embedding-3-small", None, None, 30.0)
