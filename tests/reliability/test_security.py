"""Security checks of the places where the pipeline reads untrusted bytes or holds a secret.

a) model files: every torch.load in sda/ and recdp/ passes weights_only=True (read from the source), and a
   malicious pickle (torch.save'd model.pt, raw pickle, TorchScript archive, pickled .npz) given to the
   project's loaders raises and runs nothing (its marker file is never created);
b) recipes and specs: YAML is read with the safe loader only (read from the source), and python/* tags raise
   a clear error and run nothing;
c) `sda serve` listens on loopback by default, refuses a non-loopback bind without SDA_SERVE_TOKEN, and with a
   token refuses every request that does not carry it (401);
d) the SigOpt token of the `sigopt` backend appears in no error, log line, captured output or file.
"""

from __future__ import annotations

import ast
import base64
import io
import json
import logging
import os
import pickle
import re
import shlex
import socket
import subprocess
import sys
import time
import traceback
import uuid
import zipfile
from pathlib import Path

import numpy as np
import psutil
import pytest
import requests
import torch
import yaml

from tests.sigopt_server import SDA, SigOptServer, free_port

PROJECT = Path(__file__).resolve().parents[2]
LOOPBACK_IPS = {"127.0.0.1", "::1"}
WEIGHTS_ONLY_FAILED = "Weights only load failed"


def python_files(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (PROJECT / folder).rglob("*.py") if ".venv" not in p.parts)


def call_text(source: str, open_paren: int) -> str:
    """The source of a call from its opening parenthesis to the matching closing one."""
    depth = 0
    for index in range(open_paren, len(source)):
        depth += {"(": 1, ")": -1}.get(source[index], 0)
        if depth == 0:
            return source[open_paren:index + 1]
    raise AssertionError(f"unbalanced call at offset {open_paren}")


def dotted(node: ast.AST) -> str:
    """`torch.serialization.load` for an Attribute/Name chain, '' for anything else."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ""


def keyword(call: ast.Call, name: str) -> ast.AST | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


# == a) model files ===========================================================================================
def test_every_torch_load_passes_weights_only_true(ledger):
    files = python_files("sda", "recdp")
    textual, calls, problems = [], [], []
    for path in files:
        source = path.read_text()
        where = path.relative_to(PROJECT)
        # The text: every `torch.load(` (docstrings included) must say weights_only=True inside its parentheses.
        for match in re.finditer(r"torch\s*\.\s*load\s*\(", source):
            text = call_text(source, match.end() - 1)
            line = source.count("\n", 0, match.start()) + 1
            textual.append(f"{where}:{line}")
            if not re.search(r"\bweights_only\s*=\s*True\b", text):
                problems.append(f"{where}:{line}: torch.load{text} without weights_only=True")
        # The code: calls however spelled (torch.serialization.load, `from torch import load`), and the other
        # ways to unpickle a file.
        tree = ast.parse(source, str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module in ("torch", "torch.serialization"):
                for alias in node.names:
                    if alias.name in ("load", "add_safe_globals", "safe_globals"):
                        problems.append(f"{where}:{node.lineno}: from {node.module} import {alias.name}")
            if isinstance(node, ast.Import | ast.ImportFrom):
                modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                for module in modules:
                    if module.split(".")[0] in ("pickle", "cPickle", "dill", "cloudpickle", "joblib", "shelve",
                                                "marshal"):
                        problems.append(f"{where}:{node.lineno}: imports {module}")
            if not isinstance(node, ast.Call):
                continue
            name = dotted(node.func)
            if name in ("torch.load", "torch.serialization.load"):
                calls.append(f"{where}:{node.lineno}")
                flag = keyword(node, "weights_only")
                if not (isinstance(flag, ast.Constant) and flag.value is True):
                    problems.append(f"{where}:{node.lineno}: {name} without weights_only=True")
            elif name.endswith(("add_safe_globals", "safe_globals")):
                problems.append(f"{where}:{node.lineno}: {name} widens what weights_only loads")
            elif name in ("np.load", "numpy.load"):
                flag = keyword(node, "allow_pickle")
                if flag is not None and not (isinstance(flag, ast.Constant) and flag.value is False):
                    problems.append(f"{where}:{node.lineno}: np.load with allow_pickle not False")
    assert not problems, "\n".join(problems)
    assert "sda/models/io.py" in " ".join(calls), "the model loader's torch.load was not found: is the check blind?"
    ledger.record("security", "torch.load passes weights_only=True (source)", tried=len(textual),
                  survived=len(textual), detail=f"{len(calls)} torch.load calls ({', '.join(calls)}), "
                  f"{len(textual)} textual mentions in {len(files)} files; no pickle/dill/joblib imports, "
                  "no add_safe_globals, no np.load(allow_pickle=True)")


class ShellPayload:
    """Unpickling runs `touch MARKER` in a shell."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


class ExecPayload:
    """Unpickling runs Python code that writes the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",)


PAYLOADS = {"os.system": ShellPayload, "exec": ExecPayload}


def torch_saved(path: Path, payload) -> Path:
    """A model.pt that looks like save_model's document, with the payload where the data shape goes."""
    document = {"format": 1, "config": {"name": "dlrm"}, "shape": payload,
                "state_dict": {"weight": torch.zeros(2, 2)}}
    torch.save(document, path)
    return path


def raw_pickled(path: Path, payload) -> Path:
    with open(path, "wb") as handle:
        pickle.dump({"state_dict": payload}, handle, protocol=2)
    return path


def evil_torchscript(path: Path, payload) -> Path:
    """A real TorchScript archive whose data.pkl is replaced by the payload."""
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 1)), buffer)
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as good, zipfile.ZipFile(path, "w") as evil:
        for name in good.namelist():
            data = pickle.dumps(payload, protocol=2) if name.endswith("/data.pkl") else good.read(name)
            evil.writestr(name, data)
    return path


class FakeRegistry:
    """What export_champion needs of sda.promote.Registry: a champion whose model file is `model_path`."""

    name = "criteo-ctr"

    def __init__(self, model_path: Path) -> None:
        self.model_path = model_path

    def champion(self):
        return type("Record", (), {"version": "1", "tags": {"recsys.vocab_version": "1"}})()

    def champion_model(self, destination: Path) -> Path:
        return self.model_path


@pytest.mark.parametrize("payload_name", sorted(PAYLOADS))
def test_malicious_model_files_raise_and_run_nothing(payload_name, tmp_path, ledger):
    from recdp.spec import load_spec
    from sda.export import export_champion
    from sda.models import load_model
    from sda.promote import predict_holdout
    from sda.scoring import BundleScorer

    marker = tmp_path / "MARKER"
    payload = PAYLOADS[payload_name](marker)
    (tmp_path / "day").mkdir()
    model_pt = torch_saved(tmp_path / "model.pt", payload)
    raw_pt = raw_pickled(tmp_path / "raw-model.pt", payload)
    refused = []

    for path in (model_pt, raw_pt):
        attempts = {
            "sda.models.load_model": lambda p=path: load_model(p),
            "sda.promote.predict_holdout": lambda p=path: predict_holdout(p, tmp_path / "day"),
            "sda.export.export_champion": lambda p=path: export_champion(FakeRegistry(p), load_spec("criteo"),
                                                                        tmp_path / "vocab", tmp_path / "bundle"),
        }
        for loader, attempt in attempts.items():
            with pytest.raises(pickle.UnpicklingError, match=WEIGHTS_ONLY_FAILED) as error:
                attempt()
            assert "system" in str(error.value) or "exec" in str(error.value), error.value  # names the global
            assert not marker.exists(), f"{loader} ran the payload of {path.name}"
            refused.append(f"{loader}({path.name})")
        assert not (tmp_path / "bundle").exists(), "export left a bundle behind"

    # The exported bundle's scorer: TorchScript (torch.jit.load) and the vocabulary (np.load without pickles).
    bundle = tmp_path / "scoring-bundle"
    bundle.mkdir()
    (bundle / "bundle.json").write_text(json.dumps({"categorical": ["C1"], "dense_pattern": "."}))
    (bundle / "spec.yaml").write_text(yaml.safe_dump(load_spec("criteo").model_dump(mode="json")))
    for name, build in (("torch.save'd file", torch_saved), ("raw pickle", raw_pickled),
                        ("TorchScript archive with a pickled payload", evil_torchscript)):
        build(bundle / "model.ts", payload)
        with pytest.raises(RuntimeError):
            BundleScorer(bundle)
        assert not marker.exists(), f"BundleScorer ran the payload of a {name} model.ts"
        refused.append(f"sda.scoring.BundleScorer(model.ts: {name})")
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 1)), str(bundle / "model.ts"))
    payload_array = np.empty(1, dtype=object)
    payload_array[0] = payload
    np.savez(bundle / "vocab.npz", C1__keys=payload_array, C1__ids=np.arange(1))
    with pytest.raises(ValueError, match="allow_pickle=False"):
        BundleScorer(bundle)
    assert not marker.exists(), "BundleScorer ran the payload of vocab.npz"
    refused.append("sda.scoring.BundleScorer(vocab.npz with an object array)")

    # TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD turns weights_only off for calls that do not pass it: the loader passes it.
    forced = subprocess.run([sys.executable, "-c", "import sys; from sda.models import load_model; "
                             "load_model(sys.argv[1])", str(model_pt)], cwd=PROJECT, capture_output=True, text=True,
                            timeout=120, env={**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"})
    assert forced.returncode != 0 and WEIGHTS_ONLY_FAILED in forced.stderr, forced.stderr[-2000:]
    assert not marker.exists(), "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 made load_model run the payload"
    refused.append("load_model under TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1")

    # Control: the files are live, an unsafe load would have run them.
    torch.load(model_pt, weights_only=False)
    assert marker.exists(), "the crafted model.pt is not malicious: the test proves nothing"
    marker.unlink()
    with open(raw_pt, "rb") as handle:
        pickle.load(handle)  # the control: what must never happen in the project
    assert marker.exists(), "the crafted raw pickle is not malicious: the test proves nothing"

    ledger.record("security", f"malicious model files ({payload_name} payload) are refused", tried=len(refused),
                  survived=len(refused), detail="refused, marker never created: " + "; ".join(refused)
                  + "; control: torch.load(weights_only=False) and pickle.load do run the payload")


# == b) recipes and specs: safe YAML ===========================================================================
UNSAFE_YAML = re.compile(r"\byaml\s*\.\s*(unsafe_load|unsafe_load_all|full_load|full_load_all|UnsafeLoader|"
                         r"FullLoader|Loader|CLoader|CFullLoader|CUnsafeLoader|UnsafeConstructor|FullConstructor)\b")


def test_yaml_is_read_with_the_safe_loader_only(ledger):
    files = python_files("sda", "recdp", "dags", "plugins", "scripts")
    problems, safe_calls, mentions = [], [], 0
    for path in files:
        source = path.read_text()
        where = path.relative_to(PROJECT)
        mentions += len(re.findall(r"\byaml\s*\.", source))
        for match in UNSAFE_YAML.finditer(source):
            problems.append(f"{where}:{source.count(chr(10), 0, match.start()) + 1}: yaml.{match.group(1)}")
        for match in re.finditer(r"\byaml\s*\.\s*(load|load_all)\s*\(", source):
            text = call_text(source, match.end() - 1)
            if not re.search(r"Loader\s*=\s*(yaml\s*\.\s*)?C?SafeLoader\b", text):
                problems.append(f"{where}:{source.count(chr(10), 0, match.start()) + 1}: yaml.{match.group(1)}{text}")
        for node in ast.walk(ast.parse(source, str(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in ("yaml", "ruamel"):
                names = {a.name for a in node.names}
                if node.module != "yaml" or names - {"safe_load", "safe_load_all", "safe_dump", "safe_dump_all",
                                                     "YAMLError", "SafeLoader", "CSafeLoader"}:
                    problems.append(f"{where}:{node.lineno}: from {node.module} import {sorted(names)}")
            if isinstance(node, ast.Call) and dotted(node.func) in ("yaml.safe_load", "yaml.safe_load_all"):
                safe_calls.append(f"{where}:{node.lineno}")
    assert not problems, "\n".join(problems)
    assert any("sda/recipe.py" in c for c in safe_calls) and any("recdp/spec.py" in c for c in safe_calls), \
        f"the recipe and spec loaders were not found ({safe_calls}): is the check blind?"
    ledger.record("security", "YAML is read with safe_load only (source)", tried=mentions, survived=mentions,
                  detail=f"{mentions} yaml. uses in {len(files)} files of sda/ recdp/ dags/ plugins/ scripts/; "
                  f"loads: {', '.join(safe_calls)}; no yaml.load without SafeLoader, unsafe_load, full_load")


def unsafe_documents(marker: Path) -> dict[str, str]:
    touch = json.dumps(f"touch {marker}")
    return {
        "object/apply:os.system": f"!!python/object/apply:os.system [{touch}]\n",
        "object/apply in a recipe": ("model:\n  name: dlrm\n  embedding_dim: !!python/object/apply:os.system "
                                     f"[{touch}]\ntraining: {{}}\n"),
        "name:os.system": "model: !!python/name:os.system\n",
        "object/new:subprocess.Popen": ("!!python/object/new:subprocess.Popen "
                                        f"{{args: [[touch, {json.dumps(str(marker))}]]}}\n"),
        "module:os": "spec: !!python/module:os\n",
    }


def test_python_tags_in_yaml_raise_and_run_nothing(tmp_path, monkeypatch, capsys, ledger):
    from recdp.spec import SpecError, load_spec
    from recdp.storage import DataRoot
    from sda import cli
    from sda.recipe import RecipeError, apply_overrides, load_recipe
    from sda.records import run_detail

    marker = tmp_path / "MARKER"
    constructor = re.compile(r"could not determine a constructor for the tag '?tag:yaml\.org,2002:python/")
    refused = []
    for name, document in unsafe_documents(marker).items():
        recipe = tmp_path / f"recipe-{len(refused)}.yaml"
        recipe.write_text(document)

        with pytest.raises(RecipeError, match=constructor) as error:
            load_recipe(recipe)
        assert str(error.value).startswith(f"invalid recipe {recipe}: not YAML")

        with pytest.raises(SpecError, match=constructor) as error:
            load_spec(recipe)
        assert str(error.value).startswith(f"invalid dataset spec {recipe}")

        assert cli.main(["train", str(recipe), "--data", str(tmp_path)]) == 2  # `sda train RECIPE`
        printed = capsys.readouterr().err
        assert printed.startswith("sda train: ") and constructor.search(printed), printed

        root = DataRoot(tmp_path / f"data-{len(refused)}")  # a run's recorded recipe, read by the dashboard
        run_dir = root.experiment_run("manual__2026-03-02")
        run_dir.mkdir(parents=True)
        (run_dir / "best.json").write_text("{}")
        (run_dir / "recipe.yaml").write_text(document)
        with pytest.raises(yaml.YAMLError, match=constructor):
            run_detail(root, "manual__2026-03-02")
        assert not marker.exists(), f"{name}: a loader ran the document"
        refused.append(name)

    # `--params key=value` values are YAML too.
    for value in ("!!python/object/apply:os.system [" + json.dumps(f"touch {marker}") + "]", "!!python/name:os.system"):
        with pytest.raises(yaml.YAMLError, match=constructor):
            apply_overrides({}, {}, [f"embedding_dim={value}"])
        assert not marker.exists()
    refused.append("--params values")

    # Control: an unsafe loader would have run them.
    yaml.unsafe_load(unsafe_documents(marker)["object/apply:os.system"])
    assert marker.exists(), "the crafted YAML is not malicious: the test proves nothing"
    ledger.record("security", "python/* YAML tags are refused", tried=len(refused) * 4 + 2,
                  survived=len(refused) * 4 + 2,
                  detail=f"{', '.join(refused)}: load_recipe (RecipeError 'not YAML'), load_spec (SpecError), "
                  "sda train (exit 2), records.run_detail and apply_overrides (yaml ConstructorError); "
                  "marker never created; control: yaml.unsafe_load runs it")


# == c) sda serve: loopback by default, a token beyond it ======================================================
def env_without_token() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "SDA_SERVE_TOKEN"}


def proc_net_listeners(port: int) -> list[str]:
    """Addresses listening on `port` according to /proc/net/tcp and tcp6 (state 0A = LISTEN)."""
    found = []
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, _, hex_port = fields[1].partition(":")
            if int(hex_port, 16) == port and fields[3] == "0A":
                raw = bytes.fromhex(address)
                if width == 8:
                    found.append(socket.inet_ntop(socket.AF_INET, raw[::-1]))
                else:  # four 32-bit words, each in host (little-endian) order
                    words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
                    found.append(socket.inet_ntop(socket.AF_INET6, words))
    return found


def external_ipv4() -> str | None:
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family == socket.AF_INET and not address.address.startswith("127."):
                return address.address
    return None


def test_serve_listens_on_loopback_only_by_default(tmp_path, ledger):
    port = free_port()
    log = tmp_path / "serve.log"
    with open(log, "w") as output:
        process = subprocess.Popen([str(SDA), "serve", "--port", str(port), "--storage",
                                    f"sqlite:///{tmp_path / 'o.db'}"], env=env_without_token(), stdout=output,
                                   stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, f"sda serve exited: {log.read_text()[-2000:]}"
            try:
                answer = requests.get(f"http://127.0.0.1:{port}/v1/experiments", timeout=5)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "sda serve did not start in 60 s"
                time.sleep(0.3)
        assert answer.status_code == 200  # no token: none required, because nothing beyond loopback can connect
        listening = sorted({c.laddr.ip for c in psutil.Process(process.pid).net_connections(kind="inet")
                            if c.status == psutil.CONN_LISTEN})
        assert listening and set(listening) <= LOOPBACK_IPS, listening
        in_proc = sorted(set(proc_net_listeners(port)))
        assert in_proc and set(in_proc) <= LOOPBACK_IPS, in_proc
        external = external_ipv4()
        if external is not None:  # the machine's own non-loopback address must not reach the server
            with pytest.raises(OSError), socket.create_connection((external, port), timeout=5):
                pass
        assert "not required: loopback only" in log.read_text()
    finally:
        process.terminate()
        process.wait(timeout=30)
    ledger.record("security", "sda serve binds loopback by default",
                  detail=f"listening on {listening} (psutil), {in_proc} (/proc/net/tcp*); "
                  + (f"connect to {external}:{port} refused" if external else "no non-loopback address to try"))


def test_serve_refuses_a_non_loopback_bind_without_a_token(tmp_path, ledger):
    hosts = ["0.0.0.0", "::"] + ([external_ipv4()] if external_ipv4() else [])
    runs = []
    for index, host in enumerate(hosts + ["0.0.0.0"]):
        env = env_without_token()
        if index == len(hosts):
            env["SDA_SERVE_TOKEN"] = ""  # an empty token is no token
        port = free_port()
        runs.append((host, port, env.get("SDA_SERVE_TOKEN"), subprocess.Popen(
            [str(SDA), "serve", "--host", host, "--port", str(port), "--storage", f"sqlite:///{tmp_path / 'o.db'}"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
    outcomes = []
    for host, port, token, process in runs:
        try:
            _, stderr = process.communicate(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
        assert process.returncode == 2, (host, process.returncode, stderr[-2000:])
        assert f"refusing to serve on {host} without a token" in stderr and "SDA_SERVE_TOKEN" in stderr, stderr
        assert "Traceback" not in stderr, stderr
        assert port not in {c.laddr.port for c in psutil.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN}
        outcomes.append(f"--host {host}{' (SDA_SERVE_TOKEN empty)' if token == '' else ''}: exit 2")
    ledger.record("security", "sda serve refuses a non-loopback bind without a token", tried=len(outcomes),
                  detail="; ".join(outcomes) + "; message: " + stderr.strip().splitlines()[-1][:160])


@pytest.fixture(scope="module")
def token_server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("security-serve")
    server = SigOptServer(f"sqlite:///{folder / 'optimizer.db'}", token=f"s3cret-{uuid.uuid4().hex}").start(folder)
    server.folder = folder
    yield server
    server.stop()


def basic(user: str, password: str = "") -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_serve_with_a_token_refuses_requests_without_it(token_server, ledger):
    url, token = f"{token_server.url}/v1/experiments", token_server.token
    body = {"name": "must-not-exist", "parameters": [{"name": "x", "type": "double", "bounds": {"min": 0, "max": 1}}],
            "metrics": [{"name": "m"}], "observation_budget": 3}
    refused = {
        "no Authorization": {},
        "wrong token": {"Authorization": basic("not-" + token)},
        "token with a suffix": {"Authorization": basic(token + "x")},
        "token prefix": {"Authorization": basic(token[:-1])},
        "empty user": {"Authorization": basic("")},
        "token as the password": {"Authorization": basic("someone", token)},
        "bearer scheme": {"Authorization": f"Bearer {token}"},
        "not base64": {"Authorization": "Basic %%%not-base64%%%"},
        "not UTF-8": {"Authorization": "Basic " + base64.b64encode(b"\xff\xfe:").decode()},
        "no scheme": {"Authorization": token},
    }
    for name, headers in refused.items():
        for method in ("GET", "POST"):
            answer = requests.request(method, url, headers=headers, json=body if method == "POST" else None,
                                      timeout=30)
            assert answer.status_code == 401, (name, method, answer.status_code, answer.text)
            assert "valid API token is required" in answer.json()["message"], answer.text
            assert token not in answer.text
    good = requests.get(url, auth=(token, ""), params={"search": "must-not-exist"}, timeout=30)
    assert good.status_code == 200 and good.json()["count"] == 0, "a refused POST created an experiment"
    ledger.record("security", "sda serve with a token answers 401 without it", tried=2 * len(refused),
                  survived=2 * len(refused), detail=f"GET and POST refused with 401 for: {', '.join(refused)}; "
                  "the right token gets 200; no refused POST created anything")


# == d) the SigOpt token stays secret ==========================================================================
def test_the_sigopt_token_is_in_no_error_log_output_or_file(token_server, tmp_path, caplog, capfd, monkeypatch,
                                                            ledger):
    from sda.hpo import OptimizerError
    from sda.hpo.experiment import Experiment
    from sda.hpo.factory import SigOptCredentials, backend_from_env

    caplog.set_level(logging.DEBUG)  # every logger, urllib3's request lines included
    log = logging.getLogger("sda.reliability.security")
    token = token_server.token
    wrong_token = f"wrong-s3cret-{uuid.uuid4().hex}"
    monkeypatch.chdir(tmp_path)
    backend = backend_from_env(f"sqlite:///{tmp_path / 'local.db'}", kind="sigopt",
                               sigopt=SigOptCredentials(token_server.url, token))
    experiment = Experiment.model_validate({
        "name": f"secret-check-{uuid.uuid4().hex[:8]}",
        "parameters": [{"name": "learning_rate", "type": "double", "bounds": {"min": 0.001, "max": 0.1},
                        "transformation": "log"}],
        "metrics": [{"name": "auc", "objective": "maximize"}, {"name": "training_time", "objective": "minimize"}],
        "observation_budget": 6, "parallel_bandwidth": 1})
    name = backend.create(experiment)
    for cycle in range(4):
        suggestion = backend.suggest(name, {"worker": "security"})
        log.info("suggestion %s of %s: %s", suggestion.id, name, suggestion.assignments)
        if cycle == 2:
            backend.observe(name, suggestion.id, failed=True, reason="diverged", metadata={"cycle": cycle})
        else:
            lr = suggestion.assignments["learning_rate"]
            backend.observe(name, suggestion.id, {"auc": 0.8 - lr, "training_time": 1 / lr})
    progress = backend.progress(name)
    assert (progress.observation_count, progress.failed_count, progress.open_suggestions) == (4, 1, 0)
    log.info("progress %s, best %s", progress, backend.best_assignments(name))

    failures = {
        "unknown experiment id": lambda: backend.progress("999999"),
        "unknown experiment name": lambda: backend.suggest("no-such-experiment"),
        "unknown suggestion": lambda: backend.observe(name, 424242, {"auc": 0.5, "training_time": 1.0}),
        "observed twice": lambda: backend.observe(name, 1, {"auc": 0.5, "training_time": 1.0}),
        "wrong token": lambda: backend_from_env("sqlite://", kind="sigopt", sigopt=SigOptCredentials(
            token_server.url, wrong_token)).create(experiment),
        "unreachable server": lambda: backend_from_env("sqlite://", kind="sigopt", sigopt=SigOptCredentials(
            f"http://127.0.0.1:{free_port()}", token)).progress(name),
    }
    messages = {}
    for what, attempt in failures.items():
        with pytest.raises(OptimizerError) as error:
            attempt()
        log.exception("the optimizer failed: %s", what, exc_info=error.value)  # as the pipeline logs a failure
        chain, seen = [], error.value
        while seen is not None:  # the message, and everything chained to it (suppressed context included)
            chain += [str(seen), repr(seen), *map(repr, seen.args)]
            seen = seen.__cause__ or seen.__context__
        text = "\n".join(chain + traceback.format_exception(error.value))
        for secret in (token, wrong_token):
            assert secret not in text, f"{what}: the token is in the error: {text[-2000:]}"
        messages[what] = str(error.value)
    assert "valid API token is required" in messages["wrong token"] and "unreachable" in messages["unreachable server"]

    # The same through the environment, as the DAG's workers get it.
    monkeypatch.setenv("SIGOPT_API_URL", token_server.url)
    monkeypatch.setenv("SIGOPT_API_TOKEN", token)
    from_env = backend_from_env(f"sqlite:///{tmp_path / 'local.db'}", kind="sigopt")
    log.info("backend %r, credentials %r, progress %s", from_env, SigOptCredentials(token_server.url, token),
             from_env.progress(name))

    records = "\n".join(f"{r.name} {r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in caplog.records)
    logged = caplog.text + records
    assert "the optimizer failed" in logged and "999999" in logged  # the check reads what was logged
    out, err = capfd.readouterr()
    files = [p for p in tmp_path.rglob("*") if p.is_file()] + \
        [p for p in token_server.folder.rglob("*") if p.is_file()]  # the server's log and its SQLite store
    assert any(p.name == "optimizer.db" for p in files) and any(p.suffix == ".log" for p in files)
    for secret in (token, wrong_token):
        assert secret not in logged, "the token is in a log record"
        assert secret not in out and secret not in err, "the token was printed"
        for path in files:
            assert secret.encode() not in path.read_bytes(), f"the token is in {path}"
    ledger.record("security", "the SigOpt token is in no error, log, output or file", tried=len(failures),
                  survived=len(failures),
                  detail=f"4 suggest/observe cycles (1 failed) then {len(failures)} failing calls "
                  f"({', '.join(failures)}); token absent from OptimizerError chains and tracebacks, "
                  f"{len(caplog.records)} log records, captured stdout/stderr and {len(files)} files "
                  "(tmp_path, server log, optimizer.db)")
