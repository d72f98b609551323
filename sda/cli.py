"""`sda` command line: `sda train RECIPE.yaml --data PROCESSED_DIR [--params k=v ...]`."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from sda.models import save_model
from sda.recipe import RecipeError, parse_recipe
from sda.train import TrainingConfig, train


def apply_overrides(model: dict[str, Any], training: dict[str, Any], overrides: list[str]) -> None:
    """k=v pairs (values in YAML syntax) into the model or training section; `model.` / `training.`
    prefixes choose the section, a bare key goes where the field exists."""
    training_fields = set(TrainingConfig.model_fields)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ValueError(f"--params takes key=value, got {item!r}")
        value = yaml.safe_load(raw)
        section, _, field = key.rpartition(".")
        if section == "model" or (not section and field not in training_fields):
            model[field] = value
        elif section in ("training", ""):
            training[field] = value
        else:
            raise ValueError(f"--params key {key!r}: the section must be model or training")


def cmd_train(args: argparse.Namespace) -> int:
    document = yaml.safe_load(args.recipe.read_text()) or {}
    if not isinstance(document, dict) or "model" not in document:
        raise RecipeError(f"invalid recipe {args.recipe}: it needs a model section")
    document["model"] = dict(document["model"])
    document["training"] = dict(document.get("training") or {})
    apply_overrides(document["model"], document["training"], args.params)
    recipe = parse_recipe(document, str(args.recipe))
    result = train(recipe.model, recipe.training, args.data)
    if args.save and result.model is not None:
        save_model(args.save, result.model, recipe.model, result.shape)
    print(json.dumps(result.to_dict(), indent=2, sort_keys=True))
    return 0 if result.status != "failed" else 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sda", description="Smart Democratization Advisor")
    commands = parser.add_subparsers(dest="command", required=True)
    train_parser = commands.add_parser("train", help="train one model and print its metrics as JSON")
    train_parser.add_argument("recipe", type=Path)
    train_parser.add_argument("--data", type=Path, nargs="+", required=True,
                              help="processed day directories, oldest first")
    train_parser.add_argument("--params", nargs="*", default=[], metavar="KEY=VALUE")
    train_parser.add_argument("--save", type=Path, help="write the trained model here")
    train_parser.set_defaults(handler=cmd_train)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    try:
        return args.handler(args)
    except (ValueError, ValidationError, FileNotFoundError, yaml.YAMLError) as error:
        print(f"sda {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
