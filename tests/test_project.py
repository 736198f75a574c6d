"""Settings precedence, the runs.db schema, prompts, and the package boundaries."""

from __future__ import annotations

import ast
import importlib
import re
import sqlite3
from pathlib import Path

import pytest

from alphaopt.agent import prompts
from alphaopt.agent.program import normalize
from alphaopt.config import ExperimentalSettings, Settings, load_settings
from alphaopt.errors import ConfigError
from alphaopt.llm.runlog import RunLog, migrate

ROOT = Path(__file__).resolve().parents[1]


def test_settings_precedence_flag_env_file_default(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir(parents=True)
    assert load_settings().max_repairs == 2  # default
    (home / "settings.toml").write_text("max_repairs = 5\nmodel = 'from-file'\n")
    assert load_settings().max_repairs == 5  # file
    monkeypatch.setenv("ALPHAOPT_MAX_REPAIRS", "7")
    assert load_settings().max_repairs == 7  # env beats file
    assert load_settings(max_repairs=9).max_repairs == 9  # flag beats env
    assert load_settings().model == "from-file"


def test_experimental_knobs_keep_the_same_precedence_knob_by_knob(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir(parents=True)
    assert load_settings().experimental.formulate is False  # default
    (home / "settings.toml").write_text("[experimental]\nformulate = true\nseed = 3\n")
    assert load_settings().experimental.formulate is True  # file
    monkeypatch.setenv("ALPHAOPT_EXPERIMENTAL__SEED", "5")
    knobs = load_settings().experimental
    assert (knobs.seed, knobs.formulate) == (5, True)  # env beats file, the file's other knob stays
    knobs = load_settings(experimental={"seed": 9, "text_rewrites": None}).experimental
    assert (knobs.seed, knobs.formulate, knobs.text_rewrites) == (9, True, ["bounds"])  # flag beats env; None keeps it
    changed = load_settings().with_experimental(formulate=False)
    assert changed.experimental.formulate is False and changed.experimental.seed == 5
    monkeypatch.setenv("ALPHAOPT_EXPERIMENTAL__TEXT_REWRITES", '["sense", "unused"]')
    assert load_settings().experimental.rewrites == {"sense", "unused"}  # a list of the rewrites' names
    monkeypatch.setenv("ALPHAOPT_EXPERIMENTAL__TEXT_REWRITES", "0")
    assert load_settings().experimental.rewrites == set()
    monkeypatch.setenv("ALPHAOPT_EXPERIMENTAL__TEXT_REWRITES", '["sence"]')
    with pytest.raises(ConfigError, match="TEXT_REWRITES"):
        load_settings()


def test_a_knob_set_under_its_old_name_names_its_new_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("ALPHAOPT_FORMULATE", "1")
    with pytest.raises(ConfigError, match=r"ALPHAOPT_FORMULATE is an experimental setting now: set "
                                          r"ALPHAOPT_EXPERIMENTAL__FORMULATE"):
        load_settings()
    monkeypatch.delenv("ALPHAOPT_FORMULATE")
    monkeypatch.setenv("ALPHAOPT_PATCH_LINES", "0")
    with pytest.raises(ConfigError, match="ALPHAOPT_EXPERIMENTAL__TEXT_REWRITES"):
        load_settings()
    monkeypatch.delenv("ALPHAOPT_PATCH_LINES")
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "settings.toml").write_text("retrieval_k = 4\n")
    with pytest.raises(ConfigError, match=r"'retrieval_k' at the top of settings\.toml.*\[experimental\]"):
        load_settings()
    with pytest.raises(ConfigError, match="seed= is an experimental setting"):
        load_settings(seed=1)


def test_the_chroma_server_is_a_setting_and_its_old_experimental_name_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("ALPHAOPT_CHROMA_URL", "http://chroma-host:8000")
    assert load_settings().chroma_url == "http://chroma-host:8000"
    monkeypatch.setenv("ALPHAOPT_EXPERIMENTAL__CHROMA_URL", "http://chroma-host:8000")
    with pytest.raises(ConfigError, match=r"EXPERIMENTAL__CHROMA_URL is a setting now.*set ALPHAOPT_CHROMA_URL"):
        load_settings()
    monkeypatch.delenv("ALPHAOPT_EXPERIMENTAL__CHROMA_URL")
    with pytest.raises(ConfigError, match="set ALPHAOPT_CHROMA_URL"):
        load_settings(experimental={"chroma_url": "http://x:1"})


def test_bad_settings_name_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("ALPHAOPT_MAX_REPAIRS", "many")
    with pytest.raises(ConfigError, match="ALPHAOPT_MAX_REPAIRS"):
        load_settings()


def test_bad_experimental_knobs_name_their_variable(monkeypatch):
    monkeypatch.setenv("ALPHAOPT_EXPERIMENTAL__MAX_UNUSED_PATCHES", "0")
    with pytest.raises(ConfigError, match="ALPHAOPT_EXPERIMENTAL__MAX_UNUSED_PATCHES"):
        load_settings()
    monkeypatch.delenv("ALPHAOPT_EXPERIMENTAL__MAX_UNUSED_PATCHES")
    monkeypatch.setenv("ALPHAOPT_EXPERIMENTAL__NO_SUCH_KNOB", "1")
    with pytest.raises(ConfigError, match="ALPHAOPT_EXPERIMENTAL__NO_SUCH_KNOB"):
        load_settings()


def test_samples_must_be_at_least_one(monkeypatch):
    monkeypatch.setenv("ALPHAOPT_SAMPLES", "0")
    with pytest.raises(ConfigError, match="ALPHAOPT_SAMPLES"):
        load_settings()


def test_bad_settings_file_names_the_file(tmp_path):
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "settings.toml").write_text("max_repairs = = 1")
    with pytest.raises(ConfigError, match=r"settings\.toml"):
        load_settings()


def test_embedded_is_the_default_and_endpoint_needs_a_model():
    settings = load_settings()
    assert settings.embedded and settings.model_name.startswith("qwen2.5-coder-1.5b")
    with pytest.raises(ConfigError, match="ALPHAOPT_MODEL"):
        _ = load_settings(base_url="http://localhost:8000/v1").model_name


def test_runs_db_schema_is_pinned(tmp_path):
    log = RunLog(tmp_path / "runs.db")
    db = sqlite3.connect(log.path)
    columns = {t: [r[1] for r in db.execute(f"PRAGMA table_info({t})")] for t in ("llm_calls", "runs")}
    assert columns["llm_calls"] == [
        "id", "run_id", "task_id", "node", "prompt_name", "prompt_sha", "model", "params", "messages", "response",
        "parse_ok", "input_tokens", "output_tokens", "latency_ms", "error", "cache_key", "cached", "created_at",
    ]
    assert columns["runs"] == ["id", "created_at", "problem", "status", "objective", "solution"]
    assert migrate(db) == []  # idempotent
    assert [r[0] for r in db.execute("SELECT name FROM _migrations ORDER BY name")] == ["m001_llm_calls", "m002_runs"]


def test_runs_db_opened_by_many_threads_at_once_is_migrated_once(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    path = tmp_path / "fresh" / "runs.db"
    with ThreadPoolExecutor(8) as pool:
        logs = list(pool.map(lambda _: RunLog(path), range(8)))  # a concurrent learning run's agents
    assert len(logs) == 8
    db = sqlite3.connect(path)
    assert [r[0] for r in db.execute("SELECT name FROM _migrations ORDER BY name")] == ["m001_llm_calls", "m002_runs"]


# kwargs exactly as the nodes pass them
NODE_KWARGS = {
    "formulate": {"problem": "P", "insights": ""},
    "write_program": {"problem": "P", "insights": "", "formulation": "<formulation>\nF\n</formulation>\n",
                      "goal": "G\n"},
    "repair": {"problem": "P", "program": "C", "error": "E"},
    "diagnose": {"problem": "P", "formulation": "F", "status": "infeasible", "hint": "H",
                 "conflict": prompts.no_optimum_block({"conflict": [{"name": "c1", "text": "x >= 10"}]})},
    "diagnose_program": {"problem": "P", "program": "C", "status": "infeasible", "hint": "H",
                         "conflict": prompts.no_optimum_block({"conflict": [{"name": "c1", "text": "x >= 10"}]}),
                         "goal": "G\n"},
    "rewrite_shorter": {"problem": "P", "insights": "", "goal": "G\n"},
    "patch_unused": {"problem": "P", "program": "C", "phrase": "has 500 acres", "number": "500"},
    "patch_objective": {"problem": "P", "program": "C", "objective": "3 * model.x", "goal": "minimize the number of x"},
    "review_insight": {"problem": "P", "program": "C", "insight": "[I0001] When x: y"},
    "check_insights": {"problem": "P", "candidates": "[I0001] When x: y"},
    "explore": {"problem": "P", "program": "C", "outcome": "the optimal objective 3 (too low)", "target": "5"},
    "extract": {"problem": "P", "outcome": "optimal objective 3", "wrong": "W", "right": "R", "labels": "L",
                "diff": "wrong: W right: R"},
    "extract_code": {"problem": "P", "error": "E", "right": "R", "labels": "L"},
    "generalize": {"condition": "the farm has 50 acres", "explanation": "E"},
    "situate": {"problem": "P", "flaw": "names the mistake", "explanation": "E", **prompts.SITUATE_WHAT["modeling"]},
    "integrality_condition": {"problem": "P", "change": "made the continuous variables integer"},
    "edit_condition": {"problem": "P", "change": "turned <= into >= in x + y <= 10",
                       "example": "wrong: x + y <= 10 right: x + y >= 10"},
    "merge": {"lessons": "[I1] ...", "stage": "general_formulation", "level1": "a", "level2": "b"},
    "narrow": {"condition": "C", "explanation": "E", "problem": "P"},
    "evolve_condition": {"problem": "P", "condition": "C", "explanation": "E",
                         "avoid": prompts.AVOID.format(problem="Q"), "avoid_clause": prompts.AVOID_CLAUSE},
    "evolve_label": {"problem": "P", "condition": "C", "explanation": "E",
                     "labels": "general_formulation / variables / integrality: Whether a quantity must be whole"},
}


@pytest.mark.parametrize("name", sorted(prompts.PROMPTS))
def test_every_prompt_renders_with_its_node_kwargs(name):
    messages, sha = prompts.render(name, **NODE_KWARGS[name])
    assert messages[0]["content"] == prompts.SYSTEM and len(sha) == 12
    user = messages[1]["content"]
    if name not in ("merge", "generalize"):
        assert user.startswith("<problem>\nP\n</problem>\n")  # shared prefix for the prompt cache
    assert "{problem}" not in user and "{target}" not in user


def test_prompt_snapshot(monkeypatch):
    """Prompt edits show up as a diff of tests/snapshots/prompts.txt.

    After a deliberate edit, refresh it with: UPDATE_SNAPSHOTS=1 python -m pytest tests/test_project.py
    """
    import os

    parts = []
    for name in sorted(prompts.PROMPTS):
        messages, sha = prompts.render(name, **NODE_KWARGS[name])
        parts.append(f"===== {name} {sha}\n{messages[1]['content']}\n")
    rendered = (f"===== system\n{prompts.SYSTEM}\n===== system with the quote rule\n{prompts.SYSTEM_QUOTE}\n"
                + "".join(parts))
    snapshot = ROOT / "tests" / "snapshots" / "prompts.txt"
    if os.environ.get("UPDATE_SNAPSHOTS"):
        snapshot.parent.mkdir(exist_ok=True)
        snapshot.write_text(rendered)
    assert snapshot.read_text() == rendered


def test_the_system_prompt_examples_meet_the_contract_and_solve(runner):
    """The model copies the examples' style: each must run unchanged and reach its optimum."""
    examples = re.findall(r"```python\n(.*?)```", prompts.SYSTEM + prompts.SYSTEM_QUOTE, re.DOTALL)
    assert len(examples) == 2
    for code in examples:
        assert normalize(code) == (code, [])  # no mechanical fix needed
        result = runner.run(code)
        assert result.status == "optimal" and result.objective and result.objective > 0


def test_the_quote_rule_changes_only_the_system_prompt_and_only_for_short_problems():
    plain, plain_sha = prompts.render("repair", problem="P", program="x", error="e")
    quoted, quoted_sha = prompts.render("repair", quote=True, problem="P", program="x", error="e")
    assert plain[1] == quoted[1] and plain_sha != quoted_sha
    assert prompts.QUOTE_RULE in quoted[0]["content"] and prompts.QUOTE_RULE not in plain[0]["content"]
    assert '# "A farm has 50 acres for wheat and corn"' in quoted[0]["content"]
    assert prompts.quotes(3, 3) and not prompts.quotes(4, 3)
    assert not prompts.quotes(1, 0)  # 0: never


def test_repair_hints_name_the_fix_for_known_errors():
    hints = prompts.repair_hints("TypeError: unsupported operand type(s) for *: 'float' and 'ScalarConstraint'")
    assert hints.startswith("Hint: A constraint is a condition")
    assert "Define `cost`" in prompts.repair_hints("NameError: name 'cost' is not defined")
    assert "Declare `model.dist`" in prompts.repair_hints(
        "AttributeError: 'ConcreteModel' object has no attribute 'dist'")
    assert prompts.repair_hints("ZeroDivisionError: division by zero") == ""


def test_insight_formatter():
    block = prompts.insights_block([{"id": "I1", "condition": " the text says at least ", "explanation": "use >= "}])
    assert "[I1] When the text says at least: use >=" in block
    assert prompts.insights_block([]) == ""
    learned = prompts.format_insights([{"id": "I2", "condition": "When the problem counts items.", "explanation": "E"}])
    assert learned == "[I2] When the problem counts items: E"


def _imports(package: str) -> dict[str, set[str]]:
    found = {}
    for path in (ROOT / package).rglob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(ROOT))] = names
    return found


def test_one_sdk_per_module_and_imports_point_one_way():
    allowed = {"openai": {"alphaopt/llm/client.py"}, "llama_cpp": {"alphaopt/llm/local_model.py"},
               "chromadb": {"library/index.py"}}
    for package in ("alphaopt", "library", "solvers"):
        for path, names in _imports(package).items():
            for sdk, homes in allowed.items():
                assert sdk not in names or path in homes, f"{path} imports {sdk}"
            if package != "solvers":
                assert not names & {"pyomo", "highspy"}, f"{path} imports the solver SDK"
            if package in ("library", "solvers"):
                assert "alphaopt" not in names, f"{path} imports alphaopt"
            if package == "solvers":
                assert "library" not in names


#: alphaopt's layers, top to bottom: a module may import its own layer and the ones below it.
LAYERS = ["interfaces", "api", "learning", "agent", "llm", "base"]


def _layer(module: str) -> str:
    parts = module.split(".")
    if parts[0] != "alphaopt":
        return "other"
    if len(parts) == 1 or parts[1] in ("__init__", "__main__"):
        return "top"  # the package's front door re-exports from every layer
    return parts[1] if parts[1] in LAYERS else "base"  # config, errors


def _module_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_alphaopt_layers_import_downwards_only():
    for path in (ROOT / "alphaopt").rglob("*.py"):
        rel = path.relative_to(ROOT).with_suffix("")
        own = _layer(".".join(rel.parts))
        if own == "top":
            continue
        for name in _module_imports(path):
            other = _layer(name)
            if other in LAYERS:
                assert LAYERS.index(other) >= LAYERS.index(own), f"{rel} ({own}) imports {name} ({other})"


def test_no_import_cycles_between_modules():
    graph: dict[str, set[str]] = {}
    for package in ("alphaopt", "library", "solvers", "benchmarks"):
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            graph[name] = set()
    for name in graph:
        path = ROOT / (name.replace(".", "/") + ".py")
        if not path.exists():
            path = ROOT / name.replace(".", "/") / "__init__.py"
        for imported in _module_imports(path):
            while imported and imported not in graph:
                imported = imported.rpartition(".")[0]
            related = imported == name or name.startswith(imported + ".") or imported.startswith(name + ".")
            if imported and not related:  # a package and its own modules are one unit
                graph[name].add(imported)
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                cycle = [*trail[trail.index(nxt):], nxt] if nxt in trail else [node, nxt]
                raise AssertionError(f"import cycle: {' -> '.join(cycle)}")
            if not state.get(nxt):
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for node in sorted(graph):
        if not state.get(node):
            visit(node, [node])


def test_os_environ_only_in_config():
    for package in ("alphaopt",):
        for path in (ROOT / package).rglob("*.py"):
            if path.name != "config.py":
                assert "os.environ" not in path.read_text(), path


@pytest.mark.parametrize("package", ["alphaopt", "library", "solvers"])
def test_packages_import_from_this_project(package):
    module = importlib.import_module(package)
    assert Path(module.__file__).resolve().is_relative_to(ROOT)


def test_insights_reach_prompts_with_their_example():
    text = prompts.format_insights([
        {"id": "I0001", "condition": "the text caps a share", "explanation": "compare with the total",
         "example": "wrong: x <= 30 right: x <= 0.3 * (x + y)"},
        {"id": "I0002", "condition": "c", "explanation": "e", "example": ""}])
    assert text == ("[I0001] When the text caps a share: compare with the total\n"
                    "  Example: wrong: x <= 30 right: x <= 0.3 * (x + y)\n[I0002] When c: e")


#: The most settings a user should have to read about (the rest are experimental knobs).
MAX_USER_SETTINGS = 15


def test_readme_documents_every_setting():
    """The README's configuration table names every user-facing field of ``Settings`` as its
    environment variable, and no experimental knob (one line says they exist)."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Configuration"):]
    section = section[:section.index("\n## ", 1)]
    documented = set(re.findall(r"`ALPHAOPT_([A-Z0-9_]+)`", section))
    user_facing = {name.upper() for name in Settings.model_fields if name != "experimental"}
    missing = user_facing - documented
    assert not missing, f"add these settings to the README's configuration table: {sorted(missing)}"
    knobs = {name.upper() for name in ExperimentalSettings.model_fields}
    assert not documented & knobs and not any(d.startswith("EXPERIMENTAL__") for d in documented), (
        "the README advertises experimental knobs: keep them in alphaopt/config.py")
    assert len(user_facing) <= MAX_USER_SETTINGS, (
        "a new user-facing setting: make it fixed behaviour or an experimental knob, or say why users need it")
