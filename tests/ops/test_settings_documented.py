"""docs/settings.md documents every environment variable the code reads, and nothing else.

The variables chatsite/settings.py reads are found by walking its syntax tree (django-environ's
`env.str("NAME", ...)`, `env.bool`, `env.int`, `env.float`, `env.list`, `env.db_url`,
`env.email_url`, `env("NAME")`, and `os.environ` / `os.getenv`), so a new setting cannot slip in
undocumented; the documented ones are the backticked names in the first column of the page's
tables, so a row cannot outlive its setting.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = ROOT / "chatsite" / "settings.py"
DOC = ROOT / "docs" / "settings.md"

# Read before Django starts, by the code that starts the processes, not by chatsite/settings.py.
# Each is documented in docs/settings.md all the same; where each is read is said beside it.
PROCESS_LEVEL = {
    "HOST": "Makefile (make run) and scripts/run_prod.py --host",
    "PORT": "Makefile (make run) and scripts/run_prod.py --port",
    "CHAT_WORKERS": "scripts/run_prod.py worker_count()",
    "CHAT_PROXY_PROCESSES": "scripts/run_prod.py nginx_config(): nginx's worker_processes",
    "CHAT_EVENT_LOOP": "chatsite/serving/server.py, before Daphne is imported",
    "PROMETHEUS_MULTIPROC_DIR": "chat/telemetry/metrics.py; scripts/run_prod.py sets it",
}

_ENV_METHODS = {"str", "bool", "int", "float", "list", "tuple", "dict", "json", "url", "path"}
_ENV_METHODS |= {"db_url", "db", "email_url", "email", "cache_url", "cache", "search_url"}


def _first_string(call: ast.Call) -> str | None:
    if call.args and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str):
        return call.args[0].value
    return None


def variables_read(source: str) -> set[str]:
    """Every environment variable a settings module reads, by name."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            func = node.func
            # env("NAME", ...) and env.str("NAME", ...), env.db_url("NAME"), ...
            is_env_call = isinstance(func, ast.Name) and func.id == "env"
            is_env_method = (
                isinstance(func, ast.Attribute)
                and isinstance(func.value, ast.Name)
                and func.value.id == "env"
                and func.attr in _ENV_METHODS
            )
            # os.getenv("NAME") and os.environ.get("NAME")
            is_os_getenv = (
                isinstance(func, ast.Attribute)
                and func.attr == "getenv"
                and isinstance(func.value, ast.Name)
                and func.value.id == "os"
            )
            is_environ_get = (
                isinstance(func, ast.Attribute)
                and func.attr == "get"
                and isinstance(func.value, ast.Attribute)
                and func.value.attr == "environ"
            )
            if (is_env_call or is_env_method or is_os_getenv or is_environ_get) and (
                name := _first_string(node)
            ):
                names.add(name)
        # os.environ["NAME"]
        elif (
            isinstance(node, ast.Subscript)
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == "environ"
            and isinstance(node.slice, ast.Constant)
            and isinstance(node.slice.value, str)
        ):
            names.add(node.slice.value)
    return names


def variables_documented(markdown: str) -> set[str]:
    """The backticked upper-case names in the first column of the page's table rows."""
    names: set[str] = set()
    for line in markdown.splitlines():
        if line.startswith("| `"):
            first_cell = line.split("|")[1]
            names.update(re.findall(r"`([A-Z][A-Z0-9_]*)`", first_cell))
    return names


def test_the_parser_finds_each_way_of_reading_a_variable() -> None:
    source = """
import os
A = env.str("A_STR", default="")
B = env.bool("B_BOOL", default=False)
C = env.int("C_INT", default=1)
D = env.float("D_FLOAT", default=1.0)
E = env.list("E_LIST", default=[])
F = {"default": env.db_url("F_DB", default="sqlite://")}
G = env("G_CALL")
H = os.environ.get("H_OS", "")
I = os.environ["I_OS"]
J = os.getenv("J_OS")
if k := env.str("K_WALRUS", default=""):
    pass
vars().update(env.email_url("L_EMAIL"))
X = settings.get("NOT_AN_ENV")
"""
    assert variables_read(source) == {
        "A_STR", "B_BOOL", "C_INT", "D_FLOAT", "E_LIST", "F_DB", "G_CALL",
        "H_OS", "I_OS", "J_OS", "K_WALRUS", "L_EMAIL",
    }  # fmt: skip


def test_the_page_lists_names_from_the_first_column_only() -> None:
    page = (
        "| Variable | Default | What it does |\n| --- | --- | --- |\n"
        "| `HOST`, `PORT` | `127.0.0.1` | Where it serves; see `OTHER_NAME`. |\n"
        "Prose naming `PROSE_NAME`.\n"
    )
    assert variables_documented(page) == {"HOST", "PORT"}


def test_a_missing_row_or_a_stale_row_is_caught() -> None:
    read = variables_read(SETTINGS.read_text())
    documented = variables_documented(DOC.read_text())
    some = sorted(read)[0]
    without_one = DOC.read_text().replace(f"| `{some}`", "| removed")
    assert some in read - variables_documented(without_one)
    assert "CHAT_NO_SUCH_SETTING" not in read | documented


def test_every_setting_settings_py_reads_is_documented() -> None:
    read = variables_read(SETTINGS.read_text())
    assert len(read) > 60  # the parser found them; a broken parser must not pass quietly
    undocumented = sorted(read - variables_documented(DOC.read_text()))
    assert not undocumented, f"add a row to docs/settings.md for: {', '.join(undocumented)}"


def test_every_documented_setting_is_read() -> None:
    read = variables_read(SETTINGS.read_text()) | set(PROCESS_LEVEL)
    stale = sorted(variables_documented(DOC.read_text()) - read)
    assert not stale, f"docs/settings.md documents what nothing reads: {', '.join(stale)}"


def test_the_process_level_variables_are_read_where_the_list_says() -> None:
    # A process-level variable stays allowed only while its reader still reads it.
    sources = {
        "Makefile": (ROOT / "Makefile").read_text(),
        "scripts/run_prod.py": (ROOT / "scripts" / "run_prod.py").read_text(),
        "chatsite/serving/server.py": (ROOT / "chatsite" / "serving" / "server.py").read_text(),
        "chat/telemetry/metrics.py": (ROOT / "chat" / "telemetry" / "metrics.py").read_text(),
    }
    for name, where in PROCESS_LEVEL.items():
        readers = [path for path in sources if path in where]
        assert readers, f"{name}: say which file reads it"
        assert any(re.search(rf"\b{name}\b", sources[path]) for path in readers), (name, where)
