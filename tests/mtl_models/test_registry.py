"""_registry: name -> class maps whose unknown names fail listing what is available."""

from __future__ import annotations

import pytest

from mtl_models import BACKBONES, INPUTS, KINDS, WEIGHTINGS
from mtl_models._registry import Registry, UnknownNameError


class Alpha:
    pass


class Beta:
    pass


@pytest.fixture
def registry() -> Registry[object]:
    reg: Registry[object] = Registry("widget")
    reg.register("beta")(Beta)
    reg.register("alpha")(Alpha)
    return reg


def test_register_get_and_list(registry: Registry[object]) -> None:
    assert registry.get("alpha") is Alpha
    assert registry.get("beta") is Beta
    assert registry.names() == ["alpha", "beta"]
    assert list(registry.items()) == [("alpha", Alpha), ("beta", Beta)]
    assert "alpha" in registry
    assert "gamma" not in registry
    assert repr(registry) == "Registry(kind='widget', names=['alpha', 'beta'])"


def test_register_returns_the_class_for_decorator_use() -> None:
    reg: Registry[object] = Registry("widget")

    @reg.register("gamma")
    class Gamma:
        pass

    assert reg.get("gamma") is Gamma


def test_duplicate_name_raises(registry: Registry[object]) -> None:
    with pytest.raises(ValueError, match="widget 'alpha' is already registered"):
        registry.register("alpha")(Beta)
    assert registry.get("alpha") is Alpha


def test_unknown_name_lists_available(registry: Registry[object]) -> None:
    with pytest.raises(UnknownNameError) as info:
        registry.get("gamma")
    assert str(info.value) == "unknown widget 'gamma'; available: alpha, beta"
    assert isinstance(info.value, ValueError)


def test_empty_registry_says_none() -> None:
    with pytest.raises(UnknownNameError, match="available: none"):
        Registry("widget").get("x")


@pytest.mark.parametrize(
    ("reg", "expected"),
    [
        (BACKBONES, {"cnn"}),
        (KINDS, {"classification", "binary", "ordinal", "regression"}),
        (WEIGHTINGS, {"equal", "static"}),
        (INPUTS, {"image", "signal", "features"}),
    ],
    ids=["backbones", "kinds", "weightings", "inputs"],
)
def test_library_registries(reg: Registry[object], expected: set[str]) -> None:
    assert expected <= set(reg.names())
    with pytest.raises(UnknownNameError, match=", ".join(sorted(reg.names()))):
        reg.get("no-such-name")


def test_unregister_removes_a_name_so_it_can_be_registered_again(
    registry: Registry[object],
) -> None:
    assert registry.unregister("alpha") is Alpha
    assert registry.names() == ["beta"] and "alpha" not in registry
    with pytest.raises(UnknownNameError, match="unknown widget 'alpha'; available: beta"):
        registry.unregister("alpha")
    registry.register("alpha")(Beta)
    assert registry.get("alpha") is Beta
