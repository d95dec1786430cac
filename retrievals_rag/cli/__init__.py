"""The ``retrievals-rag`` command line."""
