"""Team-draft interleaving (Radlinski, Kurup and Joachims 2008): one list shown from two rankings, and which ranking
a query's clicks prefer.

Two teams pick in turns, like captains choosing players: the team with fewer picks so far picks next (a coin decides
when they have as many), and it takes its own ranking's best product not shown yet. Each shown product remembers the
team that placed it. A query's clicks credit the team whose products got more of them; a query whose clicks split
evenly, or that got none, credits nobody. Over many queries the share of wins says which ranking shoppers prefer,
with every query seeing both rankings, which is why interleaving needs far fewer queries than an A/B test.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence

CONTROL = "control"
TREATMENT = "treatment"


def team_draft(control: Sequence[str], treatment: Sequence[str], length: int,
               rng: random.Random) -> list[tuple[str, str]]:
    """The first `length` products of the team-draft interleaving of two rankings, each with the team that placed
    it (CONTROL or TREATMENT); shorter when both rankings run out."""
    shown: list[tuple[str, str]] = []
    seen: set[str] = set()
    picks = {CONTROL: 0, TREATMENT: 0}
    rankings = {CONTROL: control, TREATMENT: treatment}
    next_index = {CONTROL: 0, TREATMENT: 0}

    def best_unseen(team: str) -> str | None:
        ranking, index = rankings[team], next_index[team]
        while index < len(ranking) and ranking[index] in seen:
            index += 1
        next_index[team] = index
        return ranking[index] if index < len(ranking) else None

    while len(shown) < length:
        if picks[CONTROL] != picks[TREATMENT]:
            team = CONTROL if picks[CONTROL] < picks[TREATMENT] else TREATMENT
        else:
            team = CONTROL if rng.random() < 0.5 else TREATMENT
        product = best_unseen(team)
        if product is None:  # this team has nothing left: the other one fills the list
            team = TREATMENT if team == CONTROL else CONTROL
            product = best_unseen(team)
            if product is None:
                break
        shown.append((product, team))
        seen.add(product)
        picks[team] += 1
    return shown


def credit(teams: Sequence[str], clicked_positions: Iterable[int]) -> int:
    """+1 when the treatment's products got more of the clicks, -1 when the control's did, 0 on a tie.
    `teams`: the team of each shown position; `clicked_positions`: 1-based positions clicked (each counted once)."""
    counts = {CONTROL: 0, TREATMENT: 0}
    for position in set(clicked_positions):
        if 1 <= position <= len(teams) and teams[position - 1] in counts:
            counts[teams[position - 1]] += 1
    return (counts[TREATMENT] > counts[CONTROL]) - (counts[TREATMENT] < counts[CONTROL])
