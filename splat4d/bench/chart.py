"""Line charts drawn with PIL (a core dependency), so benchmarks can draw their curves without matplotlib.

A figure is a grid of `Panel`s (title, axis labels, `Line`s of points), one legend for the whole figure
(a line's colour follows its label, the same in every panel), ticks at 1/2/2.5/5 x 10^k steps. Drawn at
`SUPERSAMPLE` times the size and reduced with a Lanczos filter, which anti-aliases lines and text.

Examples:
    >>> fig = figure([[Panel("scene", "iterations", "PSNR (dB)", [Line("static", [1000, 3000], [20.1, 21.0])])]])
    >>> fig.save("curves.png")
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from PIL import Image, ImageDraw, ImageFont

from splat4d.io.atomic import atomic_path

PALETTE = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))
"""Line colours in order of first appearance of a label (matplotlib's tab10, so charts look familiar)."""
SUPERSAMPLE = 2
"""Drawing scale before the final Lanczos reduction."""


@dataclass
class Line:
    """One labelled polyline with a marker at every point (points are drawn in the order given)."""

    label: str
    xs: Sequence[float]
    ys: Sequence[float]


@dataclass
class Panel:
    """One plot: title, axis labels and lines; `note` is shown in the middle when there are no points."""

    title: str
    xlabel: str
    ylabel: str
    lines: list[Line] = field(default_factory=list)
    note: str = "no data"


def nice_ticks(lo: float, hi: float, target: int = 5) -> list[float]:
    """About `target` round tick values (steps of 1, 2, 2.5 or 5 x 10^k) covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"tick range must be finite, got {lo}, {hi}")
    if hi < lo:
        lo, hi = hi, lo
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    raw = (hi - lo) / max(target, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw * 0.999)
    first = math.floor(lo / step + 1e-9) * step
    ticks, k = [], 0
    while True:
        v = first + k * step
        ticks.append(round(v, 10))
        if v >= hi - 1e-9 * step:
            break
        k += 1
    return ticks


def _fmt(v: float, step: float) -> str:
    if abs(v) >= 1e4 and abs(v) % 1000 == 0:
        return f"{v / 1000:g}k"
    decimals = max(0, -math.floor(math.log10(step) + 1e-9)) if step < 1 else 0
    if decimals and abs(step * 10**decimals - round(step * 10**decimals)) > 1e-6:
        decimals += 1  # 2.5 x 10^-k needs one more digit
    return f"{v:.{decimals}f}"


def _font(size: int) -> ImageFont.ImageFont:
    for name in ("DejaVuSans.ttf", "Arial.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            pass
    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1 ships a scalable default
    except TypeError:
        return ImageFont.load_default()


def _text_size(draw: ImageDraw.ImageDraw, text: str, font) -> tuple[int, int]:
    x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
    return x1 - x0, y1 - y0


class _Style:
    def __init__(self, s: int):
        self.s = s
        self.font = _font(13 * s)
        self.small = _font(11 * s)
        self.title = _font(15 * s)
        self.line = 2 * s
        self.marker = 3 * s


def _draw_panel(img: Image.Image, box: tuple[int, int, int, int], panel: Panel, colors: dict[str, tuple],
                st: _Style) -> None:
    draw = ImageDraw.Draw(img)
    s = st.s
    x0, y0, x1, y1 = box
    title, font = _fit_text(draw, panel.title, [st.title, st.font, st.small], x1 - x0 - 8 * s)
    tw, th = _text_size(draw, title, font)
    th = max(th, _text_size(draw, "Hg", st.title)[1])
    draw.text(((x0 + x1 - tw) / 2, y0 + 4 * s), title, fill=(0, 0, 0), font=font)
    # plot area inside the box: room for the title above, tick labels and axis labels left and below
    px0, py0, px1, py1 = x0 + 62 * s, y0 + 14 * s + th, x1 - 14 * s, y1 - 44 * s
    pts = [(x, y) for ln in panel.lines for x, y in zip(ln.xs, ln.ys)
           if x is not None and y is not None and math.isfinite(x) and math.isfinite(y)]
    draw.rectangle((px0, py0, px1, py1), outline=(0, 0, 0), width=s)
    xl_w, _ = _text_size(draw, panel.xlabel, st.font)
    draw.text(((px0 + px1 - xl_w) / 2, py1 + 24 * s), panel.xlabel, fill=(0, 0, 0), font=st.font)
    _draw_ylabel(img, panel.ylabel, x0 + 4 * s, (py0 + py1) / 2, st)
    if not pts:
        nw, nh = _text_size(draw, panel.note, st.font)
        draw.text(((px0 + px1 - nw) / 2, (py0 + py1 - nh) / 2), panel.note, fill=(110, 110, 110), font=st.font)
        return
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    xt = nice_ticks(min(0.0, min(xs)), max(xs))  # x from 0: budgets and minutes start there
    pad = 0.05 * (max(ys) - min(ys)) if max(ys) - min(ys) > 1e-9 else 0.5  # one value: a +-0.5 window
    yt = nice_ticks(min(ys) - pad, max(ys) + pad)
    m = 8 * s  # inner margin: markers on the first and last ticks stay clear of the frame
    fx = lambda v: px0 + m + (v - xt[0]) / (xt[-1] - xt[0]) * (px1 - px0 - 2 * m)  # noqa: E731
    fy = lambda v: py1 - m - (v - yt[0]) / (yt[-1] - yt[0]) * (py1 - py0 - 2 * m)  # noqa: E731
    for v in xt:
        x = fx(v)
        draw.line((x, py0, x, py1), fill=(228, 228, 228), width=s)
        draw.line((x, py1, x, py1 + 4 * s), fill=(0, 0, 0), width=s)
        label = _fmt(v, xt[1] - xt[0])
        w, _ = _text_size(draw, label, st.small)
        draw.text((x - w / 2, py1 + 7 * s), label, fill=(0, 0, 0), font=st.small)
    for v in yt:
        y = fy(v)
        draw.line((px0, y, px1, y), fill=(228, 228, 228), width=s)
        draw.line((px0 - 4 * s, y, px0, y), fill=(0, 0, 0), width=s)
        label = _fmt(v, yt[1] - yt[0])
        w, h = _text_size(draw, label, st.small)
        _, top, _, _ = draw.textbbox((0, 0), label, font=st.small)  # glyphs start below the text origin
        draw.text((px0 - 7 * s - w, y - h / 2 - top), label, fill=(0, 0, 0), font=st.small)
    draw.rectangle((px0, py0, px1, py1), outline=(0, 0, 0), width=s)
    for ln in panel.lines:
        xy = [(fx(x), fy(y)) for x, y in zip(ln.xs, ln.ys)
              if x is not None and y is not None and math.isfinite(x) and math.isfinite(y)]
        color = colors[ln.label]
        if len(xy) > 1:
            draw.line(xy, fill=color, width=st.line, joint="curve")
        r = st.marker
        for x, y in xy:
            draw.ellipse((x - r, y - r, x + r, y + r), fill=color)


def _fit_text(draw: ImageDraw.ImageDraw, text: str, fonts: list, width: float) -> tuple[str, object]:
    """The first font (largest first) in which `text` fits `width`, else the last one with the text cut."""
    for font in fonts:
        if _text_size(draw, text, font)[0] <= width:
            return text, font
    font = fonts[-1]
    while len(text) > 1 and _text_size(draw, text + "…", font)[0] > width:
        text = text[:-1]
    return text + "…", font


def _draw_ylabel(img: Image.Image, text: str, x: float, y_mid: float, st: _Style) -> None:
    probe = ImageDraw.Draw(img)
    w, h = _text_size(probe, text, st.font)
    label = Image.new("RGBA", (w + 4 * st.s, h + 8 * st.s), (255, 255, 255, 0))
    ImageDraw.Draw(label).text((2 * st.s, 0), text, fill=(0, 0, 0, 255), font=st.font)
    label = label.rotate(90, expand=True)
    img.paste(label, (int(x), int(y_mid - label.height / 2)), label)


def figure(rows: list[list[Panel]], title: str = "", panel_size: tuple[int, int] = (420, 300),
           footer: str = "") -> Image.Image:
    """A grid of panels (rows of equal length or shorter), a title, one legend, an optional footer line.

    Returns an RGB image of (columns x panel width) x (rows x panel height + title, legend, footer).
    """
    s = SUPERSAMPLE
    st = _Style(s)
    ncol = max((len(r) for r in rows), default=1)
    pw, ph = panel_size[0] * s, panel_size[1] * s
    labels: list[str] = []
    for row in rows:
        for p in row:
            labels += [ln.label for ln in p.lines if ln.label not in labels]
    colors = {lab: PALETTE[i % len(PALETTE)] for i, lab in enumerate(labels)}
    head = (30 * s if title else 6 * s) + (24 * s if labels else 0)
    foot = 22 * s if footer else 0
    img = Image.new("RGB", (ncol * pw, head + len(rows) * ph + foot), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    if title:
        w, _ = _text_size(draw, title, st.title)
        draw.text(((img.width - w) / 2, 8 * s), title, fill=(0, 0, 0), font=st.title)
    if labels:  # legend: a short line and the label per entry, centred
        items = [(lab, _text_size(draw, lab, st.font)[0]) for lab in labels]
        total = sum(24 * s + w + 18 * s for _, w in items)
        x, y = (img.width - total) / 2, head - 18 * s
        for lab, w in items:
            draw.line((x, y + 8 * s, x + 18 * s, y + 8 * s), fill=colors[lab], width=st.line + s)
            draw.text((x + 24 * s, y), lab, fill=(0, 0, 0), font=st.font)
            x += 24 * s + w + 18 * s
    for r, row in enumerate(rows):
        for c, panel in enumerate(row):
            _draw_panel(img, (c * pw, head + r * ph, (c + 1) * pw, head + (r + 1) * ph), panel, colors, st)
    if footer:
        draw.text((8 * s, img.height - foot + 4 * s), footer, fill=(90, 90, 90), font=st.small)
    return img.resize((img.width // s, img.height // s), Image.LANCZOS)


def save_figure(path: Path, rows: list[list[Panel]], **kw) -> Path:
    """`figure(rows, **kw)` written to `path` as a PNG (atomically: temp file, then rename)."""
    img = figure(rows, **kw)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG", optimize=True)
    return Path(path)
