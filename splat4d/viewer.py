"""`splat4d view`: a web viewer (viser) of a run, a .s4d bitstream or a baked 4K4D model.

The browser shows the scene at time t with a time slider, play/pause and a frame-rate readout, a list of
the capture's training cameras to jump to, and a choice between
- "splat4d": splat4d renders the current view on the server (exact, any method) and streams it as an image;
- "viser splats": the Gaussians of time t are sent once and the browser draws them (a fast preview;
  Gaussian methods only, SH degree 0 colours).
viser's web client ships inside its wheel, so the viewer works offline. Needs the `viewer` extra.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from splat4d.cameras import Cameras
from splat4d.errors import ConfigError
from splat4d.render.projection import covariances, quat_to_rotmat

MODES = ("splat4d", "viser splats")
SH_C0 = 0.28209479177387814


def import_viser():
    try:
        import viser
    except ImportError:
        raise ConfigError("the viewer needs viser: pip install 'splat4d[viewer]' (or pip install viser)") from None
    return viser


def camera_from_view(wxyz, position, fov_y: float, aspect: float, max_size: int) -> Cameras:
    """A splat4d camera for a browser view: `wxyz`/`position` place the camera in the world (OpenCV axes,
    as viser's), `fov_y` is the vertical field of view; the image's longer side is `max_size` pixels."""
    w, h = (max_size, max(1, round(max_size / aspect))) if aspect >= 1 else (max(1, round(max_size * aspect)), max_size)
    c2w = np.eye(4)
    c2w[:3, :3] = quat_to_rotmat(torch.as_tensor(np.asarray(wxyz, dtype=np.float64))).numpy()
    c2w[:3, 3] = np.asarray(position, dtype=np.float64)
    f = 0.5 * h / math.tan(0.5 * fov_y)
    viewmat = torch.from_numpy(np.linalg.inv(c2w)).float()
    return Cameras.from_intrinsics(viewmat[None], f, f, w / 2, h / 2, w, h)


def view_of_camera(cam: Cameras) -> tuple[np.ndarray, np.ndarray, float]:
    """(wxyz, position, vertical fov) of a splat4d camera, for the browser."""
    from viser import transforms as tf

    c2w = np.linalg.inv(cam.viewmats[0].double().cpu().numpy())
    fov_y = 2 * math.atan(0.5 * cam.height / float(cam.Ks[0, 1, 1]))
    return tf.SO3.from_matrix(c2w[:3, :3]).wxyz, c2w[:3, 3], fov_y


def splats_at(method, t: float) -> dict[str, np.ndarray]:
    """Centres, covariances, SH-degree-0 colours and opacities of the Gaussians visible at t."""
    from splat4d.commands import visible_gaussians

    with torch.no_grad():
        g = visible_gaussians(method.gaussians_at(float(t)))
    cov = covariances(g["quats"].float(), g["scales"].float()).cpu().numpy()
    rgb = np.clip(SH_C0 * g["sh"][:, 0].float().cpu().numpy() + 0.5, 0, 1)
    return {"centers": g["means"].float().cpu().numpy(), "covariances": cov.astype(np.float32),
            "rgbs": rgb.astype(np.float32), "opacities": g["opacities"].float().cpu().numpy()[:, None]}


@dataclass
class ViewState:
    time: float = 0.0
    playing: bool = False
    mode: str = "splat4d"
    frames: int = 2
    dirty: set = field(default_factory=set)  # client ids whose image is out of date


class Viewer:
    """Serve `method` at host:port. `scene` (optional) gives the training cameras, the up direction and the
    background colour; `max_size` bounds the longer side of the server-rendered image."""

    def __init__(self, method, scene=None, host: str = "127.0.0.1", port: int = 8080, max_size: int = 512,
                 play_fps: float = 12.0):
        viser = import_viser()
        self.method, self.scene, self.max_size, self.play_fps = method, scene, int(max_size), float(play_fps)
        self.lock = threading.Lock()
        frames = max(int(getattr(scene, "num_frames", 0) or 0), 2)
        self.state = ViewState(frames=frames)
        self.bg = torch.tensor(scene.background if scene is not None else (0.0, 0.0, 0.0), dtype=torch.float32,
                               device=method.device)
        self.server = viser.ViserServer(host=host, port=port, verbose=False)
        if scene is not None:
            self.server.scene.set_up_direction(tuple(float(v) for v in scene.up))
        self.rendered = 0
        self._splats = None
        self._rate_start = time.perf_counter()
        self._build_gui()
        self.server.on_client_connect(self._on_connect)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.server.get_host()}:{self.server.get_port()}"

    # ------------------------------------------------------------ GUI
    def _build_gui(self) -> None:
        gui = self.server.gui
        self.time_slider = gui.add_slider("time", 0.0, 1.0, 1.0 / (self.state.frames - 1), 0.0)
        self.play = gui.add_checkbox("play", False)
        self.readout = gui.add_text("frames/s", "–", disabled=True)
        modes = MODES if hasattr(self.method, "gaussians_at") else MODES[:1]
        self.mode = gui.add_dropdown("render", modes, initial_value=modes[0])
        names = [f"camera {c}" for c in self._train_camera_ids()]
        self.jump = gui.add_dropdown("jump to", ["–", *names], initial_value="–") if names else None

        @self.time_slider.on_update
        def _(_event) -> None:
            self._set_time(float(self.time_slider.value))

        @self.play.on_update
        def _(_event) -> None:
            self.state.playing = bool(self.play.value)

        @self.mode.on_update
        def _(_event) -> None:
            self.state.mode = self.mode.value
            self._show_mode()

        if self.jump is not None:
            @self.jump.on_update
            def _(event) -> None:
                if self.jump.value != "–":
                    self._jump(event.client, int(self.jump.value.split()[-1]))

    def _train_camera_ids(self) -> list[int]:
        if self.scene is None:
            return []
        return sorted({v.cam_id for v in self.scene.split("train")})

    def _on_connect(self, client) -> None:
        ids = self._train_camera_ids()
        if ids:
            self._jump(client, ids[0])

        @client.camera.on_update
        def _(_camera) -> None:
            self._mark(client.client_id)

        self._mark(client.client_id)

    def _jump(self, client, cam_id: int) -> None:
        views = self.scene.split("train")
        i = next(i for i, v in enumerate(views) if v.cam_id == cam_id)
        wxyz, pos, fov = view_of_camera(self.scene.camera(views[i]))
        with client.atomic():
            client.camera.fov = fov
            client.camera.wxyz = wxyz
            client.camera.position = pos
        self._mark(client.client_id)

    # ------------------------------------------------------------ drawing
    def _mark(self, client_id: int | None = None) -> None:
        ids = [client_id] if client_id is not None else list(self.server.get_clients())
        self.state.dirty.update(ids)

    def _set_time(self, t: float) -> None:
        self.state.time = min(max(t, 0.0), 1.0)
        if self.state.mode == "viser splats":
            self._send_splats()
        self._mark()

    def _show_mode(self) -> None:
        if self.state.mode == "viser splats":
            plain = np.empty((8, 8, 3), dtype=np.uint8)  # the scene's background colour behind the splats
            plain[:] = (self.bg.cpu().numpy() * 255 + 0.5).astype(np.uint8)
            for client in self.server.get_clients().values():
                client.scene.set_background_image(plain, format="png")
            self._send_splats()
        else:
            if self._splats is not None:
                self._splats.remove()
                self._splats = None
            self._mark()

    def _send_splats(self) -> None:
        with self.lock:
            s = splats_at(self.method, self.state.time)
        self._splats = self.server.scene.add_gaussian_splats("/splats", **s)

    def render_client(self, client) -> np.ndarray:
        """The server-side render of `client`'s current view at the current time, uint8 [H, W, 3]."""
        cam = client.camera
        cams = camera_from_view(cam.wxyz, cam.position, cam.fov, cam.aspect, self.max_size).to(self.method.device)
        with self.lock, torch.no_grad():
            rgb = self.method.render(cams, self.state.time, self.bg).rgb[0].clamp(0, 1)
        return (rgb.cpu().numpy() * 255 + 0.5).astype(np.uint8)

    def _loop(self) -> None:
        last_tick = time.perf_counter()
        while not self._stop.is_set():
            now = time.perf_counter()
            if self.state.playing and now - last_tick >= 1.0 / self.play_fps:
                last_tick = now
                step = 1.0 / (self.state.frames - 1)
                t = self.state.time + step
                self.time_slider.value = 0.0 if t > 1.0 + 1e-9 else round(t / step) * step
            if self.state.mode == "splat4d":
                clients = self.server.get_clients()
                for cid in list(self.state.dirty):
                    self.state.dirty.discard(cid)
                    if cid in clients:
                        clients[cid].scene.set_background_image(self.render_client(clients[cid]), format="jpeg")
                        self.rendered += 1
            elapsed = now - self._rate_start
            if elapsed >= 1.0:  # renders per second over the last second (kept while nothing changes)
                if self.rendered:
                    self.readout.value = f"{self.rendered / elapsed:.1f}"
                self.rendered, self._rate_start = 0, now
            time.sleep(0.005)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.server.stop()


def _interrupt(*_args) -> None:
    raise KeyboardInterrupt


def serve(run, host: str, port: int, max_size: int) -> int:
    """Load `run`, start the viewer, print its URL and serve until Ctrl-C."""
    from splat4d.commands import load_run, run_data_config
    from splat4d.data import load_scene
    from splat4d.errors import DatasetError

    method, config, _ = load_run(run)
    scene = None
    try:
        d = run_data_config(config, run)
        scene = load_scene(d.path, scale=d.scale, background=d.background, format=d.format)
    except (DatasetError, KeyError) as e:
        print(f"note: the run's data is not readable here ({str(e).splitlines()[0]}); no training cameras to jump to")
    viewer = Viewer(method, scene, host=host, port=port, max_size=max_size)
    print(f"splat4d viewer of {run} at {viewer.url} (Ctrl-C to stop)", flush=True)
    signal.signal(signal.SIGTERM, _interrupt)  # a service manager's stop ends it as Ctrl-C does
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # started in the background by a shell
        signal.signal(signal.SIGINT, _interrupt)
    try:
        while True:
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("stopping the viewer")
    finally:
        viewer.stop()
    return 0
