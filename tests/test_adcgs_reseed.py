"""ADC-GS reseeding: rays through foreground pixels that render transparent are kept, and a refinement puts
anchors on them at their view's time, drawn from the start (the most opaque anchor's features), with the
Adam state row for row."""

import math

import pytest
import torch

from splat4d.data import load_scene
from splat4d.methods.adcgs.reseed import MissedRays
from splat4d.methods.base import get_method

pytest.importorskip("constriction")

pytestmark = pytest.mark.usefixtures("one_thread")

from tests.test_adcgs_method import _cfg, _step  # noqa: E402


@pytest.fixture(scope="module")
def scene():
    return load_scene("synthetic:tiny")


def test_missed_rays_are_foreground_pixels_rendered_transparent(scene):
    view = scene.split("train")[0]
    cam = scene.camera(view)
    img = scene.image(view)[None]
    rays = MissedRays()
    rays.note(cam, torch.tensor([0.25]), img, torch.ones(1, cam.height, cam.width), torch.zeros(3), torch.Generator())
    assert rays.take() is None  # everything drawn: nothing missed
    rays.note(cam, torch.tensor([0.25]), img, torch.zeros(1, cam.height, cam.width), torch.zeros(3), torch.Generator())
    got = rays.take()
    fg = int((img[0].amax(-1) > 0.1).sum())
    assert len(got.origins) == min(fg, 64) and bool((got.times == 0.25).all())
    # each ray goes through a foreground pixel and carries its colour
    px = cam.project(got.origins + 2.0 * got.dirs)[0][0].floor().long()
    assert bool((img[0][px[:, 1], px[:, 0]] - got.colors).abs().max() < 1e-6)
    assert rays.take() is None  # a take starts a new collection


def test_refinement_seeds_anchors_where_nothing_is_drawn(scene):
    torch.manual_seed(0)
    m = get_method("adcgs").from_scene(scene, _cfg(reseed_anchors=7, max_anchors=500, refine_every=4),
                                       torch.Generator().manual_seed(0))
    from splat4d.train.optim import make_adam

    opt = make_adam(m.param_groups(40))
    with torch.no_grad():  # nothing is drawn at any time: every foreground pixel is missed
        m.field.t_means.fill_(5.0)
        m.field.t_log_scales.fill_(math.log(0.01))
    events = []
    for step in range(4):
        _, ev = _step(m, opt, scene, step)
        if ev:
            events.append(ev)
    assert events and events[0]["seeded"] == 7
    new = slice(len(m.field) - events[0]["grown"], len(m.field) - events[0]["grown"] + 7)
    times = {round(float(v.time), 6) for v in scene.split("train")}
    assert {round(float(t), 6) for t in m.field.t_means.detach()[new]} <= times
    with torch.no_grad():
        p = m.field.primitives(float(m.field.t_means[new][0]))
    A = len(m.field)
    seeded_slots = torch.arange(A * m.cfg.k).reshape(A, -1)[new].reshape(-1)
    assert bool(torch.isin(seeded_slots, p["slot"]).any())  # drawn at their time
    for name in m.field.fields:  # (the velocities have no moments before the warm-up's end)
        state = opt.state.get(getattr(m.field, name), {"exp_avg": getattr(m.field, name)})
        assert state["exp_avg"].shape == getattr(m.field, name).shape
