"""Adapters that drop retrievals_rag models into RAG frameworks, each behind its own extra.

- :mod:`retrievals_rag.integrations.langchain` (``pip install 'retrievals-rag[langchain]'``):
  ``LangchainEmbedding`` (a LangChain ``Embeddings``) and ``LangchainRetriever`` (a ``BaseRetriever`` over a
  corpus, dense with optional BM25 fusion, or over any LangChain ``VectorStore``).
- :mod:`retrievals_rag.integrations.llama_index` (``pip install 'retrievals-rag[llama-index]'``):
  ``LlamaIndexEmbedding`` (a LlamaIndex ``BaseEmbedding``).
- :mod:`retrievals_rag.integrations.chroma` (``pip install 'retrievals-rag[chroma]'``):
  ``ChromaEmbeddingFunction`` (a chromadb embedding function, registered so that persistent collections
  reopen with it), ``persistent_client`` and ``get_or_create_collection``.

Every adapter applies the query instruction to queries and the document instruction to documents, uses one
normalisation setting for both, returns plain Python floats (numpy float32 rows for chromadb, as it expects),
runs its async methods in a worker thread, and never imports torch until a model is loaded. Import the
submodule you need; this package imports none of them.
"""
