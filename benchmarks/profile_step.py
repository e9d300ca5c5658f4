r"""Where a train step's time goes: one setting's step traced with `jax.profiler`, its executed
XLA operations summed by kind and by pass.

  python benchmarks/profile_step.py --setting=ddpm_cifar10 --batch=8 [--steps=5] [--top=15]

The step is `our_step.py`'s (the setting's real jitted train step on one device, fp32). After
two untimed iterations, ``--steps`` iterations run under ``jax.profiler.trace``; every event
whose name is an instruction of the compiled program is one execution of that instruction on
one thread. Instructions are grouped by

- kind: 'convolution' (XLA's convolution, or a fusion around one), 'matmul' (dot, or a fusion
  around one: the attention and dense layers, and whatever XLA rewrote as a product),
  'copy / transpose', 'fusion' (elementwise and reductions) and
  'other';
- pass: 'backward' (the op's name stack has ``transpose(``), 'forward' (inside the network's
  apply) and 'update' (the optimiser, EMA, losses' bookkeeping and random numbers);

and the script prints one JSON line: the wall seconds per step, the busy seconds per step of
each group (each instruction's duration on the thread that ran it, summed: an instruction that
spreads its work over the intra-op threads counts once, so this is not the CPU time; compare
with the process's user time for that), each group's share of the busy time,
the step's FLOPs (XLA's cost analysis), and the ``--top`` instructions by time with their op
names.

XLA's own convolutions (what `gencore.conv.conv_same` runs on the CPU) do their work on the
intra-op threads outside the trace's events; their event covers only the launch, so on the
CPU the 'convolution' groups hold only the convolutions inside library fusions, and the
convolutions' time is the wall time less the other groups.
"""

import collections
import glob
import json
import statistics
import tempfile
import time

import jax
from absl import app, flags
from our_step import build, setting_config
from step_flops import instruction_groups

FLAGS = flags.FLAGS   # our_step's --setting, --batch, --width, --smoke, --steps (traced)
_TOP = flags.DEFINE_integer("top", 15, "How many instructions to list by time.")


def main(argv: list[str]) -> None:
    del argv
    from jax.profiler import ProfileData

    config = setting_config(FLAGS.setting, FLAGS.batch, FLAGS.width, "default", FLAGS.smoke)
    compiled, state, batch, _, _ = build(FLAGS.setting, config)
    instructions = instruction_groups(compiled.as_text())
    for _ in range(2):
        state, metrics = compiled(state, batch)
        jax.block_until_ready(metrics)
    walls = []
    with tempfile.TemporaryDirectory() as trace_dir:
        with jax.profiler.trace(trace_dir):
            for _ in range(FLAGS.steps):
                start = time.perf_counter()
                state, metrics = compiled(state, batch)
                jax.block_until_ready(metrics)
                walls.append(time.perf_counter() - start)
        data = ProfileData.from_file(glob.glob(f"{trace_dir}/**/*.xplane.pb", recursive=True)[0])
    busy = collections.Counter()
    for plane in data.planes:
        for line in plane.lines:
            for event in line.events:
                if event.name in instructions:
                    busy[event.name] += event.duration_ns / 1e9 / FLAGS.steps
    total = sum(busy.values())
    groups = collections.defaultdict(float)
    for name, seconds in busy.items():
        info = instructions[name]
        groups[f"{info['pass']} / {info['kind']}"] += seconds
        groups[f"all / {info['kind']}"] += seconds
    top = [{"instruction": n, "kind": instructions[n]["kind"], "pass": instructions[n]["pass"],
            "busy_s": round(s, 4), "op_name": instructions[n]["op_name"][-120:]}
           for n, s in busy.most_common(_TOP.value)]
    print(json.dumps({
        "benchmark": "profile_step", "setting": FLAGS.setting,
        "batch": config.train.batch_size, "device_kind": jax.devices()[0].device_kind,
        "wall_s_per_step": round(statistics.median(walls), 4),
        "busy_s_per_step": round(total, 4),
        "busy_s_by_group": {k: round(v, 4) for k, v in sorted(groups.items())},
        "share_by_group": {k: round(v / total, 4) for k, v in sorted(groups.items())},
        "step_flops": float(compiled.cost_analysis().get("flops", float("nan"))),
        "top": top}))


if __name__ == "__main__":
    flags.mark_flag_as_required("setting")
    app.run(main)
