// recsys::dot_interaction — DLRM's pairwise dot interaction, forward and backward, one row at a
// time.
//
// A row's V vectors (the dense vector, the F sparse ones, optionally a learned constant) are
// v_0 .. v_{V-1}, each of D floats. The output row is the dense vector followed by every
// v_i . v_j for i < j, in torch.triu_indices(V, V, 1) order:
//   out[b] = [dense[b], v_0.v_1, v_0.v_2, ..., v_0.v_{V-1}, v_1.v_2, ..., v_{V-2}.v_{V-1}]
// In torch that is a concatenation, a batched matmul of (V, D) x (D, V) per row, and a gather
// of the upper triangle (backward: a zero-filled scatter, two batched matmuls and a split):
// about 4 ms forward and backward for a Kaggle batch (B 2048, V 28, D 16) on one core, most of
// it in the gather and its scatter, where the arithmetic is 25 MFLOP.
//
// Here each row's vectors are copied once into a (D, Vp) transposed tile (Vp = V rounded up to
// whole vectors of 8 floats, the padding zero), so that every product runs over 8 values of j at
// a time whatever D is:
//   forward   gram[i, :]  = Σ_d v_i[d] * tile[d, :]          (then the j > i part is written out)
//   backward  gtile[d, :] = Σ_j tile[d, j] * G[j, :]          (G: the symmetric pair gradients)
// and gtile's columns are each vector's gradient. The constant vector's gradient is summed over
// rows, per task, then over tasks.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstdint>
#include <cstring>
#include <optional>
#include <vector>

#include "cpu_vec.h"
#include "row_tasks.h"

namespace recsys {
namespace {

constexpr int64_t kGrain = 256;  // rows per task
constexpr int64_t kMaxBlocks = 8;  // V <= 64 vectors of kLanes

struct Shape {
  int64_t rows, dim, features, vectors, pairs, padded;
  const float* dense;     // (B, D)
  const float* sparse;    // (B, F, D)
  const float* constant;  // (D,) or nullptr
};

Shape check_inputs(const at::Tensor& dense, const at::Tensor& sparse, const std::optional<at::Tensor>& constant) {
  TORCH_CHECK(dense.dim() == 2 && dense.scalar_type() == at::kFloat,
              "dot_interaction: dense must be a (B, D) float32 tensor, got ", dense.sizes(), " ", dense.scalar_type());
  TORCH_CHECK(sparse.dim() == 3 && sparse.scalar_type() == at::kFloat && sparse.size(0) == dense.size(0) &&
                  sparse.size(2) == dense.size(1),
              "dot_interaction: sparse must be a (B, F, D) float32 tensor with dense's B = ", dense.size(0), " and D = ",
              dense.size(1), ", got ", sparse.sizes(), " ", sparse.scalar_type());
  Shape s{dense.size(0), dense.size(1), sparse.size(1)};
  s.constant = nullptr;
  if (constant.has_value()) {
    TORCH_CHECK(constant->scalar_type() == at::kFloat && constant->numel() == s.dim,
                "dot_interaction: constant must hold D = ", s.dim, " float32 values, got ", constant->sizes(), " ",
                constant->scalar_type());
    s.constant = constant->data_ptr<float>();
  }
  s.vectors = 1 + s.features + (s.constant ? 1 : 0);
  TORCH_CHECK(s.vectors <= kMaxBlocks * kLanes, "dot_interaction: ", s.vectors, " vectors per row; the kernel takes at most ",
              kMaxBlocks * kLanes, " (use the torch form for more)");
  s.pairs = s.vectors * (s.vectors - 1) / 2;
  s.padded = (s.vectors + kLanes - 1) / kLanes * kLanes;
  s.dense = dense.data_ptr<float>();
  s.sparse = sparse.data_ptr<float>();
  return s;
}

// Row b's vectors into the (D, Vp) tile, column j = vector j (padding columns stay 0).
inline void fill_tile(const Shape& s, int64_t b, float* __restrict tile) {
  const int64_t D = s.dim, Vp = s.padded;
  const float* dense = s.dense + b * D;
  const float* sparse = s.sparse + b * s.features * D;
  for (int64_t d = 0; d < D; ++d) tile[d * Vp] = dense[d];
  for (int64_t f = 0; f < s.features; ++f) {
    for (int64_t d = 0; d < D; ++d) tile[d * Vp + 1 + f] = sparse[f * D + d];
  }
  for (int64_t d = 0; s.constant && d < D; ++d) tile[d * Vp + s.vectors - 1] = s.constant[d];
}

// gram[i, j] for the j of kBlocks vectors of 8 starting at the tile's column `first`
template <int64_t kBlocks>
inline __attribute__((always_inline)) void gram_row_blocks(const float* __restrict tile, int64_t dim, int64_t padded,
                                                           int64_t i, int64_t first, float* __restrict gram_row) {
  Vec acc[kBlocks] = {};
  for (int64_t d = 0; d < dim; ++d) {
    const float* t = tile + d * padded;
    const Vec vi = broadcast(t[i]);
    for (int64_t k = 0; k < kBlocks; ++k) acc[k] += vi * load(t + first + k * kLanes);
  }
  for (int64_t k = 0; k < kBlocks; ++k) store(gram_row + first + k * kLanes, acc[k]);
}

template <int64_t kBlocks>
inline __attribute__((always_inline)) void forward_rows_blocks(const Shape& s, float* __restrict out, int64_t begin,
                                                               int64_t end) {
  const int64_t D = s.dim, V = s.vectors, Vp = s.padded, width = D + s.pairs;
  std::vector<float> tile(D * Vp, 0.f);
  float gram_row[kBlocks * kLanes];
  for (int64_t b = begin; b < end; ++b) {
    fill_tile(s, b, tile.data());
    float* o = out + b * width;
    std::memcpy(o, s.dense + b * D, D * sizeof(float));
    o += D;
    for (int64_t i = 0; i + 1 < V; ++i) {
      // only the blocks that hold some j > i
      const int64_t first_block = (i + 1) / kLanes, first = first_block * kLanes;
      switch (kBlocks - first_block) {
        case 1: gram_row_blocks<1>(tile.data(), D, Vp, i, first, gram_row); break;
        case 2: gram_row_blocks<2>(tile.data(), D, Vp, i, first, gram_row); break;
        case 3: gram_row_blocks<3>(tile.data(), D, Vp, i, first, gram_row); break;
        case 4: gram_row_blocks<4>(tile.data(), D, Vp, i, first, gram_row); break;
        case 5: gram_row_blocks<5>(tile.data(), D, Vp, i, first, gram_row); break;
        case 6: gram_row_blocks<6>(tile.data(), D, Vp, i, first, gram_row); break;
        case 7: gram_row_blocks<7>(tile.data(), D, Vp, i, first, gram_row); break;
        default: gram_row_blocks<kBlocks>(tile.data(), D, Vp, i, first, gram_row); break;
      }
      for (int64_t j = i + 1; j < V; ++j) *o++ = gram_row[j];
    }
  }
}

template <int64_t kBlocks>
inline __attribute__((always_inline)) void backward_rows_blocks(const Shape& s, const float* __restrict grad,
                                                                float* __restrict grad_dense,
                                                                float* __restrict grad_sparse,
                                                                float* __restrict grad_constant, int64_t begin,
                                                                int64_t end) {
  const int64_t D = s.dim, V = s.vectors, Vp = s.padded, F = s.features, width = D + s.pairs;
  std::vector<float> tile(D * Vp, 0.f), pair_grad(V * Vp, 0.f), grad_tile(D * Vp);
  for (int64_t b = begin; b < end; ++b) {
    fill_tile(s, b, tile.data());
    const float* g = grad + b * width;
    const float* gp = g + D;
    for (int64_t i = 0; i + 1 < V; ++i) {  // the symmetric pair gradients, diagonal and padding 0
      for (int64_t j = i + 1; j < V; ++j, ++gp) {
        pair_grad[i * Vp + j] = *gp;
        pair_grad[j * Vp + i] = *gp;
      }
    }
    for (int64_t d = 0; d < D; ++d) {
      const float* t = tile.data() + d * Vp;
      Vec acc[kBlocks] = {};
      for (int64_t j = 0; j < V; ++j) {
        const Vec vj = broadcast(t[j]);
        const float* row = pair_grad.data() + j * Vp;
        for (int64_t k = 0; k < kBlocks; ++k) acc[k] += vj * load(row + k * kLanes);
      }
      for (int64_t k = 0; k < kBlocks; ++k) store(grad_tile.data() + d * Vp + k * kLanes, acc[k]);
    }
    float* gd = grad_dense + b * D;
    for (int64_t d = 0; d < D; ++d) gd[d] = g[d] + grad_tile[d * Vp];
    float* gs = grad_sparse + b * F * D;
    for (int64_t f = 0; f < F; ++f) {
      for (int64_t d = 0; d < D; ++d) gs[f * D + d] = grad_tile[d * Vp + 1 + f];
    }
    for (int64_t d = 0; grad_constant && d < D; ++d) grad_constant[d] += grad_tile[d * Vp + V - 1];
  }
}

#define RECSYS_DISPATCH_BLOCKS(FN, ...)        \
  switch (s.padded / kLanes) {                 \
    case 1: return FN##_blocks<1>(__VA_ARGS__); \
    case 2: return FN##_blocks<2>(__VA_ARGS__); \
    case 3: return FN##_blocks<3>(__VA_ARGS__); \
    case 4: return FN##_blocks<4>(__VA_ARGS__); \
    case 5: return FN##_blocks<5>(__VA_ARGS__); \
    case 6: return FN##_blocks<6>(__VA_ARGS__); \
    case 7: return FN##_blocks<7>(__VA_ARGS__); \
    default: return FN##_blocks<8>(__VA_ARGS__); \
  }

RECSYS_CPU_CLONES void forward_rows(const Shape& s, float* out, int64_t begin, int64_t end) {
  RECSYS_DISPATCH_BLOCKS(forward_rows, s, out, begin, end)
}

RECSYS_CPU_CLONES void backward_rows(const Shape& s, const float* grad, float* grad_dense, float* grad_sparse,
                                     float* grad_constant, int64_t begin, int64_t end) {
  RECSYS_DISPATCH_BLOCKS(backward_rows, s, grad, grad_dense, grad_sparse, grad_constant, begin, end)
}

at::Tensor dot_interaction_cpu(const at::Tensor& dense_in, const at::Tensor& sparse_in,
                               const std::optional<at::Tensor>& constant_in) {
  const at::Tensor dense = dense_in.contiguous(), sparse = sparse_in.contiguous();
  const std::optional<at::Tensor> constant =
      constant_in.has_value() ? std::optional<at::Tensor>(constant_in->contiguous()) : std::nullopt;
  const Shape s = check_inputs(dense, sparse, constant);
  at::Tensor out = at::empty({s.rows, s.dim + s.pairs}, dense.options());
  float* op = out.data_ptr<float>();
  at::parallel_for(0, s.rows, kGrain, [&](int64_t begin, int64_t end) { forward_rows(s, op, begin, end); });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> dot_interaction_backward_cpu(
    const at::Tensor& grad_in, const at::Tensor& dense_in, const at::Tensor& sparse_in,
    const std::optional<at::Tensor>& constant_in) {
  const at::Tensor dense = dense_in.contiguous(), sparse = sparse_in.contiguous(), grad = grad_in.contiguous();
  const std::optional<at::Tensor> constant =
      constant_in.has_value() ? std::optional<at::Tensor>(constant_in->contiguous()) : std::nullopt;
  const Shape s = check_inputs(dense, sparse, constant);
  TORCH_CHECK(grad.scalar_type() == at::kFloat && grad.sizes() == at::IntArrayRef({s.rows, s.dim + s.pairs}),
              "dot_interaction_backward: grad must be float32 of shape (", s.rows, ", ", s.dim + s.pairs, "), got ",
              grad.sizes(), " ", grad.scalar_type());
  at::Tensor grad_dense = at::empty_like(dense), grad_sparse = at::empty_like(sparse);
  // the constant's gradient: one partial sum per task, added at the end
  const RowTasks tasks(s.rows, kGrain);
  at::Tensor partial = at::zeros({tasks.count, s.constant ? s.dim : 0}, dense.options());
  const float* gp = grad.data_ptr<float>();
  float* gdp = grad_dense.data_ptr<float>();
  float* gsp = grad_sparse.data_ptr<float>();
  float* partial_p = partial.data_ptr<float>();
  tasks.run([&](int64_t t, int64_t begin, int64_t end) {
    backward_rows(s, gp, gdp, gsp, s.constant ? partial_p + t * s.dim : nullptr, begin, end);
  });
  // (0,) when the row has no constant vector
  at::Tensor grad_constant = s.constant ? partial.sum(0).view_as(*constant) : partial.sum(0);
  return {grad_dense, grad_sparse, grad_constant};
}

}  // namespace

TORCH_LIBRARY_IMPL(recsys, CPU, m) {
  m.impl("dot_interaction", &dot_interaction_cpu);
  m.impl("dot_interaction_backward", &dot_interaction_backward_cpu);
}

}  // namespace recsys
