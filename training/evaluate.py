"""Does the bundled model draw what its caption says? Measured with plain pixel analysis.

    python -m training.evaluate                      # the shipped model, full set (~330 renders)
    python -m training.evaluate --model PATH --quick # any exported folder, small set

Renders go through ipyimagine's own diffusers renderer (the path users take). Each render is read
back by `scenes.analyse` (background, colour, place, shape) and compared with its caption, on
combinations held out from training and on seen ones. Seed variety: for each caption drawn with
four seeds, how many pairs of pictures are the same (object masks overlapping by IoU > 0.9), and how
far the object moves and how much its width varies between seeds, beside the same figures for the
training pictures of that caption (the most variety a seed can bring).
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import time

import numpy as np

from . import scenes

ATTRIBUTES = ("background", "colour", "place", "shape")


def eval_sets(quick: bool) -> tuple[list[scenes.Scene], list[scenes.Scene], list[scenes.Scene]]:
    """(held-out scenes, seen scenes, captions for the seed-variety check); fixed, so runs compare."""
    rng = random.Random(2024)
    held_out = sorted(scenes.held_out_combinations())
    seen = sorted(set(scenes.all_combinations()) - set(held_out))
    if quick:
        return (
            [scenes.random_scene(rng, c) for c in rng.sample(held_out, 12)],
            [scenes.random_scene(rng, c) for c in rng.sample(seen, 12)],
            [scenes.random_scene(rng, c) for c in rng.sample(seen, 4)],
        )
    return (
        [scenes.random_scene(rng, c) for c in held_out for _ in range(2)],
        [scenes.random_scene(rng, c) for c in rng.sample(seen, 60)],
        [scenes.random_scene(rng, c) for c in rng.sample(held_out + seen, 25)],
    )


def render(renderer, model, caption: str, seeds: tuple[int, ...], steps: int, guidance: float | None):
    from ipyimagine.renderers import RenderJob

    job = RenderJob(prompt=caption, negative_prompt="", model=model, width=None, height=None, steps=steps, guidance=guidance, seeds=seeds)
    return renderer.render(renderer.resolve(job)).images


def accuracy(readings, truths) -> dict:
    return {a: round(float(np.mean([getattr(r, a) == getattr(t, a) for r, t in zip(readings, truths)])), 3) for a in ATTRIBUTES}


def spread(masks: list[np.ndarray]) -> tuple[float, float]:
    """How much the object moves and resizes across seeds: (mean pairwise centre distance, std of width), pixels."""
    boxes = [(xs.min(), xs.max(), ys.min(), ys.max()) for ys, xs in (np.nonzero(m) for m in masks if m.any())]
    if len(boxes) < 2:
        return 0.0, 0.0
    centres = [((x0 + x1) / 2, (y0 + y1) / 2) for x0, x1, y0, y1 in boxes]
    moves = [float(np.hypot(a[0] - b[0], a[1] - b[1])) for a, b in itertools.combinations(centres, 2)]
    return float(np.mean(moves)), float(np.std([x1 - x0 + 1 for x0, x1, _, _ in boxes]))


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0


def evaluate(model: str | None = None, quick: bool = False, steps: int = 20, guidance: float | None = None, threads: int = 0) -> dict:
    from ipyimagine import Imagine
    from ipyimagine.renderers.diffusers_pipeline import DiffusersRenderer

    renderer = DiffusersRenderer(Imagine(threads=threads))
    held_out, seen, variety = eval_sets(quick)
    started = time.perf_counter()
    results = {}
    for name, group in (("held_out", held_out), ("seen", seen)):
        readings = []
        for i, scene in enumerate(group):
            image = render(renderer, model, scenes.caption(scene, random.Random(i)), (1000 + i,), steps, guidance)[0]
            readings.append(scenes.analyse(image))
        results[name] = {"renders": len(group), **accuracy(readings, group)}
        # Chance: the same pictures scored against the captions of other scenes (half the list away, since
        # held-out combinations come in consecutive pairs).
        shift = len(group) // 2
        results[name]["chance"] = accuracy(readings, group[shift:] + group[:shift])

    same_pairs = pairs = 0
    all_same = 0
    rendered_spread, data_spread = [], []
    rng = random.Random(7)
    for scene in variety:
        images = render(renderer, model, scenes.caption(scene), (11, 22, 33, 44), steps, guidance)
        masks = [scenes.analyse(im).mask for im in images]
        same = [mask_iou(a, b) > 0.9 for a, b in itertools.combinations(masks, 2)]
        same_pairs += sum(same)
        pairs += len(same)
        all_same += all(same)
        rendered_spread.append(spread(masks))
        # the same caption's training pictures: how much a seed *could* move and resize the object
        drawn = [scenes.draw(scenes.random_scene(rng, scene.combination)) for _ in range(4)]
        data_spread.append(spread([scenes.analyse(im).mask for im in drawn]))
    results["seed_variety"] = {
        "captions": len(variety),
        "same_picture_pairs": round(same_pairs / pairs, 3),
        "captions_all_four_seeds_same": all_same,
        "centre_moves_px": round(float(np.mean([s[0] for s in rendered_spread])), 1),
        "width_std_px": round(float(np.mean([s[1] for s in rendered_spread])), 1),
        "training_data": {
            "centre_moves_px": round(float(np.mean([s[0] for s in data_spread])), 1),
            "width_std_px": round(float(np.mean([s[1] for s in data_spread])), 1),
        },
    }
    total = sum(r["renders"] for r in (results["held_out"], results["seen"])) + 4 * len(variety)
    used_guidance = guidance if guidance is not None else renderer.default_guidance(model)
    results["settings"] = {"steps": steps, "guidance": used_guidance, "renders": total, "seconds": round(time.perf_counter() - started, 1)}
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="exported pipeline folder (default: the one shipped in the package)")
    parser.add_argument("--quick", action="store_true", help="a small set (the test's)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=None, help="default: what the model recommends (2 for the bundled model)")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE")
    args = parser.parse_args(argv)
    results = evaluate(args.model, args.quick, args.steps, args.guidance, args.threads)
    text = json.dumps(results, indent=1)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
