"""Build the SciFact test subset in tests/data/scifact_subset/ from the full BEIR SciFact folder.

Selection (deterministic):

1. the first 50 queries of ``qrels/test.tsv``, in order of first appearance, and all their judged documents;
2. for each of them, its 5 best-scoring BM25 documents that it does not judge relevant (bm25s, English
   stopwords, no stemming, over ``document_text``; ties by corpus order), so the subset is not trivially
   easy;
3. random documents (``random.Random(SEED)``) to reach 600 documents in all.

Records are copied byte for byte and keep the source's line order; the qrels keep the header and the rows of
the selected queries.

Usage, from the repository root (with the package installed, or ``PYTHONPATH=.``)::

    PYTHONPATH=. python tests/data/make_scifact_subset.py /work/shared/data/scifact tests/data/scifact_subset
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import bm25s
import numpy as np

from retrievals_rag.evaluation.beir import document_text, load_beir

SEED = 13
QUERY_COUNT = 50
HARD_NEGATIVES_PER_QUERY = 5
DOCUMENT_COUNT = 600
SPLIT = "test"


def _lines_by_id(path: Path) -> dict[str, bytes]:
    """Map each record's ``_id`` to its raw line (with its newline)."""
    lines: dict[str, bytes] = {}
    with path.open("rb") as handle:
        for raw in handle:
            if raw.strip():
                lines[json.loads(raw)["_id"]] = raw if raw.endswith(b"\n") else raw + b"\n"
    return lines


def build_subset(source: Path, destination: Path) -> None:
    """Write the subset of ``source`` (a BEIR SciFact folder) into ``destination``."""
    dataset = load_beir(source, split=SPLIT)
    selected_queries = list(dataset.qrels)[:QUERY_COUNT]
    document_ids = list(dataset.corpus)

    chosen: set[str] = set()
    for query_id in selected_queries:
        chosen.update(dataset.qrels[query_id])

    corpus_tokens = bm25s.tokenize(
        [document_text(dataset.corpus[document_id]) for document_id in document_ids],
        stopwords="en",
        show_progress=False,
    )
    retriever = bm25s.BM25()
    retriever.index(corpus_tokens, show_progress=False)
    for query_id in selected_queries:
        query_tokens = bm25s.tokenize(
            dataset.queries[query_id], stopwords="en", return_ids=False, show_progress=False
        )[0]
        scores = retriever.get_scores(query_tokens)
        order = np.lexsort((np.arange(len(document_ids)), -scores))  # score descending, then corpus order
        relevant = {doc for doc, grade in dataset.qrels[query_id].items() if grade > 0}
        negatives = [document_ids[i] for i in order if document_ids[i] not in relevant]
        chosen.update(negatives[:HARD_NEGATIVES_PER_QUERY])
    if len(chosen) > DOCUMENT_COUNT:
        raise ValueError(f"{len(chosen)} documents selected before filling, more than {DOCUMENT_COUNT}")
    remaining = [document_id for document_id in document_ids if document_id not in chosen]
    chosen.update(random.Random(SEED).sample(remaining, DOCUMENT_COUNT - len(chosen)))

    corpus_lines = _lines_by_id(source / "corpus.jsonl")
    query_lines = _lines_by_id(source / "queries.jsonl")
    query_set = set(selected_queries)
    (destination / "qrels").mkdir(parents=True, exist_ok=True)
    with (destination / "corpus.jsonl").open("wb") as handle:
        handle.writelines(line for document_id, line in corpus_lines.items() if document_id in chosen)
    with (destination / "queries.jsonl").open("wb") as handle:
        handle.writelines(line for query_id, line in query_lines.items() if query_id in query_set)
    with (source / "qrels" / f"{SPLIT}.tsv").open("rb") as source_qrels:
        rows = source_qrels.read().splitlines(keepends=True)
    with (destination / "qrels" / f"{SPLIT}.tsv").open("wb") as handle:
        for row in rows:
            first_column = row.split(b"\t")[0].decode()
            if first_column == "query-id" or first_column in query_set:  # the header, or a selected query
                handle.write(row)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="the full BEIR SciFact folder")
    parser.add_argument("destination", type=Path, help="where to write the subset")
    arguments = parser.parse_args()
    build_subset(arguments.source, arguments.destination)


if __name__ == "__main__":
    main()
