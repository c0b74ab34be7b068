"""The sentences a results table supports, generated from its numbers (never typed).

Rules (95% intervals, as in the table):
  * "above chance" only where the interval's lower end is above chance; "below chance" only
    where its upper end is below; otherwise "not distinguishable from chance";
  * "A above B" only where A's interval lies wholly above B's; "A below B" the mirror case;
    otherwise "not separated" (the intervals overlap).

Chance is 100 / number of choices (the synthetic benchmark; other benchmarks get no chance
sentences). Comparisons: KARD (and KARD with the reranker) against fine-tuning and reasoning
distillation, greedy decoding, for each entity group; in a knowledge-base-size sweep, the same at
every size, plus recall@1 of the reranker against question BM25.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

# Targets the synthetic runs were sized for (greedy decoding): (method, group, at least %).
# The main table's are checked on its rows, the sweep's at the named size ("smallest" or
# "every").
TARGETS = (("kard_bm25", "unseen", 60.0),)
SWEEP_TARGETS = (("answer_only", "seen", 80.0, "smallest"), ("kard_bm25", "unseen", 85.0, "every"))

# (method, baseline) pairs compared, greedy decoding.
COMPARISONS = (("kard_bm25", "answer_only"), ("kard_bm25", "reasoning"),
               ("kard_rerank", "kard_bm25"))


def versus_chance(interval: Sequence[float], chance: float) -> str:
  """'above chance', 'below chance' or 'not distinguishable from chance'."""
  lo, hi = interval
  if lo > chance:
    return "above chance"
  if hi < chance:
    return "below chance"
  return "not distinguishable from chance"


def versus(a: Sequence[float], b: Sequence[float]) -> str:
  """'above' (a's interval wholly above b's), 'below', or 'not separated'."""
  if a[0] > b[1]:
    return "above"
  if a[1] < b[0]:
    return "below"
  return "not separated"


def _fmt(row: Mapping[str, Any], group: str) -> str:
  lo, hi = row["interval"][group]
  return f"{row['accuracy'][group]:.1f}% [{lo:.1f}, {hi:.1f}]"


def _greedy(rows: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
  return {r["method"]: r for r in rows
          if r.get("decoding") in ("greedy", None) and r.get("interval")}


def _groups(rows: Sequence[Mapping[str, Any]]) -> list[str]:
  present = {g for r in rows for g in (r.get("interval") or {})}
  return [g for g in ("unseen", "seen", "all") if g in present]


def _compare(by_method: Mapping[str, Mapping[str, Any]], group: str, where: str) -> list[str]:
  out = []
  for a, b in COMPARISONS:
    ra, rb = by_method.get(a), by_method.get(b)
    if not ra or not rb or group not in ra["interval"] or group not in rb["interval"]:
      continue
    verdict = versus(ra["interval"][group], rb["interval"][group])
    if verdict == "not separated":
      text = f"{ra['name']} and {rb['name']} are not separated (their intervals overlap)"
    else:
      text = f"{ra['name']} is {verdict} {rb['name']}"
    out.append(f"{where}{group} entities: {text}: {_fmt(ra, group)} against {_fmt(rb, group)}.")
  return out


def _target(row: Mapping[str, Any], group: str, goal: float, where: str) -> str:
  mean = row["accuracy"][group]
  verdict = ("reached" if mean >= goal else f"not reached, {goal - mean:.1f} points short")
  return (f"Target {row['name']} {group} accuracy >= {goal:.0f}%"
          f"{' ' + where if where else ''}: {verdict} ({_fmt(row, group)}).")


def sentences(results: Mapping[str, Any]) -> list[str]:
  """Every claim the results support, in plain sentences with the numbers behind them."""
  from kard_jax.report.tables import chance_level  # pylint: disable=import-outside-toplevel

  out: list[str] = []
  chance = chance_level(dict(results))
  rows = [r for r in results.get("rows", []) if r.get("interval") and r.get("decoding") != "stored"]
  for group in _groups(rows):
    if chance is not None:
      verdicts: dict[str, list[str]] = {}
      for r in rows:
        verdict = versus_chance(r["interval"][group], chance)
        verdicts.setdefault(verdict, []).append(f"{r['name']} ({_fmt(r, group)})")
      for verdict in ("above chance", "not distinguishable from chance", "below chance"):
        if verdicts.get(verdict):
          out.append(f"On {group} entities, {verdict} ({chance:.0f}%): "
                     + "; ".join(verdicts[verdict]) + ".")
    out += _compare(_greedy(rows), group, "On ")

  sweep = results.get("sweep") or {}
  if results.get("benchmark") == "synthetic" and not sweep.get("rows"):
    by_method = _greedy(rows)
    for method, group, goal in TARGETS:
      if method in by_method and group in by_method[method]["accuracy"]:
        out.append(_target(by_method[method], group, goal, ""))
  x = sweep.get("x", "num_entities")
  sizes = sorted({r[x] for r in sweep.get("rows", [])})
  for method, group, goal, where in SWEEP_TARGETS if sizes else ():
    for n in (sizes[:1] if where == "smallest" else sizes):
      at = _greedy([r for r in sweep["rows"] if r[x] == n])
      if method in at and group in at[method]["accuracy"]:
        out.append(_target(at[method], group, goal, f"at {n} {x.replace('_', ' ')}"))
  for n in sizes:
    at = [r for r in sweep["rows"] if r[x] == n and r.get("interval")]
    for group in _groups(at):
      out += _compare(_greedy(at), group, f"At {n} {x.replace('_', ' ')}, ")
  for n, recall in sorted((sweep.get("retrieval") or {}).items(), key=lambda kv: int(kv[0])):
    q, r = (recall.get("question BM25") or {}).get("recall@1"), \
        (recall.get("reranker") or {}).get("recall@1")
    if q is not None and r is not None:
      word = "above" if r > q else "below" if r < q else "equal to"
      out.append(f"At {n} {x.replace('_', ' ')}, the reranker's recall@1 ({r:.1f}%) is {word} "
                 f"question BM25's ({q:.1f}%) on the same questions (one measurement each, no "
                 "interval).")
  return out
