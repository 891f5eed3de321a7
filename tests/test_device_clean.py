"""Every tensor that training, method, render or field code creates names its device, so a model on CUDA
never meets a CPU tensor mid-step (densification once mixed them). `*_like` calls inherit the device and
are fine; data readers and CLI code run on the host and are not walked."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "splat4d"
WALKED = ["train", "methods", "render", "fields", "gaussians.py"]
FACTORIES = {"zeros", "ones", "empty", "full", "rand", "randn", "randint", "arange", "tensor", "randperm",
             "linspace", "eye"}


def _files() -> list[Path]:
    out = []
    for name in WALKED:
        p = PACKAGE / name
        out += sorted(p.rglob("*.py")) if p.is_dir() else [p]
    return out


def undeviced_factory_calls(source: str) -> list[tuple[int, str]]:
    """(line, call) of every torch.<factory>(...) without a device= keyword."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        f = node.func
        if f.attr in FACTORIES and isinstance(f.value, ast.Name) and f.value.id == "torch":
            if not any(k.arg == "device" for k in node.keywords):
                found.append((node.lineno, f"torch.{f.attr}"))
    return found


def test_the_walker_finds_what_it_should():
    src = "import torch\na = torch.zeros(3)\nb = torch.zeros(3, device=x.device)\nc = torch.zeros_like(a)\n" \
          "d = torch.tensor([1.0], dtype=torch.float32)\ne = torch.randn(2, generator=g, device='cpu')\n"
    assert undeviced_factory_calls(src) == [(2, "torch.zeros"), (5, "torch.tensor")]


@pytest.mark.parametrize("path", _files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_factory_calls_name_a_device(path):
    bad = undeviced_factory_calls(path.read_text())
    assert not bad, f"{path.relative_to(PACKAGE)}: tensor factories without device=: " + \
        ", ".join(f"line {ln} {call}" for ln, call in bad)
