"""Figures drawn with Pillow alone (no plotting library in the core install): a grid of images under
column titles and a labelled scatter plot."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from splat4d.io.atomic import atomic_path
from splat4d.io.images import to_uint8

WHITE, BLACK, GREY = (255, 255, 255), (0, 0, 0), (150, 150, 150)
COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


def _font() -> ImageFont.ImageFont:
    return ImageFont.load_default()


def _save(img: Image.Image, path: Path) -> Path:
    with atomic_path(path) as tmp:
        img.save(tmp)
    return Path(path)


def labelled_grid(path: str | Path, columns: list[tuple[str, list]], gap: int = 4, title_h: int = 16,
                  min_width: int = 128) -> Path:
    """Columns of images (each column: title, images top to bottom) on white, titles above; images narrower
    than `min_width` are enlarged by a whole factor (nearest pixel)."""
    cells = [[to_uint8(im) for im in imgs] for _, imgs in columns]
    factor = max(1, min_width // max(c.shape[1] for col in cells for c in col))
    cells = [[c.repeat(factor, 0).repeat(factor, 1) for c in col] for col in cells]
    h = max(c.shape[0] for col in cells for c in col)
    w = max(max(c.shape[1] for c in col) for col in cells)
    rows = max(len(col) for col in cells)
    W = len(columns) * (w + gap) + gap
    H = title_h + rows * (h + gap) + gap
    canvas = Image.new("RGB", (W, H), WHITE)
    draw = ImageDraw.Draw(canvas)
    for j, ((title, _), col) in enumerate(zip(columns, cells)):
        x = gap + j * (w + gap)
        draw.text((x, 2), _fit(draw, title, w), fill=BLACK, font=_font())
        for i, c in enumerate(col):
            c = c if c.shape[-1] == 3 else np.repeat(c[..., :1], 3, axis=-1)
            canvas.paste(Image.fromarray(c), (x, title_h + gap + i * (h + gap)))
    return _save(canvas, Path(path))


def _fit(draw: ImageDraw.ImageDraw, text: str, width: int) -> str:
    while len(text) > 1 and draw.textlength(text, font=_font()) > width:
        text = text[:-2] + "…"
    return text


def scatter_plot(path: str | Path, points: list[tuple[float, float, str]], xlabel: str, ylabel: str,
                 log_x: bool = False, size: tuple[int, int] = (640, 420)) -> Path:
    """Points (x, y, label) with axes, ticks and a label beside each point."""
    W, H = size
    left, right, top, bottom = 60, 20, 20, 50
    pts = [(math.log10(x) if log_x else x, y, s) for x, y, s in points if x and x > 0 and y is not None]
    canvas = Image.new("RGB", size, WHITE)
    draw = ImageDraw.Draw(canvas)
    font = _font()
    draw.rectangle([left, top, W - right, H - bottom], outline=BLACK)
    draw.text((left + (W - left - right) // 2 - len(xlabel) * 3, H - 18), xlabel, fill=BLACK, font=font)
    draw.text((4, 4), ylabel, fill=BLACK, font=font)
    if not pts:
        draw.text((left + 10, top + 10), "no points", fill=BLACK, font=font)
        return _save(canvas, Path(path))
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    x0, x1 = _padded(min(xs), max(xs))
    y0, y1 = _padded(min(ys), max(ys))
    px = lambda x: left + (x - x0) / (x1 - x0) * (W - left - right)  # noqa: E731
    py = lambda y: H - bottom - (y - y0) / (y1 - y0) * (H - top - bottom)  # noqa: E731
    for v in (_log_ticks(x0, x1) if log_x else _ticks(x0, x1)):
        draw.line([px(v), H - bottom, px(v), H - bottom + 4], fill=BLACK)
        text = f"{10 ** v:.3g}" if log_x else f"{v:.3g}"
        draw.text((px(v) - 10, H - bottom + 6), text, fill=BLACK, font=font)
    for v in _ticks(y0, y1):
        draw.line([left - 4, py(v), left, py(v)], fill=BLACK)
        draw.line([left, py(v), W - right, py(v)], fill=(235, 235, 235))
        draw.text((left - 40, py(v) - 6), f"{v:.4g}", fill=BLACK, font=font)
    for i, (x, y, label) in enumerate(pts):
        c = COLOURS[i % len(COLOURS)]
        draw.ellipse([px(x) - 4, py(y) - 4, px(x) + 4, py(y) + 4], fill=c, outline=BLACK)
        draw.text((px(x) + 6, py(y) - 6), label, fill=c, font=font)
    return _save(canvas, Path(path))


def _padded(lo: float, hi: float) -> tuple[float, float]:
    span = hi - lo if hi > lo else max(abs(hi), 1.0) * 0.1
    return lo - 0.1 * span, hi + 0.1 * span


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    step = 10 ** math.floor(math.log10((hi - lo) / n))
    for m in (1, 2, 5, 10):
        if (hi - lo) / (step * m) <= n:
            step *= m
            break
    first = math.ceil(lo / step) * step
    return [first + k * step for k in range(int((hi - first) / step) + 1)]


def _log_ticks(lo: float, hi: float) -> list[float]:
    """log10 of the 1-2-5 values between 10^lo and 10^hi (plain ticks when fewer than two fall inside)."""
    vals = [math.log10(m * 10.0 ** k) for k in range(math.floor(lo), math.ceil(hi) + 1) for m in (1, 2, 5)]
    inside = [v for v in vals if lo <= v <= hi]
    return inside if len(inside) >= 2 else _ticks(lo, hi)
