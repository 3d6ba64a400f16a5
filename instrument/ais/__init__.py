"""AIS, the agent intensity score: exact aggregates and pure scoring functions.

- :mod:`instrument.ais.config`: :class:`AISConfig`, every number the score uses, validated.
- :mod:`instrument.ais.aggregates`: what a record contributes (:class:`IntensityDelta`) and the
  exact, order-independent per-agent merge (:class:`Aggregates`, :func:`aggregate`).
- :mod:`instrument.ais.scoring`: means derived from the aggregates (:func:`derive`), component
  and combined scores (:func:`score`), :func:`multiplier`, :func:`creation_score`,
  :func:`dynamic_ranges`.

Pure: nothing here reads the environment, a database or the clock. See docs/ais.md for the
formulas and the worked example; the SQL mirrors are ``stores/*/sql/0002_intensity.sql``.
"""

from __future__ import annotations

from instrument.ais.aggregates import Aggregates, IntensityDelta, aggregate
from instrument.ais.config import COMPONENTS, AISConfig, GrowthTier
from instrument.ais.scoring import (
    Derived,
    Scores,
    clamp10,
    creation_score,
    derive,
    dynamic_ranges,
    multiplier,
    norm,
    score,
)

__all__ = [
    "COMPONENTS",
    "AISConfig",
    "Aggregates",
    "Derived",
    "GrowthTier",
    "IntensityDelta",
    "Scores",
    "aggregate",
    "clamp10",
    "creation_score",
    "derive",
    "dynamic_ranges",
    "multiplier",
    "norm",
    "score",
]
