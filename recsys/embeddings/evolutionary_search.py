"""A generic evolutionary search over per-field choices (OptEmbed's search of per-field dims,
Lyu et al., CIKM 2022).

It knows nothing of embeddings: a candidate is a tuple with one choice per field, and the
caller's ``fitness`` scores it (OptEmbed: the supernet's validation AUC at those widths, with
shared weights, no retraining per candidate).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Tuple

import numpy as np

Candidate = Tuple[int, ...]


@dataclasses.dataclass
class SearchResult:
    """The best candidate found, its fitness, and per generation: the population's fitness."""

    best: Candidate
    fitness: float
    history: list[dict]
    evaluated: int


def _random_candidates(rng: np.random.Generator, choices: np.ndarray, fields: int, count: int) -> list[Candidate]:
    return [tuple(int(c) for c in rng.choice(choices, size=fields)) for _ in range(count)]


def _child(rng: np.random.Generator, parents: list[Candidate], choices: np.ndarray, mutation_prob: float, crossover_prob: float) -> Candidate:
    """A parent, uniformly crossed with a second one with ``crossover_prob``, then each field
    redrawn from the choices with ``mutation_prob``."""
    child = np.array(parents[rng.integers(len(parents))])
    if rng.random() < crossover_prob:
        other = np.array(parents[rng.integers(len(parents))])
        child = np.where(rng.random(child.size) < 0.5, child, other)
    mutate = rng.random(child.size) < mutation_prob
    child[mutate] = rng.choice(choices, size=int(mutate.sum()))
    return tuple(int(c) for c in child)


def _offspring(
    rng: np.random.Generator, parents: list[Candidate], choices: np.ndarray, count: int, seen: set, mutation_prob: float, crossover_prob: float
) -> list[Candidate]:
    """``count`` children, new ones preferred (a few redraws before a repeat is accepted)."""
    children: list[Candidate] = []
    for _ in range(count):
        for _ in range(20):
            child = _child(rng, parents, choices, mutation_prob, crossover_prob)
            if child not in seen:
                break
        seen.add(child)
        children.append(child)
    return children


def evolutionary_search(
    fitness: Callable[[Candidate], float],
    fields: int,
    choices: Sequence[int],
    *,
    population: int,
    iterations: int,
    parents: int,
    mutation_prob: float,
    crossover_prob: float,
    seed: int,
) -> SearchResult:
    """Maximise ``fitness`` over per-field choices.

    Generation 0 is ``population`` random candidates. Each generation is scored (each distinct
    candidate once: a cache), the best ``parents`` candidates seen so far survive (elitism),
    and the rest of the next population are children: crossover of two parents with
    ``crossover_prob`` (uniform, per field), then per-field mutation with ``mutation_prob``.
    ``iterations`` generations are scored in all.
    """
    rng = np.random.default_rng(seed)
    options = np.asarray(sorted(set(int(c) for c in choices)))
    scores: dict[Candidate, float] = {}

    def score(candidate: Candidate) -> float:
        if candidate not in scores:
            scores[candidate] = float(fitness(candidate))
        return scores[candidate]

    pool = _random_candidates(rng, options, fields, population)
    history: list[dict] = []
    for generation in range(iterations):
        values = [score(c) for c in pool]
        elite = sorted(scores, key=scores.__getitem__, reverse=True)[:parents]
        history.append(
            {
                "generation": generation,
                "best": list(elite[0]),
                "best_fitness": scores[elite[0]],
                "population_best": max(values),
                "population_mean": float(np.mean(values)),
                "evaluated": len(scores),
            }
        )
        pool = elite + _offspring(rng, elite, options, population - len(elite), set(scores), mutation_prob, crossover_prob)
    best = max(scores, key=scores.__getitem__)
    return SearchResult(best, scores[best], history, len(scores))
