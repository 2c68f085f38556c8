"""`grpo config show KIND`: validate a config file against its model and print the effective config."""

from __future__ import annotations

from pathlib import Path

import click
import orjson
import yaml

from grpo_tui.config import CONFIGS, PRESETS, load_config


@click.group("config")
def config_group() -> None:
    """Inspect and validate configs (train, mine, auto, guard)."""


@config_group.command("show")
@click.argument("kind", type=click.Choice(sorted(CONFIGS)))
@click.option("--config-file", type=click.Path(path_type=Path, dir_okay=False), help="YAML file merged over the defaults.")
@click.option("--preset", type=click.Choice(PRESETS), help="Train preset applied under the config file.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of YAML.")
def show(kind: str, config_file: Path | None, preset: str | None, as_json: bool) -> None:
    """Print the effective KIND config: defaults < preset < --config-file."""
    if preset and kind != "train":
        raise click.UsageError("--preset applies to the train config only")
    cfg = load_config(CONFIGS[kind], config_file=config_file, preset_name=preset)
    data = cfg.model_dump(mode="json")
    if as_json:
        click.echo(orjson.dumps(data).decode())
    else:
        click.echo(yaml.safe_dump(data, sort_keys=False).rstrip())
