"""3D ResNet (Hara et al., "Can Spatiotemporal 3D CNNs Retrace the History of 2D CNNs and ImageNet?",
shortcut B, bottleneck blocks): the feature network of FID-VID.

DisCo's video metrics (`tool/metrics/features.py`, mode "FVD-3DRN50", which Consistent4D's FVD script was
reorganised from) compute FID-VID with `resnet-50-kinetics.pth` of Hara's 3D-ResNets-PyTorch: 16-frame
112x112 clips, pixels in [0, 255] minus the Kinetics mean, the 2048-d global average pool before `fc`.
The module names here are those of that checkpoint (`conv1`, `bn1`, `layer<k>.<i>.conv1..3`, `bn1..3`,
`downsample.0/1`, `fc`), so its `state_dict` loads as it is.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

KINETICS_MEAN_255 = (114.7748, 107.7354, 99.4750)
"""Per-channel mean (RGB, [0, 255]) subtracted from the input; the checkpoint uses no std."""


class Bottleneck3D(nn.Module):
    """1x1x1 -> 3x3x3 (stride) -> 1x1x1 (x4 channels), BatchNorm after each, projection shortcut (type B)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv3d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = nn.Conv3d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv3 = nn.Conv3d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm3d(planes * 4)
        self.downsample = None
        if stride != 1 or inplanes != planes * 4:
            self.downsample = nn.Sequential(nn.Conv3d(inplanes, planes * 4, 1, stride=stride, bias=False),
                                            nn.BatchNorm3d(planes * 4))

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet3D(nn.Module):
    """Bottleneck 3D ResNet; `forward` returns the pooled features [B, 32 * width] (2048 for ResNet-50).

    Args:
        blocks: bottleneck blocks per stage ((3, 4, 6, 3) = ResNet-50).
        width: channels of the stem (64 in the checkpoint); stage k has width * 2^k bottleneck channels.
        num_classes: classes of `fc` (400 for Kinetics); kept so the checkpoint loads, unused by `forward`.
    """

    def __init__(self, blocks: tuple[int, ...] = (3, 4, 6, 3), width: int = 64, num_classes: int = 400):
        super().__init__()
        self.conv1 = nn.Conv3d(3, width, 7, stride=(1, 2, 2), padding=3, bias=False)
        self.bn1 = nn.BatchNorm3d(width)
        self.maxpool = nn.MaxPool3d(3, stride=2, padding=1)
        inplanes = width
        for k, n in enumerate(blocks):
            planes = width * 2**k
            layers = []
            for i in range(n):
                layers.append(Bottleneck3D(inplanes, planes, stride=2 if (i == 0 and k > 0) else 1))
                inplanes = planes * 4
            self.add_module(f"layer{k + 1}", nn.Sequential(*layers))
        self.num_stages = len(blocks)
        self.feature_dim = inplanes
        self.fc = nn.Linear(inplanes, num_classes)
        self.eval()

    def forward(self, x: Tensor) -> Tensor:  # [B, 3, T, H, W] (mean-subtracted [0, 255]) -> [B, F]
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        for k in range(self.num_stages):
            x = getattr(self, f"layer{k + 1}")(x)
        # the checkpoint's AvgPool3d((ceil(T/16), ceil(S/32), ceil(S/32))) is this global mean for 16x112x112
        return F.adaptive_avg_pool3d(x, 1).flatten(1)


def resnet3d_from_state_dict(sd: dict[str, Tensor]) -> ResNet3D:
    """A `ResNet3D` shaped like the checkpoint `sd` (blocks per stage, stem width and classes read from
    its keys) with its weights loaded strictly. Raises KeyError/RuntimeError when `sd` is not one."""
    width = int(sd["conv1.weight"].shape[0])
    blocks = []
    while any(k.startswith(f"layer{len(blocks) + 1}.") for k in sd):
        stage = len(blocks) + 1
        blocks.append(1 + max(int(k.split(".")[1]) for k in sd if k.startswith(f"layer{stage}.")))
    if not blocks:
        raise KeyError("layer1.*")
    model = ResNet3D(tuple(blocks), width, int(sd["fc.weight"].shape[0]))
    model.load_state_dict(sd, strict=True)
    return model.eval()


@torch.no_grad()
def resnet3d_features(net, clips: Tensor, size: int = 112, batch: int = 8) -> Tensor:
    """Clips [N, 3, T, H, W] in [0, 1] -> features [N, D] with DisCo's input: frames resized to size x size
    (bicubic, no crop), scaled to [0, 255], minus the Kinetics mean."""
    dev = next(net.parameters()).device
    mean = torch.tensor(KINETICS_MEAN_255).view(1, 3, 1, 1, 1)
    out = []
    for c in clips.split(batch):
        n, _, t, h, w = c.shape
        x = c.permute(0, 2, 1, 3, 4).reshape(n * t, 3, h, w).float()
        x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
        x = x.reshape(n, t, 3, size, size).permute(0, 2, 1, 3, 4) * 255 - mean
        out.append(net(x.to(dev)).cpu())
    return torch.cat(out).flatten(1)
