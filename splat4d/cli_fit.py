"""`splat4d fit METHOD --data PATH [--scale S] [--iters N] --out RUN [--resume] [--config RUN/config.yaml]`.

The flags come from dataclasses: data and training options at the top level, the method's own
config under `--method.*` (see `splat4d fit METHOD --help`). `--config` loads a run's resolved
config.yaml as the defaults, so a run repeats exactly; flags given beside it still override.
`--resume` without `--config` takes the defaults from the run's own config.yaml in the same way.
"""


import dataclasses
import sys
from pathlib import Path
from typing import Optional

import tyro

from splat4d.cli_parse import parse
from splat4d.config_checks import check_bool, check_path
from splat4d.errors import ConfigError
from splat4d.methods.base import available_methods, get_method
from splat4d.train.checkpoint import from_plain, load_config
from splat4d.train.run import DataConfig, fit, validate_fit
from splat4d.train.trainer import TrainConfig

USAGE = "usage: splat4d fit METHOD --data PATH [--iters N] --out RUN [--resume] [--config FILE] (methods: {})"


def _fit_class(method_cfg_cls):
    @dataclasses.dataclass
    class Fit:
        """Train a method on a dataset into a run folder (config.yaml, checkpoint.pt, metrics.json, eval/)."""

        out: Path = Path("runs/run")
        """Run folder."""
        resume: bool = False
        """Continue the run in --out from its checkpoint to --iters (its config.yaml gives the defaults)."""
        config: Optional[Path] = None
        """A run's config.yaml whose values become the defaults."""
        data_cfg: tyro.conf.OmitArgPrefixes[DataConfig] = dataclasses.field(default_factory=DataConfig)
        train: tyro.conf.OmitArgPrefixes[TrainConfig] = dataclasses.field(default_factory=TrainConfig)
        method: method_cfg_cls = dataclasses.field(default_factory=method_cfg_cls)

        def validate(self) -> None:
            check_bool("--resume", self.resume)
            check_path("--config", self.config, optional=True)
            validate_fit(self.method, self.data_cfg, self.train, self.out)

    return Fit


def _flag_value(argv: list[str], flag: str) -> Optional[str]:
    value = None
    for i, a in enumerate(argv):
        if a == flag and i + 1 < len(argv):
            value = argv[i + 1]
        elif a.startswith(flag + "="):
            value = a.split("=", 1)[1]
    return value


def main_fit(argv: list[str]) -> int:
    config_path = _flag_value(argv, "--config")
    config_path = Path(config_path) if config_path else None
    out = _flag_value(argv, "--out")
    if config_path is None and "--resume" in argv and out and (Path(out) / "config.yaml").is_file():
        # a resumed run keeps its own data, training and method settings unless flags override them
        config_path = Path(out) / "config.yaml"
    saved = load_config(config_path) if config_path else None
    if argv and not argv[0].startswith("-"):
        name, rest = argv[0], argv[1:]
    elif saved:
        name, rest = saved["method"], argv
    else:
        print(USAGE.format(", ".join(available_methods())), file=sys.stderr)
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    cls = get_method(name)
    Fit = _fit_class(cls.Config)
    default = None
    if saved:
        if saved["method"] != name:
            raise ConfigError(f"{config_path} is a config of method {saved['method']!r}, not {name!r}")
        try:
            default = Fit(
                config=config_path,
                data_cfg=from_plain(DataConfig, saved.get("data", {}), "data"),
                train=from_plain(TrainConfig, saved.get("train", {}), "train"),
                method=from_plain(cls.Config, saved.get("method_config", {}), "method_config"),
            )
        except ConfigError as e:
            raise ConfigError(f"{config_path}: {e}") from None
    args = parse(Fit, rest, prog=f"splat4d fit {name}", description=Fit.__doc__, default=default)
    result = fit(name, args.method, args.data_cfg, args.train, args.out, resume=args.resume)
    if "interrupted" in result:
        return 130 if result["interrupted"] == "SIGINT" else 143
    if "rank" in result:  # a data-parallel rank other than 0: rank 0 reports
        return 0
    from splat4d.commands import print_metrics

    print_metrics(result, f"{name} -> {args.out} ({result['split']} split):")
    print(f"wrote {args.out / 'metrics.json'}, {args.out / 'eval'}/*.png, {args.out / 'checkpoint.pt'}")
    return 0
