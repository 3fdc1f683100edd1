"""PyTorch models for the live harness: defined in code, seeded weights, no downloads.

- ``mlp``: a small MLP on a 256-byte feature vector (cheap; per-call overhead dominates).
- ``cnn``: a small CNN on a 3x32x32 image (3072 bytes).
- ``wide_mlp``: three wide Linear layers (1024 -> 4096 -> 4096 -> 10, ~84 MB of
  weights). At batch 1 every call streams all weights from memory for one
  matrix-vector product; at batch 32 the same weight traffic serves 32 requests,
  so the time per request drops several-fold on a CPU. This is the model where
  batching clearly pays off.

Your own model, by a key (``live.config`` turns the config's mapping into it):

- ``target:<module>.<function>;shape=<d1>,<d2>,...``: ``function()`` returns an
  ``nn.Module`` taking inputs of that shape (seeded from the run's seed);
- ``file:<path>;shape=...``: a TorchScript file (``torch.jit.save``) or a
  ``torch.export`` program (``torch.export.save``, a ``.pt2`` file), loaded
  with its own weights.

Payload bytes become inputs deterministically: each byte is read as uint8 / 255,
truncated or zero-padded to the model's input size, and reshaped. ``device``
(``cpu`` or ``cuda``) holds the model, and each whole batch goes there.
"""

from __future__ import annotations

import math
import warnings
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

__all__ = [
    "MODEL_NAMES",
    "build_model",
    "check_model",
    "model_key",
    "resolve_device",
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
    if isinstance(name, str) and name.startswith(("target:", "file:")):
        return _own_model(name)
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"model.name: unknown model {name!r}; allowed values: {', '.join(MODEL_NAMES)}, or a _target_ or a file"
        ) from None


def model_key(kind: str, where: str, shape: Sequence[int]) -> str:
    """The key of your own model: ``kind`` ``target`` (a dotted function) or ``file`` (a path)."""
    return f"{kind}:{where};shape={','.join(str(int(d)) for d in shape)}"


def _own_model(key: str):
    kind, _, rest = key.partition(":")
    where, _, shape_text = rest.partition(";shape=")
    try:
        shape = tuple(int(d) for d in shape_text.split(","))
    except ValueError:
        raise ValueError(f"model {key!r}: its shape is not a list of integers") from None
    if not where or not shape or min(shape) < 1:
        raise ValueError(f"model {key!r}: give a {'function' if kind == 'target' else 'path'} and a shape of positive sizes")
    return (_target_factory(where) if kind == "target" else _file_factory(where)), shape


def _target_factory(dotted: str) -> Callable[[], nn.Module]:
    import importlib

    module_name, _, function_name = dotted.rpartition(".")
    try:
        function = getattr(importlib.import_module(module_name), function_name)
    except (ImportError, AttributeError, ValueError) as error:
        raise ValueError(f"model _target_ {dotted!r} does not import: {error}") from None
    return function


def _file_factory(path: str) -> Callable[[], nn.Module]:
    def load() -> nn.Module:
        try:
            if path.endswith(".pt2"):
                return torch.export.load(path).module()
            with warnings.catch_warnings():  # TorchScript still loads; torch says to move to torch.export
                warnings.simplefilter("ignore", DeprecationWarning)
                return torch.jit.load(path, map_location="cpu")
        except Exception as error:  # a missing, cut or foreign file: say which
            raise ValueError(f"model file {path!r} does not load ({type(error).__name__}: {str(error)[:200]})") from None

    return load


def check_model(name: str) -> None:
    """Build the model and run one zero input through it; ValueError saying why it cannot serve."""
    model = build_model(name)
    out = run_batch(model, torch.zeros((1, *input_shape(name))))
    if out.ndim != 2 or out.shape[0] != 1:
        raise ValueError(f"model {name!r} gives outputs of shape {tuple(out.shape)} for one input: (batch, classes) wanted")


def resolve_device(device: str) -> str:
    """``auto`` (cuda when there is one, else cpu), ``cpu`` or ``cuda``; ValueError for cuda without a GPU."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("live.device=cuda is not allowed here: torch sees no CUDA device (auto or cpu)")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"live.device={device!r} is not allowed: auto, cpu or cuda")
    return device


def input_shape(name: str) -> tuple[int, ...]:
    """Shape of one input (without the batch dimension)."""
    return _lookup(name)[1]


def input_size_bytes(name: str) -> int:
    """Payload bytes that fill one input exactly (one byte per element)."""
    return math.prod(input_shape(name))


def num_classes(name: str) -> int:
    _lookup(name)
    return NUM_CLASSES


def build_model(name: str, seed: int = 0, device: str = "cpu") -> nn.Module:
    """The named model with weights drawn from ``seed``, in eval mode, gradients off, on ``device``.

    The global torch RNG is left as it was.
    """
    factory, _ = _lookup(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = factory()
    if not isinstance(model, nn.Module):
        raise ValueError(f"model {name!r}: its factory returned a {type(model).__name__}, not an nn.Module")
    try:
        model.eval()
    except NotImplementedError:  # a torch.export program's module: exported for inference already
        pass
    for p in model.parameters():
        p.requires_grad_(False)
    return model.to(device)


def payload_to_tensor(name: str, payloads: Sequence[bytes], device: str = "cpu") -> torch.Tensor:
    """A float32 batch ``(len(payloads), *input_shape(name))`` from raw payload bytes, on ``device``.

    Each payload is read as uint8 / 255 and truncated or zero-padded to the input size.
    """
    shape = input_shape(name)
    n = math.prod(shape)
    arr = np.zeros((len(payloads), n), dtype=np.uint8)
    for i, p in enumerate(payloads):
        b = np.frombuffer(memoryview(p), dtype=np.uint8, count=min(len(p), n))
        arr[i, : b.size] = b
    t = torch.from_numpy(arr)
    if device != "cpu":
        t = t.to(device, non_blocking=True)  # the bytes cross once, as uint8; the whole batch is converted there
    return t.to(torch.float32).div_(255.0).reshape(len(payloads), *shape)


def run_batch(model: nn.Module, tensor: torch.Tensor) -> torch.Tensor:
    """Forward pass on a whole batch; returns the ``(batch, classes)`` logits."""
    with torch.inference_mode():
        return model(tensor)


def outputs_to_records(out: torch.Tensor) -> tuple[list[int], list[bytes]]:
    """Per-request predicted labels and raw float32 logits (little-endian bytes)."""
    out = out.detach().to("cpu", torch.float32).contiguous()  # waits for the device: the batch's time includes it
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
