"""Your own model (a _target_, a TorchScript file, a torch.export file) and the device, checked at config time."""

from __future__ import annotations

import os
import sys
import textwrap
import time

import pytest
import torch

from live import models
from live.config import build_run
from live.deploy.local import check_models, run_live
from spec.validation import ConfigError
from tests.live.test_harness import edge_config

MODULE = '''
import torch
from torch import nn

def tiny() -> nn.Module:
    """A model of the user's own: 16 inputs, 4 classes."""
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 4))
'''


@pytest.fixture
def own_models(tmp_path, monkeypatch):
    """A module outside the package (importable by the roles through PYTHONPATH) and two files made from it."""
    (tmp_path / "my_models.py").write_text(textwrap.dedent(MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path) + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else ""))
    import my_models

    module = my_models.tiny().eval()
    torch.jit.save(torch.jit.script(module), tmp_path / "tiny.pt")
    batch = torch.export.Dim("batch")
    torch.export.save(torch.export.export(module, (torch.zeros(2, 16),), dynamic_shapes=({0: batch},)), tmp_path / "tiny.pt2")
    yield tmp_path
    sys.modules.pop("my_models", None)


def _config(model) -> dict:
    config = edge_config(num_requests=60, rate_rps=60.0)
    config["live"]["model"] = model
    return config


def test_each_form_of_your_own_model_builds_serves_and_agrees(own_models):
    forms = [{"_target_": "my_models.tiny", "input_shape": [16]}, {"path": str(own_models / "tiny.pt"), "input_shape": [16]},
             {"path": str(own_models / "tiny.pt2"), "input_shape": [16]}]  # fmt: skip
    labels = []
    for form in forms:
        spec = build_run(_config(form))
        check_models(spec)  # loads it, runs one input
        key = spec.settings.model
        model = models.build_model(key, seed=0)
        batch = models.payload_to_tensor(key, [bytes(range(16)), bytes(range(16, 32)), b""])
        labels.append(models.outputs_to_records(models.run_batch(model, batch))[0])
    # the files hold the weights they were saved with: the same as each other
    assert labels[1] == labels[2] and len(labels[0]) == 3


@pytest.mark.parametrize(
    ("model", "field", "says"),
    [
        ("wide_mpl", "live.model", "did you mean 'wide_mlp'"),
        ({"path": "/nonexistent/model.pt", "input_shape": [16]}, "live.model", "does not load"),
        ({"_target_": "no_such_module.make", "input_shape": [16]}, "live.model", "does not import"),
        ({"_target_": "my_models.tiny", "input_shape": [15]}, "live.model", "serves one input"),
        ({"_target_": "my_models.tiny"}, "live.model.input_shape", "positive integers"),
    ],
)
def test_a_model_that_cannot_serve_fails_at_config_time_naming_the_field(own_models, model, field, says):
    started = time.monotonic()
    with pytest.raises(ConfigError) as error:
        check_models(build_run(_config(model)))
    assert error.value.field == field and says in str(error.value), str(error.value)
    assert time.monotonic() - started < 5.0  # before any process starts


def test_cuda_without_a_gpu_is_a_config_error_and_cpu_always_works():
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device: the no-GPU error cannot be shown here")
    config = edge_config()
    config["live"]["device"] = "cuda"
    with pytest.raises(ConfigError, match="live.device"):
        check_models(build_run(config))
    assert models.resolve_device("auto") == "cpu" and models.resolve_device("cpu") == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (torch.cuda.is_available() is False here)")
def test_a_batch_runs_on_the_gpu():
    model = models.build_model("cnn", device="cuda")
    assert next(model.parameters()).is_cuda
    labels, outputs = models.outputs_to_records(models.run_batch(model, models.payload_to_tensor("cnn", [b"x" * 3072] * 4, "cuda")))
    assert len(labels) == 4 and len(outputs[0]) == 4 * models.num_classes("cnn")


@pytest.mark.live
def test_a_live_run_serves_a_torchscript_file_from_outside_the_package(own_models, broker, tmp_path):
    config = _config({"path": str(own_models / "tiny.pt"), "input_shape": [16]})
    config["live"]["broker"] = {"url": broker.url}
    config["live"]["device"] = "cpu"
    result = run_live(config, tmp_path / "run")
    assert result.summary["completed"] == result.summary["count"] == 60
    assert result.extra["roles"]["worker-edge-0"]["model"].startswith("file:")
