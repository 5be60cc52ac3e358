"""The world behind synthetic Criteo-shaped data: feature distributions and a planted click model.

Two parts, both fixed by a ``model_seed`` and independent of how many rows are drawn:

**Feature distributions** (:class:`FeatureSpace`). Sparse feature ``f`` has ``n_f`` ids, one of
which may be "missing" (Criteo's empty field; ingest maps it to raw id -1 and ranks it like any
other id). Non-missing ids follow a discretised continuous power law (Zipf-like)::

    P_f(j) = ((j+1)^(1-s_f) - (j+2)^(1-s_f)) / (1 - (n'+1)^(1-s_f)),   j = 0..n'-1

which is strictly decreasing in ``j`` and is sampled in O(1) memory by inverting its CDF
(``x = (1 - u c)^(1/(1-s))``, ``j = floor(x) - 1``), so a 45M-id feature costs no table.
The missing id takes probability ``m_f`` and sits at the rank its probability gives; the other
ids share ``1 - m_f``. Ranks are therefore exact frequency ranks of the generating distribution.

Exponents ``s_f`` for the Kaggle profile are calibrated so that the number of ids expected at
least 10 times in 45.84M rows equals the BARS Criteo_x4 min-count-10 vocabulary size (less its
2 OOV/padding slots). That one rule reproduces the published C1 skew without fitting it
(C1 gets top-1 54% / top-10 93% vs 50.1% / 90.9% measured) and makes the 10M-id features
heavy-tailed (s ~ 1.12). Features whose every id passes the threshold (<= 30 ids) only bound
``s`` from above; they get ``s = 1.5``. The 1TB profile has no min-count figures; it uses the
fit of the Kaggle calibration ``s(n) = 1 + 5.3 n^-0.26`` (capped at 2.5; 1.5 for <= 30 ids).
Missing rates are the ones measured on 20,000 Kaggle rows (docs/criteo.md), used for both
profiles (1TB columns do not line up with Kaggle's, so for 1TB these rates are a stand-in).

Dense features I1..I13 are counts ``floor(exp(mu_j + sigma_j z))`` (z standard normal), missing
with the measured rate, written as ingest writes them: missing -> 0, then ``log1p``, float32.
The (mu, sigma) pairs are rough shapes (small counts with long tails; I5 in the thousands),
not fitted to data.

**Planted click model** (:class:`PlantedModel`): a factorization machine (Rendle, ICDM 2010)
with dense terms, which a DLRM (dot interaction of embeddings and bottom-MLP output) can
represent exactly::

    logit = b0 + sum_f w_f[r_f] + sum_{f<g} <e_f, e_g> + beta . y + <U y, sum_f e_f>
    w_f[r] = a_f(r) bias_std z_0,   e_f[r] = a_f(r) latent_std (z_1..z_k),   z ~ N(0, I)
    a_f(r) = P_f(r) / (P_f(r) + effect_half_frequency)        # effect scale in (0, 1)
    y = standardised transformed dense values; beta ~ N(0, dense_std^2/13), U ~ N(0, dense_latent_std^2/13)

The effect scale ``a_f`` is what makes frequent ids matter and rare ones not: an id seen with
probability well above ``effect_half_frequency`` (default 1e-4, ~400 times in 4M rows) carries
its full id-specific bias and k-dimensional vector, ids far below it fade to nothing. So the
signal sits on ids frequent enough to learn in one pass over a few million rows (a tail
whose effect cannot be estimated would only widen the gap to the Bayes optimum), while every
such id still needs its own row (hashing or QR mixes it with other ids and with the tail's
traffic) and its own ``k = latent_dim`` dimensions: without the pairwise and dense-by-sparse
terms the Bayes AUC falls from ~0.81 to ~0.70, so a table with fewer than ``k`` dimensions
loses measurable quality. The pairwise sum uses ``(||sum_f e_f||^2 - sum_f ||e_f||^2) / 2``,
with ``-||e_f||^2 / 2`` folded into each id's bias so a batch needs one gather and one sum.
``b0`` is solved by bisection on a 2^18-row calibration sample so the mean click probability
equals the profile's positive rate (Kaggle 25.62%, 1TB ~3%).

Per-id parameters are never stored for all ids: the standard normals ``z`` of (feature, rank)
come from a counter-based hash (splitmix64 of (model_seed, feature, rank, slot), then
Box-Muller), so any id's parameters cost O(1); a head cache holds ranks < ``HEAD_ROWS`` of every
feature (where most lookups land) and the tail is hashed on the fly. The cache is an
optimisation only: it holds exactly what the hash gives.

Default magnitudes: latent_dim 8, bias_std 0.23, latent_std 0.14, dense_std 0.35,
dense_latent_std 0.3, effect_half_frequency 1e-4. On the Kaggle profile they give a logit
standard deviation of ~1.4 and a Bayes-optimal AUC of ~0.81 (real Criteo models reach
0.80-0.81), ~0.855 on the 1TB profile (3% positives); ``bayes.json`` has the exact figures.
Measured with a learner of the planted family (an FM with the same dense terms, one epoch,
Adagrad lr 0.05, batch 2048) on 3.6M Kaggle-profile rows: valid AUC 0.794 vs Bayes 0.809
(lr 0.02 and 0.15 did worse), so one pass leaves a gap of ~0.015 that is estimation, not
unlearnable tail (an oracle that knows only ids seen >= 40 times in 4M rows loses < 0.001);
hashing the 8 tables above 16,384 ids down to 16,384 rows costs a further 0.002 and halving
the dimension to 4 costs 0.013. Lowering ``effect_half_frequency`` to 3e-5 or 1e-5 widened
that one-epoch gap only a little (0.017-0.018).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from enum import Enum

import numpy as np

from recsys.data.config import ModelMagnitudes
from recsys.data.counter_hash import mix_key, splitmix64
from recsys.data.schema import CRITEO_CATEGORICAL, CRITEO_DENSE

HEAD_ROWS = 1 << 17  # ranks per feature whose parameters are cached (the tail is hashed on demand)
CALIBRATION_ROWS = 1 << 18  # rows drawn to standardise dense values and solve the intercept

_MASK32 = np.uint64(0xFFFFFFFF)


class Profile(str, Enum):
    """Which Criteo dataset the synthetic data imitates."""

    KAGGLE = "kaggle"
    TERABYTE = "terabyte"


# docs/criteo.md: Kaggle cardinalities without threshold, 1TB uncapped.
KAGGLE_CARDINALITIES = (
    1460, 583, 10131227, 2202608, 305, 24, 12517, 633, 3, 93145, 5683, 8351593, 3194,
    27, 14992, 5461306, 10, 5652, 2173, 4, 7046547, 18, 15, 286181, 105, 142572,
)  # fmt: skip
TERABYTE_CARDINALITIES = (
    45833188, 36746, 17245, 7413, 20243, 3, 7114, 1441, 62, 29275261, 1572176, 345138, 10,
    2209, 11267, 128, 4, 974, 14, 48937457, 11316796, 40094537, 452104, 12606, 104, 35,
)  # fmt: skip
# Calibrated to the BARS min-count-10 vocabulary sizes (see the module docstring).
KAGGLE_EXPONENTS = (
    2.12, 2.49, 1.116, 1.169, 2.78, 1.5, 1.576, 2.44, 1.5, 1.352, 1.764, 1.117, 1.888,
    1.5, 1.592, 1.127, 1.5, 1.793, 2.02, 1.5, 1.12, 1.5, 1.5, 1.302, 1.5, 1.346,
)  # fmt: skip
POSITIVE_RATES = {Profile.KAGGLE: 0.2562, Profile.TERABYTE: 0.03}

# Missing shares measured on 20,000 Kaggle rows (docs/criteo.md); unlisted columns ~0.
SPARSE_MISSING = dict.fromkeys(CRITEO_CATEGORICAL, 0.0) | {
    "C6": 0.14, "C3": 0.035, "C4": 0.035, "C12": 0.035, "C16": 0.035, "C21": 0.035, "C24": 0.035,
    "C19": 0.42, "C20": 0.42, "C25": 0.42, "C26": 0.42, "C22": 0.81,
}  # fmt: skip
DENSE_MISSING = dict.fromkeys(CRITEO_DENSE, 0.0) | {
    "I1": 0.44, "I3": 0.20, "I4": 0.20, "I6": 0.23, "I10": 0.44, "I12": 0.76, "I13": 0.20,
    "I5": 0.04, "I7": 0.04, "I9": 0.04, "I11": 0.04,
}  # fmt: skip
# (mu, sigma) of ln(count): rough shapes, not fitted.
DENSE_SHAPES = {
    "I1": (0.3, 1.2), "I2": (1.5, 1.8), "I3": (2.0, 1.3), "I4": (1.5, 1.0), "I5": (7.5, 2.0),
    "I6": (3.5, 1.6), "I7": (1.3, 1.5), "I8": (2.2, 1.0), "I9": (3.8, 1.3), "I10": (-0.3, 0.9),
    "I11": (0.8, 1.1), "I12": (-0.5, 1.3), "I13": (1.6, 1.1),
}  # fmt: skip


def profile_cardinalities(profile: Profile) -> tuple[int, ...]:
    return KAGGLE_CARDINALITIES if profile is Profile.KAGGLE else TERABYTE_CARDINALITIES


def profile_exponents(profile: Profile, cardinalities: tuple[int, ...]) -> tuple[float, ...]:
    """Zipf exponent per sparse feature (see the module docstring for where they come from)."""
    if profile is Profile.KAGGLE:
        return KAGGLE_EXPONENTS
    return tuple(1.5 if n <= 30 else min(2.5, 1.0 + 5.3 * n**-0.26) for n in cardinalities)


# ---------------------------------------------------------------- counter-based hashing


def hashed_normals(key: np.uint64, ranks: np.ndarray, count: int) -> np.ndarray:
    """``count`` standard normals per rank, a pure function of (key, rank, slot).

    Each 64-bit hash gives two 32-bit uniforms and Box-Muller turns them into two normals.

    Args:
        key: per-feature key from :func:`~recsys.data.counter_hash.mix_key`.
        ranks: (N,) non-negative integers.
    Returns:
        (N, count) float64.
    """
    pairs = (count + 1) // 2
    counter = ranks.astype(np.uint64)[:, None] * np.uint64(pairs) + np.arange(pairs, dtype=np.uint64)
    h = splitmix64(counter + key)  # (N, pairs)
    u1 = ((h >> np.uint64(32)).astype(np.float64) + 0.5) * 2.0**-32  # (0, 1): log is finite
    u2 = (h & _MASK32).astype(np.float64) * 2.0**-32
    radius = np.sqrt(-2.0 * np.log(u1))
    angle = 2.0 * np.pi * u2
    normals = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=-1)  # (N, pairs, 2)
    return normals.reshape(len(ranks), 2 * pairs)[:, :count]


def scrambled_ids(key: np.uint64, ranks: np.ndarray) -> np.ndarray:
    """A keyed bijection of 32-bit integers: distinct ranks get distinct "raw" ids in [0, 2^32).

    Rounds of multiply-by-odd, xor-shift and add-key, each invertible modulo 2^32.
    """
    x = ranks.astype(np.uint64) & _MASK32
    k = int(key)
    for round_key in (k & 0xFFFFFFFF, k >> 32):
        x = (x * np.uint64(0x9E3779B1)) & _MASK32
        x ^= x >> np.uint64(16)
        x = (x + np.uint64(round_key)) & _MASK32
    return x.astype(np.int64)


# ---------------------------------------------------------------- feature distributions


@dataclasses.dataclass(frozen=True)
class FeatureSpace:
    """Marginal distributions of the 13 dense and 26 sparse features (rows are i.i.d.).

    Attributes:
        cardinalities: ids per sparse feature, the missing id included.
        exponents: Zipf exponent per sparse feature (> 1).
        missing: probability of the missing id per sparse feature.
        dense_missing: missing probability per dense feature.
        dense_shapes: (mu, sigma) of ln(count) per dense feature.
    """

    cardinalities: tuple[int, ...]
    exponents: tuple[float, ...]
    missing: tuple[float, ...]
    dense_missing: tuple[float, ...]
    dense_shapes: tuple[tuple[float, float], ...]

    def __post_init__(self) -> None:
        for name, n, s, m in zip(CRITEO_CATEGORICAL, self.cardinalities, self.exponents, self.missing):
            if n < 2:
                raise ValueError(f"{name}: cardinality {n} < 2")
            if s <= 1.0:
                raise ValueError(f"{name}: Zipf exponent {s} must be > 1")
            if not 0.0 <= m < 1.0:
                raise ValueError(f"{name}: missing rate {m} outside [0, 1)")

    # Per-feature constants as (F,) arrays, broadcast against (B, F) draws; computed once.
    @functools.cached_property
    def _present(self) -> np.ndarray:  # (F,) ids that are not "missing"
        return np.array([n - (m > 0) for n, m in zip(self.cardinalities, self.missing)], np.float64)

    @functools.cached_property
    def missing_ranks(self) -> np.ndarray:
        """(F,) rank of the missing id; ``n`` (no such rank) where a feature is never missing."""
        return np.array([self._missing_rank(f) for f in range(len(self.cardinalities))], np.int64)

    def _missing_rank(self, f: int) -> int:
        m, present = self.missing[f], int(self._present[f])
        if m == 0.0:
            return self.cardinalities[f]
        lo, hi = 0, present  # count of present ids more likely than "missing" (monotone in j)
        while lo < hi:
            mid = (lo + hi) // 2
            if (1 - m) * self._zipf(f, np.array([mid]))[0] > m:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def _zipf(self, f: int, j: np.ndarray) -> np.ndarray:
        s, present = self.exponents[f], self._present[f]
        j = j.astype(np.float64)
        return ((j + 1) ** (1 - s) - (j + 2) ** (1 - s)) / (1 - (present + 1) ** (1 - s))

    def rank_probability(self, f: int, ranks: np.ndarray) -> np.ndarray:
        """Generating probability of each rank of sparse feature ``f`` (index 0..25); (N,) float64."""
        ranks = np.asarray(ranks, np.int64)
        r_miss = int(self.missing_ranks[f])
        j = ranks - (ranks > r_miss)
        return np.where(ranks == r_miss, self.missing[f], (1 - self.missing[f]) * self._zipf(f, j))

    @functools.cached_property
    def _sampler(self) -> tuple[np.ndarray, ...]:
        """(F,) constants of the inverse CDF: missing rate, 1/(1-s), c, last present j, missing rank."""
        m, s, present = np.array(self.missing), np.array(self.exponents), self._present
        c = 1.0 - (present + 1.0) ** (1.0 - s)
        return m, 1.0 / (1.0 - s), c, (present - 1).astype(np.int64), self.missing_ranks

    def sparse_ranks(self, u: np.ndarray, feature: int | None = None) -> np.ndarray:
        """Inverse-CDF sampling of ranks from uniforms.

        Args:
            u: (B, F) float64 uniforms in [0, 1), one column per feature; or, with
                ``feature``, uniforms of any shape, all for that feature (index 0..25).
        Returns:
            int32 frequency ranks, shaped as ``u``.
        """
        m, inverse_exponent, c, last, r_miss = self._sampler
        if feature is not None:
            m, inverse_exponent, c, last, r_miss = (a[feature] for a in self._sampler)
        v = np.maximum(u - m, 0.0) / (1.0 - m)  # (B, F) uniform on the present ids
        x = (1.0 - v * c) ** inverse_exponent  # (B, F) continuous power law on [1, n'+1)
        j = np.minimum(x.astype(np.int64) - 1, last)  # (B, F)
        ranks = np.where(u < m, r_miss, j + (j >= r_miss))
        return ranks.astype(np.int32)

    def dense_values(self, z: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Counts from normals, missing from uniforms, transformed as ingest does.

        Args:
            z: (B, 13) standard normals. u: (B, 13) uniforms.
        Returns:
            (B, 13) float32: 0 where missing, else log1p(count).
        """
        mu, sigma = np.array(self.dense_shapes, np.float32).T  # (13,), (13,)
        counts = np.floor(np.exp(mu + sigma * z))
        values = np.log1p(counts, dtype=np.float32)
        return np.where(u < np.array(self.dense_missing, np.float32), np.float32(0), values)

    def sample(self, rng: np.random.Generator, rows: int) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``rows`` rows: dense (rows, 13) float32 and sparse (rows, 26) int32."""
        u_sparse = rng.random((rows, len(self.cardinalities)))
        z = rng.standard_normal((rows, len(self.dense_shapes)), dtype=np.float32)
        u_dense = rng.random((rows, len(self.dense_shapes)), dtype=np.float32)
        return self.dense_values(z, u_dense), self.sparse_ranks(u_sparse)


# ---------------------------------------------------------------- planted click model


class PlantedModel:
    """The ground-truth click model over a :class:`FeatureSpace`.

    Use :meth:`probability` on features from :meth:`FeatureSpace.sample` (or read back from
    shards) to get each row's true click probability, for Bayes-optimal figures and tests.
    """

    def __init__(
        self, space: FeatureSpace, magnitudes: ModelMagnitudes, positive_rate: float, seed: int
    ) -> None:
        if not 0.0 < positive_rate < 1.0:
            raise ValueError(f"positive_rate must be in (0, 1), got {positive_rate}")
        self.space, self.magnitudes, self.seed = space, magnitudes, seed
        self.positive_rate = positive_rate
        k, n_dense = magnitudes.latent_dim, len(space.dense_shapes)
        self._keys = [mix_key(seed, 1, f) for f in range(len(space.cardinalities))]
        self._head_sizes = np.array([min(n, HEAD_ROWS) for n in space.cardinalities], np.int64)
        self._head_offsets = np.concatenate([[0], np.cumsum(self._head_sizes)[:-1]])  # (F,)
        self._head = np.concatenate(
            [self._id_parameters(f, np.arange(h)) for f, h in enumerate(self._head_sizes)]
        )  # (sum_f H_f, 1 + k) float32
        dense_rng = np.random.default_rng([seed, 2])
        beta = dense_rng.normal(0, magnitudes.dense_std / math.sqrt(n_dense), n_dense)  # (13,)
        u = dense_rng.normal(0, magnitudes.dense_latent_std / math.sqrt(n_dense), (n_dense, k))
        self._beta, self._u = beta.astype(np.float32), u.astype(np.float32)  # (13,), (13, k)
        dense, sparse = space.sample(np.random.default_rng([seed, 3]), CALIBRATION_ROWS)
        self._dense_mean = dense.mean(0, dtype=np.float64).astype(np.float32)  # (13,)
        self._dense_std = np.maximum(dense.std(0, dtype=np.float64), 1e-6).astype(np.float32)
        self.intercept = 0.0
        self.intercept = _solve_intercept(self.logit(dense, sparse), positive_rate)

    def _id_parameters(self, f: int, ranks: np.ndarray) -> np.ndarray:
        """(N, 1 + k) float32 rows ``[w - ||e||^2 / 2, e]`` of the given ranks of feature f.

        ``e = a_f(r) v`` and ``w = a_f(r) bias_std z``; folding ``-||e||^2 / 2`` into the bias
        column turns the pairwise sum into ``||sum_f e_f||^2 / 2`` plus per-id constants.
        """
        mag = self.magnitudes
        z = hashed_normals(self._keys[f], ranks, 1 + mag.latent_dim)  # (N, 1 + k)
        scale = self.effect_scale(f, ranks)[:, None]  # (N, 1)
        e = z[:, 1:] * (mag.latent_std * scale)  # (N, k)
        w = z[:, 0] * (mag.bias_std * scale[:, 0])  # (N,)
        return np.concatenate([(w - 0.5 * (e * e).sum(-1))[:, None], e], axis=1).astype(np.float32)

    def effect_scale(self, f: int, ranks: np.ndarray) -> np.ndarray:
        """a_f(r) in (0, 1): how strongly rank r of feature f (index 0..25) affects clicks."""
        p = self.space.rank_probability(f, ranks)
        return p / (p + self.magnitudes.effect_half_frequency)

    def parameters(self, sparse: np.ndarray) -> np.ndarray:
        """Per-id rows of a batch, feature-major: (B, F) ranks -> (F, B, 1 + k) ``[w - ||e||^2/2, e]``.

        Feature-major so that summing over features adds F contiguous (B, 1 + k) slabs.
        """
        sparse_t = sparse.T  # (F, B)
        heads = self._head_sizes[:, None]  # (F, 1)
        index = self._head_offsets[:, None] + np.minimum(sparse_t, heads - 1)  # (F, B) cache rows
        params = np.take(self._head, index, axis=0)  # (F, B, 1 + k)
        features, rows = np.nonzero(sparse_t >= heads)
        for f in np.unique(features):
            at = rows[features == f]
            params[f, at] = self._id_parameters(int(f), sparse_t[f, at])
        return params

    def feature_parameters(self, f: int, ranks: np.ndarray) -> np.ndarray:
        """Rows ``[w - ||e||^2/2, e]`` of any ranks of feature f: (...) -> (..., 1 + k)."""
        flat = ranks.reshape(-1)
        head = int(self._head_sizes[f])
        params = np.take(self._head, self._head_offsets[f] + np.minimum(flat, head - 1), axis=0)
        tail = np.flatnonzero(flat >= head)
        if len(tail):
            params[tail] = self._id_parameters(f, flat[tail])
        return params.reshape(*ranks.shape, -1)

    def logit(self, dense: np.ndarray, sparse: np.ndarray, extra: dict[int, np.ndarray] | None = None) -> np.ndarray:
        """True click logit of each row.

        A multi-hot feature's extra ids are further active features of the same factorization
        machine: each adds its bias and its pairwise products with every other active id
        (Rendle's FM is defined over any set of active features).

        Args:
            dense: (B, 13) transformed dense values (as written in the shards).
            sparse: (B, 26) frequency ranks (a bag's first id).
            extra: feature index -> (B, L) further ranks of that feature's bag, -1 = none.
        Returns:
            (B,) float64.
        """
        summed = self.parameters(sparse).sum(axis=0)  # (B, 1 + k)
        for f, ranks in (extra or {}).items():
            present = (ranks >= 0)[..., None]  # (B, L, 1)
            summed += (self.feature_parameters(f, np.maximum(ranks, 0)) * present).sum(axis=1)  # (B, 1 + k)
        total = summed[:, 1:]  # (B, k): sum_f e_f
        # sum_f w_f + sum_{f<g} <e_f, e_g> = sum_f (w_f - ||e_f||^2/2) + ||sum_f e_f||^2 / 2
        sparse_terms = summed[:, 0] + 0.5 * (total * total).sum(-1)  # (B,)
        y = ((dense - self._dense_mean) / self._dense_std).T  # (13, B) standardised
        # Elementwise sums instead of matmul: BLAS may round differently per batch size,
        # and the output must not depend on how rows are chunked.
        projected = sum(y[j][:, None] * self._u[j] for j in range(len(y)))  # (B, k)
        dense_linear = sum(y[j] * self._beta[j] for j in range(len(y)))  # (B,)
        cross = (projected * total).sum(-1)  # (B,)
        return self.intercept + (sparse_terms + dense_linear + cross).astype(np.float64)

    def probability(self, dense: np.ndarray, sparse: np.ndarray, extra: dict[int, np.ndarray] | None = None) -> np.ndarray:
        """True click probability of each row, (B,) float64 (arguments as in :meth:`logit`)."""
        return sigmoid(self.logit(dense, sparse, extra))


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _solve_intercept(logits: np.ndarray, positive_rate: float) -> float:
    """b such that mean(sigmoid(logits + b)) = positive_rate (bisection; the mean is monotone)."""
    lo, hi = -40.0, 40.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if sigmoid(logits + mid).mean() < positive_rate:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)
