"""The variables the code reads, `.env.example` and ENV_GUIDE.md name the
same set: an operator never meets a setting the template hides, nor edits
one nothing reads."""

from __future__ import annotations

import ast
import re

from tests.support import ROOT

NAME = re.compile(r"\A[A-Z][A-Z0-9]*(_[A-Z0-9]+)+\Z")
BOTOCORE = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL_SQS"}
SYSTEMD = {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM"}
LOADERS = {
    "load_common": "both", "load_transcoder_settings": "transcoder",
    "_queue_url": "transcoder", "_parts_queue_url": "transcoder",
    "load_cleanup_settings": "cleanup",
}  # fmt: skip


def _read_by(function: ast.AST) -> set[str]:
    """Names passed to `read.<anything>(...)` inside one loader."""
    found = set()
    for node in ast.walk(function):
        func = node.func if isinstance(node, ast.Call) else None
        target = func.value if isinstance(func, ast.Attribute) else None
        if isinstance(target, ast.Name) and target.id == "read":
            found |= {a.value for a in node.args  # type: ignore[union-attr]
                      if isinstance(a, ast.Constant) and isinstance(a.value, str)
                      and NAME.match(a.value)}  # fmt: skip
    return found


def code_reads() -> dict[str, str]:
    tree = ast.parse((ROOT / "utils" / "config.py").read_text())
    workers: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name in LOADERS:
            for name in _read_by(node):
                if workers.get(name) != "both":  # (read by the common loader too)
                    workers[name] = LOADERS[node.name]
    return {**workers, **{name: "botocore" for name in BOTOCORE}}


def test_only_the_settings_loader_reads_the_environment() -> None:
    for path in [*ROOT.glob("streaming/*.py"), *ROOT.glob("utils/*.py"),
                 *ROOT.glob("cleanup/*.py")]:  # fmt: skip
        text = path.read_text()
        if path.name == "config.py" or not re.search(r"environ|getenv", text):
            continue
        literals = set(re.findall(r'"([A-Z][A-Z0-9_]+)"', text)) & {
            n for n in re.findall(r'"([A-Z][A-Z0-9_]+)"', text) if NAME.match(n)
        }
        assert literals <= SYSTEMD, (path.name, literals - SYSTEMD)


def test_env_example_names_exactly_what_the_code_reads() -> None:
    text = (ROOT / ".env.example").read_text()
    named = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, re.MULTILINE))
    named |= set(re.findall(r"\b(SQS_TRANSCODE_QUEUE_URL|AWS_DEFAULT_REGION)\b", text))
    assert named == set(code_reads())


def test_env_guide_lists_every_variable_with_the_worker_that_reads_it() -> None:
    rows = re.findall(r"^\| `([A-Z0-9_]+)` \| (\w+) \|", (ROOT / "ENV_GUIDE.md").read_text(),
                      re.MULTILINE)  # fmt: skip
    assert dict(rows) == code_reads()


def test_env_example_survives_systemds_environment_file() -> None:
    """systemd keeps a `# …` after a value as part of the value: none there,
    even on lines an operator would uncomment."""
    for line in (ROOT / ".env.example").read_text().splitlines():
        setting = re.match(r"^#?\s*[A-Z][A-Z0-9_]*=(.*)$", line)
        assert not (setting and "#" in setting.group(1)), line
