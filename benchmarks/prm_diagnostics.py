"""Is a trained PRM useful for choosing actions? Two checks on a finished agent_prm.py or inverse_prm.py run
(household env; the run's iter1/prm is Q0 of AgentPRM, or Q1 of InversePRM).

1. pick rate: at states of the expert's trajectories on eval games, sample N responses from π0 and ask how
   often the response the PRM ranks highest (what Best-of-N plays) takes the expert's action, against a
   random sample (what π0 plays), the lowest-ranked one, and an action-blind PRM (a uniform pick among the
   distinct responses: identical samples share a score, so a blind argmax loses π0's own majority vote).
   A PRM that ranks actions has argmax > blind > argmin; Best-of-N helps only if argmax > random sample.
2. learnability (--learnability): train a fresh PRM with the same code (agent_prm.train_prm) on a synthetic D
   where Q̂ depends only on the action (expert response: 1; the same REASON with another admissible action: 0)
   and report its held-out same-state pair accuracy. If this is high while check 1 is at chance, the PRM code
   can rank actions and it is the rollout data that does not tell the actions apart.
   For an inverse_prm.py run the same question is asked of Eq. 9: a fresh InversePRM (inverse_prm.train_inverse_prm)
   classifies expert transitions (D+) against an ε-expert's (D-: with probability ε a random other admissible
   action, the expert's REASON kept), a' relabelled by π0 as in Alg. 2; then check 1 is run with it.

    python benchmarks/prm_diagnostics.py runs/<agent_prm run>                    # check 1
    python benchmarks/prm_diagnostics.py runs/<agent_prm run> --learnability     # checks 1 and 2
    python benchmarks/prm_diagnostics.py runs/<inverse_prm run> --learnability   # the same for InversePRM
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
import inverse_prm  # noqa: E402


def is_inverse_run(run: Path) -> bool:
    return (run / "demonstrations.jsonl").exists()  # inverse_prm.py writes D+ there first


def load_run(run: Path) -> tuple[agent_prm.Args | inverse_prm.Args, common.AgentModel]:
    """An agent_prm.py / inverse_prm.py run's settings (its args.json, sizes as they ran) and π0: its cloned tiny
    base, or --model with the run's π0 adapter (cloned, or --policy; none: the model itself); the run's seed is
    set before the model is built."""
    saved = json.loads((run / "args.json").read_text())
    cls = inverse_prm.Args if is_inverse_run(run) else agent_prm.Args
    fields = set(cls.__dataclass_fields__)
    args = cls(**{k: v for k, v in saved.items() if k in fields and k != "quick"})
    runtime = common.resolve_runtime(args.device, args.dtype)
    common.set_seed(args.seed)
    base = run / "pi0_base" if (run / "pi0_base").exists() else common.resolve_model_path(args.model)
    agent = common.build_agent_model(str(base), runtime, common.quantize_flag(args.load_in_4bit, runtime),
                                     args.lora_r, args.lora_alpha, args.max_length)
    # a pretrained model's π0 is a LoRA adapter: the run's behaviour-cloned one, or the user's --policy
    adapter = run / "pi0" if (run / "pi0" / "adapter_config.json").exists() else args.policy
    if adapter:
        agent.load_role("policy", adapter)
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
    random_hit = best_hit = worst_hit = blind_hit = 0.0
    for (_, expert_action), group, q in zip(states, samples, scores):
        actions = [envs.parse_response(s.text).action for s in group]
        random_hit += sum(a == expert_action for a in actions) / len(actions)
        best_hit += actions[max(range(n), key=lambda i: q[i])] == expert_action
        worst_hit += actions[min(range(n), key=lambda i: q[i])] == expert_action
        # A PRM blind to the action still gives identical responses identical scores, so its argmax is a
        # uniform pick among the DISTINCT responses: it loses π0's own vote (how often π0 repeats an action).
        distinct = {s.text: a for s, a in zip(group, actions)}
        blind_hit += sum(a == expert_action for a in distinct.values()) / len(distinct)
    s = len(states)
    return {"states": s, "N": n, "temperature": temperature, "random_sample": random_hit / s,
            "prm_argmax": best_hit / s, "prm_argmin": worst_hit / s, "blind_prm": blind_hit / s}


def format_pick_rate(r: dict) -> str:
    return (f"T={r['temperature']}, N={r['N']}, {r['states']} states: random sample {r['random_sample']:.3f} | "
            f"PRM argmax {r['prm_argmax']:.3f} | PRM argmin {r['prm_argmin']:.3f} | action-blind PRM "
            f"{r['blind_prm']:.3f}")


def synthetic_games(args: agent_prm.Args | inverse_prm.Args, games: int) -> list[envs.TextEnv]:
    """Train games far past any the runs use (from 100,000 on): the synthetic D of check 2."""
    return [envs.make(args.env, "train", 100_000 + s, max_steps=args.max_steps) for s in range(games)]


def learnability(agent: common.AgentModel, args: agent_prm.Args, games: int) -> dict:
    trajectories = envs.rollout(synthetic_games(args, games), envs.expert_policy, args.history_window)
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


def inverse_learnability(agent: common.AgentModel, args: inverse_prm.Args, games: int, epsilon: float) -> dict:
    """Eq. 9 on a synthetic D: D+ = the expert's transitions, D- = an ε-expert's on the same games."""
    rng = random.Random(0)

    def epsilon_expert(prompts: list[list[dict[str, str]]], live: list[envs.TextEnv]) -> list[str]:
        out = []
        for env in live:
            reason, action = env.expert_action()
            others = [a for a in env.admissible_commands if a != action]
            out.append(envs.format_response(reason, rng.choice(others) if others and rng.random() < epsilon
                                            else action))
        return out

    positives = inverse_prm.transitions_from(
        envs.rollout(synthetic_games(args, games), envs.expert_policy, args.history_window),
        1.0, 0, args.history_window, args.history_reasons)
    negatives = inverse_prm.transitions_from(
        envs.rollout(synthetic_games(args, games), epsilon_expert, args.history_window),
        0.0, 1, args.history_window, args.history_reasons)
    inverse_prm.relabel_with_policy(agent, [*positives, *negatives], args)  # a' ~ π0(·|s'), Alg. 2 line 4
    metrics = inverse_prm.train_inverse_prm(agent, positives, negatives, args, desc="synthetic InversePRM")
    return {"positives": len(positives), "negatives": len(negatives), **metrics}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="an agent_prm.py or inverse_prm.py run folder past Stage 2 (uses π0 and "
                        "iter1/prm)")
    parser.add_argument("--games", type=int, default=40, help="eval games whose expert states are probed")
    parser.add_argument("--n", type=int, default=8, help="samples of π0 per state")
    parser.add_argument("--temperatures", type=float, nargs="+", default=[0.3, 0.7], help="sampling temperatures")
    parser.add_argument("--learnability", action="store_true", help="also run check 2 (trains a PRM: minutes)")
    parser.add_argument("--learn-games", type=int, default=60, help="expert games of the synthetic D")
    parser.add_argument("--prm-epochs", type=float, help="check 2: train the fresh PRM for this many epochs (default: "
                        "the run's --prm-epochs)")
    parser.add_argument("--epsilon", type=float, default=0.5, help="InversePRM check 2: how often the ε-expert of "
                        "D- takes a random other admissible action")
    cli = parser.parse_args()
    run = Path(cli.run)
    if not (run / "iter1" / "prm").exists():
        sys.exit(f"error: {run} has no iter1/prm (run the script to the end of Stage 2 first)")
    args, agent = load_run(run)
    if cli.prm_epochs is not None:
        args.prm_epochs = cli.prm_epochs
    common.set_seed(args.seed)
    if "household" != args.env:
        sys.exit("error: the diagnostics use the household expert; this run is on " + args.env)
    agent.add_role("prm", head=True, fresh=True)
    agent.load_role("prm", run / "iter1" / "prm")
    for t in cli.temperatures:
        print("pick rate of the expert's action, " + format_pick_rate(pick_rate(agent, args, cli.games, cli.n, t)))
    if cli.learnability and is_inverse_run(run):
        r = inverse_learnability(agent, args, cli.learn_games, cli.epsilon)
        print(f"learnability: a fresh InversePRM on {r['positives']} expert vs {r['negatives']} ε-expert transitions "
              f"(ε = {cli.epsilon}): held-out accuracy {r.get('prm_heldout_acc', float('nan')):.3f} (expert "
              f"{r.get('prm_heldout_acc_expert', float('nan')):.3f}, ε-expert "
              f"{r.get('prm_heldout_acc_learner', float('nan')):.3f}); check 1 with it:")
        for t in cli.temperatures:
            print("  pick rate, " + format_pick_rate(pick_rate(agent, args, cli.games, cli.n, t)))
    elif cli.learnability:
        r = learnability(agent, args, cli.learn_games)
        print(f"learnability: a fresh PRM on {r['examples']} synthetic examples, held-out same-state pair accuracy "
              f"{r['prm_heldout_pair_acc']:.3f} on {r['prm_heldout_pairs']} pairs (chance 0.5)")


if __name__ == "__main__":
    main()
