"""weights: starting weights from a file or the library's cache (SHA-256, key report,
refusals with one-line messages naming the file) and the trained trunk exported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch
import torchvision
from safetensors import safe_open
from safetensors.torch import save_file

from mtl_models.inputs import ImageInput
from mtl_models.nn.backbones import BACKBONES, Backbone
from mtl_models.nn.backbones.zoo_timm import hub_cache_dir
from mtl_models.nn.backbones.zoo_torchvision import weights_cache_path
from mtl_models.nn.model import ModelSpec, MultiTaskModel, build_backbone, build_model
from mtl_models.nn.weights import (
    EXPORT_FORMAT,
    WeightsError,
    export_backbone,
    load_initial_weights,
    read_weights,
    sha256_of,
)
from tests.mtl_models.nn.test_zoo import RESNET, SIZE, SQUEEZE, TASKS, spec_for

CNN_SPEC = ModelSpec(
    tasks=TASKS,
    backbone="cnn",
    backbone_args={"width": 4, "depth": 2},
    shared_depth=1,
    head_hidden=8,
    inputs=(ImageInput("image", SIZE, 1),),
)


def images(n: int = 4) -> torch.Tensor:
    return torch.rand(n, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(1))


def trained_like(spec: ModelSpec) -> MultiTaskModel:
    """A model whose weights and BatchNorm statistics differ from any fresh one."""
    model = build_model(spec)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    model.train()(images(8))
    return model.eval()


def block_state(model: MultiTaskModel, blocks: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``blocks`` (the trunk or a branch) in the backbone's own naming."""
    offset = 0 if blocks is model.trunk else model.shared_depth
    names = model.block_names[offset : offset + len(blocks)]
    return {
        f"{name}.{key}": value
        for name, block in zip(names, blocks, strict=True)
        for key, value in block.state_dict().items()
    }


def torchvision_squeezenet_state() -> dict[str, torch.Tensor]:
    return torchvision.models.squeezenet1_1(weights=None).state_dict()


def one_line_naming(error: pytest.ExceptionInfo[WeightsError], path: Path) -> str:
    message = str(error.value)
    assert "\n" not in message
    assert str(path) in message
    return message


def fresh(name: str) -> Backbone:
    return build_backbone(spec_for(name, None))


# -- export and load -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "split", "tail"),
    [(SQUEEZE, "features.11", ("features.11.", "features.12.")), (RESNET, "layer3", ("layer",))],
    ids=["squeezenet1_1@features.11", "resnet18@layer3"],
)
def test_export_then_load_gives_the_same_trunk_features(
    name: str, split: str, tail: tuple[str, ...], tmp_path: Path
) -> None:
    spec = spec_for(name, split)
    model = trained_like(spec)
    path = tmp_path / "trunk.safetensors"
    count = export_backbone(model, spec, path)
    exported = block_state(model, model.trunk)
    assert count == len(exported)

    backbone = build_backbone(spec)
    report = load_initial_weights(backbone, name, file=path)
    assert report is not None
    assert report.source == str(path)
    assert report.loaded == count
    assert report.unexpected == ()
    assert report.metadata["format"] == EXPORT_FORMAT and report.metadata["backbone"] == name
    # the unexported tail (the branches' blocks) is reported as left at its initial values
    assert model.branches is not None
    tail_keys = {
        key
        for key in block_state(model, next(iter(model.branches.values())))
        if not key.endswith("num_batches_tracked")
    }
    assert set(report.missing) == tail_keys
    assert all(key.startswith(tail) for key in report.missing)
    assert f"{len(tail_keys)} left at their initial values" in report.summary()

    loaded = build_model(spec, backbone).eval()
    x = images()
    assert torch.equal(loaded.trunk(x), model.trunk(x))
    assert not torch.allclose(build_model(spec).eval().trunk(x), model.trunk(x))


def test_export_writes_the_backbone_and_its_arguments_as_metadata(tmp_path: Path) -> None:
    spec = spec_for(SQUEEZE, "features.3", input_size=40)
    model = trained_like(spec)
    path = tmp_path / "out" / "trunk.safetensors"
    count = export_backbone(model, spec, path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["trunk.safetensors"]  # no .partial
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
        keys = set(f.keys())
    assert metadata["format"] == EXPORT_FORMAT
    assert metadata["backbone"] == SQUEEZE
    assert json.loads(metadata["backbone_args"]) == spec.backbone_args
    assert json.loads(metadata["blocks"]) == [
        "preprocess",
        "features.0",
        "features.1",
        "features.2",
    ]
    assert keys == set(block_state(model, model.trunk)) and len(keys) == count
    assert all(key.startswith("features.0.") for key in keys)  # the only trunk block with weights


@pytest.mark.parametrize("split", [0, "features.0"], ids=["nothing", "preprocessing-only"])
def test_export_of_a_trunk_without_weights_is_refused(tmp_path: Path, split: object) -> None:
    spec = spec_for(SQUEEZE, split)
    with pytest.raises(WeightsError, match="the shared trunk holds no weights"):
        export_backbone(build_model(spec), spec, tmp_path / "trunk.safetensors")
    assert not any(tmp_path.iterdir())


def test_a_partial_timm_file_reports_what_it_lacks(tmp_path: Path) -> None:
    full = timm.create_model("resnet18").state_dict()
    path = tmp_path / "stem.safetensors"
    save_file({k: v for k, v in full.items() if k.startswith(("conv1.", "bn1."))}, str(path))
    backbone = fresh(RESNET)
    report = load_initial_weights(backbone, RESNET, file=path)
    assert report.loaded == 5  # conv1.weight, bn1's weight, bias, running mean and var
    assert any(key.startswith("layer1.") for key in report.missing)
    assert torch.equal(backbone.initial_state["conv1.weight"], full["conv1.weight"])


# -- SHA-256 ---------------------------------------------------------------------------------


def test_sha256_right_passes_wrong_raises_naming_the_file(tmp_path: Path) -> None:
    spec = spec_for(SQUEEZE, "features.11")
    path = tmp_path / "trunk.safetensors"
    export_backbone(trained_like(spec), spec, path)
    digest = sha256_of(path)
    assert len(digest) == 64
    for given in (digest, digest.upper()):
        report = load_initial_weights(fresh(SQUEEZE), SQUEEZE, file=path, sha256=given)
        assert report is not None and report.loaded > 0
    wrong = "0" * 64
    backbone = fresh(SQUEEZE)
    with pytest.raises(WeightsError, match=f"SHA-256 is {digest}, expected {wrong}") as error:
        load_initial_weights(backbone, SQUEEZE, file=path, sha256=wrong)
    one_line_naming(error, path)
    assert backbone.initial_state is None  # nothing was taken from the refused file


# -- files that do not fit -------------------------------------------------------------------


def test_a_file_exported_from_another_backbone_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cnn.safetensors"
    export_backbone(build_model(CNN_SPEC), CNN_SPEC, path)
    with pytest.raises(WeightsError) as error:
        load_initial_weights(fresh(SQUEEZE), SQUEEZE, file=path)
    message = one_line_naming(error, path)
    assert "exported from backbone 'cnn', this model's backbone is 'torchvision/squeezenet1_1'" in (
        message
    )
    squeeze_spec = spec_for(SQUEEZE, "features.11")
    export_backbone(build_model(squeeze_spec), squeeze_spec, path)
    with pytest.raises(WeightsError, match="exported from backbone 'torchvision/squeezenet1_1'"):
        load_initial_weights(fresh(RESNET), RESNET, file=path)


def test_a_torchvision_file_of_another_architecture_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    with pytest.raises(WeightsError) as error:
        load_initial_weights(fresh(SQUEEZE), SQUEEZE, file=path)
    message = one_line_naming(error, path)
    assert "none of its 122 tensors belongs to torchvision/squeezenet1_1" in message


def test_a_file_with_other_shapes_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "squeezenet1_0.pth"  # the same keys as 1.1, other widths
    torch.save(torchvision.models.squeezenet1_0(weights=None).state_dict(), path)
    with pytest.raises(WeightsError) as error:
        load_initial_weights(fresh(SQUEEZE), SQUEEZE, file=path)
    message = one_line_naming(error, path)
    assert "'features.0.weight' has shape (96, 3, 7, 7)" in message
    assert "needs (64, 3, 3, 3)" in message


def test_a_file_of_another_architecture_is_refused_by_a_timm_backbone(tmp_path: Path) -> None:
    path = tmp_path / "squeezenet1_1.pth"
    torch.save(torchvision_squeezenet_state(), path)
    backbone = fresh(RESNET)
    try:
        report = load_initial_weights(backbone, RESNET, file=path)
    except WeightsError as exc:
        assert str(path) in str(exc)
        return
    raise AssertionError(f"loaded a SqueezeNet file into timm/resnet18: {report.summary()}")


# -- files that cannot be read ---------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_a_truncated_file_is_not_readable(suffix: str, tmp_path: Path) -> None:
    whole = tmp_path / f"whole{suffix}"
    state = {k: v.contiguous() for k, v in torchvision_squeezenet_state().items()}
    if suffix == ".safetensors":
        save_file(state, str(whole))
    else:
        torch.save(state, whole)
    assert len(read_weights(whole)[0]) == len(state)  # the whole file is fine
    data = whole.read_bytes()
    half = tmp_path / f"half{suffix}"
    half.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="not a readable weights file") as error:
        load_initial_weights(fresh(SQUEEZE), SQUEEZE, file=half)
    one_line_naming(error, half)


def test_a_missing_file_or_a_wrong_suffix_is_refused(tmp_path: Path) -> None:
    missing = tmp_path / "nothing.safetensors"
    with pytest.raises(WeightsError, match="no such weights file") as error:
        load_initial_weights(fresh(SQUEEZE), SQUEEZE, file=missing)
    one_line_naming(error, missing)
    other = tmp_path / "weights.bin"
    torch.save(torchvision_squeezenet_state(), other)  # readable, but not a weights suffix
    with pytest.raises(WeightsError, match=r"expected a \.safetensors, \.pt, \.pth") as error:
        load_initial_weights(fresh(SQUEEZE), SQUEEZE, file=other)
    one_line_naming(error, other)


RAN: list[str] = []


def _record(what: str) -> str:
    RAN.append(what)
    return what


class Payload:
    """Unpickling it calls ``_record``: what a malicious checkpoint would do."""

    def __reduce__(self):
        return (_record, ("unpickled",))


def test_a_pickled_object_is_refused_without_running_it(tmp_path: Path) -> None:
    path = tmp_path / "payload.pt"
    torch.save({"state_dict": Payload()}, path)
    RAN.clear()
    with pytest.raises(WeightsError, match="not a readable weights file") as error:
        load_initial_weights(fresh(SQUEEZE), SQUEEZE, file=path)
    one_line_naming(error, path)
    assert RAN == []
    torch.load(path, weights_only=False)  # the payload is real: a full unpickle runs it
    assert RAN == ["unpickled"]
    RAN.clear()


def test_a_file_of_other_things_than_tensors_is_refused(tmp_path: Path) -> None:
    for i, content in enumerate(({"features.0.weight": 1}, [torch.zeros(1)])):
        path = tmp_path / f"odd{i}.pt"
        torch.save(content, path)
        with pytest.raises(WeightsError, match="expected a state dict of tensors") as error:
            load_initial_weights(fresh(SQUEEZE), SQUEEZE, file=path)
        one_line_naming(error, path)


# -- library-format files ----------------------------------------------------------------------


def test_a_torchvision_file_loads_with_its_classifier_unused(tmp_path: Path) -> None:
    state = torchvision_squeezenet_state()
    path = tmp_path / "squeezenet1_1.pth"
    torch.save(state, path)
    spec = spec_for(SQUEEZE, "features.11")
    backbone = build_backbone(spec)
    report = load_initial_weights(backbone, SQUEEZE, file=path)
    assert report is not None
    assert report.loaded == len(state) - 2 == 50
    assert report.unexpected == ("classifier.1.weight", "classifier.1.bias")
    assert report.missing == ()
    assert "2 in the file unused (classifier.1.weight, classifier.1.bias)" in report.summary()
    model = build_model(spec, backbone)
    assert model.branches is not None
    # the trunk and every task's branch start from the file
    for blocks in (model.trunk, *model.branches.values()):
        for key, value in block_state(model, blocks).items():
            assert torch.equal(value, state[key]), key


def test_a_wrapped_ddp_state_dict_loads(tmp_path: Path) -> None:
    state = torchvision_squeezenet_state()
    path = tmp_path / "checkpoint.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    backbone = fresh(SQUEEZE)
    report = load_initial_weights(backbone, SQUEEZE, file=path)
    assert report is not None and report.loaded == 50
    assert backbone.initial_state is not None
    assert torch.equal(backbone.initial_state["features.0.weight"], state["features.0.weight"])


def test_a_timm_file_loads_through_timms_loader(tmp_path: Path) -> None:
    import timm

    state = {k: v.contiguous() for k, v in timm.create_model("resnet18").state_dict().items()}
    path = tmp_path / "resnet18.safetensors"
    save_file(state, str(path))
    spec = spec_for(RESNET, "layer3")
    backbone = build_backbone(spec)
    report = load_initial_weights(backbone, RESNET, file=path)
    assert (
        report is not None and report.loaded == 100
    )  # floating tensors; BatchNorm counters are not weights and report.missing == ()
    model = build_model(spec, backbone)
    for key, value in block_state(model, model.trunk).items():
        assert torch.equal(value, state[key]), key


def test_pretrained_and_a_file_exclude_each_other_and_need_a_zoo_backbone(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="exclude each other"):
        load_initial_weights(fresh(SQUEEZE), SQUEEZE, pretrained=True, file=tmp_path / "w.pt")
    with pytest.raises(WeightsError, match="'cnn' has no library weights"):
        load_initial_weights(build_backbone(CNN_SPEC), "cnn", pretrained=True)
    backbone = fresh(SQUEEZE)
    assert load_initial_weights(backbone, SQUEEZE) is None
    assert backbone.initial_state is None


# -- library weights from their caches, without network ------------------------------------


@pytest.fixture
def torch_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """torch's hub cache in tmp; a download attempt fails at once."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    hub = tmp_path / "hub"
    assert Path(torch.hub.get_dir()) == hub  # TORCH_HOME is honoured (no set_dir in effect)

    def no_download(url: str, dst: str, *args: object, **kwargs: object) -> None:
        raise OSError(f"no network in tests ({url})")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    return hub


def test_torchvision_pretrained_loads_from_the_hub_cache(torch_hub: Path) -> None:
    path = weights_cache_path("squeezenet1_1")
    assert path is not None and path.parent == torch_hub / "checkpoints"
    assert path.name == "squeezenet1_1-b8a52dc0.pth"
    state = torchvision_squeezenet_state()
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    spec = spec_for(SQUEEZE, "features.11")
    backbone = build_backbone(spec)
    report = load_initial_weights(backbone, SQUEEZE, pretrained=True)
    assert report is not None
    assert report.source == "torchvision/squeezenet1_1 (library weights)"
    assert (report.loaded, report.missing) == (50, ())
    assert report.unexpected == ("classifier.1.weight", "classifier.1.bias")
    model = build_model(spec, backbone)
    for key, value in block_state(model, model.trunk).items():
        assert torch.equal(value, state[key]), key


def test_torchvision_pretrained_absent_names_the_cache_path(torch_hub: Path) -> None:
    path = weights_cache_path("squeezenet1_1")
    with pytest.raises(WeightsError) as error:
        load_initial_weights(fresh(SQUEEZE), SQUEEZE, pretrained=True)
    message = one_line_naming(error, path)
    assert "not in the cache and could not be downloaded (OSError" in message
    assert not path.exists()


def test_pretrained_for_a_torchvision_model_without_weights_is_refused() -> None:
    with pytest.raises(WeightsError, match="torchvision has no pretrained weights for 'nope'"):
        BACKBONES.get(SQUEEZE).library_weights("nope")


@pytest.fixture
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The Hugging Face hub cache in tmp, offline. huggingface_hub reads its environment
    when imported, so its constants are patched too."""
    from huggingface_hub import constants

    cache = tmp_path / "hf" / "hub"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def test_timm_pretrained_loads_from_the_hugging_face_cache(hf_cache: Path) -> None:
    import timm

    repo = hub_cache_dir("resnet18")
    assert repo == hf_cache / "models--timm--resnet18.a1_in1k"
    revision = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    state = {k: v.contiguous() for k, v in timm.create_model("resnet18").state_dict().items()}
    save_file(state, str(snapshot / "model.safetensors"))

    spec = spec_for(RESNET, "layer3")
    backbone = build_backbone(spec)
    report = load_initial_weights(backbone, RESNET, pretrained=True)
    assert report is not None
    assert report.source == "timm/resnet18 (library weights)"
    assert (report.loaded, report.missing, report.unexpected) == (120, (), ())
    model = build_model(spec, backbone)
    for key, value in block_state(model, model.trunk).items():
        assert torch.equal(value, state[key]), key


def test_timm_pretrained_absent_names_the_cache_folder(hf_cache: Path) -> None:
    repo = hf_cache / "models--timm--resnet18.a1_in1k"
    with pytest.raises(WeightsError) as error:
        load_initial_weights(fresh(RESNET), RESNET, pretrained=True)
    message = one_line_naming(error, repo)
    assert f"{repo}/snapshots/<revision>/" in message and f"{repo}/refs/main" in message
