"""The `adcgs` method: stages on schedule, rate term in the loss, anchor refinement with Adam state
kept row for row, evaluation on rounded attributes, and a checkpoint round trip."""

import pytest
import torch

from splat4d.data import load_scene
from splat4d.fields.sh import eval_sh
from splat4d.methods.base import Batch, get_method
from splat4d.train.optim import make_adam

pytest.importorskip("constriction")


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny tensors, one thread


@pytest.fixture(scope="module")
def scene():
    return load_scene("synthetic:tiny")


def _cfg(**kw):
    cls = get_method("adcgs")
    base = dict(k=3, feature_dim=8, residual_dim=4, time_dim=8, time_feature_dim=8, pe_freqs=2, hidden=8,
                deform_hidden=8, max_init_anchors=60, refine_every=5, refine_start_fraction=0.0)
    return cls.Config(**{**base, **kw})


def _step(m, opt, scene, step):
    view = scene.split("train")[step % len(scene.split("train"))]
    cam = scene.camera(view)
    m.train()
    m.on_step(step)
    out = m.render(cam, float(view.time), torch.zeros(3))
    batch = Batch(cam, torch.tensor([view.time]), scene.image(view)[None], None, torch.zeros(3), torch.tensor([0]))
    loss, logs = m.loss(batch, [out], step)
    loss.backward()
    m.after_backward([out], step)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return logs, m.after_step(opt, step + 1)


def test_stages_rate_and_refinement(scene):
    torch.manual_seed(0)  # the networks' initial weights
    cls = get_method("adcgs")
    m = cls.from_scene(scene, _cfg(), torch.Generator().manual_seed(0))
    groups = m.param_groups(40)
    opt = make_adam(groups)
    assert (int(m.warmup_iters), int(m.quantise_iters), int(m.rate_iters)) == (4, 5, 8)
    assert len(m.field) <= 60
    events, logs_at = [], {}
    for step in range(20):
        a_before = len(m.field)
        logs, ev = _step(m, opt, scene, step)
        logs_at[step] = logs
        if ev:
            events.append(ev)
            # every per-anchor parameter and its Adam moments have the new number of rows
            # temporal opacity and anchor velocities by default
            assert m.field.fields == m.field.FIELDS + m.field.TEMPORAL_FIELDS + (m.field.VELOCITY_FIELD,)
            for name in m.field.fields:
                p = getattr(m.field, name)
                assert p.shape[0] == a_before + ev["grown"] - ev["pruned"]
                if p in opt.state:
                    assert opt.state[p]["exp_avg"].shape == p.shape, name
    rated = [s for s, logs in logs_at.items() if "bits_per_value" in logs]
    assert rated and min(rated) >= 8 and all(logs_at[s]["bits_per_value"] > 0 for s in rated)
    import math
    grown = sum(e["grown"] for e in events)
    assert grown > 0  # new anchors are at least clone_t_scale wide and at most as wide as an initial anchor
    tail = slice(len(m.field) - events[-1]["grown"], None) if events[-1]["grown"] else slice(0, 0)
    widths = m.field.t_log_scales[tail]
    assert (widths >= math.log(m.cfg.clone_t_scale) - 1e-6).all() and (widths <= math.log(m.cfg.t_scale_init) + 0.05).all()
    assert ((m.field.t_means >= 0) & (m.field.t_means <= 1)).all()
    assert events and all(set(e) == {"grown", "seeded", "pruned"} for e in events)
    assert m.dynamic and m.quantising


def test_evaluation_renders_rounded_attributes_and_checkpoint_round_trip(scene, tmp_path):
    from splat4d.train.run import DataConfig, fit, load_run
    from splat4d.train.trainer import TrainConfig

    r = fit("adcgs", _cfg(), DataConfig("synthetic:tiny"), TrainConfig(iters=12, save_every=0, device="cpu"),
            tmp_path / "run", progress=False)
    assert r["psnr"] > 5 and r["num_gaussians"] > 0
    m, _, step = load_run(tmp_path / "run", "cpu")
    assert step == 12 and m.quantising and not m.training
    attrs = m.attributes_for_render()
    rounded, _ = m.quantised("round")
    for k in attrs:
        assert torch.equal(attrs[k], rounded[k]), k
    # the rounded values are what the entropy coder stores: compress -> decompress gives them back
    a = m.coded_attributes()
    payloads, coded = m.entropy.compress(a["f_v"], a["f_g"], a["cov"], a["col"])
    decoded = m.entropy.decompress(payloads, len(m.field))
    torch.testing.assert_close(decoded["f_v"].float(), rounded["f_v"], atol=1e-6, rtol=0)
    cam = scene.cameras("test")[0]
    with torch.no_grad():
        img = m.render(cam, 0.5, torch.zeros(3)).rgb
    assert torch.isfinite(img).all()
    # evaluation computes the canonical primitives once; every t gives what the full computation gives
    with torch.no_grad():
        for t in (0.0, 0.3, 1.0):
            cached, full = m.primitives_at(t), m.field.primitives(t, m.dynamic, m.attributes_for_render())
            for k in full:
                assert torch.equal(cached[k], full[k]), (t, k)
        before = m.primitives_at(0.3)["colors"].clone()
        m.field.colors.add_(0.05)  # a change after training resumes is picked up
        m.train()
        m.eval()
        assert not torch.equal(m.primitives_at(0.3)["colors"], before)


def test_bitstream_decodes_to_the_reference_exactly_and_damage_is_refused(scene, tmp_path):
    from splat4d.codec.container import unpack
    from splat4d.errors import BitstreamError
    from splat4d.methods.adcgs import bitstream
    from splat4d.train.run import DataConfig, fit, load_run
    from splat4d.train.trainer import TrainConfig

    fit("adcgs", _cfg(), DataConfig("synthetic:tiny"), TrainConfig(iters=12, save_every=0, device="cpu"),
        tmp_path / "run", progress=False)
    m, config, step = load_run(tmp_path / "run", "cpu")
    for weights in ("fp32", "int8", "fp16"):
        data, ref, report = bitstream.encode(m, config, step, weights=weights)
        got, got_config, got_step = bitstream.decode(data)
        assert got_step == step and got_config["method"] == "adcgs"
        cam = scene.cameras("test")[0]
        with torch.no_grad():
            for t in (0.0, 0.5, 1.0):
                a, b = ref.render(cam, t, torch.zeros(3)).rgb, got.render(cam, t, torch.zeros(3)).rgb
                assert (a - b).abs().max() <= 1e-5, (weights, t)
        for name, sec in report["sections"].items():
            if sec["estimated_bits"]:  # + a constant: the coder's flush and rounding to whole 32-bit words
                assert sec["bytes"] * 8 <= 1.02 * sec["estimated_bits"] + 192, (name, sec)
        nets = bitstream._network_state(got)
        assert all(torch.equal(t, nets[k]) for k, t in bitstream._network_state(ref).items()), weights
    assert got.field.velocity and ref.field.t_velocity.abs().sum() > 0  # trained after the warm-up
    assert torch.equal(got.field.t_velocity, ref.field.t_velocity)
    # int8 weights give a smaller file than fp16 ones, fp16 than fp32
    size = {w: len(bitstream.encode(m, config, step, w)[0]) for w in ("int8", "fp16", "fp32")}
    assert size["int8"] < size["fp16"] < size["fp32"], size
    _, sections = unpack(data)
    assert list(sections)[:3] == ["header", "networks", "positions"]
    with pytest.raises(BitstreamError):
        bitstream.decode(data[:-3])


def test_int8_weights_round_each_row_to_its_own_scale_and_old_sections_still_read():
    import json

    import numpy as np

    from splat4d.methods.adcgs import bitstream

    w = torch.tensor([[1.0, -0.5, 0.25], [0.0, 0.0, 0.0], [1e-3, -2e-3, 5e-4]])
    q, scale = bitstream._int8_rows(w)
    back = bitstream._from_int8(q, scale, w.shape)
    assert q.dtype == torch.int8 and int(q.abs().max()) == 127 and torch.equal(back[1], w[1])
    assert bool(((back - w).abs() <= scale[:, None] / 2 + 1e-9).all())  # each row to its own step
    tensors = {"m": w, "v": torch.tensor([0.1, 0.2])}
    got = bitstream._unpack_tensors(bitstream._pack_tensors(tensors, "int8"))
    assert torch.equal(got["m"], back) and torch.equal(got["v"], tensors["v"].half().float())  # vectors fp16
    # a section of format 1: one dtype for all tensors
    head = json.dumps({"dtype": "float16", "tensors": [{"name": "v", "shape": [2], "offset": 0, "bytes": 4}]}).encode()
    old = len(head).to_bytes(4, "little") + head + np.array([0.1, 0.2], np.float16).tobytes()
    assert torch.equal(bitstream._unpack_tensors(old)["v"], tensors["v"].half().float())


def test_rate_reaches_only_anchors_in_view(scene):
    torch.manual_seed(0)
    cls = get_method("adcgs")
    m = cls.from_scene(scene, _cfg(), torch.Generator().manual_seed(0))
    m.param_groups(40)
    m.train()
    m.on_step(30)  # past the rate's start
    from splat4d.cameras import Cameras

    lo, hi = m.field.anchors.min(0).values.detach(), m.field.anchors.max(0).values.detach()
    corner = lo + 0.1 * (hi - lo)
    cam = Cameras.look_at([(corner + torch.tensor([0.0, -0.3, 0.0])).tolist()], corner.tolist(), up=(0, 0, 1),
                          fov_deg=20, width=16, height=16)  # a narrow view of one corner
    out = m.render(cam, 0.5, torch.zeros(3))
    batch = Batch(cam, torch.tensor([0.5]), torch.rand(1, 16, 16, 3), None, torch.zeros(3), torch.tensor([0]))
    loss, logs = m.loss(batch, [out], 30)
    loss.backward()
    seen = m._anchors_in_view([out])
    assert "bits_per_value" in logs and 0 < int(seen.sum()) < len(m.field)
    assert (m.field.f_v.grad[~seen] == 0).all() and m.field.f_v.grad[seen].abs().sum() > 0


def test_without_temporal_opacity_the_paper_model_codes_and_loads(scene, tmp_path):
    from splat4d.codec.container import unpack
    from splat4d.methods.adcgs import bitstream
    from splat4d.train.checkpoint import to_plain

    cls = get_method("adcgs")
    m = cls.from_scene(scene, _cfg(temporal_opacity=False), torch.Generator().manual_seed(0))
    assert not m.field.temporal and m.field.fields == m.field.FIELDS
    m.param_groups(10)
    config = {"method": "adcgs", "method_config": to_plain(m.cfg), "data": {}, "train": {}}
    data, ref, _ = bitstream.encode(m, config, 10)
    assert "temporal" not in unpack(data)[1]
    got, _, _ = bitstream.decode(data)
    assert not got.field.temporal and not got.cfg.temporal_opacity
    loaded = cls.empty(_cfg(), m.state_dict())  # a state without time windows: a model without them
    assert not loaded.field.temporal


def test_the_reported_estimate_is_of_the_coding_written(scene):
    """The hyperprior codes f_v from the unrounded f_v: the estimate must use the same one (an estimate from
    the rounded values differed from the written f_v section by 5 % on D-NeRF at lambda_e 1e-2)."""
    from splat4d.methods.adcgs import bitstream
    from splat4d.train.checkpoint import to_plain

    cls = get_method("adcgs")
    m = cls.from_scene(scene, _cfg(step_f_v=0.5), torch.Generator().manual_seed(0))
    m.param_groups(10)
    with torch.no_grad():  # coarse steps: rounding f_v moves the hyperprior's latent
        m.field.f_v.copy_(torch.randn(m.field.f_v.shape, generator=torch.Generator().manual_seed(1)))
        a = {k: v.detach().double() for k, v in m.coded_attributes().items()}
        _, bits = m.entropy.double()(a["f_v"], a["f_g"], a["cov"], a["col"], mode="round")
        m.entropy.float()
    config = {"method": "adcgs", "method_config": to_plain(m.cfg), "data": {}, "train": {}}
    _, _, report = bitstream.encode(m, config, 10, weights="fp16")  # near the float networks the bits came from
    for name in ("hyper", "f_v"):
        assert report["sections"][name]["estimated_bits"] == pytest.approx(float(bits[name].sum()), rel=1e-3)  # fp16 weights
        assert report["sections"][name]["bytes"] * 8 <= 1.02 * report["sections"][name]["estimated_bits"] + 192


def test_a_model_without_velocities_codes_and_loads(scene):
    from splat4d.methods.adcgs import bitstream
    from splat4d.train.checkpoint import to_plain

    cls = get_method("adcgs")
    m = cls.from_scene(scene, _cfg(anchor_velocity=False), torch.Generator().manual_seed(0))
    assert m.field.temporal and not m.field.velocity
    m.param_groups(10)
    config = {"method": "adcgs", "method_config": to_plain(m.cfg), "data": {}, "train": {}}
    got, _, _ = bitstream.decode(bitstream.encode(m, config, 10)[0])
    assert got.field.temporal and not got.field.velocity
    loaded = cls.empty(_cfg(), m.state_dict())  # a run saved before velocities existed
    assert not loaded.field.velocity and not loaded.cfg.anchor_velocity


def test_the_fine_encoding_unit_follows_the_scene_and_old_runs_keep_world_units(scene):
    cls = get_method("adcgs")
    m = cls.from_scene(scene, _cfg(), torch.Generator().manual_seed(0))
    assert m.cfg.pe_unit == pytest.approx(float(m.extent) / 4, rel=1e-6) and m.field.dims.pe_unit == m.cfg.pe_unit
    old = _cfg()  # a config saved before pe_unit existed reads as 0: positions in world units, as trained
    assert old.pe_unit == 0 and cls.empty(old, m.state_dict()).field.dims.pe_unit == 1.0
    with torch.no_grad():  # the unit scales the fine network's input: a twice larger scene, a twice larger unit
        m.field.fine_net.out.weight.normal_()
        a = m.field.deform(0.3)["opac_scale_k"]
        big = cls.empty(_cfg(pe_unit=2 * m.cfg.pe_unit), m.state_dict())
        big.load_state_dict(m.state_dict())
        big.field.anchors.mul_(2)
        big.field.coarse.out.bias.zero_()
        torch.testing.assert_close(big.field.deform(0.3)["opac_scale_k"], a)


def test_a_saved_model_loads_under_other_width_defaults(scene):
    cls = get_method("adcgs")
    m = cls.from_scene(scene, _cfg(entropy_hidden=16, coarse_pe_freqs=2))
    cfg = _cfg(entropy_hidden=8, coarse_pe_freqs=0)  # what a config without those settings would give
    loaded = cls.empty(cfg, m.state_dict())
    loaded.load_state_dict(m.state_dict())
    assert (cfg.entropy_hidden, cfg.coarse_pe_freqs) == (16, 2)
    for degree in (0, 2):  # a run saved without view-dependent colour (or with another degree) keeps its own
        m = cls.from_scene(scene, _cfg(sh_degree=degree))
        cfg = _cfg(sh_degree=1)
        cls.empty(cfg, m.state_dict()).load_state_dict(m.state_dict())
        assert cfg.sh_degree == degree


def test_view_dependent_colour_starts_flat_and_learns_per_direction(scene):
    cls = get_method("adcgs")
    flat, sh = (cls.from_scene(scene, _cfg(sh_degree=d), torch.Generator().manual_seed(0)) for d in (0, 1))
    sh.load_state_dict({k: v for k, v in flat.state_dict().items() if "theta.out" not in k and "theta.skip" not in k},
                       strict=False)
    with torch.no_grad():  # the same canonical model apart from the SH rows, which start at zero
        for name in ("out.weight", "out.bias", "skip.weight"):
            sh.field.theta.get_parameter(name)[:14] = flat.field.theta.get_parameter(name)
    views = scene.split("train")
    cams = [scene.camera(views[0]), scene.camera(views[-1])]
    assert not torch.allclose(cams[0].centers, cams[1].centers)
    for m in (flat, sh):
        m.eval()
    with torch.no_grad():
        for cam in cams:
            torch.testing.assert_close(sh.render(cam, 0.3, torch.zeros(3)).rgb, flat.render(cam, 0.3, torch.zeros(3)).rgb)
        assert sh.gaussians_at(0.3)["sh"].shape[1:] == (4, 3) and flat.gaussians_at(0.3)["sh"].shape[1:] == (1, 3)
    # a render's loss reaches the SH rows of theta; with them set, the colour differs between directions
    sh.train()
    out = sh.render(cams[0], 0.3, torch.zeros(3))
    out.rgb.sum().backward()
    assert sh.field.theta.out.weight.grad[14:].abs().sum() > 0
    sh.eval()
    with torch.no_grad():
        sh.field.theta.out.bias[14:] = 0.5
        sh._eval_drawn = None
        for cam in cams:
            diff = (sh.render(cam, 0.3, torch.zeros(3)).rgb - flat.render(cam, 0.3, torch.zeros(3)).rgb).abs()
            assert diff.max() > 0.05
        coeffs = sh.gaussians_at(0.3)["sh"]
        up, down = (eval_sh(1, coeffs, torch.tensor([0.0, 0.0, z]).expand(len(coeffs), 3)) for z in (1.0, -1.0))
        assert (up - down).abs().min() > 0.45  # 2 x C1 x 0.5 = 0.49 per channel; 0 without the SH rows


def test_time_table_rows_follow_the_capture(scene):
    """One row per frame when every camera sees every frame; one per two frames in a monocular capture,
    so no held-out frame reads a row no training view ever read."""
    from splat4d.data.synthetic import load_synthetic

    cls = get_method("adcgs")
    cfg = _cfg()
    m = cls.from_scene(scene, cfg)
    assert cfg.time_rows == m.field.time_table.frames == scene.num_frames  # resolved in place for config.yaml
    mono = load_synthetic("tiny", schedule="monocular", num_cameras=6, num_frames=16, test_every=4)
    cfg = _cfg()
    m = cls.from_scene(mono, cfg)
    assert cfg.time_rows == m.field.time_table.frames == 8
    rows = m.field.time_table.frames - 1
    train = torch.tensor([float(v.time) for v in mono.split("train")]) * rows
    assert all  # every row lies within a row's distance of a training time, so training reaches it((train - k).abs().min() < 1.0 for k in range(rows + 1))
    fixed = _cfg(time_rows=5)
    assert cls.from_scene(mono, fixed).field.time_table.frames == 5
    assert cfg.time_smooth == 4.0  # a monocular capture starts with smooth rows (resolved for config.yaml)
    rig = _cfg()
    cls.from_scene(scene, rig)
    assert rig.time_smooth == 0.0 and fixed.time_smooth == 4.0


def test_dynamic_init_fraction_moves_part_of_the_ray_anchors(scene):
    from splat4d.data.synthetic import load_synthetic

    moving = load_synthetic("tiny", num_frames=6)
    cls = get_method("adcgs")
    base = cls.from_scene(moving, _cfg(foreground_init_anchors=20, dynamic_init_fraction=0.0))
    dyn = cls.from_scene(moving, _cfg(foreground_init_anchors=20, dynamic_init_fraction=0.5))
    assert len(base.field) == len(dyn.field)
    tail = slice(len(base.field) - 10, None)  # the ray anchors come last; half of them now on moving pixels
    assert not torch.equal(base.field.anchors[tail], dyn.field.anchors[tail])
    with pytest.raises(Exception, match="dynamic_init_fraction"):
        _cfg(dynamic_init_fraction=1.5).validate()


def test_view_dependent_colour_joins_at_its_start(scene):
    m = get_method("adcgs").from_scene(scene, _cfg(sh_degree=2, sh_start_fraction=0.5))  # (option; default 0)
    m.param_groups(100)
    for step, on in ((0, False), (49, False), (50, True), (99, True)):
        m.on_step(step)
        assert ("sh_rest" in m.primitives_at(0.3)) == on and m.view_dependent == on
    with pytest.raises(Exception, match="sh_start_fraction"):
        _cfg(sh_start_fraction=1.5).validate()
    with pytest.raises(Exception, match=r"sh_degree must be an integer in \[-1, 3\]"):
        _cfg(sh_degree=4).validate()


def test_auto_view_dependent_colour_only_where_several_cameras_see_each_time(scene):
    import dataclasses

    cls = get_method("adcgs")
    assert scene.views_per_time("train") >= 2
    assert cls.Config().sh_degree == -1
    m = cls.from_scene(scene, _cfg())
    assert m.cfg.sh_degree == 1 and m.field.dims.sh_degree == 1
    first_per_time = {}
    for v in scene.split("train"):
        first_per_time.setdefault(v.time, v)
    mono = dataclasses.replace(scene, splits={**scene.splits, "train": list(first_per_time.values())})
    m = cls.from_scene(mono, _cfg())
    assert m.cfg.sh_degree == 0 and "sh_rest" not in m.primitives_at(0.3)
