"""Typed configs of the embedding layer: each method's spec and the fused table optimizer.

These are Hydra structured configs (``conf/embedding/<method>.yaml`` holds only what differs
from the defaults here). The module is light on purpose: it imports no torch, FBGEMM or
torchrec, so entry points can parse and validate configs before they start the real work,
as torchrec keeps its ``embedding_configs.py`` apart from its modules.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import List, Optional

FBGEMM_DIM_MULTIPLE = 4


class ShardingType(str, enum.Enum):
    """How torchrec's DistributedModelParallel may split a physical table across ranks."""

    table_wise = "table_wise"  # whole tables on one rank each
    row_wise = "row_wise"  # row ranges on every rank
    column_wise = "column_wise"  # column blocks on different ranks
    table_row_wise = "table_row_wise"  # row ranges across the ranks of one host


class TableOptimizer(str, enum.Enum):
    """Optimizers FBGEMM fuses into the lookup's backward (on CPU: these two). Members are
    lower case because configs name them (`trainer.table_optimizer.kind=sgd`)."""

    rowwise_adagrad = "rowwise_adagrad"
    sgd = "sgd"


@dataclasses.dataclass
class TableOptimizerConfig:
    """The fused optimizer of the embedding tables.

    Args:
        kind: exact row-wise Adagrad (one accumulator per row) or exact SGD.
        lr: learning rate.
        eps: Adagrad's epsilon, added to the root of a row's accumulated mean square gradient
            (FBGEMM's update is ``lr * g / (sqrt(G) + eps)``): a row whose accumulated gradient is
            below it moves like SGD with rate ``lr / eps``, so a large eps damps rows seen a few
            times (``conf/trainer/kaggle.yaml`` says why and what it measured).
        weight_decay: L2 decay applied by the fused update.
    """

    kind: TableOptimizer = TableOptimizer.rowwise_adagrad
    lr: float = 0.05
    eps: float = 1e-8
    weight_decay: float = 0.0


@dataclasses.dataclass
class FullSpec:
    method: str = "full"


class HashKind(str, enum.Enum):
    seeded = "seeded"
    modulo = "modulo"


@dataclasses.dataclass
class HashSpec:
    """Args:
    compression: m = ceil(n / compression) rows per hashed table (when ``rows`` is unset).
    rows: a fixed m for every hashed table instead.
    hash: ``seeded`` hash or plain ``modulo``.
    seed: base seed; each feature's hash is seeded with (seed, feature name).
    threshold: tables of at most this many rows stay full.
    """

    method: str = "hash"
    compression: float = 4.0
    rows: Optional[int] = None
    hash: HashKind = HashKind.seeded
    seed: int = 0
    threshold: int = 0

    def __post_init__(self) -> None:
        self.hash = HashKind(self.hash)
        if self.compression < 1:
            raise ValueError(f"embedding.compression must be >= 1, got {self.compression}")
        if self.rows is not None and self.rows < 1:
            raise ValueError(f"embedding.rows must be >= 1, got {self.rows}")


class QROperation(str, enum.Enum):
    mult = "mult"
    add = "add"
    concat = "concat"


@dataclasses.dataclass
class QRSpec:
    """Args:
    collisions: m, the rows of each remainder (low-digit) table.
    operation: ``mult``, ``add`` or ``concat``.
    partitions: k >= 2 complementary partitions.
    threshold: tables of at most this many rows stay full.
    """

    method: str = "qr"
    collisions: int = 4
    operation: QROperation = QROperation.mult
    partitions: int = 2
    threshold: int = 0

    def __post_init__(self) -> None:
        self.operation = QROperation(self.operation)
        if self.collisions < 2:
            raise ValueError(f"embedding.collisions must be >= 2, got {self.collisions}")
        if self.partitions < 2:
            raise ValueError(f"embedding.partitions must be >= 2, got {self.partitions}")


class MDVariant(str, enum.Enum):
    blocks = "blocks"
    per_table = "per_table"


@dataclasses.dataclass
class MDSpec:
    """Args:
    alpha: temperature of the power rule d ∝ p^α, α ≥ 0: 0 keeps every block at base_dim,
        1 makes dims proportional to popularity (the paper's range is [0, 1]), larger α
        shrinks rare blocks faster (a budget searches α in [0, 8]).
    rounding: threshold t in [0, 1) of the rounding of a block's fractional dim d to FBGEMM's
        multiple of 4: the block gets 4·floor(d/4 + t), at most base_dim. 0.5 is nearest
        rounding; a larger t rounds more blocks up (and keeps more rare blocks), a smaller one
        rounds more down. A budget solves α and t together, so blocks whose popularity is
        nearly equal (the big tables' tails) need not all change width at the same α.
    base_dim: dimension of the most popular block (default: the model's dimension).
    variant: ``blocks`` (frequency blocks inside each table) or ``per_table``.
    num_blocks: frequency blocks per table (``blocks`` variant).
    merge_equal_blocks: adjacent blocks whose rounded dims are equal become one block with one
        projection (``blocks`` variant; the same rule over a coarser partition). It halves the
        slots and projected columns of a Kaggle plan, which is what makes mixed dimensions
        train near full-table speed on a CPU. False keeps every geometric block apart with its
        own projection; blocks at the model dim (unprojected) or at 0 (no table) merge either
        way, since that changes nothing.
    """

    method: str = "md"
    alpha: float = 0.3
    rounding: float = 0.5
    base_dim: Optional[int] = None
    variant: MDVariant = MDVariant.blocks
    num_blocks: int = 8
    merge_equal_blocks: bool = True

    def __post_init__(self) -> None:
        self.variant = MDVariant(self.variant)
        if self.alpha < 0:
            raise ValueError(f"embedding.alpha must be >= 0, got {self.alpha}")
        if not 0.0 <= self.rounding < 1.0:
            raise ValueError(f"embedding.rounding must be in [0, 1) (0.5: nearest multiple of 4), got {self.rounding}")
        if self.num_blocks < 1:
            raise ValueError(f"embedding.num_blocks must be >= 1, got {self.num_blocks}")


@dataclasses.dataclass
class UnifiedSpec:
    """Args:
    compression: shared rows = ceil(Σ n of the group / compression) (when ``rows`` is unset).
    rows: a fixed size of the shared table instead.
    probes: k chunks of dim/k per vector, each with its own hash.
    seed: base seed of the per-feature, per-probe hashes.
    group: features with the same group name share one table.
    """

    method: str = "unified"
    compression: float = 4.0
    rows: Optional[int] = None
    probes: int = 1
    seed: int = 0
    group: str = "all"

    def __post_init__(self) -> None:
        if self.compression <= 0:
            raise ValueError(f"embedding.compression must be > 0, got {self.compression}")
        if self.probes < 1:
            raise ValueError(f"embedding.probes must be >= 1, got {self.probes}")


class OptEmbedStage(str, enum.Enum):
    """What ``recsys-train embedding=optembed`` runs."""

    all = "all"
    supernet = "supernet"
    search = "search"
    retrain = "retrain"


class OptEmbedNetwork(str, enum.Enum):
    """Which network the spec compiles to (the stage runner sets it)."""

    supernet = "supernet"
    retrain = "retrain"
    compact = "compact"


class DimSampling(str, enum.Enum):
    """Supernet width sampling: one d_f per field per batch, or per example (authors' code)."""

    batch = "batch"
    example = "example"


@dataclasses.dataclass
class OptEmbedSpec:
    """Args:
    stage: ``all`` (supernet → search → retrain → compaction), or one of ``supernet``,
        ``search``, ``retrain`` (retrain includes compaction and the final report).
    artifacts: directory of an earlier stage's outputs (``<run>/optembed``): ``search`` reads
        its supernet and masks, ``retrain`` its masks and dims.
    network: the network this spec compiles to; set by the stage runner.
    threshold_init: initial per-field threshold t_f (the authors use 0: nothing pruned yet).
    reg_weight: λ of the regulariser λ·Σ_f exp(−t_f).
    threshold_lr: learning rate of the thresholds t_f in the dense optimizer: the paper's own
        rate for them, lr^t (1e-4 for three of its four Criteo models, with Adam, as
        ``trainer=kaggle`` trains the dense layers); None: the dense layers' ``trainer.dense_lr``.
        At the dense rate (Adam, 3e-3) the 4M-row Kaggle-profile supernet pruned to 3.7e-5 of
        the rows (thresholds ~0.5); at 1e-4 it keeps 2.7e-3 of them for a better supernet AUC
        (0.7932 against 0.7879), and with ``reg_weight=1e-5`` as well 97% (0.7933).
    dim_candidates: widths the supernet samples and the search picks from; multiples of 4,
        at most the model dim (default: every multiple of 4 up to the model dim).
    dim_sampling: ``batch`` (one width per field per batch) or ``example`` (per example).
    population: candidates per search generation.
    iterations: generations evaluated.
    parents: best candidates kept as parents (elitism) each generation.
    mutation_prob: per-field probability that a child's dim is redrawn.
    crossover_prob: probability that a child mixes two parents (uniform crossover).
    search_batches: validation batches each candidate is scored on (None: all).
    search_seed: seed of the search.
    supernet_epochs: epochs of supernet training (None: ``trainer.epochs``).
    retrain_epochs: epochs of retraining (None: ``trainer.epochs``).
    """

    method: str = "optembed"
    stage: OptEmbedStage = OptEmbedStage.all
    artifacts: Optional[str] = None
    network: OptEmbedNetwork = OptEmbedNetwork.supernet
    threshold_init: float = 0.0
    reg_weight: float = 3e-4
    threshold_lr: Optional[float] = 1e-4
    dim_candidates: Optional[List[int]] = None
    dim_sampling: DimSampling = DimSampling.batch
    population: int = 20
    iterations: int = 10
    parents: int = 10
    mutation_prob: float = 0.1
    crossover_prob: float = 0.5
    search_batches: Optional[int] = 20
    search_seed: int = 0
    supernet_epochs: Optional[int] = None
    retrain_epochs: Optional[int] = None

    def __post_init__(self) -> None:
        self.stage = OptEmbedStage(self.stage)
        self.network = OptEmbedNetwork(self.network)
        self.dim_sampling = DimSampling(self.dim_sampling)
        if self.reg_weight < 0:
            raise ValueError(f"embedding.reg_weight must be >= 0, got {self.reg_weight}")
        if self.threshold_lr is not None and not self.threshold_lr > 0:
            raise ValueError(f"embedding.threshold_lr must be > 0 (or null: trainer.dense_lr), got {self.threshold_lr}")
        if self.dim_candidates is not None:
            self.dim_candidates = sorted(set(int(d) for d in self.dim_candidates))
            bad = [d for d in self.dim_candidates if d <= 0 or d % FBGEMM_DIM_MULTIPLE]
            if bad or not self.dim_candidates:
                raise ValueError(
                    f"embedding.dim_candidates must be positive multiples of {FBGEMM_DIM_MULTIPLE} "
                    f"(FBGEMM table dims), got {self.dim_candidates}"
                )
        if self.population < 2:
            raise ValueError(f"embedding.population must be >= 2, got {self.population}")
        if not 1 <= self.parents <= self.population:
            raise ValueError(f"embedding.parents must be in [1, population={self.population}], got {self.parents}")
        if self.iterations < 1:
            raise ValueError(f"embedding.iterations must be >= 1, got {self.iterations}")
        for key in ("mutation_prob", "crossover_prob"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ValueError(f"embedding.{key} must be in [0, 1], got {getattr(self, key)}")
        if self.search_batches is not None and self.search_batches < 1:
            raise ValueError(f"embedding.search_batches must be >= 1 or null, got {self.search_batches}")
        for key in ("supernet_epochs", "retrain_epochs"):
            if getattr(self, key) is not None and getattr(self, key) < 1:
                raise ValueError(f"embedding.{key} must be >= 1 or null, got {getattr(self, key)}")
        if self.stage in (OptEmbedStage.search, OptEmbedStage.retrain) and not self.artifacts:
            raise ValueError(f"embedding.stage={self.stage.value} needs embedding.artifacts=<an earlier run>/optembed")
        if self.network is not OptEmbedNetwork.supernet and not self.artifacts:
            raise ValueError(f"embedding.network={self.network.value} needs embedding.artifacts (kept rows and dims)")

    def candidates(self, dim: int) -> list[int]:
        """The dim candidates for a model of width ``dim``."""
        if self.dim_candidates is None:
            return default_dim_candidates(dim)
        too_wide = [d for d in self.dim_candidates if d > dim]
        if too_wide:
            raise ValueError(f"embedding.dim_candidates {too_wide} exceed the model dim {dim}")
        return list(self.dim_candidates)


def default_dim_candidates(dim: int) -> list[int]:
    """Every multiple of FBGEMM's 4 up to ``dim``: [4, 8, ..., dim]."""
    return list(range(FBGEMM_DIM_MULTIPLE, dim + 1, FBGEMM_DIM_MULTIPLE))
