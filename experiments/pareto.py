"""Is a strategy on the (attainment, cost) Pareto front against its rivals, point by point, with intervals?
``python -m experiments.pareto DIR... --candidate tail_aware [--against edge_first,edge_first_greedy] [--key strategy]``.

Runs are collected (``experiments.collect``) and paired by seed within each
*point* (every configuration column but ``--key``: a load, an SLO, ...). At
each point and for each rival, the candidate is *dominated on the means*
when the rival's mean SLO attainment is at least the candidate's and its
mean cost per 1,000 requests at most the candidate's (one of them strictly);
*dominated with support* when, in addition, the paired difference of one
of the two excludes zero in the rival's favour and neither excludes zero in
the candidate's. Otherwise the candidate is on the front against that rival
there. Printed per rival: each point with both means and 95% intervals, the
paired differences (candidate - rival) and the verdict, then
``on the front at N/M points``; saved as ``<first DIR>/pareto.csv``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from experiments.collect import collect, config_columns, config_text, keyed
from experiments.stats import interval, paired_difference

__all__ = ["pareto_table", "main"]

ATTAINMENT, COST = "slo_attainment", "cost_per_1k"


def _text(found, scale: float = 1.0, digits: int = 4) -> str:
    return f"{found.mean * scale:.{digits}g} [{found.low * scale:.{digits}g}, {found.high * scale:.{digits}g}]"


def _verdict(candidate: pd.DataFrame, rival: pd.DataFrame) -> tuple[str, object, object]:
    """The verdict against one rival at one point, and the paired differences (candidate - rival)."""
    d_att = paired_difference(rival[ATTAINMENT], candidate[ATTAINMENT])
    d_cost = paired_difference(rival[COST], candidate[COST])
    att_c, att_r = candidate[ATTAINMENT].mean(), rival[ATTAINMENT].mean()
    cost_c, cost_r = candidate[COST].mean(), rival[COST].mean()
    dominated = att_r >= att_c and cost_r <= cost_c and (att_r > att_c or cost_r < cost_c)
    for_rival = d_att.high < 0 or d_cost.low > 0
    for_candidate = d_att.low > 0 or d_cost.high < 0
    if dominated and for_rival and not for_candidate:
        return "dominated (supported)", d_att, d_cost
    return ("dominated (means only)" if dominated else "on the front"), d_att, d_cost


def pareto_table(table: pd.DataFrame, *, key: str, candidate: str, against: list[str]) -> pd.DataFrame:
    """One row per point and rival: means with intervals, paired differences and the verdict."""
    column = f"param.{key}"
    if column not in table:
        raise SystemExit(f"no override {key!r} among the runs' columns ({', '.join(c for c in table.columns if c.startswith('param.'))})")
    points = [c for c in config_columns(table) if c != column]
    table = keyed(table, points)
    varying = [c for c in points if table[c].astype(str).nunique() > 1]
    rows = []
    for values, group in table.groupby(points, dropna=False, sort=True) if points else [((), table)]:
        config = dict(zip(points, values if isinstance(values, tuple) else (values,)))
        point = config_text({c: config[c] for c in varying}) or "all runs"
        mine = group[group[column].astype(str) == candidate].sort_values("seed")
        for rival_name in against:
            rival = group[group[column].astype(str) == rival_name].sort_values("seed")
            seeds = sorted(set(mine["seed"]) & set(rival["seed"]))
            if len(seeds) < 2:
                continue
            a, b = mine[mine["seed"].isin(seeds)], rival[rival["seed"].isin(seeds)]
            verdict, d_att, d_cost = _verdict(a, b)
            rows.append({"point": point, "rival": rival_name, "n": len(seeds),
                         f"{candidate} attainment": _text(interval(ATTAINMENT, a[ATTAINMENT])),
                         f"{candidate} cost/1k (1e-3)": _text(interval(COST, a[COST]), 1e3),
                         "rival attainment": _text(interval(ATTAINMENT, b[ATTAINMENT])),
                         "rival cost/1k (1e-3)": _text(interval(COST, b[COST]), 1e3),
                         "d attainment (points)": _text(d_att, 100, 3), "d cost/1k (1e-3)": _text(d_cost, 1e3, 3),
                         "verdict": verdict})  # fmt: skip
    return pd.DataFrame(rows)


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directories", nargs="+", type=Path)
    parser.add_argument("--candidate", required=True, help="the value of --key under test, e.g. tail_aware")
    parser.add_argument("--against", default=None, help="rival values, comma-separated (default: every other value)")
    parser.add_argument("--key", default="strategy", help="the override the strategies differ by (default: strategy)")
    args = parser.parse_args(argv)
    table = collect(args.directories)
    if table.empty:
        raise SystemExit(f"no runs under {', '.join(map(str, args.directories))}")
    column = f"param.{args.key}"
    values = sorted(table[column].dropna().astype(str).unique()) if column in table else []
    against = args.against.split(",") if args.against else [v for v in values if v != args.candidate]
    result = pareto_table(table, key=args.key, candidate=args.candidate, against=against)
    if result.empty:
        raise SystemExit(f"no point with {args.candidate!r} and a rival on two or more common seeds")
    with pd.option_context("display.width", 250, "display.max_colwidth", 70, "display.max_columns", 20):
        for rival, rows in result.groupby("rival", sort=False):
            print(f"\n{args.candidate} against {rival}:")
            print(rows.drop(columns="rival").to_string(index=False))
            front = int((rows["verdict"] == "on the front").sum())
            supported = int((rows["verdict"] == "dominated (supported)").sum())
            print(f"on the front at {front}/{len(rows)} points ({front / len(rows):.0%}); dominated with support at {supported}")
    out = args.directories[0] / "pareto.csv"
    result.to_csv(out, index=False)
    print(f"-> {out}")
    return result


if __name__ == "__main__":
    main()
