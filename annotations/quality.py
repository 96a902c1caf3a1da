"""Quality control over judgements: per-annotator reliability, agreement, cycles, source scores.

Pure functions over plain rows (:class:`JudgementRow`); ``annotations.selectors``
turns database rows into these, so every number here can be checked on a
hand-made list.

Definitions (the quality page and the dataset card use exactly these):

gold accuracy
    Share of an annotator's judgements on gold comparisons whose choice equals
    ``gold_answer``.  A tie on a gold comparison counts as wrong: gold items
    have a known, clearly audible answer.
hidden-reference reliability
    A hidden reference (``is_hidden_reference``) plays the same edit on both
    sides, as MUSHRA's hidden reference: the share of an annotator's
    judgements on them that are a tie or given with confidence at most
    ``HIDDEN_REFERENCE_MAX_CONFIDENCE`` (hearing no difference, or not being
    sure of one).  Hidden references count in no other figure: not in gold
    accuracy (they have no A/B answer), the left share, agreement, cycles or
    source scores.
self-consistency
    A repeated comparison (``repeat_of`` set) shows the same two edits with
    A and B swapped.  For every annotator who judged both the original and the
    repeat, the pair is consistent when the same *edit* was preferred (two
    ties are consistent; a tie against a preference is not).
left share / left bias
    Among an annotator's non-tie judgements, the share that chose the edit
    shown on the left; ``left_bias = left_share - 0.5`` (0 is unbiased).
agreement
    Krippendorff's alpha, **ordinal** level, over units = comparisons and
    values A < tie < B (a tie sits between the two preferences).  Computed
    from per-comparison value counts, so memory grows with comparisons, not
    with comparisons x annotators.
preference cycles
    Per track, each unordered pair of edits gets a majority direction from all
    non-tie votes on any comparison of that pair (either orientation, repeats
    included); an even split gives no direction.  A cycle is a triple of edits
    x > y > z > x; each such triple is counted once.
Bradley-Terry per source
    Items are ``Edit.source`` values.  Each judgement between edits of two
    different sources is a game; a tie counts half a win to each side.
    Scores maximise the log-likelihood minus a tiny ridge prior
    ``(ridge / 2) * sum(theta**2)`` (keeps the fit finite when one source
    never loses), found by Newton's method.  Scores are reported centred to
    mean zero; 95 % intervals come from the inverse of the negative Hessian
    at the optimum, projected onto the mean-zero subspace (the likelihood is
    blind to a common shift, so only differences carry information).  A
    score difference d means P(first preferred) = 1 / (1 + exp(-d)).
"""
from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import krippendorff
import numpy as np

from .errors import AnnotationError

CHOICE_A = "a"
CHOICE_B = "b"
CHOICE_TIE = "tie"
ALPHA_LEVEL = "ordinal"
# Ordinal coding for alpha: a tie lies between preferring A and preferring B.
ALPHA_VALUES = (CHOICE_A, CHOICE_TIE, CHOICE_B)
Z_95 = 1.959963984540054
# On a hidden reference, a preference given with at most this confidence (of 1-5) is a right answer too.
HIDDEN_REFERENCE_MAX_CONFIDENCE = 2


class QualityError(AnnotationError, ValueError):
    """A quality computation got input it cannot use; the message says which and why."""

    status_code = 409
    code = "quality_unavailable"


@dataclass(frozen=True)
class JudgementRow:
    """One judgement with what quality control needs to know about its comparison."""

    annotator_id: int
    comparison_id: int
    track_id: int
    edit_a_id: int
    edit_b_id: int
    source_a: str
    source_b: str
    choice: str  # "a", "b" or "tie"
    left_edit_id: int
    decision_seconds: float
    is_gold: bool = False
    gold_answer: str = ""  # "a" or "b" on gold comparisons
    repeat_of_id: int | None = None
    is_hidden_reference: bool = False  # both sides the same edit (gold without an A/B answer)
    confidence: int | None = None  # 1..5; needed on hidden references

    def preferred_edit_id(self) -> int | None:
        """The id of the edit this judgement preferred; None for a tie."""
        if self.choice == CHOICE_A:
            return self.edit_a_id
        if self.choice == CHOICE_B:
            return self.edit_b_id
        if self.choice == CHOICE_TIE:
            return None
        raise QualityError(f"judgement on comparison {self.comparison_id}: unknown choice {self.choice!r}")


@dataclass(frozen=True)
class AnnotatorQuality:
    """Reliability figures of one annotator; a figure is None when it has no data yet."""

    annotator_id: int
    n_judgements: int
    n_gold: int
    gold_accuracy: float | None
    n_repeat_pairs: int
    self_consistency: float | None
    n_sided: int  # non-tie judgements, the base of left_share
    left_share: float | None
    median_decision_seconds: float | None
    n_hidden_references: int = 0
    hidden_reference_reliability: float | None = None

    @property
    def left_bias(self) -> float | None:
        return None if self.left_share is None else self.left_share - 0.5


@dataclass(frozen=True)
class SourceScore:
    """Bradley-Terry score of one edit source with its 95 % interval (log-odds units)."""

    source: str
    score: float
    ci_low: float
    ci_high: float
    n_games: float  # judgements against other sources (ties included)
    wins: float  # ties count one half


@dataclass(frozen=True)
class QualityReport:
    annotators: tuple[AnnotatorQuality, ...]
    alpha: float | None
    alpha_level: str
    n_units_pairable: int  # comparisons with at least two judgements
    n_cycles: int
    sources: tuple[SourceScore, ...]


def gold_accuracy_by_annotator(rows: Iterable[JudgementRow]) -> dict[int, tuple[int, int]]:
    """Correct and total gold judgements per annotator.

    Returns
    -------
    dict annotator_id -> (n_correct, n_gold); annotators without gold judgements are absent.
    """
    counts: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for row in rows:
        if not row.is_gold or row.is_hidden_reference:
            continue
        if row.gold_answer not in (CHOICE_A, CHOICE_B):
            raise QualityError(f"gold comparison {row.comparison_id}: gold_answer {row.gold_answer!r} is not 'a' or 'b'")
        entry = counts[row.annotator_id]
        entry[0] += row.choice == row.gold_answer
        entry[1] += 1
    return {annotator: (c[0], c[1]) for annotator, c in counts.items()}


def consistency_pairs(rows: Sequence[JudgementRow]) -> dict[int, tuple[int, int]]:
    """Consistent and total (original, repeat) pairs per annotator.

    Returns
    -------
    dict annotator_id -> (n_consistent, n_pairs); annotators without a judged pair are absent.
    """
    by_key = {(r.annotator_id, r.comparison_id): r for r in rows}
    counts: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for repeat in rows:
        if repeat.repeat_of_id is None:
            continue
        original = by_key.get((repeat.annotator_id, repeat.repeat_of_id))
        if original is None:
            continue
        if {original.edit_a_id, original.edit_b_id} != {repeat.edit_a_id, repeat.edit_b_id}:
            raise QualityError(
                f"comparison {repeat.comparison_id} repeats {original.comparison_id} but shows other edits"
            )
        entry = counts[repeat.annotator_id]
        entry[0] += original.preferred_edit_id() == repeat.preferred_edit_id()
        entry[1] += 1
    return {annotator: (c[0], c[1]) for annotator, c in counts.items()}


def hidden_reference_by_annotator(rows: Iterable[JudgementRow]) -> dict[int, tuple[int, int]]:
    """Right and total hidden-reference judgements per annotator (right: a tie, or confidence <= 2).

    Returns
    -------
    dict annotator_id -> (n_right, n_hidden_references); annotators without any are absent.
    """
    counts: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for row in rows:
        if not row.is_hidden_reference:
            continue
        if row.confidence is None:
            raise QualityError(f"hidden reference {row.comparison_id}: the judgement's confidence is needed")
        entry = counts[row.annotator_id]
        entry[0] += row.choice == CHOICE_TIE or row.confidence <= HIDDEN_REFERENCE_MAX_CONFIDENCE
        entry[1] += 1
    return {annotator: (c[0], c[1]) for annotator, c in counts.items()}


def annotator_quality(rows: Sequence[JudgementRow]) -> tuple[AnnotatorQuality, ...]:
    """Per-annotator gold accuracy, hidden-reference reliability, self-consistency, left share and median
    decision time, by annotator id."""
    gold = gold_accuracy_by_annotator(rows)
    references = hidden_reference_by_annotator(rows)
    pairs = consistency_pairs(rows)
    by_annotator: dict[int, list[JudgementRow]] = defaultdict(list)
    for row in rows:
        by_annotator[row.annotator_id].append(row)
    result = []
    for annotator_id in sorted(by_annotator):
        own = by_annotator[annotator_id]
        # On a hidden reference both sides are the same edit: no side was preferred.
        sided = [r for r in own if r.choice != CHOICE_TIE and not r.is_hidden_reference]
        n_left = sum(r.preferred_edit_id() == r.left_edit_id for r in sided)
        n_correct, n_gold = gold.get(annotator_id, (0, 0))
        n_right, n_references = references.get(annotator_id, (0, 0))
        n_consistent, n_pairs = pairs.get(annotator_id, (0, 0))
        result.append(
            AnnotatorQuality(
                annotator_id=annotator_id,
                n_judgements=len(own),
                n_gold=n_gold,
                gold_accuracy=n_correct / n_gold if n_gold else None,
                n_repeat_pairs=n_pairs,
                self_consistency=n_consistent / n_pairs if n_pairs else None,
                n_sided=len(sided),
                left_share=n_left / len(sided) if sided else None,
                median_decision_seconds=statistics.median(r.decision_seconds for r in own),
                n_hidden_references=n_references,
                hidden_reference_reliability=n_right / n_references if n_references else None,
            )
        )
    return tuple(result)


def choice_value_counts(comparison_ids: np.ndarray, choice_codes: np.ndarray) -> np.ndarray:
    """Per-comparison counts of each choice, the input of Krippendorff's alpha.

    One sort of a combined (comparison, choice) key and run lengths over it:
    a few arrays of ``n_judgements`` int64 alive at a time (an export's card
    calls this on a million judgements; ``np.unique(..., return_inverse=True)``
    held 41 MB of temporaries there).

    Parameters
    ----------
    comparison_ids : np.ndarray [shape=(n_judgements,)] int
    choice_codes : np.ndarray [shape=(n_judgements,)] int, index into ``ALPHA_VALUES`` (0 = A, 1 = tie, 2 = B)

    Returns
    -------
    np.ndarray [shape=(n_comparisons, 3)] int64, rows in increasing comparison id
    """
    if comparison_ids.shape != choice_codes.shape:
        raise QualityError(f"comparison ids {comparison_ids.shape} and choices {choice_codes.shape} differ in shape")
    n_values = len(ALPHA_VALUES)
    if comparison_ids.size == 0:
        return np.zeros((0, n_values), dtype=np.int64)
    if choice_codes.min() < 0 or choice_codes.max() >= n_values:
        raise QualityError(f"choice codes must be 0..{n_values - 1} (A, tie, B)")
    keys = comparison_ids.astype(np.int64) * n_values
    keys += choice_codes
    keys.sort()
    units = keys // n_values
    starts = np.flatnonzero(np.concatenate(([True], units[1:] != units[:-1])))
    del units
    keys %= n_values  # now the choice code of each sorted judgement
    counts = np.empty((starts.size, n_values), dtype=np.int64)
    for value in range(n_values):
        counts[:, value] = np.add.reduceat(keys == value, starts, dtype=np.int64)
    return counts


def agreement_alpha(value_counts: np.ndarray) -> tuple[float | None, int]:
    """Krippendorff's alpha (ordinal, A < tie < B) and the number of pairable comparisons.

    Parameters
    ----------
    value_counts : np.ndarray [shape=(n_comparisons, 3)] judgements per comparison and choice

    Returns
    -------
    (alpha, n_pairable): alpha is None when fewer than two comparisons have two
    or more judgements, or when every judgement gave the same answer (alpha is
    undefined there, 0/0).
    """
    pairable = value_counts[value_counts.sum(axis=1) >= 2]
    n_pairable = int(pairable.shape[0])
    if n_pairable < 2 or np.count_nonzero(pairable.sum(axis=0)) < 2:
        return None, n_pairable
    alpha = krippendorff.alpha(
        value_counts=pairable, value_domain=list(range(len(ALPHA_VALUES))), level_of_measurement=ALPHA_LEVEL
    )
    return float(alpha), n_pairable


def choice_code(choice: str) -> int:
    try:
        return ALPHA_VALUES.index(choice)
    except ValueError:
        raise QualityError(f"unknown choice {choice!r}; expected one of {ALPHA_VALUES}") from None


def count_preference_cycles(rows: Iterable[JudgementRow]) -> int:
    """Intransitive triples (x > y > z > x) among edits of a track, from majority preferences."""
    # votes[(track, low, high)] = votes for low minus votes for high (low < high by id)
    margin: dict[tuple[int, int, int], int] = defaultdict(int)
    for row in rows:
        winner = row.preferred_edit_id()
        if winner is None:
            continue
        low, high = sorted((row.edit_a_id, row.edit_b_id))
        margin[(row.track_id, low, high)] += 1 if winner == low else -1
    beats: dict[int, dict[int, set[int]]] = defaultdict(lambda: defaultdict(set))
    for (track, low, high), m in margin.items():
        if m > 0:
            beats[track][low].add(high)
        elif m < 0:
            beats[track][high].add(low)
    n_cycles = 0
    for graph in beats.values():
        for x, losers in graph.items():
            for y in losers:
                for z in graph.get(y, ()):
                    if x in graph.get(z, ()):
                        n_cycles += 1
    # each 3-cycle was found once from each of its three edges
    return n_cycles // 3


def source_games(rows: Iterable[JudgementRow]) -> tuple[tuple[str, ...], np.ndarray]:
    """Sources and the matrix of wins between them (ties count half to each).

    Returns
    -------
    (sources, wins): sources sorted by name; wins [shape=(k, k)] float64,
    wins[i, j] = times source i was preferred over source j.
    """
    pairs: list[tuple[str, str, float]] = []
    for row in rows:
        if row.source_a == row.source_b:
            continue  # carries no information about the difference between sources
        if row.choice == CHOICE_A:
            pairs.append((row.source_a, row.source_b, 1.0))
        elif row.choice == CHOICE_B:
            pairs.append((row.source_b, row.source_a, 1.0))
        else:
            pairs.append((row.source_a, row.source_b, 0.5))
            pairs.append((row.source_b, row.source_a, 0.5))
    sources = tuple(sorted({s for w, l, _ in pairs for s in (w, l)}))
    index = {s: i for i, s in enumerate(sources)}
    wins = np.zeros((len(sources), len(sources)), dtype=np.float64)
    for winner, loser, weight in pairs:
        wins[index[winner], index[loser]] += weight
    return sources, wins


def bradley_terry(
    wins: np.ndarray, *, ridge: float = 1e-3, max_iter: int = 100, tol: float = 1e-10
) -> tuple[np.ndarray, np.ndarray]:
    """Bradley-Terry scores by Newton's method with a ridge prior, and their covariance.

    Parameters
    ----------
    wins : np.ndarray [shape=(k, k)] wins[i, j] = times i beat j (fractional for ties)
    ridge : float, precision of the zero-mean Gaussian prior on each score

    Returns
    -------
    (scores [shape=(k,)], covariance [shape=(k, k)]), scores centred to mean
    zero in log-odds units; covariance of the centred scores.
    """
    k = wins.shape[0]
    if wins.shape != (k, k) or k < 2:
        raise QualityError(f"Bradley-Terry needs a square win matrix of at least 2 sources, got shape {wins.shape}")
    if ridge <= 0:
        raise QualityError(f"Bradley-Terry ridge must be positive, got {ridge}")
    games = wins + wins.T
    theta = np.zeros(k)
    for _ in range(max_iter):
        p = 1.0 / (1.0 + np.exp(-(theta[:, None] - theta[None, :])))
        grad = (wins - games * p).sum(axis=1) - ridge * theta
        weight = games * p * (1.0 - p)
        hessian = weight - np.diag(weight.sum(axis=1) + ridge)
        step = np.linalg.solve(hessian, grad)
        theta -= step
        if np.max(np.abs(step)) < tol:
            break
    else:
        raise QualityError(f"Bradley-Terry did not converge in {max_iter} Newton steps")
    p = 1.0 / (1.0 + np.exp(-(theta[:, None] - theta[None, :])))
    weight = games * p * (1.0 - p)
    information = np.diag(weight.sum(axis=1) + ridge) - weight
    centre = np.eye(k) - np.full((k, k), 1.0 / k)
    covariance = centre @ np.linalg.inv(information) @ centre
    return theta - theta.mean(), covariance


def source_scores(rows: Iterable[JudgementRow], *, ridge: float = 1e-3) -> tuple[SourceScore, ...]:
    """Bradley-Terry score per edit source with 95 % intervals, best first; empty with under two sources."""
    sources, wins = source_games(rows)
    if len(sources) < 2:
        return ()
    scores, covariance = bradley_terry(wins, ridge=ridge)
    half = Z_95 * np.sqrt(np.clip(np.diag(covariance), 0.0, None))
    games = wins + wins.T
    result = [
        SourceScore(
            source=source,
            score=float(scores[i]),
            ci_low=float(scores[i] - half[i]),
            ci_high=float(scores[i] + half[i]),
            n_games=float(games[i].sum()),
            wins=float(wins[i].sum()),
        )
        for i, source in enumerate(sources)
    ]
    return tuple(sorted(result, key=lambda s: -s.score))


def quality_report(rows: Sequence[JudgementRow]) -> QualityReport:
    """Everything the quality page shows, from one list of judgements."""
    # Hidden references measure annotators only (see the module's definitions).
    compared = [r for r in rows if not r.is_hidden_reference]
    counts = choice_value_counts(
        np.fromiter((r.comparison_id for r in compared), dtype=np.int64, count=len(compared)),
        np.fromiter((choice_code(r.choice) for r in compared), dtype=np.int64, count=len(compared)),
    )
    alpha, n_pairable = agreement_alpha(counts)
    return QualityReport(
        annotators=annotator_quality(rows),
        alpha=alpha,
        alpha_level=ALPHA_LEVEL,
        n_units_pairable=n_pairable,
        n_cycles=count_preference_cycles(compared),
        sources=source_scores(compared),
    )
