"""The served forward pass on ONNX Runtime: the same network, less CPU per image.

When a model is logged, ``export`` writes the inference copy of the network (``for_inference``:
batch norms folded) to ONNX with torch's exporter (``torch.onnx.export(dynamo=True)``), with a
batch dimension of any size, and checks ONNX Runtime's outputs against torch's on the input
example and on a batch of another size. Where either step fails (an operator the exporter does
not cover, a shape the graph fixed), the model is logged without it and served by torch, with
a warning that says why. ``OnnxForward`` is the server's forward pass: tensors in, one output
tensor per task out, as the torch model's ``forward`` returns them, so decoding stays torch's.

Measured on 2 CPU cores, one thread, the default tuned model (64 px, 9 branches), ms of CPU
per image at batch 1 / 5: 2.5-2.8 / 2.2-2.3 on ONNX Runtime against 5.1 / 3.3 for torch
(benchmarks/README.md, "Serving latency"). ``MTLFLOW_SERVE_ENGINE=torch`` serves a model that
has the export with torch instead.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from mtl_models.train.loaders import Inputs, model_inputs

ONNX_FILE = "model.onnx"
TOLERANCE = 1e-4  # largest |ONNX - torch| on an output, relative to the output's largest |value|
ENGINES = ("onnx", "torch")


def serve_engine() -> str:
    """What runs the forward pass in a server: ``onnx`` (ONNX Runtime, where the model was
    logged with its export) or ``torch``; ``MTLFLOW_SERVE_ENGINE`` chooses."""
    engine = os.environ.get("MTLFLOW_SERVE_ENGINE", "onnx")
    if engine not in ENGINES:
        raise ValueError(f"MTLFLOW_SERVE_ENGINE={engine!r}: expected one of {', '.join(ENGINES)}")
    return engine


class _Positional(nn.Module):
    """The model with positional inputs (in ``input_names`` order) and a tuple of outputs (in
    ``output_names`` order): the signature an ONNX graph has."""

    def __init__(self, model: nn.Module, input_names: Sequence[str], output_names: Sequence[str]):
        super().__init__()
        self.model, self.input_names, self.output_names = model, input_names, output_names

    def forward(self, *tensors: Tensor) -> tuple[Tensor, ...]:
        outputs = self.model(model_inputs(dict(zip(self.input_names, tensors, strict=True))))
        return tuple(outputs[name] for name in self.output_names)


class OnnxForward:
    """``forward(inputs) -> {task: output}`` on ONNX Runtime, for CPU tensors shaped as the
    torch model reads them (one tensor, or a dict by input name)."""

    def __init__(self, path: Path, threads: int):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        # no arena: memory a large batch took goes back, as the server's trimmer expects
        options.enable_cpu_mem_arena = False
        options.log_severity_level = 3  # errors only: not its notes on constant folding
        self.session = onnxruntime.InferenceSession(
            str(path), options, providers=["CPUExecutionProvider"]
        )
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def __call__(self, inputs: Inputs) -> dict[str, Tensor]:
        tensors = inputs if isinstance(inputs, dict) else {self.input_names[0]: inputs}
        feeds = {name: np.ascontiguousarray(tensors[name].numpy()) for name in self.input_names}
        outputs = self.session.run(None, feeds)
        pairs = zip(self.output_names, outputs, strict=True)
        return {name: torch.from_numpy(out) for name, out in pairs}


def export(model: nn.Module, tensors: dict[str, Tensor], path: Path) -> str | None:
    """Write ``model`` (an eval-mode network, CPU) as ONNX to ``path`` and check it on
    ``tensors`` (each input's batch, by name: at least 2 rows) and on a batch of another size.
    None when it is written and agrees with torch; else why not (and nothing is left at
    ``path``)."""
    with torch.inference_mode():
        output_names = list(model(model_inputs(tensors)))
    wrapped = _Positional(model, list(tensors), output_names).eval()
    batch = torch.export.Dim("batch", min=1, max=65536)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's own notes, not the user's concern
            program = torch.onnx.export(
                wrapped,
                tuple(tensors.values()),
                input_names=list(tensors),
                output_names=output_names,
                # one entry, the ``*tensors`` tuple: the batch dimension of each
                dynamic_shapes=(tuple({0: batch} for _ in tensors),),
                dynamo=True,
                optimize=False,  # ONNX Runtime optimises the graph when it loads it
                verbose=False,
            )
            program.save(str(path))
        reason = _disagreement(wrapped, tensors, path)
    except Exception as exc:  # any failure of the exporter or the runtime: serve with torch
        cause = exc.__cause__ or exc  # the exporter wraps what torch.export raised
        first_line = re.sub(r"\x1b\[[0-9;]*m", "", str(cause)).strip().partition("\n")[0]
        reason = f"failed ({type(cause).__name__}: {first_line})"
    if reason is not None:
        path.unlink(missing_ok=True)
    return reason


def _disagreement(wrapped: _Positional, tensors: dict[str, Tensor], path: Path) -> str | None:
    """Why ONNX Runtime's outputs are not torch's on the example and on a batch of 3 noisy
    copies of its first row; None when they agree to ``TOLERANCE``."""
    generator = torch.Generator().manual_seed(0)
    other = {
        name: t[:1].repeat(3, *([1] * (t.dim() - 1)))
        + 0.05 * torch.randn((3, *t.shape[1:]), generator=generator).to(t.dtype)
        for name, t in tensors.items()
    }
    forward = OnnxForward(path, threads=1)
    for batch in (tensors, other):
        with torch.inference_mode():
            expected = wrapped(*batch.values())
        got = forward(batch)
        for name, want in zip(wrapped.output_names, expected, strict=True):
            scale = max(float(want.abs().max()), 1.0)
            error = float((got[name] - want).abs().max()) / scale
            if not error <= TOLERANCE:
                return f"differs from torch on {name!r} by {error:.2g} (a batch of {len(want)})"
    return None
