"""Fused CPU kernels (numba) for EWA projection + SH colour, with a hand-written backward.

One pass over the Gaussians computes what `projection.project_gaussians(covariances(quats, scales), ...)`
and the SH branch of `gaussians._features` compute in ~80 small torch ops: means2d, conics, depths,
radii, compensations and colours clamp_min(SH(dir) + 0.5, 0). Those torch functions stay as the slow
twin and test oracle (tests/test_fused_projection.py); the math here follows them step by step: the
Jacobian's x/z, y/z clamp to 1.3x the field of view, the safe depth 1 for Gaussians at or behind the
near plane, det(blurred cov2d) clamped to 1e-10 for the conics, culling on det <= 0, depth outside
(near, far), ceil(3.33 sigma) radii off the image, or a non-finite radius.

Kernels compute in float64 whatever the caller's dtype (one JIT specialisation, as the compositing
kernels). Both passes are parallel over Gaussians with the cameras in an inner loop, so every thread
owns its Gaussians' gradient rows: no atomics, deterministic. The backward recomputes the forward's
intermediates instead of storing them.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from numba import njit, prange
from torch import Tensor

from splat4d.fields.sh import C0, C1, C2, C3

# per-camera row of `camera_table`: R (9, row-major), t (3), fx, fy, cx, cy, x/z and y/z limits, centre (3)
_LIM = 16
_CEN = 20
CAM_COLS = 23
_CHUNK = 128  # Gaussians per parallel task


def camera_table(viewmats: Tensor, Ks: Tensor, width: int, height: int) -> np.ndarray:
    """[C, 23] float64 rows: R, t, fx, fy, cx, cy, (-x/z, +x/z, -y/z, +y/z) limits, camera centre."""
    V = viewmats.detach().to(torch.float64).cpu().numpy()
    K = Ks.detach().to(torch.float64).cpu().numpy()
    C = V.shape[0]
    out = np.empty((C, CAM_COLS))
    R, t = V[:, :3, :3], V[:, :3, 3]
    fx, fy, cx, cy = K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2]
    out[:, 0:9] = R.reshape(C, 9)
    out[:, 9:12] = t
    out[:, 12], out[:, 13], out[:, 14], out[:, 15] = fx, fy, cx, cy
    tan_x, tan_y = 0.5 * width / fx, 0.5 * height / fy
    out[:, _LIM] = cx / fx + 0.3 * tan_x
    out[:, _LIM + 1] = (width - cx) / fx + 0.3 * tan_x
    out[:, _LIM + 2] = cy / fy + 0.3 * tan_y
    out[:, _LIM + 3] = (height - cy) / fy + 0.3 * tan_y
    out[:, _CEN:_CEN + 3] = -np.einsum("cji,cj->ci", R, t)
    return out


@njit(cache=True, error_model="numpy")
def _rotation(qw, qx, qy, qz):
    """Normalised quaternion (w, x, y, z), its input norm, and R = R(q) row-major (9 values)."""
    nrm = math.sqrt(qw * qw + qx * qx + qy * qy + qz * qz)
    inv = 1.0 / max(nrm, 1e-12)
    w, x, y, z = qw * inv, qx * inv, qy * inv, qz * inv
    R = (
        1.0 - 2.0 * (y * y + z * z), 2.0 * (x * y - w * z), 2.0 * (x * z + w * y),
        2.0 * (x * y + w * z), 1.0 - 2.0 * (x * x + z * z), 2.0 * (y * z - w * x),
        2.0 * (x * z - w * y), 2.0 * (y * z + w * x), 1.0 - 2.0 * (x * x + y * y),
    )
    return w, x, y, z, nrm, R


@njit(cache=True, error_model="numpy")
def _sh_bases(degree, x, y, z, out):
    """Real SH bases of a unit direction into out[:(degree+1)^2] (fields.sh order and constants)."""
    out[0] = C0
    if degree >= 1:
        out[1] = -C1 * y
        out[2] = C1 * z
        out[3] = -C1 * x
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        out[4] = C2[0] * x * y
        out[5] = C2[1] * y * z
        out[6] = C2[2] * (2.0 * zz - xx - yy)
        out[7] = C2[3] * x * z
        out[8] = C2[4] * (xx - yy)
        if degree >= 3:
            out[9] = C3[0] * y * (3.0 * xx - yy)
            out[10] = C3[1] * x * y * z
            out[11] = C3[2] * y * (4.0 * zz - xx - yy)
            out[12] = C3[3] * z * (2.0 * zz - 3.0 * xx - 3.0 * yy)
            out[13] = C3[4] * x * (4.0 * zz - xx - yy)
            out[14] = C3[5] * z * (xx - yy)
            out[15] = C3[6] * x * (xx - 3.0 * yy)


@njit(cache=True, error_model="numpy")
def _sh_bases_vjp(degree, x, y, z, gb):
    """d/d(direction) of sum_k gb[k] * basis_k at the unit direction (x, y, z)."""
    if degree < 1:
        return 0.0, 0.0, 0.0
    gx = -C1 * gb[3]
    gy = -C1 * gb[1]
    gz = C1 * gb[2]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        gx += C2[0] * y * gb[4] + C2[2] * -2.0 * x * gb[6] + C2[3] * z * gb[7] + C2[4] * 2.0 * x * gb[8]
        gy += C2[0] * x * gb[4] + C2[1] * z * gb[5] + C2[2] * -2.0 * y * gb[6] + C2[4] * -2.0 * y * gb[8]
        gz += C2[1] * y * gb[5] + C2[2] * 4.0 * z * gb[6] + C2[3] * x * gb[7]
        if degree >= 3:
            gx += (C3[0] * 6.0 * x * y * gb[9] + C3[1] * y * z * gb[10] + C3[2] * -2.0 * x * y * gb[11]
                   + C3[3] * -6.0 * x * z * gb[12] + C3[4] * (4.0 * zz - 3.0 * xx - yy) * gb[13]
                   + C3[5] * 2.0 * x * z * gb[14] + C3[6] * (3.0 * xx - 3.0 * yy) * gb[15])
            gy += (C3[0] * (3.0 * xx - 3.0 * yy) * gb[9] + C3[1] * x * z * gb[10]
                   + C3[2] * (4.0 * zz - xx - 3.0 * yy) * gb[11] + C3[3] * -6.0 * y * z * gb[12]
                   + C3[4] * -2.0 * x * y * gb[13] + C3[5] * -2.0 * y * z * gb[14] + C3[6] * -6.0 * x * y * gb[15])
            gz += (C3[1] * x * y * gb[10] + C3[2] * 8.0 * y * z * gb[11]
                   + C3[3] * (6.0 * zz - 3.0 * xx - 3.0 * yy) * gb[12] + C3[4] * 8.0 * x * z * gb[13]
                   + C3[5] * (xx - yy) * gb[14])
    return gx, gy, gz


@njit(cache=True, error_model="numpy")
def _camera_space(cam, c, mx, my, mz, M, near, w):
    """Camera-space mean (tx, ty, tz), the safe depth, x/z and y/z before and after the clamp, the
    Jacobian entries, and T = J W (two rows of 3) with W = R_cam M written into w [9], so cov2d = T T^T."""
    tx = cam[c, 0] * mx + cam[c, 1] * my + cam[c, 2] * mz + cam[c, 9]
    ty = cam[c, 3] * mx + cam[c, 4] * my + cam[c, 5] * mz + cam[c, 10]
    tz = cam[c, 6] * mx + cam[c, 7] * my + cam[c, 8] * mz + cam[c, 11]
    tzs = tz if tz > near else 1.0
    fx, fy = cam[c, 12], cam[c, 13]
    ux = tx / tzs
    uy = ty / tzs
    uxc = min(max(ux, -cam[c, _LIM]), cam[c, _LIM + 1])
    uyc = min(max(uy, -cam[c, _LIM + 2]), cam[c, _LIM + 3])
    txc, tyc = tzs * uxc, tzs * uyc
    j00, j11 = fx / tzs, fy / tzs
    j02, j12 = -fx * txc / (tzs * tzs), -fy * tyc / (tzs * tzs)
    for i in range(3):
        for j in range(3):
            w[3 * i + j] = cam[c, 3 * i] * M[j] + cam[c, 3 * i + 1] * M[3 + j] + cam[c, 3 * i + 2] * M[6 + j]
    t0 = (j00 * w[0] + j02 * w[6], j00 * w[1] + j02 * w[7], j00 * w[2] + j02 * w[8])
    t1 = (j11 * w[3] + j12 * w[6], j11 * w[4] + j12 * w[7], j11 * w[5] + j12 * w[8])
    return tx, ty, tz, tzs, ux, uy, uxc, uyc, j00, j02, j11, j12, t0, t1


@njit(parallel=True, cache=True, error_model="numpy")
def project_forward(means, quats, scales, sh, cam, width, height, eps2d, near, far, degree):
    """means [N, 3], quats [N, 4] (wxyz, unnormalised), scales [N, 3] (activated), sh [N, K, 3], cam from
    `camera_table`, all float64; degree < 0 skips the colours. Returns means2d [C, N, 2], conics [C, N, 3],
    depths [C, N], radii [C, N, 2] int32, compensations [C, N], colours [C, N, 3]."""
    N, C = means.shape[0], cam.shape[0]
    means2d = np.empty((C, N, 2))
    conics = np.empty((C, N, 3))
    depths = np.empty((C, N))
    radii = np.zeros((C, N, 2), dtype=np.int32)
    comps = np.empty((C, N))
    colors = np.zeros((C, N, 3))
    nb = (degree + 1) * (degree + 1)
    for chunk in prange((N + _CHUNK - 1) // _CHUNK):  # scratch arrays allocated once per chunk
        M = np.empty(9)
        W = np.empty(9)
        bases = np.empty(16)
        for n in range(chunk * _CHUNK, min(N, (chunk + 1) * _CHUNK)):
            _, _, _, _, _, R = _rotation(quats[n, 0], quats[n, 1], quats[n, 2], quats[n, 3])
            for i in range(3):
                for j in range(3):
                    M[3 * i + j] = R[3 * i + j] * scales[n, j]
            mx, my, mz = means[n, 0], means[n, 1], means[n, 2]
            for c in range(C):
                tx, ty, tz, tzs, _, _, _, _, _, _, _, _, t0, t1 = _camera_space(cam, c, mx, my, mz, M, near, W)
                a0 = t0[0] * t0[0] + t0[1] * t0[1] + t0[2] * t0[2]
                b = t0[0] * t1[0] + t0[1] * t1[1] + t0[2] * t1[2]
                c0 = t1[0] * t1[0] + t1[1] * t1[1] + t1[2] * t1[2]
                a, cc = a0 + eps2d, c0 + eps2d
                det_o = a0 * c0 - b * b
                det_b = a * cc - b * b
                D = max(det_b, 1e-10)
                comps[c, n] = math.sqrt(max(det_o / D, 0.0))
                conics[c, n, 0], conics[c, n, 1], conics[c, n, 2] = cc / D, -b / D, a / D
                m2x = cam[c, 12] * tx / tzs + cam[c, 14]
                m2y = cam[c, 13] * ty / tzs + cam[c, 15]
                means2d[c, n, 0], means2d[c, n, 1] = m2x, m2y
                depths[c, n] = tz
                rx = np.ceil(3.33 * np.sqrt(a))
                ry = np.ceil(3.33 * np.sqrt(cc))
                ok = (det_b > 0.0) and (tz > near) and (tz < far)
                ok = ok and (m2x + rx > 0.0) and (m2x - rx < width) and (m2y + ry > 0.0) and (m2y - ry < height)
                if ok and np.isfinite(rx) and np.isfinite(ry):
                    radii[c, n, 0], radii[c, n, 1] = int(rx), int(ry)
                if degree >= 0:
                    dx, dy, dz = mx - cam[c, _CEN], my - cam[c, _CEN + 1], mz - cam[c, _CEN + 2]
                    inv = 1.0 / max(math.sqrt(dx * dx + dy * dy + dz * dz), 1e-12)
                    _sh_bases(degree, dx * inv, dy * inv, dz * inv, bases)
                    for ch in range(3):
                        s = 0.0
                        for k in range(nb):
                            s += bases[k] * sh[n, k, ch]
                        colors[c, n, ch] = max(s + 0.5, 0.0)
    return means2d, conics, depths, radii, comps, colors


@njit(parallel=True, cache=True, error_model="numpy")
def project_backward(means, quats, scales, sh, cam, eps2d, near, degree, g_means2d, g_conics, g_depths, g_comps,
                     g_colors):
    """Gradients of `project_forward`'s float outputs -> (g_means [N, 3], g_quats [N, 4], g_scales [N, 3],
    g_sh [N, K, 3]). Upstream gradients are [C, N, ...] float64 (zeros where an output got none)."""
    N, C = means.shape[0], cam.shape[0]
    g_means = np.zeros((N, 3))
    g_quats = np.zeros((N, 4))
    g_scales = np.zeros((N, 3))
    g_sh = np.zeros(sh.shape)
    nb = (degree + 1) * (degree + 1)
    for chunk in prange((N + _CHUNK - 1) // _CHUNK):  # scratch arrays allocated once per chunk
        M = np.empty(9)
        W = np.empty(9)
        gM = np.empty(9)
        bases = np.empty(16)
        gb = np.empty(16)
        gR = np.empty(9)
        for n in range(chunk * _CHUNK, min(N, (chunk + 1) * _CHUNK)):
            for k in range(9):
                gM[k] = 0.0
            w, x, y, z, qn, R = _rotation(quats[n, 0], quats[n, 1], quats[n, 2], quats[n, 3])
            for i in range(3):
                for j in range(3):
                    M[3 * i + j] = R[3 * i + j] * scales[n, j]
            mx, my, mz = means[n, 0], means[n, 1], means[n, 2]
            gmx, gmy, gmz = 0.0, 0.0, 0.0
            for c in range(C):
                tx, ty, tz, tzs, ux, uy, uxc, uyc, j00, j02, j11, j12, t0, t1 = _camera_space(
                    cam, c, mx, my, mz, M, near, W)
                fx, fy = cam[c, 12], cam[c, 13]
                a0 = t0[0] * t0[0] + t0[1] * t0[1] + t0[2] * t0[2]
                b = t0[0] * t1[0] + t0[1] * t1[1] + t0[2] * t1[2]
                c0 = t1[0] * t1[0] + t1[1] * t1[1] + t1[2] * t1[2]
                a, cc = a0 + eps2d, c0 + eps2d
                det_o = a0 * c0 - b * b
                det_b = a * cc - b * b
                D = max(det_b, 1e-10)
                # conics (cc, -b, a) / D and compensation sqrt(max(det_o / D, 0))
                ga, gbb, gc = g_conics[c, n, 0], g_conics[c, n, 1], g_conics[c, n, 2]
                g_a, g_b, g_c = gc / D, -gbb / D, ga / D
                g_D = -(ga * cc - gbb * b + gc * a) / (D * D)
                r = det_o / D
                if r > 0.0 and g_comps[c, n] != 0.0:
                    g_r = g_comps[c, n] / (2.0 * math.sqrt(r))
                    g_det_o = g_r / D
                    g_D -= g_r * det_o / (D * D)
                    g_a += g_det_o * c0
                    g_c += g_det_o * a0
                    g_b -= 2.0 * b * g_det_o
                if det_b >= 1e-10:
                    g_a += g_D * cc
                    g_c += g_D * a
                    g_b -= 2.0 * b * g_D
                # cov2d = T T^T: a = t0.t0, b = t0.t1, c = t1.t1
                gt0 = (2.0 * g_a * t0[0] + g_b * t1[0], 2.0 * g_a * t0[1] + g_b * t1[1], 2.0 * g_a * t0[2] + g_b * t1[2])
                gt1 = (g_b * t0[0] + 2.0 * g_c * t1[0], g_b * t0[1] + 2.0 * g_c * t1[1], g_b * t0[2] + 2.0 * g_c * t1[2])
                # T rows: t0 = j00 W0 + j02 W2, t1 = j11 W1 + j12 W2
                g_j00 = gt0[0] * W[0] + gt0[1] * W[1] + gt0[2] * W[2]
                g_j02 = gt0[0] * W[6] + gt0[1] * W[7] + gt0[2] * W[8]
                g_j11 = gt1[0] * W[3] + gt1[1] * W[4] + gt1[2] * W[5]
                g_j12 = gt1[0] * W[6] + gt1[1] * W[7] + gt1[2] * W[8]
                for j in range(3):
                    gw0 = j00 * gt0[j]
                    gw1 = j11 * gt1[j]
                    gw2 = j02 * gt0[j] + j12 * gt1[j]
                    # W = R_cam M -> gM = R_cam^T gW
                    for i in range(3):
                        gM[3 * i + j] += cam[c, i] * gw0 + cam[c, 3 + i] * gw1 + cam[c, 6 + i] * gw2
                # Jacobian entries and means2d
                gm2x, gm2y = g_means2d[c, n, 0], g_means2d[c, n, 1]
                tz2 = tzs * tzs
                txc, tyc = tzs * uxc, tzs * uyc
                g_txc = -fx / tz2 * g_j02
                g_tyc = -fy / tz2 * g_j12
                g_tzs = (-fx / tz2 * g_j00 - fy / tz2 * g_j11 + 2.0 * fx * txc / (tz2 * tzs) * g_j02
                         + 2.0 * fy * tyc / (tz2 * tzs) * g_j12 - fx * tx / tz2 * gm2x - fy * ty / tz2 * gm2y)
                g_tx = fx / tzs * gm2x
                g_ty = fy / tzs * gm2y
                # txc = tzs * clamp(tx / tzs): the clamp passes the gradient inside its closed range
                g_tzs += uxc * g_txc + uyc * g_tyc
                if ux >= -cam[c, _LIM] and ux <= cam[c, _LIM + 1]:
                    g_tx += g_txc
                    g_tzs -= g_txc * ux
                if uy >= -cam[c, _LIM + 2] and uy <= cam[c, _LIM + 3]:
                    g_ty += g_tyc
                    g_tzs -= g_tyc * uy
                g_tz = g_depths[c, n] + (g_tzs if tz > near else 0.0)
                gmx += cam[c, 0] * g_tx + cam[c, 3] * g_ty + cam[c, 6] * g_tz
                gmy += cam[c, 1] * g_tx + cam[c, 4] * g_ty + cam[c, 7] * g_tz
                gmz += cam[c, 2] * g_tx + cam[c, 5] * g_ty + cam[c, 8] * g_tz
                if degree >= 0:
                    dx, dy, dz = mx - cam[c, _CEN], my - cam[c, _CEN + 1], mz - cam[c, _CEN + 2]
                    nrm = math.sqrt(dx * dx + dy * dy + dz * dz)
                    inv = 1.0 / max(nrm, 1e-12)
                    ex, ey, ez = dx * inv, dy * inv, dz * inv
                    _sh_bases(degree, ex, ey, ez, bases)
                    for k in range(nb):
                        gb[k] = 0.0
                    for ch in range(3):
                        s = 0.0
                        for k in range(nb):
                            s += bases[k] * sh[n, k, ch]
                        if s + 0.5 >= 0.0:  # clamp_min(., 0) passes the gradient where x >= 0
                            gcol = g_colors[c, n, ch]
                            for k in range(nb):
                                g_sh[n, k, ch] += bases[k] * gcol
                                gb[k] += sh[n, k, ch] * gcol
                    gex, gey, gez = _sh_bases_vjp(degree, ex, ey, ez, gb)
                    if nrm > 1e-12:  # normalize's Jacobian (I - e e^T) / |d|
                        dot = ex * gex + ey * gey + ez * gez
                        gmx += (gex - ex * dot) * inv
                        gmy += (gey - ey * dot) * inv
                        gmz += (gez - ez * dot) * inv
                    else:
                        gmx += gex * inv
                        gmy += gey * inv
                        gmz += gez * inv
            g_means[n, 0], g_means[n, 1], g_means[n, 2] = gmx, gmy, gmz
            # M = R diag(s)
            for i in range(3):
                for j in range(3):
                    gR[3 * i + j] = gM[3 * i + j] * scales[n, j]
                    g_scales[n, j] += gM[3 * i + j] * R[3 * i + j]
            # R(q) for the normalised q = (w, x, y, z)
            gw = 2.0 * (-z * gR[1] + y * gR[2] + z * gR[3] - x * gR[5] - y * gR[6] + x * gR[7])
            gx = 2.0 * (y * gR[1] + z * gR[2] + y * gR[3] - 2.0 * x * gR[4] - w * gR[5] + z * gR[6] + w * gR[7]
                        - 2.0 * x * gR[8])
            gy = 2.0 * (-2.0 * y * gR[0] + x * gR[1] + w * gR[2] + x * gR[3] + z * gR[5] - w * gR[6] + z * gR[7]
                        - 2.0 * y * gR[8])
            gz = 2.0 * (-2.0 * z * gR[0] - w * gR[1] + x * gR[2] + w * gR[3] - 2.0 * z * gR[4] + y * gR[5] + x * gR[6]
                        + y * gR[7])
            inv = 1.0 / max(qn, 1e-12)
            if qn > 1e-12:
                dot = w * gw + x * gx + y * gy + z * gz
                gw, gx, gy, gz = gw - w * dot, gx - x * dot, gy - y * dot, gz - z * dot
            g_quats[n, 0], g_quats[n, 1], g_quats[n, 2], g_quats[n, 3] = gw * inv, gx * inv, gy * inv, gz * inv
    return g_means, g_quats, g_scales, g_sh


def _np64(x: Tensor) -> np.ndarray:
    return x.detach().to(torch.float64).contiguous().numpy()


def _grad_np(g: Tensor | None, shape: tuple) -> np.ndarray:
    return np.zeros(shape) if g is None else _np64(g)


class _ProjectCPU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means, quats, scales, sh, cam, width, height, eps2d, near, far, degree):
        arrays = (_np64(means), _np64(quats), _np64(scales), _np64(sh))
        m2d, con, dep, rad, comp, col = project_forward(*arrays, cam, width, height, eps2d, near, far, degree)
        dtype = means.dtype
        ctx.arrays, ctx.cam, ctx.consts, ctx.dtype = arrays, cam, (eps2d, near, degree), dtype
        radii = torch.from_numpy(rad)
        ctx.mark_non_differentiable(radii)
        outs = (torch.from_numpy(a).to(dtype) for a in (m2d, con, dep, comp, col))
        return (radii, *outs)

    @staticmethod
    def backward(ctx, _g_radii, g_m2d, g_con, g_dep, g_comp, g_col):
        means, quats, scales, sh = ctx.arrays
        eps2d, near, degree = ctx.consts
        C, N = ctx.cam.shape[0], means.shape[0]
        gm, gq, gs, gsh = project_backward(
            means, quats, scales, sh, ctx.cam, eps2d, near, degree, _grad_np(g_m2d, (C, N, 2)),
            _grad_np(g_con, (C, N, 3)), _grad_np(g_dep, (C, N)), _grad_np(g_comp, (C, N)), _grad_np(g_col, (C, N, 3)),
        )
        grads = [torch.from_numpy(a).to(ctx.dtype) for a in (gm, gq, gs, gsh)]
        if degree < 0:
            grads[3] = None
        return (*grads, None, None, None, None, None, None, None)


def project_sh_cpu(
    means: Tensor,  # [N, 3]
    quats: Tensor,  # [N, 4] wxyz, need not be normalised
    scales: Tensor,  # [N, 3] activated
    viewmats: Tensor,  # [C, 4, 4]
    Ks: Tensor,  # [C, 3, 3]
    width: int,
    height: int,
    eps2d: float = 0.3,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    sh: Tensor | None = None,  # [N, K, 3]
    sh_degree: int | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor | None]:
    """Fused projection and SH colour on the CPU (autograd through a hand-written backward).

    Returns (radii [C, N, 2] int32, means2d [C, N, 2], depths [C, N], conics [C, N, 3],
    compensations [C, N], colours [C, N, 3] or None without `sh`): the same values as
    `project_gaussians(means, covariances(quats, scales), ...)` and clamp_min(eval_sh(...) + 0.5, 0).
    Gradients reach means, quats, scales and sh (not the cameras).
    """
    cam = camera_table(viewmats, Ks, width, height)
    degree = -1 if sh is None else int(sh_degree)
    if sh is None:
        sh = means.new_zeros((means.shape[0], 1, 3))
    elif sh.shape[1] < (degree + 1) ** 2:
        raise ValueError(f"degree {degree} needs {(degree + 1) ** 2} SH coefficients, got {sh.shape[1]}")
    radii, m2d, con, dep, comp, col = _ProjectCPU.apply(
        means, quats, scales, sh, cam, int(width), int(height), float(eps2d), float(near_plane), float(far_plane), degree
    )
    return radii, m2d, dep, con, comp, (col if degree >= 0 else None)
