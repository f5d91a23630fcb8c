#!/usr/bin/env python3
"""Checks that TensorBoard itself reads a geoexp log directory as expected.

geoexp frames its own event records (see src/track/tensorboard/mod.rs); this loads them with
TensorBoard's own EventAccumulator, so a framing, CRC or protobuf mistake shows up as missing or
wrong data here rather than as a blank dashboard later.

Usage: python3 tests/tensorboard_check.py <logdir> <expected.json>

expected.json: {"scalars": {"train/loss": [[step, value], ...], ...}, "images": ["maps/classes"]}
Optional: "hparams": {"lr": 0.001, ...} checks the hparams plugin's session-start values.

Exits 0 when everything matches, 1 with one line per mismatch otherwise, 2 on bad usage.
Needs `pip install tensorboard`.
"""

import json
import math
import sys

# Scalars are stored as f32, so compare as f32 with a relative tolerance.
REL_TOL = 1e-6


def f32(x):
    import struct

    return struct.unpack("f", struct.pack("f", x))[0]


def close(expected, actual):
    e = f32(expected)
    if math.isnan(e) or math.isnan(actual):
        return math.isnan(e) and math.isnan(actual)
    return math.isclose(e, actual, rel_tol=REL_TOL, abs_tol=0.0) or e == actual


def check_scalars(acc, expected, tags, problems):
    for tag, points in sorted(expected.items()):
        if tag not in tags.get("scalars", []):
            problems.append(f"scalar tag {tag!r} missing (have {sorted(tags.get('scalars', []))})")
            continue
        got = [(e.step, e.value) for e in acc.Scalars(tag)]
        want = [(int(step), float(value)) for step, value in points]
        if [s for s, _ in got] != [s for s, _ in want]:
            problems.append(f"scalar {tag!r}: steps {[s for s, _ in got]}, expected {[s for s, _ in want]}")
            continue
        for (step, value), (_, exp) in zip(got, want):
            if not close(exp, value):
                problems.append(f"scalar {tag!r} step {step}: {value!r}, expected {exp!r} (as f32 {f32(exp)!r})")


def check_images(acc, expected, tags, problems):
    for tag in expected:
        if tag not in tags.get("images", []):
            problems.append(f"image tag {tag!r} missing (have {sorted(tags.get('images', []))})")
            continue
        for image in acc.Images(tag):
            if image.width <= 0 or image.height <= 0 or not image.encoded_image_string:
                problems.append(f"image {tag!r} step {image.step}: {image.width}x{image.height}, "
                                f"{len(image.encoded_image_string)} bytes")


def check_hparams(acc, expected, problems):
    from tensorboard.plugins.hparams import metadata, plugin_data_pb2

    contents = acc.PluginTagToContent(metadata.PLUGIN_NAME)
    tag = metadata.SESSION_START_INFO_TAG
    if tag not in contents:
        problems.append(f"hparams: no {tag!r} summary (have {sorted(contents)})")
        return
    data = plugin_data_pb2.HParamsPluginData.FromString(contents[tag])
    got = {}
    for name, value in data.session_start_info.hparams.items():
        got[name] = getattr(value, value.WhichOneof("kind"))
    for name, want in sorted(expected.items()):
        if name not in got:
            problems.append(f"hparams: {name!r} missing (have {sorted(got)})")
        elif got[name] != want:
            problems.append(f"hparams: {name!r} is {got[name]!r}, expected {want!r}")


def main(argv):
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    logdir, expected_path = argv[1], argv[2]
    with open(expected_path) as f:
        expected = json.load(f)
    from tensorboard.backend.event_processing import event_accumulator

    # 0 = keep every event of each kind (the default keeps a sample).
    acc = event_accumulator.EventAccumulator(logdir, size_guidance={
        event_accumulator.SCALARS: 0,
        event_accumulator.IMAGES: 0,
        event_accumulator.HISTOGRAMS: 0,
        event_accumulator.TENSORS: 0,
    })
    acc.Reload()
    tags = acc.Tags()
    problems = []
    check_scalars(acc, expected.get("scalars", {}), tags, problems)
    check_images(acc, expected.get("images", []), tags, problems)
    if "hparams" in expected:
        check_hparams(acc, expected["hparams"], problems)
    if problems:
        print(f"{logdir}: {len(problems)} problem(s):", file=sys.stderr)
        for p in problems:
            print(f"  {p}", file=sys.stderr)
        return 1
    n = sum(len(v) for v in expected.get("scalars", {}).values())
    print(f"{logdir}: ok ({n} scalar points, {len(expected.get('images', []))} image tags"
          f"{', hparams' if 'hparams' in expected else ''})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
