"""Evaluation: BEIR-format dataset loading and standard IR metrics (trec_eval conventions).

Importing this package loads numpy only, never torch.
"""

from __future__ import annotations

from retrievals_rag.evaluation.beir import (
    BeirDataset,
    BeirFormatError,
    Document,
    document_text,
    load_beir,
    load_corpus,
    load_qrels,
    load_queries,
)
from retrievals_rag.evaluation.metrics import (
    evaluate_run,
    evaluate_run_per_query,
    format_metrics_table,
    rank_documents,
)

__all__ = [
    "BeirDataset",
    "BeirFormatError",
    "Document",
    "document_text",
    "evaluate_run",
    "evaluate_run_per_query",
    "format_metrics_table",
    "load_beir",
    "load_corpus",
    "load_qrels",
    "load_queries",
    "rank_documents",
]
