"""Bad dataset input: every failure is a DatasetError (or ConfigError) whose message names the file."""

from __future__ import annotations

import json

import numpy as np
import pytest
from data_builders import (
    image,
    known_cameras,
    llff_rows,
    save_png,
    write_dnerf,
    write_hypernerf,
    write_neu3d,
)

from splat4d.data import check_scene, easyvolcap, load_scene, parse_background
from splat4d.data.opencv_yaml import (
    matrix_to_rodrigues,
    read_opencv_yaml,
    rodrigues_to_matrix,
    write_opencv_yaml,
)
from splat4d.errors import ConfigError, DatasetError


def test_nonexistent_path(tmp_path):
    with pytest.raises(DatasetError, match="no such dataset path .*nowhere"):
        load_scene(tmp_path / "nowhere")


def test_unknown_folder_lists_every_layout(tmp_path):
    (tmp_path / "readme.txt").write_text("hello")
    with pytest.raises(DatasetError) as e:
        load_scene(tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and str(tmp_path) in msg
    for name, needle in [("dnerf", "transforms_train.json"), ("neu3d", "poses_bounds.npy"),
                         ("hypernerf", "dataset.json"), ("easyvolcap", "intri.yml")]:
        assert f"{name}:" in msg and needle in msg


def test_missing_transforms_train(tmp_path):
    write_dnerf(tmp_path, known_cameras(1), {"test": [(0, 0.0)]})  # only transforms_test.json
    with pytest.raises(DatasetError, match=r"missing .*transforms_train\.json.*expected dnerf:"):
        load_scene(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"empty.transforms_train\.json"):
        load_scene(tmp_path / "empty", format="dnerf")


def test_corrupt_and_missized_images(tmp_path):
    write_dnerf(tmp_path, known_cameras(2), {"train": [(0, 0.0), (1, 0.5), (0, 1.0)]})
    bad = tmp_path / "train" / "r_001.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    save_png(tmp_path / "train" / "r_002.png", image(0, 3, 5, 5))
    scene = load_scene(tmp_path)  # loading stays lazy
    problems = check_scene(scene)
    assert len(problems) == 2
    assert "r_001.png" in problems[0] and "unreadable" in problems[0]
    assert "r_002.png" in problems[1] and "5x5" in problems[1] and "8x6" in problems[1]
    with pytest.raises(DatasetError, match="r_001.png"):
        scene.image(scene.splits["train"][1])
    with pytest.raises(DatasetError, match="r_002.png"):
        scene.image(scene.splits["train"][2])
    (tmp_path / "train" / "r_000.png").unlink()
    assert any("missing image file" in p and "r_000.png" in p for p in check_scene(scene))


def test_bad_json(tmp_path):
    (tmp_path / "transforms_train.json").write_text("{not json")
    with pytest.raises(DatasetError, match=r"unreadable .*transforms_train\.json"):
        load_scene(tmp_path)


def test_nan_in_dnerf_matrix(tmp_path):
    write_dnerf(tmp_path, known_cameras(2), {"train": [(0, 0.0), (1, 1.0)]})
    meta = json.loads((tmp_path / "transforms_train.json").read_text())
    meta["frames"][1]["transform_matrix"][0][3] = float("nan")
    (tmp_path / "transforms_train.json").write_text(json.dumps(meta))  # json writes NaN
    with pytest.raises(DatasetError, match=r"non-finite .*transforms_train\.json"):
        load_scene(tmp_path)


def test_neu3d_camera_count_mismatch(tmp_path):
    cams = known_cameras(3)
    write_neu3d(tmp_path, cams, num_frames=2, mode="flat")
    np.save(tmp_path / "poses_bounds.npy", llff_rows(known_cameras(4)))
    with pytest.raises(DatasetError, match=r"poses_bounds\.npy has 4 camera poses but the folder has 3"):
        load_scene(tmp_path)


def test_neu3d_nan_pose(tmp_path):
    write_neu3d(tmp_path, known_cameras(2), num_frames=2, mode="flat")
    rows = llff_rows(known_cameras(2))
    rows[1, 3] = np.inf
    np.save(tmp_path / "poses_bounds.npy", rows)
    with pytest.raises(DatasetError, match=r"non-finite .*poses_bounds\.npy"):
        load_scene(tmp_path)


def test_neu3d_corrupt_video(tmp_path):
    cams = known_cameras(2, width=16, height=12)
    write_neu3d(tmp_path, cams, num_frames=2, mode="video")
    (tmp_path / "cam01.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64)
    with pytest.raises(DatasetError, match=r"cam01\.mp4"):
        load_scene(tmp_path)


def test_hypernerf_nan_and_missing_camera(tmp_path):
    write_hypernerf(tmp_path, known_cameras(2), warp_ids=[0, 1], train=[0], val=[1], factors=(1,))
    cam_file = tmp_path / "camera" / "v001.json"
    cam = json.loads(cam_file.read_text())
    cam["orientation"][0][0] = float("nan")
    cam_file.write_text(json.dumps(cam))
    with pytest.raises(DatasetError, match=r"non-finite .*v001\.json"):
        load_scene(tmp_path)
    cam_file.unlink()
    with pytest.raises(DatasetError, match=r"missing camera file .*v001\.json"):
        load_scene(tmp_path)


def test_easyvolcap_nan_and_missing_entries(tmp_path):
    K, Rot, T = np.array([[10.0, 0, 4], [0, 10, 3], [0, 0, 1]]), np.eye(3), np.zeros((3, 1))
    save_png(tmp_path / "images" / "a" / "000000.png", image(0))
    write_opencv_yaml(tmp_path / "intri.yml", {"names": ["a"], "K_a": K, "H_a": 6, "W_a": 8})
    write_opencv_yaml(tmp_path / "extri.yml", {"names": ["a"], "Rot_a": Rot, "T_a": np.full((3, 1), np.nan)})
    with pytest.raises(DatasetError, match=r"non-finite .*extri\.yml"):
        load_scene(tmp_path)
    write_opencv_yaml(tmp_path / "extri.yml", {"names": ["a"], "Rot_a": Rot, "T_a": T})
    assert load_scene(tmp_path).num_cameras == 1
    write_opencv_yaml(tmp_path / "intri.yml", {"names": ["a"], "H_a": 6, "W_a": 8})
    with pytest.raises(DatasetError, match=r"intri\.yml has no 3x3 K_a"):
        load_scene(tmp_path)
    (tmp_path / "intri.yml").write_text("%YAML:1.0\n---\nK_a: !!opencv-matrix\n   rows: 3\n   cols: 3\n   data: [ 1 ]\n")
    with pytest.raises(DatasetError, match=r"unreadable OpenCV YAML .*intri\.yml"):
        load_scene(tmp_path)


def test_easyvolcap_bad_test_camera(tmp_path):
    write_opencv_yaml(tmp_path / "intri.yml", {"names": ["a"], "K_a": np.eye(3), "H_a": 6, "W_a": 8})
    write_opencv_yaml(tmp_path / "extri.yml", {"names": ["a"], "Rot_a": np.eye(3), "T_a": np.ones((3, 1))})
    save_png(tmp_path / "images" / "a" / "000000.png", image(0))
    with pytest.raises(ConfigError, match="unknown test camera 'zz'"):
        load_scene(tmp_path, test_cams=["zz"])
    with pytest.raises(ConfigError, match="takes no option"):
        load_scene(tmp_path, format="easyvolcap", bogus=1)
    with pytest.raises(ConfigError, match="unknown dataset format"):
        load_scene(tmp_path, format="colmap")


def test_easyvolcap_writer_rejects_inconsistent_camera_ids(tmp_path):
    from splat4d.data.scene import ArrayImage, DynamicScene, View

    cams = known_cameras(2)
    views = [View(cams[i], 0.0, 0, i, ArrayImage(image(i))) for i in range(2)]  # one id, two poses
    with pytest.raises(DatasetError, match="different cameras"):
        easyvolcap.write_easyvolcap(DynamicScene("x", "synthetic", {"train": views}), tmp_path)


@pytest.mark.parametrize("bad", ["purple", "1,2", "0.5,0.5,2.0", "256,0,0", "a,b,c", (1, 2), "nan,0,0", None])
def test_parse_background_rejects(bad):
    with pytest.raises(ConfigError):
        parse_background(bad)


def test_opencv_yaml_and_rodrigues(tmp_path):
    rng = np.random.default_rng(0)
    for _ in range(200):
        r = rng.normal(size=3)
        r *= rng.uniform(0, np.pi) / np.linalg.norm(r)
        R = rodrigues_to_matrix(r)
        assert np.allclose(R @ R.T, np.eye(3), atol=1e-12) and np.linalg.det(R) == pytest.approx(1)
        assert np.allclose(matrix_to_rodrigues(R).ravel(), r, atol=1e-8)
    Rpi = rodrigues_to_matrix([0, np.pi, 0])
    assert np.allclose(rodrigues_to_matrix(matrix_to_rodrigues(Rpi)), Rpi, atol=1e-12)
    m = rng.normal(size=(3, 4))
    write_opencv_yaml(tmp_path / "a.yml", {"names": ["00", "08"], "M_00": m, "H_00": 6})
    back = read_opencv_yaml(tmp_path / "a.yml")
    assert back["names"] == ["00", "08"] and back["H_00"] == "6"
    np.testing.assert_array_equal(back["M_00"], m)  # repr() floats round-trip exactly
