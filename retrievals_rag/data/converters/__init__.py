"""Converters from public retrieval training sets to our training records (JSON Lines).

- **T2Ranking** (Xie et al., SIGIR 2023; https://github.com/THUIR/T2Ranking): ``collection.tsv``
  (``pid <TAB> passage``), ``queries.train.tsv`` (``qid <TAB> query``), ``qrels.retrieval.train.tsv``
  (``qid <TAB> pid``, the relevant passages) and optionally a ranked negatives file, ``train.mined.tsv``
  (``qid pid index score``) or ``train.bm25.tsv`` (``qid pid index``), to pair records, or to triplet
  records when a negatives file is given (:func:`convert_t2ranking`).
- **DPR** (Karpukhin et al., EMNLP 2020; https://github.com/facebookresearch/DPR): ``biencoder-nq-train.json``,
  a JSON list of ``{"question", "answers", "positive_ctxs", "negative_ctxs", "hard_negative_ctxs"}`` whose
  contexts are ``{"title", "text", "score", "title_score", "passage_id"}``, to triplet records with
  ``{"title", "text"}`` passages (:func:`convert_dpr`).

Inputs may be gzip-compressed (a ``.gz`` name). They are streamed: the T2Ranking negatives file (200 million
rows) is read once, keeping per query only its rank band, and the collection is read once, keeping only the
passages that the output uses. A malformed input raises :class:`~retrievals_rag.data.records.DataFormatError`
naming the file, the line and the field (for a DPR JSON list, the field starts with the item's list index,
e.g. ``[12].positive_ctxs[0].text``). Output is written atomically by
:func:`~retrievals_rag.retrieval.mining.write_jsonl`.

Example::

    from retrievals_rag.data.converters import convert_t2ranking

    stats = convert_t2ranking(
        "T2Ranking/data/collection.tsv",
        "T2Ranking/data/queries.train.tsv",
        "T2Ranking/data/qrels.retrieval.train.tsv",
        "t2ranking-triplets.jsonl",
        negatives="T2Ranking/data/train.mined.tsv",
    )
    print(stats.summary())
"""

from __future__ import annotations

from retrievals_rag.data.converters._files import ConversionStats
from retrievals_rag.data.converters.dpr import convert_dpr
from retrievals_rag.data.converters.t2ranking import convert_t2ranking

__all__ = ["ConversionStats", "convert_dpr", "convert_t2ranking"]
