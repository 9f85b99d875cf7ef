"""stdout that cannot take the output: a full disk is one error line (exit code 1), a reader that left
(`ssmzoo models | head -1`) ends the run quietly; never a traceback. Real child processes, as a shell
runs them: /dev/full refuses every write, and a pipe whose reader has gone refuses them with EPIPE."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

FULL = "error: stdout: cannot write (No space left on device)\n"


def ssmzoo_into(stdout, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ssmzoo", *map(str, args)], stdout=stdout, stderr=subprocess.PIPE,
                          text=True, timeout=600)


@pytest.fixture()
def dev_full():
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    with open("/dev/full", "w") as stream:
        yield stream


@pytest.mark.parametrize("args", [
    ["models", "--json"],           # one large write
    ["models"],                     # rich's table
    ["info", "groupmamba_tiny", "--json"],  # a small one: taken by the buffer, refused when it is flushed
    ["--version"],
    ["models", "--help"],           # click's own output
])
def test_a_full_disk_behind_stdout_is_one_error_line(dev_full, args):
    res = ssmzoo_into(dev_full, *args)
    assert (res.returncode, res.stderr) == (1, FULL)


def test_classify_json_into_a_full_disk(dev_full, mini_files, example_images):
    manifest, checkpoint = mini_files
    res = ssmzoo_into(dev_full, "--manifest", manifest, "classify", example_images / "coffee.jpg",
                      "--model", "groupmamba_mini", "--weights", checkpoint, "--json")
    assert res.returncode == 1 and res.stderr.splitlines()[-1] == FULL.strip() and "Traceback" not in res.stderr


def test_a_closed_pipe_ends_the_run_quietly():
    read, write = os.pipe()
    os.close(read)  # the reader has gone before anything is written, as `| head -1` after its line
    with os.fdopen(write, "w") as stream:
        res = ssmzoo_into(stream, "models")
    assert (res.returncode, res.stderr) == (1, "")


def test_ctrl_c_while_the_command_starts_is_exit_code_130_without_a_traceback():
    # Importing torch and timm takes seconds; Ctrl-C then is the user's choice, not a crash. The installed
    # command is started as a shell starts it, and interrupted at once, then a little later. `models`, as
    # `--help`, answers without importing torch (tests/test_cli_start.py), so a signal lands while the
    # package is being imported, or while the command runs, or after it is done
    command = Path(sys.executable).with_name("ssmzoo")
    if not command.exists():
        pytest.skip(f"no installed ssmzoo command next to {sys.executable}")
    codes = []
    for delay in (0.3, 0.45, 0.6, 1.0, 1.5):  # (sooner, it can land before Python itself has started)
        proc = subprocess.Popen([str(command), "models"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
        assert "Traceback" not in stderr and proc.returncode in (130, 0, -signal.SIGINT), (delay, proc.returncode, stderr)
        # killed by the signal, as any program is, where it landed while the interpreter shut down after the
        # command (Python has given SIGINT back to the system then): nothing said
        assert proc.returncode != -signal.SIGINT or stderr == "", (delay, stderr)
        codes.append(proc.returncode)
    assert 130 in codes, codes  # the signal landed during start-up at least once


def test_ctrl_c_while_torch_imports_is_held_back_until_the_import_is_done():
    # A KeyboardInterrupt raised inside torch's or timm's C++ extension initialisation can abort the whole
    # process (pybind11's "terminate called", SIGABRT) instead of exit code 130: the commands that build a
    # model import both with SIGINT held back, and the Ctrl-C pressed meanwhile interrupts right after
    from ssmzoo.cli import _HEAVY_COMMANDS, _interrupts_deferred

    assert {"classify", "eval", "robustness", "benchmark", "convert"} <= _HEAVY_COMMANDS
    reached = []
    with pytest.raises(KeyboardInterrupt):
        with _interrupts_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            reached.append("the import went on")
        reached.append("not reached: the held-back Ctrl-C interrupts here")
    assert reached == ["the import went on"]
