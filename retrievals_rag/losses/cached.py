"""GradCache: a contrastive loss over a large batch with the memory of a small one.

Gao, Zhang, Han & Callan (2021), "Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup"
(RepL4NLP, arXiv:2101.06983). In-batch negatives make the loss of every query depend on every document, so
the batch cannot simply be split into accumulation steps. GradCache splits only the *model*:

1. every chunk of rows is encoded without a graph, and the embeddings of the whole batch are joined;
2. the loss is computed on those embeddings (leaves of a small graph) and its gradient with respect to
   each embedding is taken: this is the cache;
3. each chunk is encoded again, with a graph, and back-propagated with its slice of the cached gradient;
   by the chain rule the parameters' gradients are those of the full batch.

The random state of each chunk's first pass is recorded and replayed in step 3, so dropout draws the same
masks and the gradients are those of the embeddings the loss saw. Step 3 runs inside the backward of the
returned loss (a hook on it), so the HF Trainer's ``backward`` call, its scaling for gradient accumulation
and its mixed-precision context all apply unchanged; under DDP every chunk but the last skips the
gradient all-reduce (``no_sync``). Peak activation memory is that of one chunk plus the batch's embeddings.

Any loss over embeddings can be cached: :class:`InfoNCELoss` with in-batch and hard negatives,
:class:`MatryoshkaLoss` around it, cross-process gathering (the gather is part of step 2), and ColBERT's
MaxSim losses over token embeddings.

Example:
    >>> import torch
    >>> from retrievals_rag.losses.infonce import InfoNCELoss
    >>> encoder = torch.nn.Linear(4, 3)
    >>> queries = {"x": torch.randn(6, 4), "attention_mask": torch.ones(6, 1)}
    >>> documents = {"x": torch.randn(12, 4), "attention_mask": torch.ones(12, 1)}
    >>> loss = grad_cache_loss(
    ...     lambda role, part: encoder(part["x"]), [queries, documents],
    ...     lambda outputs: InfoNCELoss()(*outputs), chunk_size=4,
    ... )
    >>> loss.backward()  # the chunks run again here, with the cached gradients
    >>> encoder.weight.grad.shape
    torch.Size([3, 4])
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import get_device_states, set_device_states

from retrievals_rag.losses.protocol import chance_loss, extra_inputs

__all__ = ["GradCacheLoss", "grad_cache_loss"]

# An encoder's output for a chunk: pooled embeddings (rows, dim), or a NamedTuple with ``embeddings``
# (rows, seq_len, dim) and ``mask`` (rows, seq_len) such as ColBERT's TokenEmbeddings.
Output = Any


class _RandomState:
    """The CPU and accelerator random states before a chunk's first pass, replayed for its second."""

    def __init__(self, tensors: Sequence[torch.Tensor]) -> None:
        self.cpu_state = torch.get_rng_state()
        self.devices, self.device_states = get_device_states(*tensors)

    @contextlib.contextmanager
    def replay(self) -> Iterator[None]:
        with torch.random.fork_rng(devices=self.devices):
            torch.set_rng_state(self.cpu_state)
            set_device_states(self.devices, self.device_states)
            yield


@dataclass
class _Chunk:
    role: int
    rows: torch.Tensor  # (n,) rows of the batch
    columns: torch.Tensor  # (w,) the padding columns kept for these rows
    inputs: dict[str, Any]
    random_state: _RandomState | None = None  # recorded just before the chunk's first pass


def _chunks(role: int, inputs: Mapping[str, Any], chunk_size: int) -> list[_Chunk]:
    """Chunks of at most ``chunk_size`` rows of similar length, each trimmed of its all-padding columns."""
    mask = inputs["attention_mask"]
    rows, width = mask.shape
    order = torch.argsort(mask.sum(dim=1), stable=True)  # similar lengths together: less padding
    chunks = []
    for start in range(0, rows, chunk_size):
        index = order[start : start + chunk_size]
        columns = mask.index_select(0, index).bool().any(dim=0).nonzero().squeeze(1)  # (w,)
        part: dict[str, Any] = {}
        for name, value in inputs.items():
            if isinstance(value, torch.Tensor) and value.dim() >= 1 and value.shape[0] == rows:
                value = value.index_select(0, index)
                if value.dim() == 2 and value.shape[1] == width:
                    value = value.index_select(1, columns)
            part[name] = value
        chunks.append(_Chunk(role, index, columns, part))
    return chunks


def _split_output(output: Output) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(embeddings, mask or None)`` of an encoder's output."""
    if isinstance(output, torch.Tensor):
        return output, None
    return output.embeddings, output.mask


def _place(chunk: _Chunk, value: torch.Tensor, full: torch.Tensor, per_token: bool) -> None:
    """Write a chunk's rows (and its kept columns, for per-token tensors) into the batch tensor ``full``."""
    if per_token:
        full[chunk.rows[:, None], chunk.columns[None, :]] = value
    else:
        full[chunk.rows] = value


def _take(chunk: _Chunk, full: torch.Tensor) -> torch.Tensor:
    """The chunk's slice of a batch of embeddings or their gradients (the inverse of :func:`_place`)."""
    if full.dim() == 2:  # pooled (rows, dim)
        return full[chunk.rows]
    return full[chunk.rows[:, None], chunk.columns[None, :]]  # per token (rows, width, dim)


def _join(chunks: Sequence[_Chunk], outputs: Sequence[Output], rows: int, width: int) -> Output:
    """One batch output from the chunks' outputs, rows in batch order (token outputs padded back to ``width``)."""
    embeddings, mask = _split_output(outputs[0])
    if embeddings.dim() == 2:
        shape: tuple[int, ...] = (rows, embeddings.shape[1])
    else:
        shape = (rows, width, *embeddings.shape[2:])
    full = embeddings.new_zeros(shape)  # (rows, dim) or (rows, width, dim)
    full_mask = None if mask is None else mask.new_zeros((rows, width))  # (rows, width)
    for chunk, output in zip(chunks, outputs, strict=True):
        chunk_embeddings, chunk_mask = _split_output(output)
        _place(chunk, chunk_embeddings, full, per_token=full.dim() == 3)
        if full_mask is not None:
            _place(chunk, chunk_mask, full_mask, per_token=True)
    if mask is None:
        return full
    return outputs[0]._replace(embeddings=full, mask=full_mask)


def _autocast_state(device_type: str) -> tuple[bool, torch.dtype]:
    return torch.is_autocast_enabled(device_type), torch.get_autocast_dtype(device_type)


def grad_cache_loss(
    encode: Callable[[int, dict[str, Any]], Output],
    role_inputs: Sequence[Mapping[str, Any]],
    loss_function: Callable[[list[Output]], torch.Tensor],
    chunk_size: int,
    model: nn.Module | None = None,
) -> torch.Tensor:
    """The loss of a batch encoded chunk by chunk; its ``backward`` re-encodes each chunk with its cached gradient.

    Args:
        encode: ``encode(role, inputs)`` runs the model on the tokenized rows of one role (0: queries,
            1: documents, in the order of ``role_inputs``), returning ``(rows, dim)`` embeddings or a
            NamedTuple with ``embeddings (rows, seq_len, dim)`` and ``mask (rows, seq_len)``.
        role_inputs: One tokenized batch per role, each a dict of ``(rows, ...)`` tensors with an
            ``attention_mask``; other values are passed to every chunk unchanged.
        loss_function: Maps the list of whole-batch outputs (one per role, rows in batch order) to a scalar.
        chunk_size: Most rows per forward pass.
        model: The model as the trainer holds it; when it is DDP-wrapped, every chunk but the last back-
            propagates under its ``no_sync``.

    Returns:
        A scalar with the batch's loss. Its ``backward`` (with any scaling the caller applies, e.g. for
        gradient accumulation) accumulates into the parameters' ``.grad`` exactly the gradients of the
        un-chunked loss.

    Raises:
        ValueError: On ``chunk_size < 1``.
    """
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an int >= 1, got {chunk_size!r}")
    device_type = role_inputs[0]["attention_mask"].device.type
    autocast = _autocast_state(device_type)
    chunks_by_role = [_chunks(role, inputs, chunk_size) for role, inputs in enumerate(role_inputs)]
    # 1. every chunk without a graph
    outputs = []
    with torch.no_grad():
        for chunks, inputs in zip(chunks_by_role, role_inputs, strict=True):
            rows, width = inputs["attention_mask"].shape
            chunk_outputs = []
            for chunk in chunks:
                tensors = [value for value in chunk.inputs.values() if isinstance(value, torch.Tensor)]
                chunk.random_state = _RandomState(tensors)
                chunk_outputs.append(encode(chunk.role, chunk.inputs))
            outputs.append(_join(chunks, chunk_outputs, rows, width))
    # 2. the loss on the embeddings as leaves, and its gradient with respect to them
    leaves = [_split_output(output)[0].detach().requires_grad_() for output in outputs]
    with torch.enable_grad():
        rebuilt = [
            leaf if isinstance(output, torch.Tensor) else output._replace(embeddings=leaf)
            for leaf, output in zip(leaves, outputs, strict=True)
        ]
        loss = loss_function(rebuilt)
        gradients = torch.autograd.grad(loss, leaves)
    # 3. in the backward of the returned loss: every chunk again, with its slice of the cached gradient
    all_chunks = [chunk for chunks in chunks_by_role for chunk in chunks]
    no_sync = getattr(model, "no_sync", None)

    def backward_through_chunks(grad_output: torch.Tensor) -> None:
        for position, chunk in enumerate(all_chunks):
            is_last = position == len(all_chunks) - 1
            sync = contextlib.nullcontext() if no_sync is None or is_last else no_sync()
            with (
                sync,
                chunk.random_state.replay(),  # type: ignore[union-attr]
                torch.enable_grad(),
                torch.autocast(device_type, dtype=autocast[1], enabled=autocast[0]),
            ):
                embeddings, _ = _split_output(encode(chunk.role, chunk.inputs))
                cached = _take(chunk, gradients[chunk.role])
                torch.autograd.backward(embeddings, cached.to(embeddings.dtype) * grad_output)

    result = loss.detach().requires_grad_()
    result.register_hook(backward_through_chunks)
    return result


class GradCacheLoss(nn.Module):
    """Wrap a loss over embeddings so that the trainer computes it with GradCache, ``chunk_size`` rows at a time.

    The wrapped loss is unchanged: ``forward(query_embeddings, document_embeddings, *extra)`` calls it on
    embeddings as any loss. :class:`~retrievals_rag.training.trainer.RetrievalTrainer` sees ``runs_model``
    and calls :meth:`model_loss` instead, which encodes the batch chunk by chunk (:func:`grad_cache_loss`).

    Inputs of :meth:`model_loss` (the embedding collator's batch):
        ==========================  ====================================  ========================================
        key                         shape                                 meaning
        ==========================  ====================================  ========================================
        ``query``                   ``(batch, q_len)`` tensors            tokenized queries
        ``documents``               ``(batch * group_size, d_len)``       tokenized groups, positive first
        ``labels`` / ``teacher_…``  as the wrapped loss wants             passed after the embeddings
        ==========================  ====================================  ========================================

    Args:
        loss: Any loss over ``(query_embeddings, document_embeddings, *extra)``: InfoNCE (in-batch and hard
            negatives, gathered across processes or not), Matryoshka around it, triplet, CoSENT, distillation.
        chunk_size: Most rows per forward pass (queries and documents are chunked separately).

    Raises:
        ValueError: On ``chunk_size < 1`` or a loss that is not an ``nn.Module``.
    """

    runs_model = True
    wraps_loss = True  # retrievals_rag.losses.protocol: the data it needs are its loss's
    loss_inputs = (
        "model",
        "embeddings",
    )  # retrievals_rag.losses.protocol: model_loss first, forward on embeddings

    def __init__(self, loss: nn.Module, chunk_size: int = 32) -> None:
        super().__init__()
        if not isinstance(loss, nn.Module):
            raise ValueError(f"loss must be an nn.Module taking embeddings, got {type(loss).__name__}")
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"chunk_size must be an int >= 1, got {chunk_size!r}")
        self.loss = loss
        self.chunk_size = chunk_size

    def forward(
        self, query_embeddings: torch.Tensor, document_embeddings: torch.Tensor, *extra: torch.Tensor
    ) -> torch.Tensor:
        return self.loss(query_embeddings, document_embeddings, *extra)

    def model_loss(self, model: nn.Module, inputs: Mapping[str, Any]) -> torch.Tensor:
        """The loss of a collated batch, computed with GradCache through ``model`` (possibly DDP-wrapped)."""
        extra = extra_inputs(self.loss, inputs)
        return grad_cache_loss(
            lambda role, part: model(**part),
            [inputs["query"], inputs["documents"]],
            lambda outputs: self.loss(*outputs, *extra),
            self.chunk_size,
            model,
        )

    def chance_loss(self, *, batch_size: int, group_size: int, world_size: int) -> float | None:
        """The wrapped loss's chance level: chunking does not change the candidates."""
        return chance_loss(self.loss, batch_size=batch_size, group_size=group_size, world_size=world_size)

    def extra_repr(self) -> str:
        return f"chunk_size={self.chunk_size}"
