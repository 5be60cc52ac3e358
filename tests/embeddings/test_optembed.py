"""OptEmbed's pieces: the step with its long-tailed STE, the threshold regulariser, the
supernet's row and width masks, the evolutionary search, compaction and its accounting."""

import numpy as np
import pytest
import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from recsys.embeddings.build import make_embedding
from recsys.embeddings.compiler import plan_bytes
from recsys.embeddings.embedding_config import parse_embedding_config
from recsys.embeddings.evolutionary_search import evolutionary_search
from recsys.embeddings.optembed_artifacts import save_dims, save_masks
from recsys.embeddings.optembed_compaction import compact_remap, compact_weights, copy_compacted
from recsys.embeddings.optembed_masks import step_ste
from recsys.embeddings.optembed_modules import DropRows, SupernetMask, TruncatePad
from recsys.embeddings.transforms import Identity
from recsys.embeddings.specs import default_dim_candidates
from recsys.embeddings.plan import FeatureInfo
from recsys.embeddings.specs import TableOptimizer, TableOptimizerConfig
from recsys.models.config import DLRMConfig
from recsys.models.dlrm import DLRM

DIM = 8


def long_tail(x: float) -> float:
    """The paper's estimator of the step's derivative, written out."""
    ax = abs(x)
    return 2 - 4 * ax if ax <= 0.4 else 0.4 if ax <= 1 else 0.0


def test_step_is_a_unit_step_forward_and_long_tailed_backward():
    xs = [-1.5, -0.7, -0.2, -0.0, 0.1, 0.3, 0.5, 2.0]
    x = torch.tensor(xs, requires_grad=True)
    y = step_ste(x)
    assert y.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    upstream = torch.arange(1.0, len(xs) + 1)
    y.backward(upstream)
    assert torch.allclose(x.grad, upstream * torch.tensor([long_tail(v) for v in xs]))


def supernet(threshold: float, **kw) -> SupernetMask:
    return SupernetMask(DIM, kw.pop("candidates", [4, 8]), threshold, kw.pop("reg_weight", 0.1), kw.pop("per_example", False))


def test_row_mask_gradients_match_a_hand_computation():
    rows = torch.tensor([[0.3, -0.2, 0.1, 0.0, 0.2, 0.1, -0.1, 0.1], [0.05, 0.05, -0.05, 0.0, 0.0, 0.1, 0.0, 0.0]])
    rows.requires_grad_(True)
    combiner = supernet(0.8).eval()  # eval: the width mask is the full dim
    out = combiner(rows, torch.tensor([1, 1]))  # one id per bag
    norms = rows.detach().abs().sum(1)  # 1.1 (kept), 0.25 (pruned)
    assert out[0].tolist() == pytest.approx(rows[0].tolist()) and out[1].abs().sum() == 0
    g = torch.randn(2, DIM, generator=torch.Generator().manual_seed(0))
    out.backward(g)
    x = (norms - 0.8).tolist()
    inner = (g * rows.detach()).sum(1)  # ∂L/∂mask per row
    d_mask = torch.tensor([long_tail(v) for v in x]) * inner
    keep = torch.tensor([1.0, 0.0])
    assert combiner.threshold.grad.item() == pytest.approx(-d_mask.sum().item(), rel=1e-5)
    expected_rows = keep[:, None] * g + d_mask[:, None] * rows.detach().sign()
    assert torch.allclose(rows.grad, expected_rows, atol=1e-6)


def test_regulariser_is_lambda_exp_minus_threshold_with_its_gradient():
    combiner = supernet(0.3, reg_weight=0.01)
    reg = combiner.regularization()
    assert reg.item() == pytest.approx(0.01 * np.exp(-0.3))
    reg.backward()
    assert combiner.threshold.grad.item() == pytest.approx(-0.01 * np.exp(-0.3))


def test_pruned_ids_of_a_multi_hot_bag_contribute_nothing():
    rows = torch.tensor([[1.0] * DIM, [0.01] * DIM, [0.5] * DIM])  # norms 8, 0.08, 4
    out = supernet(1.0).eval()(rows, torch.tensor([2, 1]))
    assert torch.equal(out, torch.stack([rows[0], rows[2]]))


def widths(out: torch.Tensor) -> set[int]:
    """Width of each non-zero output row: the index after its last non-zero dim."""
    last = ((out != 0) * torch.arange(1, out.shape[1] + 1)).amax(dim=1)  # (B,)
    return set(last[last > 0].tolist())


@pytest.mark.parametrize("per_example", [False, True])
def test_training_samples_every_candidate_width_and_eval_uses_the_fixed_width(per_example):
    torch.manual_seed(0)
    candidates = [4, 8, 12, 16]
    combiner = SupernetMask(16, candidates, -1.0, 0.0, per_example)  # threshold < 0: all kept
    rows = torch.randn(64, 16).abs() + 0.1
    lengths = torch.ones(64, dtype=torch.int64)
    seen: set[int] = set()
    for _ in range(40):
        batch_widths = widths(combiner(rows, lengths))
        assert per_example or len(batch_widths) == 1  # one width per field per batch
        seen |= batch_widths
    assert seen == set(candidates)
    combiner.eval()
    assert torch.equal(combiner(rows, lengths), rows)  # default: the full dim
    combiner.eval_dim = 8
    assert torch.equal(combiner(rows, lengths), torch.nn.functional.pad(rows[:, :8], (0, 8)))


def test_dim_candidates_default_to_multiples_of_four_and_are_validated():
    assert default_dim_candidates(16) == [4, 8, 12, 16]
    with pytest.raises(ValueError, match="dim_candidates"):
        parse_embedding_config({"method": "optembed", "dim_candidates": [4, 6]})
    spec = parse_embedding_config({"method": "optembed", "dim_candidates": [8, 4, 32]}).default
    with pytest.raises(ValueError, match="exceed the model dim 16"):
        spec.candidates(16)
    with pytest.raises(ValueError, match="embedding.artifacts"):
        parse_embedding_config({"method": "optembed", "stage": "retrain"})
    with pytest.raises(ValueError, match="embedding.parents"):
        parse_embedding_config({"method": "optembed", "population": 4, "parents": 5})


def test_search_finds_a_planted_optimum():
    choices = [4, 8, 12, 16, 20, 24, 28, 32]
    target = np.array([12, 32, 4, 20, 8, 28, 16, 24])
    calls = []

    def fitness(candidate):
        calls.append(candidate)
        return -float(np.abs(np.array(candidate) - target).sum())

    kw = dict(population=24, iterations=40, parents=8, mutation_prob=0.15, crossover_prob=0.5, seed=3)
    result = evolutionary_search(fitness, len(target), choices, **kw)
    assert list(result.best) == target.tolist() and result.fitness == 0
    best = [h["best_fitness"] for h in result.history]
    assert len(best) == 40 and best == sorted(best)  # elitism: never worse
    assert len(calls) == len(set(calls)) == result.evaluated  # each candidate scored once
    assert evolutionary_search(fitness, len(target), choices, **kw).best == result.best  # seeded


FEATURES = [FeatureInfo("A", 10), FeatureInfo("B", 7), FeatureInfo("C", 5)]
KEPT = {
    "A": torch.tensor([1, 0, 1, 1, 0, 0, 1, 0, 1, 1], dtype=torch.bool),
    "B": torch.tensor([0, 1, 1, 0, 1, 0, 1], dtype=torch.bool),
    "C": torch.zeros(5, dtype=torch.bool),  # every row pruned: the table is the OOV row alone
}
DIMS = {"A": 4, "B": 8, "C": 4}


@pytest.fixture
def artifacts(tmp_path):
    save_masks(tmp_path, KEPT, {name: 0.1 for name in KEPT})
    save_dims(tmp_path, DIMS)
    return tmp_path


def network(kind: str, artifacts) -> dict:
    """The spec of one OptEmbed network; only retrain and compact read the artifacts."""
    if kind == "supernet":
        return {"method": "optembed"}
    return {"method": "optembed", "network": kind, "artifacts": str(artifacts)}


def test_remap_sends_kept_ids_to_their_rank_and_pruned_ids_to_the_oov_row():
    assert compact_remap(KEPT["A"]).tolist() == [0, 6, 1, 2, 6, 6, 3, 6, 4, 5]
    weights = torch.arange(70.0).view(10, 7)
    compact = compact_weights(weights, KEPT["A"], 4)
    assert compact.shape == (7, 4) and compact[-1].abs().sum() == 0
    assert torch.equal(compact[compact_remap(KEPT["A"])][KEPT["A"]], weights[KEPT["A"], :4])


def test_drop_rows_removes_pruned_ids_from_their_bags():
    values = torch.tensor([0, 1, 2, 4, 5, 6])
    lengths = torch.tensor([2, 0, 3, 1], dtype=torch.int32)
    [(ids, bags)] = DropRows(KEPT["A"])(values, lengths)
    assert ids.tolist() == [0, 2, 6] and bags.tolist() == [1, 0, 1, 1] and bags.dtype == torch.int32


def kjt(seed: int = 0) -> KeyedJaggedTensor:
    """Multi-hot bags over every id, pruned ones included, and an empty bag."""
    gen = torch.Generator().manual_seed(seed)
    values, lengths = [], []
    for info in FEATURES:
        bag = torch.tensor([3, 0, 2, 1])
        lengths.append(bag)
        values.append(torch.randint(0, info.num_embeddings, (int(bag.sum()),), generator=gen))
    return KeyedJaggedTensor(keys=[f.name for f in FEATURES], values=torch.cat(values), lengths=torch.cat(lengths))


def dlrm(embedding) -> DLRM:
    torch.manual_seed(0)
    return DLRM(embedding, num_dense=3, config=DLRMConfig(DIM, [8], [8, 1]))


def test_compacted_model_predicts_exactly_as_the_retrained_one(artifacts):
    optimizer = TableOptimizerConfig()
    retrained = dlrm(make_embedding(network("retrain", artifacts), FEATURES, DIM, optimizer, seed=1))
    compact = dlrm(make_embedding(network("compact", artifacts), FEATURES, DIM, optimizer, seed=2))
    copy_compacted(retrained.embedding.lookup.table_weights(), compact.embedding.lookup.table_weights(), KEPT, DIMS)
    dense = torch.rand(4, 3)
    with torch.no_grad():
        expected, got = retrained(dense, kjt()), compact(dense, kjt())
    assert torch.allclose(got, expected, atol=1e-6)
    # the retrained network itself: pruned rows and dims ≥ d_f contribute nothing
    pooled = retrained.embedding(kjt()).values().view(4, 3, DIM)
    assert pooled[:, 0, 4:].abs().sum() == 0 and pooled[:, 2].abs().sum() == 0


@pytest.mark.parametrize("kind", ["supernet", "retrain", "compact"])
def test_accounting_equals_the_real_parameters(kind, artifacts):
    spec = parse_embedding_config(network(kind, artifacts))
    optimizer = TableOptimizerConfig(kind=TableOptimizer.rowwise_adagrad)
    embedding = make_embedding(spec, FEATURES, DIM, optimizer)
    real = sum(w.numel() for w in embedding.lookup.table_weights().values())
    combiner = sum(p.numel() for p in embedding.parameters()) - sum(p.numel() for p in embedding.lookup.parameters())
    memory = embedding.memory()
    assert memory.parameters == real
    assert memory.combiner_parameters == combiner == (3 if kind == "supernet" else 0)  # one threshold per field
    assert plan_bytes(spec, FEATURES, DIM, TableOptimizer.rowwise_adagrad) == memory.total_bytes
    if kind == "compact":
        assert [(t.num_embeddings, t.dim) for t in embedding.plan.tables] == [(7, 4), (5, 8), (1, 4)]


def test_scripted_transforms_and_combiners_equal_eager():
    values, lengths = torch.tensor([0, 3, 4, 9, 6]), torch.tensor([2, 0, 3])
    for transform in (Identity(per_id=True), DropRows(KEPT["A"])):
        scripted = torch.jit.script(transform)
        for (a, b), (c, d) in zip(scripted(values, lengths), transform(values, lengths)):
            assert torch.equal(a, c) and torch.equal(b, d)
    rows = torch.randn(5, DIM)
    combiner = supernet(1.0, per_example=True).eval()
    combiner.eval_dim = 4
    scripted = torch.jit.script(combiner)
    assert torch.equal(scripted(rows, lengths), combiner(rows, lengths))
    assert widths(scripted(rows, lengths)) == {4}
    outputs = []
    for module in (scripted.train(), combiner.train()):
        torch.manual_seed(5)  # the same sampled widths
        outputs.append(module(rows, lengths))
    assert torch.equal(*outputs)
    pooled = torch.randn(3, DIM)
    assert torch.equal(torch.jit.script(TruncatePad(4, DIM))(pooled, lengths), TruncatePad(4, DIM)(pooled, lengths))
