"""The `sda` command line:

    sda recipe --spec DATASET --stats stats.json --model dlrm [--set k=v] [--naive] > recipe.yaml
    sda train RECIPE.yaml --data DAY_DIR... [--params k=v] [--save model.pt]
    sda optimize RECIPE.yaml --data DAY_DIR... [--storage URL] [--warm-start EXPERIMENT] [--worker NAME]
    sda best EXPERIMENT [--storage URL]
    sda serve [--host 127.0.0.1] [--port 8910] [--storage URL]   (token: $SDA_SERVE_TOKEN)
    sda promote --dataset DATASET (--status | --rollback [--reason TEXT])
    sda export --dataset DATASET --out DIR
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import yaml
from pydantic import ValidationError

from sda.models import model_names, save_model
from sda.recipe import RecipeError, apply_overrides, dump_recipe, load_recipe, parse_recipe
from sda.train import train


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


def cmd_recipe(args: argparse.Namespace) -> int:
    from recdp.spec import load_spec
    from sda.advisors import AdviceRequest, advise

    spec = load_spec(args.spec)
    request = AdviceRequest.from_stats_file(
        args.stats, dataset=spec.name, model=args.model, budget_seconds=args.budget_seconds, workers=args.workers,
        window_days=args.window_days, champion_auc=args.champion_auc, max_model_bytes=args.max_model_bytes,
        naive=args.naive, overrides=tuple(args.set))
    columns = sorted(request.stats["categorical"])
    if columns != sorted(spec.categorical):
        raise ValueError(f"{args.stats} does not describe dataset {spec.name!r}: its categorical columns differ")
    print(dump_recipe(advise(request)), end="")
    return 0


def _backend(args: argparse.Namespace):
    from sda.hpo import LocalBackend

    return LocalBackend(args.storage, seed=getattr(args, "seed", None),
                        stale_after_seconds=float(os.environ.get("SDA_STALE_SECONDS", "300")))


def cmd_optimize(args: argparse.Namespace) -> int:
    from sda.trials import optimize

    recipe = load_recipe(args.recipe)
    backend = _backend(args)
    outcomes = optimize(recipe, args.data, backend, warm_start_from=args.warm_start, worker=args.worker,
                        model_root=args.models)
    best = backend.best_assignments(recipe.experiment.name)
    print(json.dumps({"experiment": recipe.experiment.name, "trials": len(outcomes),
                      "failed": sum(o.observed is None for o in outcomes),
                      "best": [b.__dict__ for b in best]}, indent=2, default=str))
    return 0


def cmd_best(args: argparse.Namespace) -> int:
    best = _backend(args).best_assignments(args.experiment)
    print(json.dumps([b.__dict__ for b in best], indent=2, default=str))
    return 0


def _registry(dataset: str):
    from recdp.spec import load_spec
    from recdp.storage import DataRoot
    from sda.promote import Registry
    from sda.tracking import Tracking

    spec = load_spec(dataset)
    return spec, Registry(Tracking.from_env(DataRoot.from_env().mlflow()), spec.name)


def cmd_promote(args: argparse.Namespace) -> int:
    _, registry = _registry(args.dataset)
    if args.rollback:
        version = registry.rollback(args.reason)
        print(f"{registry.name}: rolled back, version {version} is the champion again ({args.reason})")
    champion = registry.champion()
    print(json.dumps({"registered_model": registry.name, "champion": champion.version if champion else None,
                      "tags": champion.tags if champion else None, "history": registry.history()},
                     indent=2, sort_keys=True))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from recdp.storage import DataRoot
    from sda.export import export_champion

    spec, registry = _registry(args.dataset)
    bundle = export_champion(registry, spec, DataRoot.from_env().vocab(spec.name), args.out)
    print(f"exported {registry.name} champion to {bundle}")
    return 0


LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from sda.serve import create_app

    token = os.environ.get("SDA_SERVE_TOKEN") or None
    if args.host not in LOOPBACK and token is None:
        raise ValueError(f"refusing to serve on {args.host} without a token: set SDA_SERVE_TOKEN "
                         "(clients send it as their SigOpt API token)")
    print(f"SigOpt-compatible API on http://{args.host}:{args.port} (storage {_redacted(args.storage)}, "
          f"token {'required' if token else 'not required: loopback only'})", file=sys.stderr)
    uvicorn.run(create_app(args.storage, token), host=args.host, port=args.port, log_level="info")
    return 0


def _redacted(url: str) -> str:
    """A storage URL without its password, for logs."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<storage>"


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
    recipe_parser = commands.add_parser("recipe", help="advise a recipe for a model on a dataset's stats")
    recipe_parser.add_argument("--spec", required=True, help="dataset spec name or YAML path")
    recipe_parser.add_argument("--stats", type=Path, required=True, help="stats.json of a processed day")
    recipe_parser.add_argument("--model", required=True, choices=model_names())
    recipe_parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                               help="fix model or training fields")
    recipe_parser.add_argument("--budget-seconds", type=float, default=1800.0,
                               help="CPU seconds of training for the whole experiment")
    recipe_parser.add_argument("--workers", type=int, default=2)
    recipe_parser.add_argument("--window-days", type=int, default=1)
    recipe_parser.add_argument("--champion-auc", type=float)
    recipe_parser.add_argument("--max-model-bytes", type=int)
    recipe_parser.add_argument("--naive", action="store_true", help="the broad, knowledge-free space")
    recipe_parser.set_defaults(handler=cmd_recipe)
    storage = os.environ.get("SDA_OPTIMIZER_STORAGE", "sqlite:///optimizer.db")
    optimize_parser = commands.add_parser("optimize", help="run a recipe's whole experiment in this process")
    optimize_parser.add_argument("recipe", type=Path)
    optimize_parser.add_argument("--data", type=Path, nargs="+", required=True)
    optimize_parser.add_argument("--storage", default=storage, help="optimizer storage URL ($SDA_OPTIMIZER_STORAGE)")
    optimize_parser.add_argument("--seed", type=int)
    optimize_parser.add_argument("--warm-start", metavar="EXPERIMENT",
                                 help="try this earlier experiment's best assignments first")
    optimize_parser.add_argument("--worker", metavar="NAME",
                                 help="run as one of several workers sharing the experiment (a shared --storage); "
                                      "the name goes into its suggestions' metadata")
    optimize_parser.add_argument("--models", type=Path, metavar="DIR", help="save each trial's model here")
    optimize_parser.set_defaults(handler=cmd_optimize)
    best_parser = commands.add_parser("best", help="print an experiment's best assignments")
    best_parser.add_argument("experiment")
    best_parser.add_argument("--storage", default=storage)
    best_parser.set_defaults(handler=cmd_best)
    serve_parser = commands.add_parser("serve", help="serve the SigOpt Core and AI Experiment APIs on the local engine")
    serve_parser.add_argument("--host", default="127.0.0.1", help="bind address (other than loopback needs a token)")
    serve_parser.add_argument("--port", type=int, default=8910)
    serve_parser.add_argument("--storage", default=storage, help="optimizer storage URL ($SDA_OPTIMIZER_STORAGE)")
    serve_parser.set_defaults(handler=cmd_serve)
    promote_parser = commands.add_parser("promote", help="the champion of a dataset: status or rollback")
    promote_parser.add_argument("--dataset", required=True)
    action = promote_parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--status", action="store_true", help="print the champion and its history")
    action.add_argument("--rollback", action="store_true", help="restore the previous champion")
    promote_parser.add_argument("--reason", default="rolled back by hand", help="recorded in the history")
    promote_parser.set_defaults(handler=cmd_promote)
    export_parser = commands.add_parser("export", help="the champion as a self-contained scoring bundle")
    export_parser.add_argument("--dataset", required=True)
    export_parser.add_argument("--out", type=Path, required=True)
    export_parser.set_defaults(handler=cmd_export)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    try:
        return args.handler(args)
    except (ValueError, ValidationError, FileNotFoundError, LookupError, yaml.YAMLError, RuntimeError) as error:
        print(f"sda {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
