"""PyTorch models for the live harness: defined in code, seeded weights, no downloads.

- ``mlp``: a small MLP on a 256-byte feature vector (cheap; per-call overhead dominates).
- ``cnn``: a small CNN on a 3x32x32 image (3072 bytes).
- ``wide_mlp``: three wide Linear layers (1024 -> 4096 -> 4096 -> 10, ~84 MB of
  weights). At batch 1 every call streams all weights from memory for one
  matrix-vector product; at batch 32 the same weight traffic serves 32 requests,
  so the time per request drops several-fold on a CPU. This is the model where
  batching clearly pays off.

Payload bytes become inputs deterministically: each byte is read as uint8 / 255,
truncated or zero-padded to the model's input size, and reshaped.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

__all__ = [
    "MODEL_NAMES",
    "build_model",
    "input_shape",
    "input_size_bytes",
    "num_classes",
    "payload_to_tensor",
    "run_batch",
    "outputs_to_records",
    "set_threads",
]

NUM_CLASSES = 10


def _mlp() -> nn.Module:
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(256, 128), nn.ReLU(),
        nn.Linear(128, 64), nn.ReLU(),
        nn.Linear(64, NUM_CLASSES),
    )


def _cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),   # 16x16x16
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 32x8x8
        nn.Flatten(),
        nn.Linear(32 * 8 * 8, 64), nn.ReLU(),
        nn.Linear(64, NUM_CLASSES),
    )


def _wide_mlp() -> nn.Module:
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(1024, 4096), nn.ReLU(),
        nn.Linear(4096, 4096), nn.ReLU(),
        nn.Linear(4096, NUM_CLASSES),
    )


_REGISTRY: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "mlp": (_mlp, (256,)),
    "cnn": (_cnn, (3, 32, 32)),
    "wide_mlp": (_wide_mlp, (1024,)),
}
MODEL_NAMES: tuple[str, ...] = tuple(sorted(_REGISTRY))


def _lookup(name: str):
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"model.name: unknown model {name!r}; allowed values: {', '.join(MODEL_NAMES)}"
        ) from None


def input_shape(name: str) -> tuple[int, ...]:
    """Shape of one input (without the batch dimension)."""
    return _lookup(name)[1]


def input_size_bytes(name: str) -> int:
    """Payload bytes that fill one input exactly (one byte per element)."""
    return math.prod(input_shape(name))


def num_classes(name: str) -> int:
    _lookup(name)
    return NUM_CLASSES


def build_model(name: str, seed: int = 0) -> nn.Module:
    """The named model with weights drawn from ``seed``, in eval mode, gradients off.

    The global torch RNG is left as it was.
    """
    factory, _ = _lookup(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = factory()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def payload_to_tensor(name: str, payloads: Sequence[bytes]) -> torch.Tensor:
    """A float32 batch ``(len(payloads), *input_shape(name))`` from raw payload bytes.

    Each payload is read as uint8 / 255 and truncated or zero-padded to the input size.
    """
    shape = input_shape(name)
    n = math.prod(shape)
    arr = np.zeros((len(payloads), n), dtype=np.uint8)
    for i, p in enumerate(payloads):
        b = np.frombuffer(memoryview(p), dtype=np.uint8, count=min(len(p), n))
        arr[i, : b.size] = b
    t = torch.from_numpy(arr).to(torch.float32).div_(255.0)
    return t.reshape(len(payloads), *shape)


def run_batch(model: nn.Module, tensor: torch.Tensor) -> torch.Tensor:
    """Forward pass on a whole batch; returns the ``(batch, classes)`` logits."""
    with torch.inference_mode():
        return model(tensor)


def outputs_to_records(out: torch.Tensor) -> tuple[list[int], list[bytes]]:
    """Per-request predicted labels and raw float32 logits (little-endian bytes)."""
    out = out.detach().to(torch.float32).contiguous()
    labels = out.argmax(dim=1).tolist() if out.numel() else [0] * out.shape[0]
    rows = out.numpy().astype("<f4", copy=False)
    return labels, [r.tobytes() for r in rows]


def set_threads(n: int) -> None:
    """Use ``n`` intra-op threads (and, if still possible, ``n`` inter-op threads)."""
    n = int(n)
    if n < 1:
        raise ValueError(f"threads must be >= 1, got {n}")
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(n)
    except RuntimeError:
        pass  # can only be set once, before any inter-op parallel work
