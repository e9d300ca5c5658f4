r"""Our training iteration beside the real reference implementation's, alternating in one run.

  BIGGAN_PYTORCH_DIR=... IMPROVED_DIFFUSION_DIR=... REFERENCE_PYTHON=... \
  python benchmarks/side_by_side.py [--settings=biggan_cifar10,ddpm_cifar10,...] \
      [--device=cpu|cuda] [--precision=default|highest|bf16] [--rounds=3] [--steps=3] \
      [--batch=SETTING=B,...] [--threads=N] [--smoke] [--dry-run]

For each setting (`step_settings.SETTINGS`) it starts two processes: ours
(`our_step.py --serve`, this Python) and the reference's (`reference_step.py`, the Python of
$REFERENCE_PYTHON, default this one), each of which builds its model and warms up. Then, for
--rounds rounds, it has ours time --steps iterations and then the reference time as many,
so that both see the same load. Each runs in its own process: PyTorch's and XLA's threads
compete when they share one. Both processes stay alive for the whole setting, so both hold
their models' memory at once (the 128 px settings' default batch is sized for that).

Standard output: one JSON line per measurement (setting, side, device, precision, round,
batch, s/step min / median, images/s) and one per round with the ratio ours / reference of
images/s and both sides' parameter counts. The counts must agree, or differ by exactly the
setting's known difference (`step_settings.Setting.extra_params`, whose reason the ratio lines
then carry); otherwise the setting's line says so, the setting is skipped and the exit status
is 1. --smoke runs each setting at its tiny batch and width, one round of one iteration.
--dry-run prints the two commands of every setting as JSON lines and runs nothing.
"""

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from step_settings import PRECISIONS, SETTINGS  # noqa: E402


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--settings", default=",".join(SETTINGS),
                        help=f"comma-separated, from {', '.join(SETTINGS)}")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--precision", choices=PRECISIONS, default="default")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3, help="timed iterations per round")
    parser.add_argument("--batch", default="", help="per-device batches, e.g. biggan128=32")
    parser.add_argument("--threads", type=int, default=0,
                        help="PyTorch's CPU threads; 1 also turns off XLA's multi-threaded "
                             "Eigen on our side (one thread each); 0: each side's default")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)
    args.settings = args.settings.split(",")
    unknown = sorted(set(args.settings) - set(SETTINGS))
    if unknown:
        parser.error(f"--settings: unknown {unknown}; known: {', '.join(SETTINGS)}")
    batches = {}
    for item in filter(None, args.batch.split(",")):
        name, _, value = item.partition("=")
        if name not in SETTINGS or not value.isdigit() or int(value) < 1:
            parser.error(f"--batch: {item!r} is not SETTING=POSITIVE_INT with a known setting")
        batches[name] = int(value)
    args.batch = batches
    if args.rounds < 1 or args.steps < 1:
        parser.error("--rounds and --steps must be at least 1")
    if args.smoke:
        args.rounds, args.steps = 1, 1
    return args


def commands(name: str, args: argparse.Namespace) -> dict[str, dict]:
    """{'ours' | 'reference': {'argv': [...], 'env': {changed variables}}, 'batch': B,
    'extra_params': ours minus the reference's parameters at this width} of one setting."""
    setting = SETTINGS[name]
    batch = args.batch.get(name) or (setting.smoke_batch if args.smoke else setting.batch)
    width = setting.smoke_width if args.smoke else setting.width
    shared = [f"--batch={batch}", f"--width={width}"]
    ours_env = {"XLA_PYTHON_CLIENT_PREALLOCATE": "false",
                "JAX_PLATFORMS": "cpu" if args.device == "cpu" else "cuda"}
    if args.threads == 1:
        ours_env["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                                 + " --xla_cpu_multi_thread_eigen=false").strip()
    reference_env = {"CUDA_VISIBLE_DEVICES": ""} if args.device == "cpu" else {}
    reference_precision = "highest" if args.precision == "highest" else "default"
    return {
        "ours": {"argv": [sys.executable, os.path.join(HERE, "our_step.py"), "--serve",
                          f"--setting={name}", f"--precision={args.precision}", *shared],
                 "env": ours_env, "precision": args.precision},
        "reference": {"argv": [os.environ.get("REFERENCE_PYTHON", sys.executable),
                               os.path.join(HERE, "reference_step.py"), name,
                               f"--device={args.device}", f"--precision={reference_precision}",
                               f"--threads={args.threads}", *shared],
                      "env": reference_env, "precision": reference_precision},
        "batch": batch,
        "extra_params": setting.extra_params(width) if setting.extra_params else 0,
    }


class Side:
    """One side's process, speaking step_settings.py's protocol."""

    def __init__(self, argv: list[str], env: dict[str, str]):
        self.process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        env={**os.environ, **env}, text=True)
        self.ready = self.read()

    def read(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.process.args[1]} exited with {self.process.wait()} "
                               "before answering (its stderr is above)")
        return json.loads(line)

    def time(self, steps: int) -> list[float]:
        self.process.stdin.write(f"{steps}\n")
        self.process.stdin.flush()
        return self.read()["times"]

    def close(self) -> None:
        with contextlib.suppress(BrokenPipeError):
            self.process.stdin.close()
        self.process.wait()


def emit(record: dict) -> None:
    print(json.dumps(record), flush=True)


def run_setting(name: str, args: argparse.Namespace) -> bool:
    """Times one setting; False when it could not be compared."""
    plan = commands(name, args)
    base = {"setting": name, "device": args.device, "batch": plan["batch"]}
    sides = {}
    try:
        for side in ("ours", "reference"):
            sides[side] = Side(plan[side]["argv"], plan[side]["env"])
        params = {side: sides[side].ready["params"] for side in sides}
        if params["ours"] - params["reference"] != plan["extra_params"]:
            emit({**base, "error": f"parameter counts: ours {params['ours']}, reference "
                                   f"{params['reference']}; expected ours - reference = "
                                   f"{plan['extra_params']}"})
            return False
        reason = SETTINGS[name].extra_params_reason
        counts = {"params_ours": params["ours"], "params_reference": params["reference"],
                  **({"extra_params_reason": reason} if plan["extra_params"] else {})}
        for round_index in range(args.rounds):
            rates = {}
            for side, process in sides.items():
                times = process.time(args.steps)
                images = process.ready["images_per_step"]
                median = statistics.median(times)
                rates[side] = images / median
                emit({**base, "side": side, "precision": plan[side]["precision"],
                      "round": round_index, "params": params[side],
                      "s_per_step_min": round(min(times), 5),
                      "s_per_step_median": round(median, 5),
                      "images_per_s": round(rates[side], 3)})
            emit({**base, "round": round_index, "precision": args.precision,
                  "ratio_ours_over_reference": round(rates["ours"] / rates["reference"], 4),
                  **counts})
        return True
    except RuntimeError as error:
        emit({**base, "error": str(error)})
        return False
    finally:
        for process in sides.values():
            process.close()


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.dry_run:
        for name in args.settings:
            plan = commands(name, args)
            for side in ("ours", "reference"):
                emit({"setting": name, "side": side, "batch": plan["batch"], **plan[side]})
        return 0
    results = [run_setting(name, args) for name in args.settings]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
