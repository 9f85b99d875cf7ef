"""stdout that cannot take the output: a full disk is one error line (exit code 1), a reader that left
(`ssmzoo models | head -1`) ends the run quietly; never a traceback. Real child processes, as a shell
runs them: /dev/full refuses every write, and a pipe whose reader has gone refuses them with EPIPE."""

import os
import subprocess
import sys
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
