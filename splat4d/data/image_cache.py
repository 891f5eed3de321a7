"""Training images in bounded memory: views are decoded on demand to uint8, kept in an LRU cache bounded
in bytes, and decoded ahead of need by one background thread that follows the sampler's order.

A full-size Neu3D capture (20 cameras x 300 frames at 2704x2028) is ~100 GB as float32 and ~33 GB as
uint8, so the Trainer keeps no stacked copy: it asks `ViewLoader.batch(indices, device)` for each batch
(uint8 from the cache, converted to float32 on the device) and tells `ViewLoader.prefetch` which views
come next. The values are the same whatever the cache size or timing: only where they come from changes.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections import OrderedDict, deque
from typing import Callable, Hashable, Sequence

import numpy as np
import torch
from torch import Tensor

from splat4d.errors import ConfigError, DatasetError

GIB = 2**30
AUTO_FRACTION = 1 / 32
"""Share of the available memory an automatic cache budget takes. Small on purpose: the prefetch thread
decodes upcoming views while the step runs, so the cache saves little time once it is larger than a few
batches, while every cached GiB is resident (the 16x30 1024^2 capture: peak RSS 2.56 GiB when all of it
was cached, docs/benchmarks.md)."""
AUTO_CAP = 8 * GIB
"""Largest automatic cache budget in bytes."""

Decoded = tuple[np.ndarray, "np.ndarray | None"]  # (RGB uint8 [H, W, 3], mask uint8 [H, W] or None)


def available_memory() -> int | None:
    """Bytes of memory available to new allocations (MemAvailable in /proc/meminfo, else free pages
    from os.sysconf), or None when neither can be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, AttributeError):
        return None


def cache_budget(gb: float) -> int:
    """Cache budget in bytes for a size in GiB; 0 means automatic: `AUTO_FRACTION` of the available
    memory, at most `AUTO_CAP` (1 GiB when the available memory cannot be read)."""
    gb = float(gb)
    if not np.isfinite(gb) or gb < 0:
        raise ConfigError(f"image_cache_gb must be >= 0 (0: automatic), got {gb}")
    if gb > 0:
        return int(gb * GIB)
    avail = available_memory()
    return GIB if avail is None else int(min(AUTO_FRACTION * avail, AUTO_CAP))


class LRUCache:
    """Thread-safe least-recently-used cache whose values' sizes (in bytes) never sum above `budget`.

    A value larger than the whole budget is not stored. `get` counts as a use; so does `touch`.
    """

    def __init__(self, budget: int):
        self.budget = int(budget)
        self.nbytes = 0
        self.evictions = 0
        self._items: OrderedDict[Hashable, tuple[object, int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable):
        """The value under `key` (now the most recently used), or None."""
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def touch(self, key: Hashable) -> bool:
        """Mark `key` as just used; False when it is not cached."""
        with self._lock:
            if key not in self._items:
                return False
            self._items.move_to_end(key)
            return True

    def put(self, key: Hashable, value, nbytes: int) -> bool:
        """Store `value` of `nbytes` bytes, evicting the least recently used values until it fits.
        Returns False (storing nothing, evicting nothing) when `nbytes` exceeds the budget."""
        nbytes = int(nbytes)
        with self._lock:
            if nbytes > self.budget:
                return False
            old = self._items.pop(key, None)
            if old is not None:
                self.nbytes -= old[1]
            while self._items and self.nbytes + nbytes > self.budget:
                _, (_, n) = self._items.popitem(last=False)
                self.nbytes -= n
                self.evictions += 1
            self._items[key] = (value, nbytes)
            self.nbytes += nbytes
            return True

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def keys(self) -> list:
        """Keys from least to most recently used."""
        with self._lock:
            return list(self._items)


class ViewLoader:
    """uint8 images (and masks) of views 0..num_views-1 through an `LRUCache` plus a prefetch thread.

    Args:
        decode: view index -> (RGB uint8 [H, W, 3], mask uint8 [H, W] or None). Called from the caller's
            thread or the prefetch thread; it must be thread-safe (reading files and arrays is).
        num_views: number of views.
        budget: cache size in bytes (see `cache_budget`).
        lookahead: at most this many upcoming views are decoded ahead (fewer when the cache could not
            hold them beside the last batch).

    The prefetch thread starts on the first `prefetch` call and ends in `close` (or when the loader is
    garbage-collected); it is a daemon, so it never holds up interpreter exit. An exception it meets
    decoding a view is raised in the thread that next asks for that view.

    Examples:
        >>> loader = ViewLoader.for_scene(scene, scene.split("train"), cache_budget(0.5))
        >>> images, alphas = loader.get([3, 1])  # uint8 [2, H, W, 3], None
        >>> loader.prefetch([7, 0, 5])  # the views the sampler returns next, in order
        >>> loader.close()
    """

    def __init__(self, decode: Callable[[int], Decoded], num_views: int, budget: int, lookahead: int = 8):
        self.decode = decode
        self.num_views = int(num_views)
        self.cache = LRUCache(budget)
        self.lookahead = int(lookahead)
        self.hits = self.misses = self.prefetched = 0
        self._entry_bytes = 0  # largest decoded view so far
        self._last_batch = 1
        self._cond = threading.Condition()
        self._wanted: deque[int] = deque()
        self._pending: set[int] = set()
        self._errors: dict[int, Exception] = {}
        self._stop = False
        self._thread: threading.Thread | None = None
        weakref.finalize(self, _wake, self._cond)  # a collected loader's thread wakes up and ends

    @classmethod
    def for_scene(cls, scene, views: Sequence, budget: int, alphas: bool = False, lookahead: int = 8) -> "ViewLoader":
        """A loader of `scene.view_uint8(views[i], alpha=alphas)`."""
        views = list(views)
        return cls(lambda i: _decode_view(scene, views[i], alphas), len(views), budget, lookahead)

    # ------------------------------------------------------------------ fetching
    def get(self, indices: Sequence[int]) -> tuple[Tensor, Tensor | None]:
        """Images uint8 [B, H, W, 3] and masks uint8 [B, H, W] (None when not decoded) on the CPU."""
        items = [self._fetch(int(i)) for i in indices]
        self._last_batch = max(len(items), 1)
        images = torch.from_numpy(np.stack([im for im, _ in items]))
        if any(a is None for _, a in items):
            return images, None
        return images, torch.from_numpy(np.stack([a for _, a in items]))

    def batch(self, indices: Sequence[int], device: torch.device | str = "cpu") -> tuple[Tensor, Tensor | None]:
        """`get(indices)` moved to `device` and converted there to float32 in [0, 1]:
        images [B, H, W, 3], masks [B, H, W] or None."""
        images, alphas = self.get(indices)
        images = images.to(device, non_blocking=True).float().div_(255)
        if alphas is not None:
            alphas = alphas.to(device, non_blocking=True).float().div_(255)
        return images, alphas

    def _fetch(self, i: int) -> Decoded:
        if not 0 <= i < self.num_views:
            raise IndexError(f"view index {i} out of range for {self.num_views} views")
        with self._cond:
            while True:
                item = self.cache.get(i)
                if item is not None:
                    self.hits += 1
                    return item
                if i in self._errors:
                    raise self._errors.pop(i)
                if i not in self._pending:
                    self._pending.add(i)  # so the prefetch thread does not decode it too
                    break
                self._cond.wait()  # the prefetch thread is decoding it
        try:
            item = self.decode(i)
            self._store(i, item)
        finally:
            with self._cond:
                self._pending.discard(i)
                self._cond.notify_all()
        self.misses += 1
        return item

    def _store(self, i: int, item: Decoded) -> None:
        nbytes = item[0].nbytes + (item[1].nbytes if item[1] is not None else 0)
        with self._cond:
            self._entry_bytes = max(self._entry_bytes, nbytes)
            self.cache.put(i, item, nbytes)

    # ------------------------------------------------------------------ prefetching
    def prefetch(self, indices: Sequence[int]) -> None:
        """Decode these views (in this order: soonest needed first) in the background, replacing any
        earlier wish list. Cached ones are marked as used so that new entries evict other views first."""
        if self.lookahead <= 0:
            return
        with self._cond:
            size = self._entry_bytes  # unknown (0) until a view is decoded: assume they all fit
            room = self.cache.budget // size - self._last_batch if size else self.lookahead
            todo = []
            for i in list(indices)[: max(min(self.lookahead, room), 0)]:
                i = int(i)
                if not self.cache.touch(i) and i not in self._pending and i not in todo:
                    todo.append(i)
            self._wanted = deque(todo)
            if todo:
                self._start()
                self._cond.notify_all()

    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop = False
            self._thread = threading.Thread(target=_prefetch_loop, args=(weakref.ref(self), self._cond),
                                            name="splat4d-prefetch", daemon=True)
            self._thread.start()

    def _next_wanted(self) -> int | None:
        """(Prefetch thread, lock held.) The next view to decode, or None when there is none now."""
        while self._wanted:
            i = self._wanted.popleft()
            if i not in self.cache and i not in self._pending and i not in self._errors:
                self._pending.add(i)
                return i
        return None

    def _prefetch_one(self, i: int) -> None:
        """(Prefetch thread, lock not held.) Decode view i into the cache, or remember its error."""
        try:
            item = self.decode(i)
        except Exception as e:  # noqa: BLE001 - raised again where the view is asked for
            with self._cond:
                self._errors[i] = e
                self._pending.discard(i)
                self._cond.notify_all()
            return
        self._store(i, item)
        with self._cond:
            self.prefetched += 1
            self._pending.discard(i)
            self._cond.notify_all()

    def close(self) -> None:
        """Stop the prefetch thread (after the view it is decoding) and wait for it; the cache stays, and
        a later `prefetch` starts a new thread."""
        with self._cond:
            self._stop = True
            self._wanted.clear()
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        self._thread = None

    @property
    def thread_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stats(self) -> dict:
        """Cache use and counters: bytes, views cached, hits, misses (decoded on request), prefetched,
        evictions."""
        return {"bytes": self.cache.nbytes, "budget": self.cache.budget, "views": len(self.cache),
                "hits": self.hits, "misses": self.misses, "prefetched": self.prefetched,
                "evictions": self.cache.evictions}


def _decode_view(scene, view, alphas: bool) -> Decoded:
    rgb, alpha = scene.view_uint8(view, alpha=alphas)
    if alphas and alpha is None:
        raise DatasetError(f"image {view.image.name} has no foreground mask (no mask file, no alpha channel)")
    return rgb, alpha


def _wake(cond: threading.Condition) -> None:
    with cond:
        cond.notify_all()


def _prefetch_loop(ref: "weakref.ref[ViewLoader]", cond: threading.Condition) -> None:
    """The prefetch thread. It holds the loader only while working, so a dropped loader is collected
    (and its finalizer wakes this loop, which then ends)."""
    while True:
        with cond:
            while True:
                loader = ref()
                if loader is None or loader._stop:
                    return
                i = loader._next_wanted()
                if i is not None:
                    break
                del loader
                cond.wait()
        loader._prefetch_one(i)
        del loader
