"""`splat4d view`: the viewer starts on a tiny run, headless Chromium shows a rendered (not blank) canvas,
moving the time slider changes the image, the browser-side splats draw something, Ctrl-C exits cleanly. The camera conversions are checked without
a browser; the browser-side splats are switched on and drawn. Skips with the reason when viser, playwright or Debian's chromium is absent."""

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ENV, SPLAT4D

from splat4d.data import load_scene

viser = pytest.importorskip("viser", reason="the viewer needs viser (pip install 'splat4d[viewer]')")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# as the machine's notes say: no background networking on a closed network; software WebGL
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--use-gl=angle", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"]


def test_browser_camera_round_trips_a_training_camera():
    from splat4d.viewer import camera_from_view, view_of_camera

    scene = load_scene("synthetic:tiny")
    cam = scene.cameras("train")[1]
    wxyz, pos, fov = view_of_camera(cam)
    back = camera_from_view(wxyz, pos, fov, cam.width / cam.height, max(cam.width, cam.height))
    torch.testing.assert_close(back.viewmats.float(), cam.viewmats.float(), atol=1e-5, rtol=0)
    torch.testing.assert_close(back.Ks.float(), cam.Ks.float(), atol=1e-4, rtol=1e-5)
    wide = camera_from_view(wxyz, pos, fov, 2.0, 100)
    assert (wide.width, wide.height) == (100, 50)


def test_browser_splats_are_the_visible_gaussians_at_t():
    from splat4d.commands import visible_gaussians
    from splat4d.methods.base import get_method
    from splat4d.viewer import splats_at

    scene = load_scene("synthetic:tiny")
    cls = get_method("deformable")
    m = cls.from_scene(scene, cls.Config(max_init_points=300, foreground_init_points=100, grid_resolution=(8, 8, 8),
                                         multires=(1,), grid_dim=8, width=16))
    s = splats_at(m, 0.5)
    g = visible_gaussians(m.gaussians_at(0.5))
    n = len(g["means"])
    assert s["centers"].shape == (n, 3) and s["covariances"].shape == (n, 3, 3) and s["opacities"].shape == (n, 1)
    np.testing.assert_allclose(s["centers"], g["means"].detach().numpy(), atol=1e-6)
    np.testing.assert_allclose(s["covariances"], np.swapaxes(s["covariances"], 1, 2), atol=1e-9)
    assert (np.linalg.eigvalsh(s["covariances"].astype(np.float64)) > 0).all()
    want = np.clip(0.28209479177387814 * g["sh"][:, 0].detach().numpy() + 0.5, 0, 1)
    np.testing.assert_allclose(s["rgbs"], want, atol=1e-6)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _scene_pixels(page) -> np.ndarray:
    """The page as an array, without the GUI panel (top right), the notices (top left) and the axes gizmo
    (bottom left): only the scene's own pixels."""
    from io import BytesIO

    from PIL import Image

    img = np.asarray(Image.open(BytesIO(page.screenshot())).convert("RGB")).astype(np.float64)
    h, w, _ = img.shape
    return img[h // 3: h - 90, 90: w * 3 // 5]


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is absent (Debian: apt-get install chromium)")
def test_viewer_in_headless_chromium(tmp_path):
    sync_playwright = pytest.importorskip("playwright.sync_api", reason="needs playwright (pip install playwright)").sync_playwright
    from splat4d.methods.deformable import DeformableConfig
    from splat4d.train.densify import DensifyConfig
    from splat4d.train.run import DataConfig, fit
    from splat4d.train.trainer import TrainConfig

    run = Path(os.environ.get("SPLAT4D_VIEWER_RUN") or tmp_path / "run")  # the README's screenshot: a real run
    if not run.exists():
        cfg = DeformableConfig(coarse_fraction=0.25, sh_degree=1, max_init_points=300, foreground_init_points=100,
                               grid_resolution=(8, 8, 8), multires=(1,), grid_dim=8, width=16,
                               densify=DensifyConfig(start=1000))
        fit("deformable", cfg, DataConfig("synthetic:tiny"), TrainConfig(iters=40, save_every=0, device="cpu"), run,
            progress=False)
    port = _free_port()
    proc = subprocess.Popen(SPLAT4D + ["view", str(run), "--port", str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=ENV)
    try:
        deadline = time.time() + 60
        line = ""
        while "Ctrl-C" not in line and time.time() < deadline and proc.poll() is None:
            line = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}" in line, line
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 900, "height": 600})
            page.goto(f"http://127.0.0.1:{port}")
            page.wait_for_selector("canvas", timeout=30000)
            first = _wait_for_image(page, lambda img: img.std() > 5.0, timeout=60.0)
            assert first.std() > 5.0, "the canvas stayed blank"
            shot = os.environ.get("SPLAT4D_VIEWER_SCREENSHOT")
            if shot:
                for close in page.locator(".mantine-Notification-closeButton").all():
                    close.click()  # the "software WebGL" notice
                time.sleep(1.5)
                page.screenshot(path=shot)
            slider = page.get_by_role("slider").first
            slider.focus()
            for _ in range(3):
                page.keyboard.press("ArrowRight")
            later = _wait_for_image(page, lambda img: np.abs(img - first).mean() > 1.0)
            assert np.abs(later - first).mean() > 1.0, "moving the time slider did not change the image"
            page.locator("input[value='splat4d']").first.click()  # the render dropdown
            page.get_by_role("option", name="viser splats").click()
            splats = _wait_for_image(page, lambda img: np.abs(img - later).mean() > 1.0 and img.std() > 5.0)
            assert splats.std() > 5.0 and np.abs(splats - later).mean() > 1.0, "the browser-side splats show nothing"
            browser.close()
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
        assert proc.returncode == 0 and "stopping the viewer" in out and "Traceback" not in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _wait_for_image(page, ok, timeout: float = 30.0) -> np.ndarray:
    deadline = time.time() + timeout
    img = _scene_pixels(page)
    while not ok(img) and time.time() < deadline:
        time.sleep(0.5)
        img = _scene_pixels(page)
    return img


def test_view_refuses_bad_input(tmp_path, capsys):
    from splat4d.cli import main

    assert main(["view", str(tmp_path / "missing")]) == 2
    assert main(["view", str(tmp_path), "--port", "0"]) == 2
    assert "--port" in capsys.readouterr().err


def test_play_steps_through_the_frames_and_the_server_renders_the_view():
    from splat4d.methods.base import get_method
    from splat4d.viewer import Viewer, view_of_camera

    scene = load_scene("synthetic:tiny")
    cls = get_method("static")
    viewer = Viewer(cls.from_scene(scene, cls.Config(max_init_points=300)), scene, port=_free_port())
    try:
        viewer.play.value = True
        seen = set()
        deadline = time.time() + 10
        while len(seen) < scene.num_frames and time.time() < deadline:
            seen.add(round(viewer.state.time, 6))
            time.sleep(0.01)
        assert len(seen) == scene.num_frames  # one slider step per frame, wrapping at the end
        wxyz, pos, fov = view_of_camera(scene.cameras("train")[0])

        class Camera:  # what viser's client camera exposes
            pass

        client = Camera()
        client.camera = Camera()
        client.camera.wxyz, client.camera.position, client.camera.fov, client.camera.aspect = wxyz, pos, fov, 2.0
        img = viewer.render_client(client)
        assert img.shape == (256, 512, 3) and img.dtype == np.uint8 and img.std() > 0
    finally:
        viewer.stop()
