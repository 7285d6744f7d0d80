"""The layering rules, checked on the source: one owner for a call's state, every module in a layer, no
silent function-local imports. (import-linter's contracts in `make lint` check the import direction.)"""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
APPS = ("campaigns", "synthesis", "telephony", "voices", "herald")
LIFECYCLE = ROOT / "campaigns" / "lifecycle.py"
CALL_FIELDS = {"state", "outcome", "hold"}  # what only the lifecycle changes on a Call
WRITE_METHODS = {"update", "create", "get_or_create", "update_or_create", "bulk_update"}


def _sources() -> list[Path]:
    return sorted(
        path
        for app in APPS
        for path in (ROOT / app).rglob("*.py")
        if "migrations" not in path.parts and "__pycache__" not in path.parts
    )


def _is_call_enum(node: ast.AST) -> bool:
    """`Call.State.X`, `Call.Outcome.X` or `Call.Hold.X` (what a write of a call's state names)."""
    return (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Attribute)
        and isinstance(node.value.value, ast.Name)
        and node.value.value.id == "Call"
        and node.value.attr in {"State", "Outcome", "Hold"}
    )


def call_state_writes(source: str) -> list[int]:
    """Lines that change a Call's state, outcome or hold: an UPDATE/create naming Call.State/Outcome/Hold for
    one of those fields, an assignment to `.state`/`.outcome`/`.hold` of a Call value, or a save() of them."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            method = node.func.attr
            for kw in node.keywords:
                if method in WRITE_METHODS and kw.arg in CALL_FIELDS and any(
                    _is_call_enum(n) for n in ast.walk(kw.value)
                ):
                    lines.append(node.lineno)
                if method == "save" and kw.arg == "update_fields" and isinstance(kw.value, ast.List | ast.Tuple):
                    if {e.value for e in kw.value.elts if isinstance(e, ast.Constant)} & CALL_FIELDS:
                        lines.append(node.lineno)
        elif isinstance(node, ast.Assign):
            targets = [t for target in node.targets for t in ast.walk(target)]
            if any(isinstance(t, ast.Attribute) and t.attr in CALL_FIELDS for t in targets) and any(
                _is_call_enum(n) for n in ast.walk(node.value)
            ):
                lines.append(node.lineno)
    return sorted(set(lines))


def test_only_the_lifecycle_changes_a_calls_state_outcome_or_hold():
    found = {
        str(path.relative_to(ROOT)): writes
        for path in _sources()
        if path != LIFECYCLE and (writes := call_state_writes(path.read_text()))
    }
    assert found == {}, f"Call state/outcome/hold written outside campaigns/lifecycle.py: {found}"


def test_the_scan_sees_the_lifecycles_writes():
    # Not vacuous: every kind of write the scan knows is found where it is allowed, and in a made-up snippet.
    assert len(call_state_writes(LIFECYCLE.read_text())) >= 15
    snippet = (
        "Call.objects.filter(pk=1).update(state=Call.State.READY)\n"
        "call.outcome = Call.Outcome.BUSY\n"
        "call.state, call.error = Call.State.DONE, ''\n"
        "call.save(update_fields=['hold'])\n"
        "RenderedAudio.objects.filter(pk=1).update(state=RenderedAudio.State.READY)\n"
    )
    assert call_state_writes(snippet) == [1, 2, 3, 4]


def _contract_layers() -> list[set[str]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (layers,) = [c["layers"] for c in config["contracts"] if c["type"] == "layers"]
    return [{name.strip() for name in layer.split(":")} for layer in layers]


def test_every_app_module_is_in_exactly_one_layer():
    layers = _contract_layers()
    missing, twice = [], []
    for path in _sources():
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        if module.endswith(".__init__"):
            module = module.removesuffix(".__init__")
            if module in APPS:
                continue  # an app's package itself holds nothing
        owners = [i for i, layer in enumerate(layers) if any(module == m or module.startswith(m + ".") for m in layer)]
        if not owners:
            missing.append(module)
        elif len(owners) > 1:
            twice.append(module)
    assert (missing, twice) == ([], []), "add each module to one layer of [tool.importlinter] in pyproject.toml"


def _local_imports_without_reason(source: str) -> list[int]:
    lines = source.splitlines()
    found = []
    tree = ast.parse(source)
    for func in ast.walk(tree):
        if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(func):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            if not any(name.split(".")[0] in APPS for name in names):
                continue
            # The reason: a comment on the line, or in the comment block just above the import(s).
            i = node.lineno - 1
            reasoned = "#" in lines[i]
            j = i - 1
            while j >= 0 and not reasoned and (lines[j].strip().startswith(("from ", "import ", "#")) or not lines[j].strip()):
                reasoned = lines[j].strip().startswith("#")
                j -= 1
            if not reasoned:
                found.append(node.lineno)
    return found


def test_function_local_imports_of_app_code_say_why():
    found = {
        str(path.relative_to(ROOT)): lines
        for path in _sources()
        if (lines := _local_imports_without_reason(path.read_text()))
    }
    assert found == {}, f"move these imports to the top of the file, or say in a comment why they cannot be: {found}"


def test_the_local_import_check_is_not_vacuous():
    bare = "def f():\n    from campaigns import lifecycle\n    return lifecycle\n"
    reasoned = "def f():\n    # torch: workers only\n    from synthesis.gptsovits import loading\n    return loading\n"
    assert _local_imports_without_reason(bare) == [2]
    assert _local_imports_without_reason(reasoned) == []


@pytest.mark.slow
def test_import_linter_contracts_hold_and_catch_a_backward_import(tmp_path):
    """The contracts pass on the code, and fail when a model imports the lifecycle (a backward import)."""
    lint = Path(sys.executable).with_name("lint-imports")
    kept = subprocess.run([lint, "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert kept.returncode == 0, kept.stdout + kept.stderr
    # The same contracts over a copy of the apps in which synthesis.models imports campaigns.lifecycle.
    for app in APPS + ("sandbox",):
        subprocess.run(["cp", "-r", ROOT / app, tmp_path / app], check=True)
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    models = tmp_path / "synthesis" / "models.py"
    models.write_text(models.read_text() + "\nfrom campaigns import lifecycle  # noqa\n")
    broken = subprocess.run([lint, "--no-cache"], cwd=tmp_path, capture_output=True, text=True,
                            env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert broken.returncode != 0
    assert "synthesis.models -> campaigns.lifecycle" in broken.stdout
