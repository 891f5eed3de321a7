"""`splat4d generate ds4d`: a video and a folder of pseudo views -> a ds4d run (eval / render work on it);
the sources (folder layout, Zero123++'s grid) and one-line errors that leave no output folder."""

import json

import numpy as np
import pytest
import torch

from splat4d.cli import main
from splat4d.errors import DatasetError, WeightsNotFound
from splat4d.io.images import save_image
from splat4d.methods.ds4d.sources import FolderViews, Zero123ppViews, split_grid, view_cameras


pytestmark = pytest.mark.usefixtures("one_thread", "no_lpips_weights")


def _inputs(root, views=3, frames=3, size=28):
    rng = np.random.default_rng(0)
    (root / "video").mkdir(parents=True)
    (root / "pseudo").mkdir()
    for f in range(frames):
        save_image(root / "video" / f"{f:03d}.png", rng.random((size, size, 3)))
        for v in range(views):
            save_image(root / "pseudo" / f"v{v:02d}_f{f:02d}.png", rng.random((size, size, 3)))
    return root / "video", root / "pseudo"


def test_folder_source_reads_the_matrix_layout(tmp_path):
    video, pseudo = _inputs(tmp_path, views=4, frames=2)
    src = FolderViews(pseudo)
    pv = src(torch.rand(5, 3, 16, 16))  # 5 video frames take the folder's 2 frames spread over them
    assert pv.images.shape == (3, 5, 3, 16, 16)
    assert pv.azimuths == (90.0, 180.0, 270.0)  # v00 (the reference view) is not a pseudo view
    (pseudo / "v02_f01.png").unlink()
    with pytest.raises(DatasetError, match="missing v02_f01"):
        FolderViews(pseudo)
    with pytest.raises(DatasetError, match="no such folder"):
        FolderViews(tmp_path / "nothing")


def test_zero123pp_grid_and_missing_weights(tmp_path):
    grid = torch.zeros(6, 4, 3)  # 3 rows x 2 columns of 2x2 tiles, tile k filled with k / 10
    for k in range(6):
        r, c = divmod(k, 2)
        grid[2 * r:2 * r + 2, 2 * c:2 * c + 2] = k / 10
    tiles = split_grid(grid, 2)
    assert tiles.shape == (6, 3, 2, 2)
    torch.testing.assert_close(tiles.mean((1, 2, 3)), torch.arange(6) / 10)
    with pytest.raises(DatasetError, match="not a 2x3 grid"):
        split_grid(torch.zeros(7, 4, 3), 2)
    with pytest.raises(WeightsNotFound, match="download sudo-ai/zero123plus-v1.2"):
        Zero123ppViews(tmp_path)(torch.rand(1, 3, 8, 8))
    (tmp_path / "model_index.json").write_text("{}")
    with pytest.raises(WeightsNotFound, match="no pipeline.py"):
        Zero123ppViews(tmp_path)(torch.rand(1, 3, 8, 8))


def test_pseudo_cameras_sit_on_one_sphere():
    cams = view_cameras((0.0, 90.0), (0.0, 20.0), 30.0, 16)
    c = cams.centers
    torch.testing.assert_close(c.norm(dim=1), torch.full((2,), 2.0, dtype=c.dtype))
    assert abs(float(c[0, 2])) < 1e-9 and float(c[1, 2]) == pytest.approx(2 * np.sin(np.radians(20)))


@pytest.mark.filterwarnings("ignore:ds4d. LPIPS")
def test_generate_ds4d_end_to_end(tmp_path, capsys):
    video, pseudo = _inputs(tmp_path)
    out = tmp_path / "run"
    args = ["generate", "ds4d", "--video", str(video), "--pseudo-views", str(pseudo), "--frames", "3", "--size", "28",
            "--iters", "4", "--device", "cpu", "--method.features", "patch", "--method.feature-size", "28",
            "--method.feature-cache", "none"]
    assert main([*args, "--out", str(out)]) == 0
    for name in ("pseudo/v00_f00.png", "pseudo/v02_f02.png", "scene/intri.yml", "fit/checkpoint.pt", "orbit.mp4",
                 "generate.json"):
        assert (out / name).is_file(), name
    rec = json.loads((out / "generate.json").read_text())
    assert rec["pseudo_views"] == 2 and rec["fit_metrics"]["features"].startswith("patch")
    assert main(["eval", str(out / "fit")]) == 0
    capsys.readouterr()
    assert main([*args[:5], str(tmp_path / "none"), *args[6:], "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such folder" in err[0] and not (tmp_path / "bad").exists()
    assert main([*args[:4], *args[6:], "--out", str(tmp_path / "bad")]) == 2
    assert "exactly one of --pseudo-views" in capsys.readouterr().err
    assert main([*args[:4], "--zero123pp-model", str(tmp_path), *args[6:], "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Zero123++ weights not found" in err[0] and not (tmp_path / "bad").exists()
