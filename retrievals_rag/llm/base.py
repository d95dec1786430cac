"""What every chat backend shares: the message type, the errors, and the :class:`ChatBackend` interface."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol, runtime_checkable

__all__ = ["BackendUnavailableError", "ChatBackend", "ChatMessage", "GenerationError", "complete"]

ChatMessage = dict[str, str]
"""One chat message: ``{"role": "system" | "user" | "assistant", "content": text}``."""


class GenerationError(RuntimeError):
    """A chat backend that could not produce an answer; the message says why and what to do."""


class BackendUnavailableError(GenerationError):
    """A backend whose model or package is missing (the message says how to install it)."""


@runtime_checkable
class ChatBackend(Protocol):
    """A chat model that streams its reply: ``TransformersChat``, ``OpenAICompatibleChat``, or yours."""

    def stream(self, messages: Sequence[ChatMessage]) -> Iterator[str]:
        """Yield the reply to ``messages`` piece by piece; raise :class:`GenerationError` on failure."""
        ...


def complete(backend: ChatBackend, messages: Sequence[ChatMessage]) -> str:
    """The whole reply of ``backend`` to ``messages`` (its stream joined).

    Raises:
        GenerationError: whatever the backend raises.
    """
    return "".join(backend.stream(messages))
