"""Run by test_diffusion2_distributed: sample a matrix with small random conv denoisers, in one process or
under torchrun (gloo), and save it (rank 0)."""

import sys

import torch

from splat4d.methods.diffusion2 import sample_image_matrix_distributed
from splat4d.train import distributed as ddp


class TinyDenoiser(torch.nn.Module):
    """x0 = c_skip·x + c_out·conv([x, cond]) mixed over the sequence: deterministic for a seed."""

    def __init__(self, seed: int, channels: int = 2):
        super().__init__()
        torch.manual_seed(seed)
        self.conv = torch.nn.Conv3d(2 * channels, channels, 3, padding=1)

    def forward(self, x, sigma, cond):
        b, l, c, h, w = x.shape
        s = sigma.view(b, 1, 1, 1, 1)
        cin = x / (s**2 + 1).sqrt()
        cond = torch.zeros_like(x[:, 0]) if cond is None else cond
        inp = torch.cat([cin, cond[:, None].expand(-1, l, -1, -1, -1)], 2).permute(0, 2, 1, 3, 4)
        out = torch.tanh(self.conv(inp)).permute(0, 2, 1, 3, 4)
        return x / (s**2 + 1) + out * s / (s**2 + 1).sqrt()


def main(out_path: str, views: int, frames: int) -> None:
    ddp.init(torch.device("cpu"))
    image = torch.rand(2, 8, 8, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        x = sample_image_matrix_distributed(TinyDenoiser(1), TinyDenoiser(2), views, frames, (2, 8, 8), image=image,
                                            num_steps=8, rollback_steps=3, generator=torch.Generator().manual_seed(5))
    if ddp.is_main():
        torch.save(x, out_path)
    ddp.shutdown()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
