"""Dynamic-static feature decoupling (DS4D §3.3, eqs. 1-2), parameter-free.

For every frame i and view j the frame features f(i,j) [P, D] are split against two references of the
same view: the middle frame's features f(T//2, j) and the time mean of the view's features. The static
part is the projection of f onto the reference, the dynamic part what is left (eq. 2); each reference
gives [f, dynamic], and the two are averaged into the decoupled features f_d = [f, mean of the dynamic
parts] (the first D channels are the frame's own features).

The paper writes eq. 1 as f . r r / |r|^2 without saying over what the dot product runs. Here it runs
per token (each of the P tokens is projected onto the reference's token at the same place: the
dynamic part then shows where, in the token grid, the frame differs), the reading its Fig. 3 draws;
`per_token=False` projects the whole [P x D] frame onto the whole reference with one coefficient.
"""

from __future__ import annotations

import torch
from torch import Tensor

EPS = 1e-12


def project(f: Tensor, r: Tensor, per_token: bool = True) -> Tensor:
    """Eq. 1: the projection of f onto r. f [..., P, D], r broadcastable to f. Per token the dot products
    run over D; otherwise over P and D together. A zero reference gives a zero projection."""
    dims = (-1,) if per_token else (-2, -1)
    coef = (f * r).sum(dims, keepdim=True) / (r * r).sum(dims, keepdim=True).clamp_min(EPS)
    return coef * r


def decouple(features: Tensor, per_token: bool = True, return_parts: bool = False):
    """Decoupled features of every frame and view.

    Args:
        features: [T, V, P, D] frame features (T frames, V views, P tokens of D channels).
        per_token: eq. 1 per token (default) or per whole frame (see the module docstring).
        return_parts: also return the parts.
    Returns:
        [T, V, P, 2D]: [f, (dynamic w.r.t. the middle frame + dynamic w.r.t. the mean) / 2]; with
        `return_parts` a tuple (that, {"static_mid", "dynamic_mid", "static_mean", "dynamic_mean"}),
        each [T, V, P, D].
    """
    if features.dim() != 4:
        raise ValueError(f"decouple expects features [T, V, P, D], got shape {tuple(features.shape)}")
    refs = {"mid": features[features.shape[0] // 2][None], "mean": features.mean(0, keepdim=True)}
    parts = {}
    for name, r in refs.items():
        static = project(features, r, per_token)
        parts[f"static_{name}"] = static
        parts[f"dynamic_{name}"] = features - static  # eq. 2
    dynamic = 0.5 * (parts["dynamic_mid"] + parts["dynamic_mean"])
    out = torch.cat([features, dynamic], dim=-1)  # mean of [f, dyn_mid] and [f, dyn_mean]
    return (out, parts) if return_parts else out
