"""Is a trained AgentPRM useful for choosing actions? Two checks on a finished agent_prm.py run (household env).

1. pick rate: at states of the expert's trajectories on eval games, sample N responses from π0 and ask how
   often the response the PRM Q0 ranks highest (what Best-of-N plays) takes the expert's action, against a
   random sample (what π0 plays) and the lowest-ranked one. A PRM that helps has argmax > random > argmin.
2. learnability (--learnability): train a fresh PRM with the same code (agent_prm.train_prm) on a synthetic D
   where Q̂ depends only on the action (expert response: 1; the same REASON with another admissible action: 0)
   and report its held-out same-state pair accuracy. If this is high while check 1 is at chance, the PRM code
   can rank actions and it is the rollout data that does not tell the actions apart.

    python benchmarks/prm_diagnostics.py runs/<agent_prm run>                    # check 1
    python benchmarks/prm_diagnostics.py runs/<agent_prm run> --learnability     # checks 1 and 2
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import agent_prm  # noqa: E402
import common  # noqa: E402
import envs  # noqa: E402


def load_run(run: Path) -> tuple[agent_prm.Args, common.AgentModel]:
    """An agent_prm.py run's settings (its args.json, sizes as they ran) and π0 (its cloned base, or --model
    with a zero LoRA policy adapter); the run's seed is set before the model is built."""
    saved = json.loads((run / "args.json").read_text())
    fields = set(agent_prm.Args.__dataclass_fields__)
    args = agent_prm.Args(**{k: v for k, v in saved.items() if k in fields and k != "quick"})
    runtime = common.resolve_runtime(args.device, args.dtype)
    common.set_seed(args.seed)
    base = run / "pi0_base" if (run / "pi0_base").exists() else common.resolve_model_path(args.model)
    agent = common.build_agent_model(str(base), runtime, common.quantize_flag(args.load_in_4bit, runtime),
                                     args.lora_r, args.lora_alpha, args.max_length)
    return args, agent


def pick_rate(agent: common.AgentModel, args: agent_prm.Args, games: int, n: int, temperature: float) -> dict:
    trajectories = envs.rollout([envs.make(args.env, "eval_in_distribution", s, max_steps=args.max_steps)
                                 for s in range(games)], envs.expert_policy, args.history_window)
    rng = random.Random(0)
    states = [(envs.trajectory_messages(t, k, args.history_window, history_reasons=args.history_reasons),
               t.steps[k].action) for t in trajectories for k in rng.sample(range(len(t.steps)), min(2, len(t.steps)))]
    messages = [m for m, _ in states]
    with agent.role("policy"):
        samples = common.generate(agent.peft, agent.codec, messages, n=n, temperature=temperature,
                                  max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)  # [S][N]
    scores = agent_prm.score_samples(agent, messages, samples, args.invalid_penalty, args.batch_size)  # [S][N]
    random_hit = best_hit = worst_hit = 0.0
    for (_, expert_action), group, q in zip(states, samples, scores):
        actions = [envs.parse_response(s.text).action for s in group]
        random_hit += sum(a == expert_action for a in actions) / len(actions)
        best_hit += actions[max(range(n), key=lambda i: q[i])] == expert_action
        worst_hit += actions[min(range(n), key=lambda i: q[i])] == expert_action
    s = len(states)
    return {"states": s, "N": n, "temperature": temperature, "random_sample": random_hit / s,
            "prm_argmax": best_hit / s, "prm_argmin": worst_hit / s}


def learnability(agent: common.AgentModel, args: agent_prm.Args, games: int) -> dict:
    trajectories = envs.rollout([envs.make(args.env, "train", 100_000 + s, max_steps=args.max_steps)
                                 for s in range(games)], envs.expert_policy, args.history_window)
    rng, dataset = random.Random(0), []
    for t in trajectories:
        for k, step in enumerate(t.steps):
            others = [a for a in step.admissible if a != step.action]
            if not others:
                continue
            messages = envs.trajectory_messages(t, k, args.history_window, history_reasons=args.history_reasons)
            key = f"{t.game_id}|{k}"
            for action, target in ((step.action, 1.0), (rng.choice(others), 0.0)):
                dataset.append(agent_prm.PRMExample(messages, f"REASON: {step.reason}\nACTION: {action}", target,
                                                    key, action, t.game_id))
    metrics = agent_prm.train_prm(agent, dataset, args, desc="synthetic PRM")
    return {"examples": len(dataset), **metrics}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="a finished agent_prm.py run folder (uses π0 and iter1/prm)")
    parser.add_argument("--games", type=int, default=40, help="eval games whose expert states are probed")
    parser.add_argument("--n", type=int, default=8, help="samples of π0 per state")
    parser.add_argument("--temperatures", type=float, nargs="+", default=[0.3, 0.7], help="sampling temperatures")
    parser.add_argument("--learnability", action="store_true", help="also run check 2 (trains a PRM: minutes)")
    parser.add_argument("--learn-games", type=int, default=60, help="expert games of the synthetic D")
    cli = parser.parse_args()
    run = Path(cli.run)
    if not (run / "iter1" / "prm").exists():
        sys.exit(f"error: {run} has no iter1/prm (run agent_prm.py to the end of Stage 2 first)")
    args, agent = load_run(run)
    common.set_seed(args.seed)
    if "household" != args.env:
        sys.exit("error: the diagnostics use the household expert; this run is on " + args.env)
    agent.add_role("prm", head=True, fresh=True)
    agent.load_role("prm", run / "iter1" / "prm")
    for t in cli.temperatures:
        r = pick_rate(agent, args, cli.games, cli.n, t)
        print(f"pick rate of the expert's action, T={t}, N={r['N']}, {r['states']} states: random sample "
              f"{r['random_sample']:.3f} | PRM argmax {r['prm_argmax']:.3f} | PRM argmin {r['prm_argmin']:.3f}")
    if cli.learnability:
        r = learnability(agent, args, cli.learn_games)
        print(f"learnability: a fresh PRM on {r['examples']} synthetic examples, held-out same-state pair accuracy "
              f"{r['prm_heldout_pair_acc']:.3f} on {r['prm_heldout_pairs']} pairs (chance 0.5)")


if __name__ == "__main__":
    main()
