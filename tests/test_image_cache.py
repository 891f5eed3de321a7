"""Training images in bounded memory: the byte-bounded LRU, the prefetching `ViewLoader` (same images as
direct decoding, errors raised where a view is asked for, no thread left behind), the uint8 scene path,
and the Trainer with a tiny vs a large cache (same result bit for bit) and with foreground masks.

Scenes are `synthetic:tiny` (4 cameras, 4 frames, 32x32 RGBA with masks), on disk via `write_easyvolcap`
where files matter.
"""

import gc
import random
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from splat4d.data import ArrayImage, load_scene
from splat4d.data.easyvolcap import write_easyvolcap
from splat4d.data.image_cache import AUTO_CAP, GIB, LRUCache, ViewLoader, cache_budget
from splat4d.errors import ConfigError, DatasetError, Splat4DError
from splat4d.methods.static import StaticConfig, StaticGaussians
from splat4d.train.densify import DensifyConfig
from splat4d.train.trainer import TrainConfig, Trainer

VIEW_BYTES = 32 * 32 * 3  # one uint8 RGB view of synthetic:tiny


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):
    yield


@pytest.fixture(scope="module")
def tiny():
    return load_scene("synthetic:tiny")


@pytest.fixture(scope="module")
def tiny_on_disk(tmp_path_factory, tiny) -> Path:
    return write_easyvolcap(tiny, tmp_path_factory.mktemp("tiny") / "ev")


def _prefetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "splat4d-prefetch"]


def _wait(cond, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.005)


# ----------------------------------------------------------------------------- LRU
def test_lru_evicts_least_recently_used_by_bytes_and_never_exceeds_budget():
    cache = LRUCache(100)
    assert cache.put("a", 1, 40) and cache.put("b", 2, 40)
    assert cache.get("a") == 1  # a is now newer than b
    assert cache.put("c", 3, 30)  # 110 > 100: b goes
    assert cache.keys() == ["a", "c"] and cache.nbytes == 70 and cache.evictions == 1
    assert not cache.put("huge", 4, 101)  # larger than the budget: not stored, nothing evicted
    assert cache.keys() == ["a", "c"]
    assert cache.put("a", 5, 100)  # replacing a key frees its old size first
    assert cache.keys() == ["a"] and cache.nbytes == 100 and cache.get("a") == 5

    rng = random.Random(0)
    cache, sizes = LRUCache(1000), {}
    for step in range(2000):
        key, n = rng.randrange(50), rng.randrange(1, 400)
        if cache.put(key, step, n):
            sizes[key] = n
        if rng.random() < 0.3:
            cache.get(rng.randrange(50))
        assert cache.nbytes <= 1000
        assert cache.nbytes == sum(sizes[k] for k in cache.keys())


def test_cache_budget():
    assert cache_budget(1.5) == int(1.5 * GIB)
    assert 0 < cache_budget(0) <= AUTO_CAP
    with pytest.raises(ConfigError, match="image_cache_gb"):
        cache_budget(-1)


# ----------------------------------------------------------------------------- uint8 scene path
def test_uint8_path_matches_float_path(tiny):
    scene = load_scene("synthetic:tiny", background="gray")  # 0.5 is not k/255: composites round
    views = scene.split("train")
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, size=(32, 32, 4), dtype=np.uint8)  # fractional alphas
    views[1].image = ArrayImage(rgba)
    views[2].image = ArrayImage(rgba[..., :3].copy())  # RGB: no compositing
    for v in views[:3]:
        u8, f = scene.image_uint8(v), scene.image(v)
        assert u8.dtype == np.uint8 and u8.shape == (32, 32, 3)
        assert (torch.from_numpy(u8).float() / 255 - f).abs().max() <= 0.5 / 255 + 1e-7
        assert torch.equal(torch.from_numpy(scene.alpha_uint8(v)).float() / 255, scene.alpha(v))
        rgb, a = scene.view_uint8(v, alpha=True)
        assert np.array_equal(rgb, u8) and np.array_equal(a, scene.alpha_uint8(v))
    assert torch.equal(torch.from_numpy(scene.image_uint8(views[2])).float() / 255, scene.image(views[2]))
    # black background, alpha in {0, 255}: exactly the float images the Trainer used to stack
    for v in tiny.split("train"):
        assert torch.equal(torch.from_numpy(tiny.image_uint8(v)).float() / 255, tiny.image(v))


# ----------------------------------------------------------------------------- ViewLoader
def test_prefetch_returns_the_directly_decoded_images(tiny_on_disk):
    scene = load_scene(tiny_on_disk)
    views = scene.split("train")
    where = []

    def decode(i):
        where.append((i, threading.current_thread().name))
        return scene.view_uint8(views[i], alpha=True)

    loader = ViewLoader(decode, len(views), budget=10 * 4 * 32 * 32, lookahead=4)
    loader.prefetch([5, 2, 7, 0, 9])  # the 5th is beyond the lookahead
    _wait(lambda: loader.stats()["prefetched"] == 4)
    images, alphas = loader.get([5, 2, 7, 0])
    assert sorted(where) == [(0, "splat4d-prefetch"), (2, "splat4d-prefetch"), (5, "splat4d-prefetch"),
                             (7, "splat4d-prefetch")]
    assert loader.stats()["hits"] == 4 and loader.stats()["misses"] == 0
    for k, i in enumerate([5, 2, 7, 0]):
        rgb, a = scene.view_uint8(views[i], alpha=True)
        assert images.dtype == torch.uint8 and torch.equal(images[k], torch.from_numpy(rgb.copy()))
        assert torch.equal(alphas[k], torch.from_numpy(a.copy()))
    f, fa = loader.batch([9, 5])  # 9 was never prefetched: decoded here
    assert where[-1] == (9, threading.current_thread().name)
    assert torch.equal(f[1], scene.image(views[5])) and torch.equal(fa[1], scene.alpha(views[5]))
    assert loader.thread_alive
    loader.close()
    assert not loader.thread_alive and not _prefetch_threads()


def test_corrupt_view_raises_dataset_error_where_it_is_asked_for(tiny_on_disk, tmp_path):
    import shutil

    root = shutil.copytree(tiny_on_disk, tmp_path / "ev")
    scene = load_scene(root)
    views = scene.split("train")
    bad = Path(views[3].image.name)
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    where = []

    def decode(i):
        where.append(threading.current_thread().name)
        return scene.view_uint8(views[i])

    loader = ViewLoader(decode, len(views), budget=1 << 20)
    loader.prefetch([3, 1])
    _wait(lambda: loader.stats()["prefetched"] == 1 and not loader._pending)
    assert where == ["splat4d-prefetch"] * 2  # the prefetch thread met the corrupt file
    assert loader.thread_alive  # ... and lived on
    with pytest.raises(DatasetError, match=f"unreadable image {bad}"):
        loader.get([1, 3])
    with pytest.raises(DatasetError, match="unreadable image"):  # asked again: decoded again, same error
        loader.get([3])
    assert where[-1] == threading.current_thread().name
    loader.close()


def test_prefetch_thread_ends_when_the_loader_is_dropped(tiny):
    loader = ViewLoader.for_scene(tiny, tiny.split("train"), budget=1 << 20)
    loader.prefetch([0, 1])
    thread = loader._thread
    _wait(lambda: loader.stats()["prefetched"] == 2)
    del loader
    gc.collect()
    thread.join(timeout=10)
    assert not thread.is_alive()


# ----------------------------------------------------------------------------- Trainer
def _trainer(scene, out: Path, gb: float, **method_kw) -> Trainer:
    cfg = StaticConfig(sh_degree=1, densify=DensifyConfig(start=2, every=3, grad_threshold=2e-5, reset_every=0),
                       **method_kw)
    method = StaticGaussians.from_scene(scene, cfg, torch.Generator().manual_seed(0))
    train = TrainConfig(iters=16, save_every=0, seed=3, device="cpu", image_cache_gb=gb)
    return Trainer(method, scene, train, out, {"method": "static"}, torch.device("cpu"))


def test_tiny_cache_trains_exactly_like_a_large_one(tiny, tmp_path):
    results = {}
    for name, gb in (("tiny", 2.5 * VIEW_BYTES / GIB), ("large", 1.0)):
        tr = _trainer(tiny, tmp_path / name, gb)
        tr.fit(progress=False)
        assert not _prefetch_threads()  # fit stopped the prefetch thread
        results[name] = (tr.method.state_dict(), tr.image_loader.stats())
    (a, stats_tiny), (b, stats_large) = results["tiny"], results["large"]
    assert stats_tiny["evictions"] > 0 and stats_tiny["bytes"] <= stats_tiny["budget"]
    assert stats_large["evictions"] == 0
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_masks_reach_the_batch_and_the_mask_loss(tiny, tmp_path):
    tr = _trainer(tiny, tmp_path / "m", 1.0, lambda_mask=0.5)
    batch = tr._next_batch()
    assert batch.alphas is not None and batch.alphas.dtype == torch.float32 and batch.alphas.shape == (1, 32, 32)
    assert torch.equal(batch.alphas[0], tiny.alpha(tr.views[int(batch.index[0])]))
    outs = [tr.method.render(batch.cameras, float(batch.times[0]), batch.background)]
    with_mask, logs = tr.method.loss(batch, outs, 0)
    tr.method.cfg.lambda_mask = 0.0
    without, _ = tr.method.loss(batch, outs, 0)
    mask_l1 = (outs[0].alpha[..., 0] - batch.alphas).abs().mean()
    assert logs["mask_l1"] > 0
    assert float((with_mask - without).detach()) == pytest.approx(0.5 * float(mask_l1.detach()), rel=1e-5)
    tr.image_loader.close()
    assert _trainer(tiny, tmp_path / "n", 1.0)._next_batch().alphas is None  # not asked for, not loaded


def test_masks_asked_for_on_a_scene_without_them(tmp_path):
    scene = load_scene("synthetic:tiny")
    for v in scene.split("train"):
        v.image, v.mask = ArrayImage(v.image.read()[..., :3].copy()), None
    assert not scene.has_masks("train")
    with pytest.raises(ConfigError, match="use foreground masks .* have none"):
        _trainer(scene, tmp_path / "r", 1.0, lambda_mask=0.1)
    _trainer(scene, tmp_path / "s", 1.0)  # without the mask loss the scene is fine


def test_lookahead_is_what_the_sampler_takes_and_leaves_it_unchanged(tiny, tmp_path):
    tr = _trainer(tiny, tmp_path / "o", 1.0)
    V = len(tr.views)
    ahead = tr._upcoming_views(V + 5)  # crosses into the next (not yet drawn) permutation
    taken = [int(tr._next_batch().index[0]) for _ in range(V + 5)]
    gen, expect = torch.Generator().manual_seed(3 + 1), []  # the sampler as it always was: pop from a randperm
    for _ in range(2):
        expect += torch.randperm(V, generator=gen).tolist()[::-1]
    assert ahead == taken == expect[: V + 5]
    tr.image_loader.close()


def test_a_view_order_hook_decides_what_the_sampler_takes(tiny, tmp_path):
    tr = _trainer(tiny, tmp_path / "h", 1.0)
    first = [i for i, v in enumerate(tr.views) if v.frame_id == 0]
    tr.view_order = lambda step, gen, views: [i for i, v in enumerate(views) if v.frame_id == 0]
    ahead = tr._upcoming_views(len(first) + 2)
    taken = [int(tr._next_batch().index[0]) for _ in range(len(first) + 2)]
    assert ahead == taken and set(taken) <= set(first)
    tr.view_order = lambda step, gen, views: [len(views)]
    tr.order = []
    with pytest.raises(Splat4DError, match="outside the"):
        tr._next_batch()
    tr.image_loader.close()
