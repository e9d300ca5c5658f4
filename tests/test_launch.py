"""launch/tpu.sh against a fake gcloud (tests/fake_gcloud/gcloud) first on PATH."""

import os
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "launch" / "tpu.sh"
FAKE_BIN = Path(__file__).parent / "fake_gcloud"
RUN = ["--name=bg", "--config=configs/biggan/imagenet128.py:row8", "--workdir=gs://bucket/bg"]
ZONE = "--zone=europe-west4-a"
SSH = ["compute", "tpus", "tpu-vm", "ssh"]


def tpu(tmp_path: Path, *args: str, workers: int = 0) -> subprocess.CompletedProcess:
    """Runs tpu.sh with the fake gcloud; `workers` > 0 also fakes the VMs' workers."""
    env = dict(os.environ, PATH=f"{FAKE_BIN}:{os.environ['PATH']}", TMPDIR=str(tmp_path))
    env["FAKE_GCLOUD_LOG"] = str(tmp_path / "gcloud.log")
    if workers:
        env.update(FAKE_TPU_ROOT=str(tmp_path / "vms"), FAKE_TPU_WORKERS=str(workers))
    return subprocess.run(
        [str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path
    )


def gcloud_calls(tmp_path: Path) -> list[list[str]]:
    log = tmp_path / "gcloud.log"
    return [shlex.split(line) for line in log.read_text().splitlines()] if log.exists() else []


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, result.stderr
    return result


def remote_command(call: list[str]) -> str:
    return next(arg for arg in call if arg.startswith("--command="))[len("--command=") :]


def test_help_documents_every_command_and_option(tmp_path):
    text = ok(tpu(tmp_path, "--help")).stdout
    for word in (
        "create",
        "setup",
        "train",
        "eval",
        "logs",
        "stop",
        "delete",
        "--dry-run",
        "--accelerator-type",
        "--resolution",
        "--spot",
        "--preemptible",
        "--queued",
        "--batch",
        "--git-url",
        "--eval",
        "v3-128",
        "v5litepod",
        "v6e",
        "megacore",
    ):
        assert word in text
    assert gcloud_calls(tmp_path) == []


def test_known_invocation(tmp_path):
    ok(tpu(tmp_path, "create", *RUN, "--spot"))
    ok(tpu(tmp_path, "setup", *RUN))
    ok(tpu(tmp_path, "train", *RUN, "--", "--config.train.steps=1000"))
    ok(tpu(tmp_path, "create", *RUN, "--eval"))
    ok(tpu(tmp_path, "eval", *RUN))
    ok(tpu(tmp_path, "delete", *RUN))
    calls = gcloud_calls(tmp_path)
    tpu_vm = ["compute", "tpus", "tpu-vm"]
    assert calls[0] == [
        *tpu_vm,
        "create",
        "bg",
        "--accelerator-type=v3-128",
        "--version=tpu-ubuntu2204-base",
        "--spot",
        ZONE,
    ]
    assert calls[1] == [
        *tpu_vm,
        "scp",
        str(tmp_path / "bg-code.tgz"),
        "bg:code.tgz",
        "--worker=all",
        ZONE,
    ]
    assert calls[2][:6] == [*SSH, "bg", "--worker=all"]
    assert "python3 -m pip install -e '.[tpu,tfds]'" in remote_command(calls[2])
    assert calls[3][:6] == [*SSH, "bg", "--worker=all"] and calls[3][7] == ZONE
    assert (
        "nohup python3 -m biggan.main --config=configs/biggan/imagenet128.py:row8 "
        "--workdir=gs://bucket/bg --multihost --config.train.steps=1000 > $HOME/train.log"
    ) in remote_command(calls[3])
    assert calls[4] == [
        *tpu_vm,
        "create",
        "bg-eval",
        "--accelerator-type=v3-8",
        "--version=tpu-ubuntu2204-base",
        ZONE,
    ]
    assert calls[5][4:6] == ["bg-eval", "--worker=all"]
    assert (
        "nohup python3 -m biggan.eval --config=configs/biggan/imagenet128.py:row8 "
        "--workdir=gs://bucket/bg --multihost > $HOME/eval.log"
    ) in remote_command(calls[5])
    assert calls[6] == [*tpu_vm, "delete", "bg", "--quiet", ZONE]
    assert len(calls) == 7


def test_printed_commands_and_dry_run(tmp_path):
    for command in (
        ["create", "--spot"],
        ["setup"],
        ["train", "--batch=1024"],
        ["eval"],
        ["logs"],
        ["stop"],
        ["status"],
        ["delete"],
    ):
        dry = ok(tpu(tmp_path, *command, *RUN, "--project=p", "--dry-run")).stdout
        assert gcloud_calls(tmp_path) == [], f"--dry-run ran gcloud for {command}"
        assert not list(tmp_path.glob("*.tgz")), "--dry-run packed no code"
        printed = [shlex.split(line[2:]) for line in dry.splitlines() if line.startswith("+ ")]
        assert printed and all("--project=p" in c for c in printed if c[0] == "gcloud")
        real = ok(tpu(tmp_path, *command, *RUN, "--project=p")).stdout
        assert real == dry, "the commands run are the ones printed"
        gcloud_printed = [c[1:] for c in printed if c[0] == "gcloud"]
        assert gcloud_calls(tmp_path) == gcloud_printed
        (tmp_path / "gcloud.log").unlink()
        for archive in tmp_path.glob("*.tgz"):
            archive.unlink()


@pytest.mark.parametrize("command", ["create", "train"])
def test_unknown_accelerator_type_fails_before_gcloud(tmp_path, command):
    result = tpu(tmp_path, command, *RUN, "--accelerator-type=v3-96")
    assert result.returncode != 0
    assert "unknown accelerator type 'v3-96'" in result.stderr
    assert "v3-{8,32,64,128,256,512,1024,2048}" in result.stderr
    assert "v5litepod-{1,4,8,16,32,64,128,256}" in result.stderr
    assert gcloud_calls(tmp_path) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch=2000"], "--batch=2000 is not divisible by the 128 JAX devices of v3-128"),
        (["--accelerator-type=v4-32", "--batch=24"], "24 is not divisible by the 16 JAX devices"),
        (["--", "--config.train.batch_size=100"], "100 is not divisible by the 128 JAX devices"),
        (
            ["--config=configs/biggan/digits.py", "--accelerator-type=v3-128"],
            "train.batch_size of configs/biggan/digits.py=32 is not divisible by the 128",
        ),
    ],
)
def test_indivisible_batch_fails_before_gcloud(tmp_path, args, message):
    result = tpu(tmp_path, "train", *RUN, *args)
    assert result.returncode != 0 and message in result.stderr, result.stderr
    assert gcloud_calls(tmp_path) == []


@pytest.mark.parametrize(
    "args",
    [
        ["--accelerator-type=v4-32", "--batch=32"],  # 16 megacore devices
        ["--accelerator-type=v5p-16", "--batch=8"],
        ["--accelerator-type=v6e-8", "--batch=8"],
        ["--config=configs/biggan/digits.py"],  # batch 32 on the default v3-8
    ],
)
def test_divisible_batch_starts(tmp_path, args):
    ok(tpu(tmp_path, "train", *RUN, *args))
    assert len(gcloud_calls(tmp_path)) == 1


@pytest.mark.parametrize(
    ("args", "accelerator"),
    [
        ([], "v3-128"),  # data.resolution of the config
        (["--resolution=256"], "v3-256"),
        (["--resolution=512"], "v3-512"),
        (["--config=configs/biggan/digits.py"], "v3-8"),
        (["--model=diffusion", "--resolution=256"], "v3-8"),
        (["--accelerator-type=v5e-16"], "v5litepod-16"),
    ],
)
def test_default_accelerator_type(tmp_path, args, accelerator):
    printed = ok(tpu(tmp_path, "create", *RUN, *args, "--dry-run")).stdout
    assert f"--accelerator-type={accelerator} " in printed


def test_queued_resource(tmp_path):
    ok(tpu(tmp_path, "create", *RUN, "--queued", "--spot", "--accelerator-type=v6e-8"))
    ok(tpu(tmp_path, "delete", *RUN, "--queued"))
    queued = ["compute", "tpus", "queued-resources"]
    assert gcloud_calls(tmp_path) == [
        [
            *queued,
            "create",
            "bg",
            "--node-id=bg",
            "--accelerator-type=v6e-8",
            "--runtime-version=v2-alpha-tpuv6e",
            "--spot",
            ZONE,
        ],
        [*queued, "delete", "bg", "--force", "--quiet", ZONE],
    ]
    result = tpu(tmp_path, "create", *RUN, "--queued", "--preemptible")
    assert result.returncode != 0 and "--spot, not --preemptible" in result.stderr


def test_bad_options_fail_before_gcloud(tmp_path):
    for args, message in [
        (["train", *RUN[:2], "--workdir=/tmp/run"], "needs --workdir gs://"),
        (["train", "--workdir=gs://b/r"], "needs --config"),
        (["train", *RUN, "--config=configs/none.py"], "'configs/none.py' not found"),
        (["launch", *RUN], "unknown command 'launch'"),
        (["create", *RUN, "--colour=red"], "unknown option '--colour'"),
        (["create", *RUN, "--spot", "--preemptible"], "not both"),
    ]:
        result = tpu(tmp_path, *args)
        assert result.returncode != 0 and message in result.stderr, (args, result.stderr)
    assert gcloud_calls(tmp_path) == []


def wait_for(condition, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_jobs_on_fake_workers(tmp_path):
    """setup/train/stop/eval executed on two fake workers (home directories, fake python3)."""
    workers = [tmp_path / "vms" / "bg" / str(w) for w in (0, 1)]
    try:
        ok(tpu(tmp_path, "setup", *RUN, workers=2))
        for home in workers:
            assert (home / "biggan-diffusion-jax" / "launch" / "tpu.sh").is_file()
            assert (home / "python3.calls").read_text() == "-m pip install -e .[tpu,tfds]\n"
        ok(tpu(tmp_path, "train", *RUN, "--", "--config.train.steps=7", workers=2))
        for home in workers:
            wait_for(lambda home=home: "job started" in _read(home / "train.log"))
            assert (
                "-m biggan.main --config=configs/biggan/imagenet128.py:row8 "
                "--workdir=gs://bucket/bg --multihost --config.train.steps=7"
                in _read(home / "train.log")
            )
        again = tpu(tmp_path, "train", *RUN, workers=2)
        assert again.returncode != 0 and "train job already running" in again.stderr
        ok(tpu(tmp_path, "stop", *RUN, workers=2))
        for home in workers:
            wait_for(lambda home=home: "job got SIGTERM" in _read(home / "train.log"))
        ok(tpu(tmp_path, "setup", *RUN, "--eval", workers=1))
        ok(tpu(tmp_path, "eval", *RUN, workers=1))
        eval_log = tmp_path / "vms" / "bg-eval" / "0" / "eval.log"
        wait_for(lambda: "-m biggan.eval --config=" in _read(eval_log))
        ok(tpu(tmp_path, "stop", *RUN, "--eval", workers=1))
        wait_for(lambda: "job got SIGTERM" in _read(eval_log))
    finally:
        for pid_file in (tmp_path / "vms").glob("*/*/*.pid"):
            try:
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
            except ProcessLookupError:
                pass


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_shellcheck():
    scripts = [SCRIPT, FAKE_BIN / "gcloud", FAKE_BIN / "worker_bin" / "python3"]
    result = subprocess.run(["shellcheck", *map(str, scripts)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
