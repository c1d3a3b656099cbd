"""``timm/<name>``: any timm model through ``features_only`` (its feature stages are what an
int split counts). ``<name>`` may carry a pretrained tag, e.g. ``timm/resnet18.a1_in1k``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from torch import Tensor, nn

from mtl_models.nn.backbones._base import BACKBONES
from mtl_models.nn.backbones.zoo import ZooBackbone


def _create(model: str, **kwargs) -> nn.Module:
    import timm

    try:
        return timm.create_model(model, features_only=True, **kwargs)
    except RuntimeError as exc:
        if "Unknown model" in str(exc) or "Invalid pretrained tag" in str(exc):
            raise ValueError(f"unknown timm model '{model}'; see timm.list_models()") from None
        raise


def hub_cache_dir(model: str) -> Path | None:
    """The Hugging Face hub cache folder of ``model``'s default weights (None: none)."""
    import timm
    from huggingface_hub import constants

    cfg = timm.models.get_pretrained_cfg(model)
    repo = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if not repo:
        return None
    return Path(constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}"


@BACKBONES.register("timm/")
class TimmBackbone(ZooBackbone):
    family = "timm"

    @classmethod
    def network(cls, model: str) -> nn.Module:
        return _create(model, pretrained=False)

    @classmethod
    def top_level(cls, net: nn.Module) -> list[tuple[str, nn.Module]]:
        return list(net.named_children())

    @classmethod
    def stage_names(cls, net: nn.Module) -> list[str]:
        return list(net.feature_info.module_name())  # type: ignore[union-attr, operator]

    @classmethod
    def reference_output(cls, net: nn.Module, x: Tensor) -> Tensor | None:
        out = net(x)
        return out[-1] if isinstance(out, (list, tuple)) else None

    @classmethod
    def library_normalization(cls, model: str) -> tuple[Sequence[float], Sequence[float]]:
        import timm

        cfg = timm.models.get_pretrained_cfg(model)
        if cfg is None:  # a model without published weights: its default config
            cfg = _create(model, pretrained=False).pretrained_cfg  # type: ignore[union-attr]
            return tuple(cfg["mean"]), tuple(cfg["std"])
        return tuple(cfg.mean), tuple(cfg.std)

    @classmethod
    def library_weights(cls, model: str) -> dict[str, Tensor]:
        from mtl_models.nn.weights import WeightsError

        try:
            return _create(model, pretrained=True).state_dict()
        except Exception as exc:
            where = hub_cache_dir(model)
            raise WeightsError(
                f"the pretrained weights of timm/{model} are not in the cache and could not be "
                f"downloaded ({type(exc).__name__}); put the Hugging Face repo's "
                f"model.safetensors under {where}/snapshots/<revision>/ with <revision> in "
                f"{where}/refs/main (what `hf download` writes on a connected machine), or "
                "point model.backbone.weights at a local copy"
            ) from None

    @classmethod
    def file_weights(cls, model: str, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """The file is checked against the whole timm network (its own naming), then timm's
        loader maps it onto the features network. Tensors the file did not provide are left
        out of the result, so the report names them as missing (so are integer buffers,
        BatchNorm's step counters, which no loss depends on)."""
        import torch

        from mtl_models.nn.weights import matching_keys

        expected = _create_full(model).state_dict()
        matching_keys(state, expected, f"timm/{model}")
        # what the file lacks is marked NaN, to be told apart after timm's mapping
        merged = {
            key: state[key]
            if key in state
            else torch.full_like(value, float("nan"))
            if value.is_floating_point()
            else value
            for key, value in expected.items()
        }
        net = _create(model, pretrained=True, pretrained_cfg_overlay={"state_dict": merged})
        return {
            key: value
            for key, value in net.state_dict().items()
            if value.is_floating_point() and not torch.isnan(value).all()
        }


def _create_full(model: str) -> nn.Module:
    import timm

    return timm.create_model(model, pretrained=False)
