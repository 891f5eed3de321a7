"""ADC-GS's canonical space and coarse-to-fine deformation (paper eqs. 1-5).

Anchors (A of them) hold a position X_v [A, 3], a 6-dim log-scale Sigma_v [A, 6] (3 scaling the primitives'
offsets, 3 the primitives' sizes, as in Scaffold-GS/HAC), a colour C_v [A, 3], a reference feature
f_v [A, Dv] and residual features f_g [A, K, Dg]. Each anchor spawns K primitives:

- canonical (eq. 1): a residual MLP theta(f_v, f_g,k) gives offset, size, rotation, colour residual and
  opacity of primitive k: X_k = X_v + offset * exp(Sigma_v[:3]), size_k = exp(Sigma_v[3:]) * sigmoid(.),
  C_k = C_v + dC_k, O_k = sigmoid(.); with `sh_degree` d > 0 (not in the paper) theta also gives SH bands
  1..d of each primitive, and C_k becomes the DC term of a view-dependent colour;
- coarse (eqs. 2-3): the time feature f_t = F_s(Z(t)) (a learnable table interpolated at t) and f_v give
  each anchor a motion omega(f_v, f_t) -> (dX_v,t, dSigma_v,t, dC_v,t) that its K primitives follow;
- fine (eqs. 4-5): varpi(PE(X_v + dX_v,t), f_t) refines each primitive's opacity and colour at t.

The deformation outputs are bounded (`_bounded`: motion by `motion_bound`, log-size by 1, colours by 0.5)
and the fine stage scales opacity by s_k,t = 2 sigmoid(.) in (0, 2):

X_k,t = X_k + dX_v,t, size_k,t = size_k exp(dSigma_v,t), O_k,t = O_k s_k,t, C_k,t = C_k + dC_v,t + dC_k,t.
Primitives with O_k < 0.5/255 are not drawn: scaled by at most 2 they stay below the rasterizer's
alpha threshold of 1/255, so skipping them changes no pixel. (Scaffold-GS's rule, tanh and O_k <= 0, let
one shared bias switch every primitive off for good: on the D-NeRF capture, white background, all but 10
of 37,210 primitives had O_k <= 0 by iteration 100, and nothing drawn gets a gradient back.)

The deformation starts at the identity. The fine stage scales rather than adds: added (even bounded by
0.5), it could push every primitive below the threshold, where none is drawn and none gets a gradient
back; with a higher deformation learning rate that happened within 250 iterations of the deformation
starting (synthetic default: 22 -> 11 dB). Scaled, a faded primitive is still drawn faintly and keeps a
gradient.

With a temporal opacity (optional, not in the paper) each anchor also has a centre mu_v and log-width in
time, and all its primitives' opacities are multiplied by exp(-(t - mu_v)^2 / (2 sigma_v^2)): content that
exists only for a while in a monocular capture need not be erased by the other time steps' views (see
`ADCGSConfig.temporal_opacity`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from splat4d.fields.encodings import TimeTable, positional_encoding, positional_encoding_dim
from splat4d.fields.mlp import MLP
from splat4d.fields.sh import rgb_to_sh


INIT_OPACITY = 0.1
DRAW_MIN = 0.5 / 255.0
"""Canonical opacity below which a primitive is not drawn (the fine stage scales by < 2; the rasterizer
skips alpha < 1/255)."""
TIME_TABLE_STD = 1.0
"""Initial spread of the time table Z. At 0.1 the time feature f_t came out ~10x smaller than the coarse
network's other inputs, and the coarse network learnt one displacement for all t (|dX| equal at t = 0, 0.5,
1 after 1000 iterations on the synthetic default scene) instead of motion."""


@dataclass(frozen=True)
class AnchorDims:
    """Sizes of the anchor model (ADC-GS's defaults)."""

    k: int = 10  # primitives per anchor
    f_v: int = 32  # reference feature
    f_g: int = 16  # residual feature per primitive
    time_rows: int = 25  # rows of the time table Z (frames)
    time_dim: int = 256  # width of Z
    f_t: int = 32  # time feature after F_s
    pe_freqs: int = 12  # positional encoding of the deformed anchor: 3 x 2 x pe_freqs values
    hidden: int = 32  # width of the residual MLPs
    deform_hidden: int = 64  # width of the coarse and fine deformation networks
    coarse_pe_freqs: int = 0  # positional encoding of X_v / extent as a further coarse-net input (0: eq. 2)
    time_smooth: float = 0.0  # correlation length of the time table's initial rows (rows; 0: independent)
    pe_unit: float = 1.0  # the deformed anchor's position is divided by this before the fine stage's encoding
    sh_degree: int = 0  # view-dependent colour: theta also gives each primitive SH bands 1..sh_degree (0: eq. 1)

    @property
    def sh_rest(self) -> int:
        """SH coefficients per colour channel beyond the DC term, (sh_degree + 1)^2 - 1."""
        return (self.sh_degree + 1) ** 2 - 1


class ResidualMLP(nn.Module):
    """in -> hidden, `blocks` residual blocks (ReLU, Linear), -> out, plus a linear skip from the input
    (the heads of ADC-GS's code). `zero_out` starts the whole map at zero."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, blocks: int = 1, zero_out: bool = False):
        super().__init__()
        self.inp = nn.Linear(in_dim, hidden)
        self.blocks = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(blocks))
        self.out = nn.Linear(hidden, out_dim)
        self.skip = nn.Linear(in_dim, out_dim, bias=False)
        if zero_out:
            for layer in (self.out, self.skip):
                nn.init.zeros_(layer.weight)
            nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.relu(self.inp(x))
        for block in self.blocks:
            h = h + block(torch.relu(h))
        return self.out(torch.relu(h)) + self.skip(x)

    def precompute(self, rows: Tensor) -> tuple[Tensor, Tensor]:
        """The input and skip layers' share of the leading input columns `rows` [N, n] (with the bias)."""
        n = rows.shape[-1]
        return rows @ self.inp.weight[:, :n].T + self.inp.bias, rows @ self.skip.weight[:, :n].T

    def forward_shared(self, rows: Tensor | None, shared: Tensor, pre: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """forward(cat([rows, shared.expand(N, -1)], -1)) without building it: `shared` [D] (the same for
        every row, e.g. f_t) enters as one bias vector. `pre`: `precompute(rows)` when already known."""
        h0, s0 = pre if pre is not None else self.precompute(rows)
        n = self.inp.in_features - shared.shape[-1]
        h = torch.relu(h0 + shared @ self.inp.weight[:, n:].T)
        for block in self.blocks:
            h = h + block(torch.relu(h))
        return self.out(torch.relu(h)) + s0 + shared @ self.skip.weight[:, n:].T


class AnchorField(nn.Module):
    """Anchors + the canonical, coarse and fine networks. Anchor tensors are Parameters whose first
    dimension is the anchor index (refinement edits them)."""

    FIELDS = ("anchors", "log_cov", "colors", "f_v", "f_g")
    TEMPORAL_FIELDS = ("t_means", "t_log_scales")
    """Optional per-anchor temporal opacity: centre in [0, 1] and log of the width, [A] each."""
    VELOCITY_FIELD = "t_velocity"
    """Optional with a temporal opacity: a velocity per anchor [A, 3] (scene units per clip), the anchor at
    t moving by v (t - mu_v) on top of the coarse network's motion."""

    def __init__(self, anchors: Tensor, log_cov: Tensor, colors: Tensor, f_v: Tensor, f_g: Tensor,
                 dims: AnchorDims = AnchorDims(), fine: bool = True, motion_bound: float = 1.0,
                 temporal: tuple[Tensor, ...] | None = None):
        super().__init__()
        # largest anchor displacement (scene units), as float32 holds it: the same in a model and its decoding
        self.motion_bound = float(np.float32(motion_bound))
        A = anchors.shape[0]
        shapes = {"anchors": (A, 3), "log_cov": (A, 6), "colors": (A, 3), "f_v": (A, dims.f_v),
                  "f_g": (A, dims.k, dims.f_g)}
        for name, t in zip(self.FIELDS, (anchors, log_cov, colors, f_v, f_g)):
            if tuple(t.shape) != shapes[name]:
                raise ValueError(f"{name} must have shape {shapes[name]}, got {tuple(t.shape)}")
            setattr(self, name, nn.Parameter(t.detach().clone().float().contiguous()))
        self.temporal = temporal is not None
        self.velocity = self.temporal and len(temporal) == 3
        if self.temporal:
            names = self.TEMPORAL_FIELDS + ((self.VELOCITY_FIELD,) if self.velocity else ())
            for name, t in zip(names, temporal):
                shape = (A, 3) if name == self.VELOCITY_FIELD else (A,)
                if tuple(t.shape) != shape:
                    raise ValueError(f"{name} must have shape {shape}, got {tuple(t.shape)}")
                setattr(self, name, nn.Parameter(t.detach().clone().float().contiguous()))
        self.dims, self.fine = dims, bool(fine)
        # canonical primitives: offset 3, size 3, rotation 4, colour residual 3, opacity 1, SH bands 1.. 3 each
        self.theta = ResidualMLP(dims.f_v + dims.f_g, dims.hidden, 14 + 3 * dims.sh_rest)
        with torch.no_grad():  # every primitive starts drawn, at 3DGS's initial opacity 0.1: with random
            # weights the (nearly equal) small initial features gave all primitives one opacity, at times <= 0
            self.theta.out.weight[13:].zero_()  # and with no view-dependent colour (the SH bands start at 0)
            self.theta.skip.weight[13:].zero_()
            self.theta.out.bias[13:].zero_()
            self.theta.out.bias[13] = math.log(INIT_OPACITY / (1.0 - INIT_OPACITY))
        self.time_table = TimeTable(dims.time_rows, dims.time_dim, init_std=TIME_TABLE_STD, init_smooth=dims.time_smooth)
        self.time_net = MLP(dims.time_dim, dims.f_t, dims.f_t, 0)  # F_s
        coarse_pe = positional_encoding_dim(3, dims.coarse_pe_freqs, include_input=False)
        self.coarse = ResidualMLP(dims.f_v + coarse_pe + dims.f_t, dims.deform_hidden, 9, zero_out=True)  # dX, dSigma, dC
        pe = positional_encoding_dim(3, dims.pe_freqs, include_input=False)
        self.fine_net = ResidualMLP(pe + dims.f_t, dims.deform_hidden, dims.k * 4, zero_out=True)  # K x (dO, dC)

    @staticmethod
    def init_from_points(points: Tensor, colors: Tensor | None, voxel: float, dims: AnchorDims = AnchorDims(),
                         generator: torch.Generator | None = None, fine: bool = True,
                         motion_bound: float = 1.0) -> "AnchorField":
        """Anchors at the centres of the occupied voxels of size `voxel` (one per voxel, the mean colour of
        its points); offsets scaled to the voxel, primitive sizes to the voxel, features small random."""
        pts = points.float()
        keys = torch.floor(pts / voxel).long()
        uniq, inv = torch.unique(keys, dim=0, return_inverse=True)
        A = uniq.shape[0]
        centres = (uniq.float() + 0.5) * voxel
        cols = torch.full((A, 3), 0.5, device=pts.device)
        if colors is not None:
            counts = torch.zeros(A, device=pts.device).index_add_(0, inv, torch.ones(len(pts), device=pts.device))
            cols = torch.zeros(A, 3, device=pts.device).index_add_(0, inv, colors.float()) / counts[:, None]
        log_cov = torch.full((A, 6), math.log(voxel), device=pts.device)
        g = generator
        f_v = torch.randn(A, dims.f_v, generator=g, device="cpu").to(pts.device) * 0.01
        f_g = torch.randn(A, dims.k, dims.f_g, generator=g, device="cpu").to(pts.device) * 0.01
        return AnchorField(centres, log_cov, cols, f_v, f_g, dims, fine, motion_bound)

    def __len__(self) -> int:
        return self.anchors.shape[0]

    @property
    def fields(self) -> tuple[str, ...]:
        """Names of the per-anchor tensors (FIELDS, plus TEMPORAL_FIELDS with a temporal opacity)."""
        if not self.temporal:
            return self.FIELDS
        return self.FIELDS + self.TEMPORAL_FIELDS + ((self.VELOCITY_FIELD,) if self.velocity else ())

    def temporal_rows(self, rows=None) -> tuple[Tensor, ...] | None:
        """The temporal tensors (centres, log-widths and, when present, velocities), of `rows` when given."""
        if not self.temporal:
            return None
        names = self.fields[len(self.FIELDS):]
        return tuple(getattr(self, k) if rows is None else getattr(self, k)[rows] for k in names)

    def subset(self, rows: Tensor) -> "AnchorField":
        """A new field of the anchors `rows` (index or mask) with copies of these networks' weights."""
        temporal = self.temporal_rows(rows)
        out = AnchorField(*(getattr(self, k)[rows] for k in self.FIELDS), self.dims, self.fine, self.motion_bound,
                          temporal)
        own = {k: v for k, v in self.state_dict().items() if k.split(".")[0] not in self.fields}
        out.load_state_dict(own, strict=False)
        return out

    def temporal_factor(self, t: float) -> Tensor | None:
        """[A] multiplier of every primitive's opacity at time t, exp(-(t - mu)^2 / (2 sigma^2)); None when
        the field has no temporal opacity."""
        if not self.temporal:
            return None
        return torch.exp(-0.5 * ((float(t) - self.t_means) * torch.exp(-self.t_log_scales)).square())

    def time_feature(self, t: float) -> Tensor:
        """f_t [Dt] of eq. 3."""
        return self.time_net(self.time_table(float(t)))

    def attribute(self, name: str, attrs: dict[str, Tensor] | None = None) -> Tensor:
        """Anchor attribute `name` ("log_cov", "colors", "f_v", "f_g"): `attrs[name]` when given (e.g. its
        quantised value), else the parameter."""
        return attrs[name] if attrs is not None and name in attrs else getattr(self, name)

    def canonical(self, attrs: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
        """Eq. 1: the K primitives of every anchor, [A, K, ...]: offsets (world units), sizes, quats,
        colours, opacity (sigmoid), and with sh_degree > 0 `sh_rest` [A, K, sh_rest, 3] (SH bands 1..).
        `attrs` replaces anchor attributes (see `attribute`)."""
        A, K = len(self), self.dims.k
        f_v, log_cov = self.attribute("f_v", attrs), self.attribute("log_cov", attrs)
        x = torch.cat([f_v[:, None].expand(A, K, -1), self.attribute("f_g", attrs)], dim=-1)
        raw = self.theta(x)  # [A, K, 14 + 3 sh_rest]
        offset, size, rot, dcol, opac, sh = raw.split([3, 3, 4, 3, 1, 3 * self.dims.sh_rest], dim=-1)
        off_scale, size_scale = torch.exp(log_cov[:, None, :3]), torch.exp(log_cov[:, None, 3:])
        quats = rot + torch.tensor([1.0, 0.0, 0.0, 0.0], device=rot.device)
        out = {"offsets": offset * off_scale, "sizes": size_scale * torch.sigmoid(size), "quats": quats,
               "colors": self.attribute("colors", attrs)[:, None] + dcol, "opacity": torch.sigmoid(opac[..., 0])}
        if self.dims.sh_degree:
            out["sh_rest"] = sh.reshape(A, K, self.dims.sh_rest, 3)
        return out

    def coarse_rows(self, attrs: dict[str, Tensor] | None = None) -> Tensor:
        """The coarse network's per-anchor inputs [f_v, PE(X_v / extent)] (f_t follows them)."""
        inputs = [self.attribute("f_v", attrs)]
        if self.dims.coarse_pe_freqs:
            where = self.anchors / self.motion_bound
            inputs.append(positional_encoding(where, self.dims.coarse_pe_freqs, include_input=False))
        return torch.cat(inputs, dim=-1)

    def deform(self, t: float, dynamic: bool = True, attrs: dict[str, Tensor] | None = None,
               coarse_pre: tuple[Tensor, Tensor] | None = None) -> dict[str, Tensor]:
        """Eqs. 2-5 at time t: per anchor dX [A, 3], dlog-size [A, 3], dC [A, 3]; per primitive an opacity
        scale [A, K] and dC [A, K, 3]. The identity (zeros, scale 1) when not `dynamic` (the static warm-up).
        `coarse_pre`: `coarse.precompute(coarse_rows(attrs))`, the time-independent part of the coarse
        network, when already known (evaluation computes it once)."""
        A, K = len(self), self.dims.k
        zeros = self.anchors.new_zeros
        ones = self.anchors.new_ones
        if not dynamic:
            return {"dx": zeros(A, 3), "dsize": zeros(A, 3), "dcol": zeros(A, 3), "opac_scale_k": ones(A, K),
                    "dcol_k": zeros(A, K, 3)}
        f_t = self.time_feature(t)
        rows = None if coarse_pre is not None else self.coarse_rows(attrs)
        dx, dsize, dcol = self.coarse.forward_shared(rows, f_t, coarse_pre).split(3, dim=-1)
        dx, dsize, dcol = _bounded(dx, self.motion_bound), _bounded(dsize, 1.0), _bounded(dcol, 0.5)
        if self.velocity:
            dx = dx + self.t_velocity * (float(t) - self.t_means)[:, None]
        if self.fine:
            pe = positional_encoding((self.anchors + dx) / self.dims.pe_unit, self.dims.pe_freqs, include_input=False)
            fine = self.fine_net.forward_shared(pe, f_t).reshape(A, K, 4)
            opac_scale_k, dcol_k = 2.0 * torch.sigmoid(fine[..., 0]), _bounded(fine[..., 1:], 0.5)
        else:
            opac_scale_k, dcol_k = ones(A, K), zeros(A, K, 3)
        return {"dx": dx, "dsize": dsize, "dcol": dcol, "opac_scale_k": opac_scale_k, "dcol_k": dcol_k}

    def drawn(self, attrs: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
        """The canonical primitives that are drawn (O_k >= DRAW_MIN), flattened: `slot` [N] (row-major index over
        [A, K]), `anchor` [N] (slot // K), means [N, 3] (X_v + offset), quats, sizes, colors, opacity.
        Also `coarse_pre`, the coarse network's time-independent part (`ResidualMLP.precompute`).
        Independent of t: a renderer computes it once and deforms only the anchors per frame."""
        c = self.canonical(attrs)
        A, K = c["opacity"].shape
        slot = (c["opacity"] >= DRAW_MIN).reshape(-1).nonzero()[:, 0]
        flat = lambda x: x.reshape(A * K, *x.shape[2:]).index_select(0, slot)  # noqa: E731
        out = {"slot": slot, "anchor": slot // K, "means": flat(self.anchors[:, None] + c["offsets"]),
               "quats": flat(c["quats"]), "sizes": flat(c["sizes"]), "colors": flat(c["colors"]),
               "opacity": flat(c["opacity"]), "coarse_pre": self.coarse.precompute(self.coarse_rows(attrs))}
        if "sh_rest" in c:
            out["sh_rest"] = flat(c["sh_rest"])
        return out

    def primitives(self, t: float, dynamic: bool = True, attrs: dict[str, Tensor] | None = None,
                   drawn: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
        """The Gaussians to draw at time t (those with O_k >= DRAW_MIN), flattened: means [N, 3], quats [N, 4],
        scales [N, 3], opacities [N], colors [N, 3] (clamped to [0, 1]; the colour seen head-on with
        sh_degree > 0), `slot` [N] (the row-major index over [A, K] of each: anchor slot // K),
        `canonical_means` [N, 3] (undeformed positions) and, with sh_degree > 0, `sh_rest` [N, sh_rest, 3].
        `drawn`: the output of `drawn(attrs)` when already computed."""
        p = drawn if drawn is not None else self.drawn(attrs)
        d = self.deform(t, dynamic, attrs, p["coarse_pre"])
        A, K = len(self), self.dims.k
        anchor, slot = p["anchor"], p["slot"]
        per_primitive = lambda x: x.reshape(A * K, *x.shape[2:]).index_select(0, slot)  # noqa: E731
        colors = p["colors"] + d["dcol"].index_select(0, anchor) + per_primitive(d["dcol_k"])
        opacities = (p["opacity"] * per_primitive(d["opac_scale_k"])).clamp_max(1.0)
        if self.temporal:
            opacities = opacities * self.temporal_factor(t).index_select(0, anchor)
        out = {"means": p["means"] + d["dx"].index_select(0, anchor), "quats": p["quats"],
               "scales": p["sizes"] * torch.exp(d["dsize"]).index_select(0, anchor), "opacities": opacities,
               "colors": colors.clamp(0.0, 1.0), "slot": slot, "canonical_means": p["means"].detach()}
        if "sh_rest" in p:
            out["sh_rest"] = p["sh_rest"]
        return out


def sh_coefficients(p: dict[str, Tensor]) -> Tensor:
    """SH coefficients [N, 1 + sh_rest, 3] of primitives `p` (`AnchorField.primitives`): the DC term from
    their colours, then their `sh_rest` bands when they have them."""
    dc = rgb_to_sh(p["colors"])[:, None]
    return torch.cat([dc, p["sh_rest"]], dim=1) if "sh_rest" in p else dc


def render_colors(p: dict[str, Tensor]) -> tuple[Tensor, int | None]:
    """What the rasterizer takes for primitives `p`: their colours and no SH degree, or with `sh_rest` their
    SH coefficients (`sh_coefficients`) and degree."""
    if "sh_rest" not in p:
        return p["colors"], None
    sh = sh_coefficients(p)
    return sh, int(round(math.sqrt(sh.shape[1]))) - 1


def _bounded(x: Tensor, bound) -> Tensor:
    """bound x tanh(x / bound): the identity near zero (where the zero-initialised networks start), never
    beyond +-bound. Unbounded, a deformation output (the fine network's opacity change, then added) ran to
    about -6 within a few hundred iterations."""
    return bound * torch.tanh(x / bound)
