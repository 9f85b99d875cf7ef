"""The ``ssmzoo`` command starts without torch and timm: its help and argument errors answer at once,
and the commands import them where they read the manifest or build a model. A library ``import ssmzoo``
still registers the architectures with timm. Fresh interpreters: this process has imported both."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "timm")

# The console script's entry point (ssmzoo_cli:main) in a fresh interpreter; prints its exit code and the
# heavy modules imported, as JSON, on stderr's last line (stdout is the command's)
ENTRY = """
import json, sys
import ssmzoo_cli
sys.argv = ["ssmzoo", *json.loads(sys.argv[1])]
try:
    ssmzoo_cli.main()
    code = 0
except SystemExit as exc:
    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "timm"))
print(json.dumps({"code": code, "heavy": heavy, "starting": ssmzoo_cli.starting}), file=sys.stderr)
"""


def entry_point(*args: str) -> tuple[dict, subprocess.CompletedProcess]:
    done = subprocess.run([sys.executable, "-c", ENTRY, json.dumps(list(args))], capture_output=True, text=True,
                          timeout=600)
    return json.loads(done.stderr.strip().splitlines()[-1]), done


@pytest.mark.parametrize("args, code, says", [
    (["--help"], 0, "Usage: ssmzoo"),
    (["models", "--help"], 0, "Usage: ssmzoo models"),
    (["benchmark", "--help"], 0, "--peer"),
    (["--version"], 0, "ssmzoo 0."),
    (["info"], 2, "Missing argument 'MODEL'"),
    (["download", "--bogus", "groupmamba_tiny"], 2, "No such option: --bogus"),
])
def test_help_and_argument_errors_import_neither_torch_nor_timm(args, code, says):
    result, done = entry_point(*args)
    assert result == {"code": code, "heavy": [], "starting": False}, done.stderr
    assert says in done.stdout + done.stderr


def test_a_command_registers_the_models_it_reads():
    # `models` reads the manifest, which names ssmzoo's architectures: registered with timm on the way
    result, done = entry_point("models", "--json", "groupmamba")
    assert result["code"] == 0 and "timm" in result["heavy"], done.stderr
    assert {row["name"] for row in json.loads(done.stdout)} >= {"groupmamba_tiny", "groupmamba_small"}


def test_python_m_ssmzoo_starts_without_torch():
    # runpy imports the package before __main__; the package tells it from sys.argv[0] == "-m"
    code = ("import runpy, sys; sys.argv = ['-m', '--help']; sys.orig_argv = [sys.executable, '-m', 'ssmzoo', '--help']\n"
            "try:\n    runpy.run_module('ssmzoo', run_name='__main__', alter_sys=True)\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'timm')), file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert "Usage: ssmzoo" in done.stdout and done.stderr.strip().splitlines()[-1] == "[]", done.stderr
    # and as a shell runs it, interpreter options first
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "ssmzoo", "--help"], capture_output=True,
                          text=True, timeout=600)
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert done.returncode == 0 and "ssmzoo.cli" in imported and not imported & set(HEAVY), done.stderr[-2000:]


@pytest.mark.parametrize("code", [
    "import ssmzoo",
    "import ssmzoo_cli, ssmzoo",  # the launcher imported, not started: a library import as any other
    "import sys; sys.argv[0] = '-m'; import ssmzoo",  # inside another `python -c`, not runpy's -m ssmzoo
])
def test_import_ssmzoo_registers_the_models_with_timm(code):
    check = f"{code}\nimport timm; print(timm.is_model('groupmamba_tiny'), type(timm.create_model('groupmamba_tiny')).__module__)"
    done = subprocess.run([sys.executable, "-c", check, "-m", "ssmzoo"], capture_output=True, text=True, timeout=600,
                          cwd=Path(__file__).parent)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "ssmzoo.models.groupmamba"]


@pytest.mark.parametrize("argv, module", [
    (["python", "-m", "ssmzoo", "--help"], "ssmzoo"),
    (["python", "-mssmzoo"], "ssmzoo"),
    (["python", "-Im", "ssmzoo"], "ssmzoo"),
    (["python", "-X", "importtime", "-u", "-W", "ignore", "-m", "ssmzoo"], "ssmzoo"),
    (["python", "-mother", "-m", "ssmzoo"], "other"),  # ssmzoo is an argument of `other`
    (["python", "-c", "import ssmzoo", "-m", "ssmzoo"], None),
    (["python", "-Ic", "import ssmzoo", "-m", "ssmzoo"], None),
    (["python", "script.py", "-m", "ssmzoo"], None),
    (["python", "-", "-m", "ssmzoo"], None),
    (["python"], None),
])
def test_the_module_python_m_runs_is_read_from_the_interpreters_command_line(argv, module):
    from ssmzoo import _module_run

    assert _module_run(argv) == module
