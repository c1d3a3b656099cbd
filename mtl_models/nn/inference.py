"""A trained model made cheaper to run for prediction, with the same outputs.

``for_inference`` returns an evaluation-mode copy in which every batch norm that directly
follows a convolution of its dimension in a ``Sequential`` (images and signals) is folded into
that convolution (its running statistics and affine terms become the convolution's weights
and bias: ``torch.nn.utils.fusion.fuse_conv_bn_eval``), and whose 4-D weights are stored
channels-last, the layout oneDNN's CPU convolutions and pooling run fastest on. Outputs move
by float rounding only (about 1e-5 on logits); the trained model is left as it was.

Measured on 2 CPU cores, one torch thread, the default tuned model (64 px, 9 branches), from
decoded images to per-task columns: 2.73-2.75 ms per image in batches of 8 against 3.43-3.82
for the trained model; about 5% less at batch 1 and 4 (benchmarks/README.md, "Serving
latency", `--per-image`). Images decoded from requests already arrive channels-last (HWC
arrays permuted), so most of that is the folding. Feed it ``channels_last`` inputs
(``mtl_models.train.loaders``).
"""

from __future__ import annotations

import copy
import itertools
from typing import TypeVar

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

M = TypeVar("M", bound=nn.Module)
_PAIRS = ((nn.Conv1d, nn.BatchNorm1d), (nn.Conv2d, nn.BatchNorm2d))


def for_inference(model: M) -> M:
    """An eval-mode copy of ``model`` with batch norms folded and channels-last weights."""
    fast = copy.deepcopy(model).eval()
    for module in fast.modules():
        if isinstance(module, nn.Sequential):
            _fold_batch_norms(module)
    return fast.to(memory_format=torch.channels_last)


def _fold_batch_norms(sequence: nn.Sequential) -> None:
    """Fold each convolution -> batch norm pair of ``sequence`` in place (the norm becomes an
    ``Identity``, so the indices of the rest stay put)."""
    names = list(sequence._modules)
    for first, second in itertools.pairwise(names):
        conv, norm = sequence._modules[first], sequence._modules[second]
        if (
            any(isinstance(conv, c) and isinstance(norm, n) for c, n in _PAIRS)
            and norm.track_running_stats
            and norm.running_mean is not None
            and conv.out_channels == norm.num_features
        ):
            sequence._modules[first] = fuse_conv_bn_eval(conv, norm)
            sequence._modules[second] = nn.Identity()
