"""PyTorch models of the live harness: seeded, deterministic, batch-consistent, and batching pays off."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from live.models import (
    MODEL_NAMES,
    build_model,
    input_shape,
    input_size_bytes,
    outputs_to_records,
    payload_to_tensor,
    run_batch,
    set_threads,
)


def _payloads(name: str, b: int, seed: int = 1) -> list[bytes]:
    rng = np.random.default_rng(seed)
    n = input_size_bytes(name)
    return [rng.integers(0, 256, size=n, dtype=np.uint8).tobytes() for _ in range(b)]


def test_model_names():
    assert set(MODEL_NAMES) == {"mlp", "cnn", "wide_mlp"}
    assert input_shape("cnn") == (3, 32, 32)


def test_unknown_model_names_the_field_and_allowed_values():
    for fn in (build_model, input_shape):
        with pytest.raises(ValueError, match=r"model\.name.*resnet.*cnn, mlp, wide_mlp"):
            fn("resnet")


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_same_seed_same_outputs(name):
    x = payload_to_tensor(name, _payloads(name, 4))
    a = run_batch(build_model(name, seed=3), x)
    b = run_batch(build_model(name, seed=3), x)
    c = run_batch(build_model(name, seed=4), x)
    assert a.shape == (4, 10)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_build_model_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_model("mlp", seed=0)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_batch_equals_single_calls(name):
    model = build_model(name)
    payloads = _payloads(name, 8, seed=2)
    batched = run_batch(model, payload_to_tensor(name, payloads))
    singles = torch.cat([run_batch(model, payload_to_tensor(name, [p])) for p in payloads])
    assert torch.allclose(batched, singles, rtol=1e-4, atol=1e-5)


def test_payload_to_tensor_pads_and_truncates():
    n = input_size_bytes("mlp")
    x = payload_to_tensor("mlp", [b"\xff\x00\x80", bytes(range(256)) * 3, b""])
    assert x.dtype == torch.float32 and x.shape == (3, n)
    assert x[0, 0] == 1.0 and x[0, 1] == 0.0 and x[0, 2] == pytest.approx(128 / 255)
    assert torch.all(x[0, 3:] == 0)
    assert torch.allclose(x[1], torch.arange(256, dtype=torch.float32) / 255)  # truncated to 256
    assert torch.all(x[2] == 0)
    assert payload_to_tensor("cnn", [b"\x01"]).shape == (1, 3, 32, 32)
    assert payload_to_tensor("cnn", []).shape == (0, 3, 32, 32)
    # bytearray / memoryview payloads work too
    assert torch.equal(payload_to_tensor("mlp", [bytearray(b"\x10")]), payload_to_tensor("mlp", [b"\x10"]))


def test_outputs_to_records():
    out = run_batch(build_model("mlp"), payload_to_tensor("mlp", _payloads("mlp", 3)))
    labels, rows = outputs_to_records(out)
    assert labels == out.argmax(1).tolist()
    assert np.array_equal(np.stack([np.frombuffer(r, "<f4") for r in rows]), out.numpy())


def test_inference_mode_no_grad():
    out = run_batch(build_model("mlp"), payload_to_tensor("mlp", _payloads("mlp", 1)))
    assert not out.requires_grad


def _ms_per_request(model, x, reps: int) -> float:
    run_batch(model, x)  # warm up
    run_batch(model, x)
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        run_batch(model, x)
        best = min(best, time.perf_counter() - t0)
    return 1e3 * best / x.shape[0]


def test_batching_pays_off_for_wide_mlp(capsys):
    """Per-request time at batch 32 is well below batch 1 (measured ~6x on one core; assert 2x)."""
    prev = torch.get_num_threads()
    set_threads(1)
    try:
        figures = {}
        for name in MODEL_NAMES:
            model = build_model(name)
            payloads = _payloads(name, 32)
            figures[name] = {
                b: _ms_per_request(model, payload_to_tensor(name, payloads[:b]), reps=max(3, 48 // b))
                for b in (1, 8, 32)
            }
    finally:
        torch.set_num_threads(prev)
    with capsys.disabled():
        for name, f in figures.items():
            print(f"\n  {name:9s} ms/request (1 thread): "
                  + "  ".join(f"b{b}={v:.4f}" for b, v in f.items()), end="")
        print()
    w = figures["wide_mlp"]
    assert w[1] >= 2.0 * w[32], w
