"""load_model / read_checkpoint: files, run folders (latest, best, step), bare state dicts,
the config reader, and one clear error for every bad source."""

from __future__ import annotations

import fractions
import logging
import shutil
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from vsrkit.checkpoint import CheckpointManager
from vsrkit.infer import (
    InferenceOptionError,
    ModelLoadError,
    checkpoint_config,
    load_model,
    read_checkpoint,
)
from vsrkit.infer.loading import CONFIG_LOCATIONS, architecture_from_config
from vsrkit.vsr import build_model


def test_a_run_folder_gives_its_newest_checkpoint_with_the_run_config(trained_run: Path) -> None:
    ckpt = read_checkpoint(trained_run)
    assert ckpt.step == 10 and ckpt.preset == "tiny"
    assert ckpt.config is not None and ckpt.config["num_frames"] == 3
    assert ckpt.path is not None and ckpt.path.name == "checkpoint_step_0000010.pth"
    model = load_model(trained_run, device="cpu")
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    state = torch.load(ckpt.path, weights_only=True)
    for key, value in state["model"].items():
        assert torch.equal(model.state_dict()[key], value), key
    # the checkpoint folder itself, a file, a step, best
    assert read_checkpoint(trained_run / "checkpoints").step == 10
    assert read_checkpoint(ckpt.path).step == 10
    assert read_checkpoint(trained_run, which=5).step == 5
    assert read_checkpoint(trained_run, which="5").step == 5
    best = CheckpointManager(trained_run / "checkpoints").best_step()
    assert best is not None and read_checkpoint(trained_run, which="best").step == best


def test_a_damaged_newest_checkpoint_is_skipped_with_a_warning(
    trained_run: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    newest = run / "checkpoints" / "checkpoint_step_0000010.pth"
    data = bytearray(newest.read_bytes())
    data[100:164] = bytes(64)  # same size: only loading finds it
    newest.write_bytes(bytes(data))
    before = sorted(p.name for p in (run / "checkpoints").iterdir())
    with caplog.at_level(logging.WARNING):
        ckpt = read_checkpoint(run)
    assert ckpt.step < 10
    assert "skipping checkpoint at step 10" in caplog.text
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == before  # nothing renamed
    with pytest.raises(ModelLoadError, match="0000010"):
        read_checkpoint(run, which=10)  # asked for by step: an error, not a fallback


def test_a_truncated_newest_checkpoint_is_passed_over_with_a_warning(
    trained_run: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    newest = run / "checkpoints" / "checkpoint_step_0000010.pth"
    newest.write_bytes(newest.read_bytes()[:1000])  # its manifest now disagrees with it
    with caplog.at_level(logging.WARNING):
        ckpt = read_checkpoint(run)
    assert ckpt.step < 10
    assert "skipping checkpoint_step_0000010.pth (its manifest disagrees" in caplog.text


def test_a_bare_state_dict_needs_its_preset(tmp_path: Path) -> None:
    sd = build_model("small").state_dict()
    path = tmp_path / "weights.pth"
    torch.save(sd, path)
    with pytest.raises(ModelLoadError, match=r"no model config .*--preset"):
        load_model(path, device="cpu")
    model = load_model(path, preset="small", device="cpu")
    assert model.num_feat == 32
    with pytest.raises(ModelLoadError, match=r"weights do not fit the model: .*shape"):
        load_model(path, preset="tiny", device="cpu")
    assert load_model(dict(sd), preset="small", device="cpu").num_blocks == 10


def test_a_preset_that_disagrees_with_the_checkpoint_config_is_refused(trained_run: Path) -> None:
    with pytest.raises(ModelLoadError, match="is a 'tiny' model, not 'paper'"):
        read_checkpoint(trained_run, preset="paper")
    assert read_checkpoint(trained_run, preset="tiny").preset == "tiny"


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"not a checkpoint at all", "not a readable PyTorch file"),
        (b"", "not a readable PyTorch file"),
    ],
)
def test_unreadable_files_are_one_line(tmp_path: Path, content: bytes, needle: str) -> None:
    path = tmp_path / "bad.pth"
    path.write_bytes(content)
    with pytest.raises(ModelLoadError, match=needle) as info:
        load_model(path, device="cpu")
    message = str(info.value)
    assert "\n" not in message and str(path) in message and "weights_only" not in message


def test_pickled_objects_are_never_loaded(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"model": build_model("tiny").state_dict(), "obj": fractions.Fraction(1, 3)}, path)
    with pytest.raises(
        ModelLoadError,
        match=r"evil.pth: holds Python objects \(fractions.Fraction\) that vsrkit never loads",
    ):
        load_model(path, device="cpu")


def test_a_truncated_checkpoint_is_one_line(trained_run: Path, tmp_path: Path) -> None:
    src = trained_run / "checkpoints" / "checkpoint_step_0000010.pth"
    path = tmp_path / "checkpoint_step_0000010.pth"
    path.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    with pytest.raises(ModelLoadError, match="not a readable PyTorch file"):
        read_checkpoint(path)


@pytest.mark.parametrize(
    ("state", "needle"),
    [
        ({"model": {}, "loop": {}}, "not a vsrkit checkpoint"),
        ([1, 2], "found a list"),
        ({"optimizer": {}, "step": 3}, "keys optimizer, step"),
        ({"w": torch.zeros(2)}, "no weights of vsrkit's model in it \\(found keys w\\)"),
        ({"model": {"head.w": torch.zeros(1)}, "config": {}}, "found keys head.w"),
    ],
)
def test_foreign_objects_say_what_they_hold(tmp_path: Path, state: object, needle: str) -> None:
    path = tmp_path / "x.pth"
    torch.save(state, path)
    with pytest.raises(ModelLoadError, match=needle):
        read_checkpoint(path)


@pytest.mark.parametrize("preset", ["tiny", "small", "paper"])
def test_the_model_parts_that_mark_our_weights_are_the_model_s(preset: str) -> None:
    from vsrkit.infer.loading import _MODEL_PARTS

    assert {k.split(".")[0] for k in build_model(preset).state_dict()} == _MODEL_PARTS


def test_folders_without_checkpoints_and_missing_paths(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no vsrkit checkpoint in it"):
        read_checkpoint(tmp_path)
    with pytest.raises(ModelLoadError, match="no such checkpoint file or run folder"):
        read_checkpoint(tmp_path / "missing.pth")
    with pytest.raises(ModelLoadError, match="latest, best or a step"):
        read_checkpoint(tmp_path, which="newest")


def test_best_needs_a_checkpoint_with_a_quality(trained_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    for p in (run / "checkpoints").glob("*best*"):
        p.unlink()
    for manifest in (run / "checkpoints").glob("*.json"):  # drop the metrics
        text = manifest.read_text().replace('"quality"', '"other"')
        manifest.write_text(text)
    with pytest.raises(ModelLoadError, match="no checkpoint with a validation quality"):
        read_checkpoint(run, which="best")


@pytest.mark.parametrize("location", CONFIG_LOCATIONS)
def test_the_config_is_found_wherever_a_checkpoint_keeps_it(location: tuple[str, ...]) -> None:
    state: dict = {"model": {}}
    node = state
    for key in location[:-1]:
        node = node.setdefault(key, {})
    node[location[-1]] = {"model": "small", "n_blocks": 3}
    assert checkpoint_config(state) == {"model": "small", "n_blocks": 3}


@given(
    st.recursive(
        st.none() | st.integers() | st.text(max_size=5),
        lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=6), kids),
        max_leaves=12,
    )
)
def test_the_config_reader_never_fails_on_any_state(state: object) -> None:
    if not isinstance(state, dict):
        state = {"loop": state, "train": state}
    got = checkpoint_config(state)
    assert got is None or isinstance(got, dict)


@pytest.mark.parametrize(
    ("config", "needle"),
    [
        ({}, "no model preset"),
        ({"model": "huge"}, "unknown model preset 'huge'"),
        ({"model": "tiny", "scale": 2}, "trained for scale 2"),
        ({"model": "tiny", "n_feats": 0}, "n_feats must be an int >= 1"),
        ({"model": "tiny", "n_blocks": "3"}, "n_blocks must be an int >= 1"),
    ],
)
def test_configs_the_model_cannot_be_built_from(config: dict, needle: str) -> None:
    with pytest.raises(ModelLoadError, match=needle):
        architecture_from_config(config, where="ckpt.pth")


def test_size_overrides_of_the_config_build_that_model() -> None:
    arch = architecture_from_config({"model": "tiny", "n_feats": 8, "n_blocks": 3})
    net = build_model("tiny", num_feat=8, num_blocks=3)
    config = {"model": "tiny", "n_feats": 8, "n_blocks": 3}
    for state in (  # the layout of vsrkit train, and the one before the loop core
        {"model": net.state_dict(), "train": {"config": config}},
        {"model": net.state_dict(), "loop": {"config": config}},
    ):
        model = load_model(state, device="cpu")
        assert (arch["num_feat"], arch["num_blocks"]) == (8, 3)
        assert (model.num_feat, model.num_blocks) == (8, 3)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without CUDA")
def test_cuda_without_cuda_is_one_line() -> None:
    with pytest.raises(InferenceOptionError, match="CUDA is not available"):
        load_model(build_model("tiny").state_dict(), preset="tiny", device="cuda")
