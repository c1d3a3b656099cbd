"""``torchvision/<name>``: torchvision's classification models (``torchvision.models``) as
backbones, their classifier dropped. Stages are the top-level layers, with ``features``
opened (torchvision's convention for its convolutional part)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torch import Tensor, nn

from mtl_models.nn.backbones._base import BACKBONES
from mtl_models.nn.backbones.zoo import IMAGENET_MEAN, IMAGENET_STD, ZooBackbone

_CLASSIFIERS = ("fc", "classifier", "head", "heads")


def _weights_enum(model: str):
    from torchvision.models import get_model_weights

    try:
        return get_model_weights(model)
    except (ValueError, KeyError):
        return None


def weights_cache_path(model: str) -> Path | None:
    """Where torch's hub cache keeps the default weights of ``model`` (None: it has none)."""
    import torch

    enum = _weights_enum(model)
    if enum is None:
        return None
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(enum.DEFAULT.url).name


@BACKBONES.register("torchvision/")
class TorchvisionBackbone(ZooBackbone):
    family = "torchvision"

    @classmethod
    def network(cls, model: str) -> nn.Module:
        from torchvision.models import get_model, list_models

        if model not in list_models():
            raise ValueError(
                f"unknown torchvision model '{model}'; see torchvision.models.list_models()"
            )
        return get_model(model, weights=None)

    @classmethod
    def top_level(cls, net: nn.Module) -> list[tuple[str, nn.Module]]:
        children = list(net.named_children())
        while children and children[-1][0] in _CLASSIFIERS:
            children.pop()
        return [(n, m) for n, m in children if not n.lower().startswith("aux")]

    @classmethod
    def stage_names(cls, net: nn.Module) -> list[str]:
        names = []
        for name, module in cls.top_level(net):
            if name == "features" and isinstance(module, nn.Sequential):
                names += [f"features.{child}" for child, _ in module.named_children()]
            else:
                names.append(name)
        return names

    @classmethod
    def reference_output(cls, net: nn.Module, x: Tensor) -> Tensor | None:
        """What reaches the classifier, captured by a hook."""
        children = dict(net.named_children())
        classifier = next((children[n] for n in reversed(children) if n in _CLASSIFIERS), None)
        if classifier is None:
            return None
        seen: list[Tensor] = []
        handle = classifier.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
        try:
            net(x)
        finally:
            handle.remove()
        return seen[0] if seen else None

    @classmethod
    def library_normalization(cls, model: str) -> tuple[Sequence[float], Sequence[float]]:
        enum = _weights_enum(model)
        if enum is None:
            return IMAGENET_MEAN, IMAGENET_STD
        transforms = enum.DEFAULT.transforms()
        return tuple(transforms.mean), tuple(transforms.std)

    @classmethod
    def library_weights(cls, model: str) -> dict[str, Tensor]:
        from mtl_models.nn.weights import WeightsError

        enum = _weights_enum(model)
        if enum is None:
            raise WeightsError(f"torchvision has no pretrained weights for '{model}'")
        weights = enum.DEFAULT
        try:
            return weights.get_state_dict(progress=True, check_hash=True)
        except Exception as exc:  # no network, a proxy, a bad download: say where it goes
            cached = weights_cache_path(model)
            if cached is not None and cached.is_file():
                raise WeightsError(
                    f"the cached weights {cached} of torchvision/{model} cannot be read "
                    f"({type(exc).__name__}: {str(exc)[:120]}); delete the file to download "
                    "it again, or replace it"
                ) from None
            raise WeightsError(
                f"the {weights} weights of torchvision/{model} are not in the cache and could "
                f"not be downloaded ({type(exc).__name__}: {str(exc)[:120]}); put "
                f"{Path(weights.url).name} (from {weights.url}) at {weights_cache_path(model)}, "
                "or point model.backbone.weights at a local copy"
            ) from None
