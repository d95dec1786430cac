"""Encoding beyond one process: sharded, resumable corpus encoding (``torchrun`` or any scheduler), Ray Data,
and the merge of the shards into an index or Chroma.

Names are resolved lazily: ``import retrievals_rag.distributed`` loads no torch, numpy-only modules load on use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from retrievals_rag._lazy import lazy_names

_LAZY_NAMES: dict[str, str] = {
    "EncodedCorpus": "retrievals_rag.distributed.merge",
    "ShardSpec": "retrievals_rag.distributed.shards",
    "add_to_chroma": "retrievals_rag.distributed.merge",
    "build_index": "retrievals_rag.distributed.merge",
    "encode_shards": "retrievals_rag.distributed.encode",
    "encode_with_ray": "retrievals_rag.distributed.ray",
    "load_encoded_corpus": "retrievals_rag.distributed.merge",
    "shards_for_process": "retrievals_rag.distributed.encode",
    "write_index": "retrievals_rag.distributed.merge",
}

__all__ = [
    "EncodedCorpus",
    "ShardSpec",
    "add_to_chroma",
    "build_index",
    "encode_shards",
    "encode_with_ray",
    "load_encoded_corpus",
    "shards_for_process",
    "write_index",
]

if TYPE_CHECKING:
    from retrievals_rag.distributed.encode import encode_shards, shards_for_process
    from retrievals_rag.distributed.merge import (
        EncodedCorpus,
        add_to_chroma,
        build_index,
        load_encoded_corpus,
        write_index,
    )
    from retrievals_rag.distributed.ray import encode_with_ray
    from retrievals_rag.distributed.shards import ShardSpec

__getattr__, __dir__ = lazy_names(__name__, _LAZY_NAMES, globals(), __all__)
