// recsys::grouped_projection — every mixed-dimension feature's combiner in one pass over the
// lookup output, forward and backward.
//
// x (B, C) is FBGEMM's pooled output, one column block per feature. Feature f's output row is
//   out[b, f*D : (f+1)*D] = x[b, heads[f] : heads[f]+D]            (if heads[f] >= 0)
//                         + Σ_w x[b, columns[f, w]] * projection[f, w, :]  (columns[f, w] >= 0)
// i.e. recsys/embeddings/grouped_projection.py's gather + bmm + head add, which in torch is a
// dozen passes over x and its gradient (and a zero-filled scatter for each gather's backward).
// Here each row of x is read once forward and once backward, in row order; the projections
// (F*W*D floats, tens of KB) stay in cache. Rows are split over threads; each thread sums its
// own projection gradient and the partial sums are added at the end.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstdint>
#include <vector>

#include "cpu_vec.h"
#include "row_tasks.h"

namespace recsys {
namespace {

// Rows per task: a Kaggle batch (2048 rows of ~1000 floats) in a few tasks per thread.
constexpr int64_t kGrain = 256;

// The checked inputs, as the row loops read them.
struct Layout {
  int64_t rows, cols, features, width, dim;
  int64_t padded_width;           // width rounded up to kLanes (the transposed projection's rows)
  const int64_t* columns;         // (F, W), -1 only at the tail of a feature's row
  const int64_t* heads;           // (F,), -1: no unprojected block
  std::vector<int64_t> count;     // each feature's narrow columns (its row of `columns` up to the first -1)
  std::vector<int64_t> uncovered; // the columns of x that no feature reads (their gradient is 0)
};

Layout check_inputs(const at::Tensor& x, const at::Tensor& columns, const at::Tensor& heads,
                    const at::Tensor& projection) {
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == at::kFloat,
              "grouped_projection: x must be a 2-d float32 tensor, got ", x.sizes(), " ", x.scalar_type());
  TORCH_CHECK(projection.dim() == 3 && projection.scalar_type() == at::kFloat,
              "grouped_projection: projection must be a (F, W, D) float32 tensor, got ", projection.sizes(), " ",
              projection.scalar_type());
  Layout l{x.size(0), x.size(1), projection.size(0), projection.size(1), projection.size(2)};
  l.padded_width = (l.width + kLanes - 1) / kLanes * kLanes;
  TORCH_CHECK(columns.scalar_type() == at::kLong && columns.sizes() == at::IntArrayRef({l.features, l.width}),
              "grouped_projection: columns must be int64 of shape (F, W) = (", l.features, ", ", l.width, "), got ",
              columns.sizes(), " ", columns.scalar_type());
  TORCH_CHECK(heads.scalar_type() == at::kLong && heads.sizes() == at::IntArrayRef({l.features}),
              "grouped_projection: heads must be int64 of shape (F,) = (", l.features, ",), got ", heads.sizes());
  l.columns = columns.data_ptr<int64_t>();
  l.heads = heads.data_ptr<int64_t>();
  std::vector<char> read(l.cols, 0);
  auto claim = [&](int64_t c, const char* what, int64_t f) {
    TORCH_CHECK(!read[c], "grouped_projection: column ", c, " of x is read twice (again by ", what, " of feature ", f,
                "); every column belongs to one feature position");
    read[c] = 1;
  };
  for (int64_t f = 0; f < l.features; ++f) {
    const int64_t h = l.heads[f];
    TORCH_CHECK(h == -1 || (h >= 0 && h + l.dim <= l.cols), "grouped_projection: heads[", f, "] = ", h, " does not start a block of ",
                l.dim, " columns inside x's ", l.cols, " (-1: no head)");
    for (int64_t d = 0; h >= 0 && d < l.dim; ++d) claim(h + d, "the head", f);
    int64_t n = 0;
    for (int64_t w = 0; w < l.width; ++w) {
      const int64_t c = l.columns[f * l.width + w];
      TORCH_CHECK(c >= -1 && c < l.cols, "grouped_projection: columns[", f, ", ", w, "] = ", c, " is outside x's ",
                  l.cols, " columns (-1 marks padding)");
      if (c < 0) continue;
      TORCH_CHECK(n == w, "grouped_projection: columns[", f, ", ", w, "] = ", c,
                  " follows padding (-1); padding must come last in a feature's row");
      claim(c, "a narrow column", f);
      ++n;
    }
    l.count.push_back(n);
  }
  for (int64_t c = 0; c < l.cols; ++c) {
    if (!read[c]) l.uncovered.push_back(c);
  }
  return l;
}

// Zeros of x are skipped: every id of a mixed-dimension feature lands in one of its blocks, so
// the other blocks' columns of its row are an empty bag's zeros (most rows, under a Zipf skew,
// hit the head block and leave every narrow column 0). A zero adds exactly nothing to the
// output or to the projection's gradient; the gradient of x itself is computed for every column.
//
// The row loops for a model dim of kVecs * 8. Forward: a feature's output row lives in
// registers, kChains independent sums of its narrow columns (one chain of W fused
// multiply-adds would wait on each one's latency). Backward: the x gradient of a feature's
// narrow columns is Σ_d g[d] * proj_t[f, d, :] over the transposed projection (F, D, W
// padded), whole vectors of W at a time; the projection gradient adds x[b, c] * g per column.
template <int64_t kVecs>
inline __attribute__((always_inline)) void forward_rows_vec(const Layout& l, const float* __restrict x,
                                                            const float* __restrict proj, float* __restrict out,
                                                            int64_t begin, int64_t end) {
  constexpr int64_t dim = kVecs * kLanes, kChains = kVecs <= 2 ? 4 : (kVecs <= 4 ? 2 : 1);
  const int64_t cols = l.cols, features = l.features, width = l.width;
  const int64_t* __restrict heads = l.heads;
  const int64_t* __restrict columns = l.columns;
  const int64_t* __restrict count = l.count.data();
  for (int64_t b = begin; b < end; ++b) {
    const float* xr = x + b * cols;
    for (int64_t f = 0; f < features; ++f) {
      Vec acc[kChains][kVecs] = {};
      if (heads[f] >= 0) {
        for (int64_t k = 0; k < kVecs; ++k) acc[0][k] = load(xr + heads[f] + k * kLanes);
      }
      const int64_t* fc = columns + f * width;
      const float* fp = proj + f * width * dim;
      const int64_t n = count[f];
      int64_t w = 0;
      for (; w + kChains <= n; w += kChains) {
        for (int64_t j = 0; j < kChains; ++j) {
          const float xv = xr[fc[w + j]];
          if (xv == 0.f) continue;
          for (int64_t k = 0; k < kVecs; ++k) acc[j][k] += xv * load(fp + (w + j) * dim + k * kLanes);
        }
      }
      for (; w < n; ++w) {
        const float xv = xr[fc[w]];
        if (xv == 0.f) continue;
        for (int64_t k = 0; k < kVecs; ++k) acc[0][k] += xv * load(fp + w * dim + k * kLanes);
      }
      for (int64_t j = 1; j < kChains; ++j) {
        for (int64_t k = 0; k < kVecs; ++k) acc[0][k] += acc[j][k];
      }
      float* o = out + (b * features + f) * dim;
      for (int64_t k = 0; k < kVecs; ++k) store(o + k * kLanes, acc[0][k]);
    }
  }
}

template <int64_t kVecs>
inline __attribute__((always_inline)) void backward_rows_vec(const Layout& l, const float* __restrict grad,
                                                             const float* __restrict x, const float* __restrict proj_t,
                                                             float* __restrict grad_x, float* __restrict grad_proj,
                                                             float* __restrict scratch, int64_t begin, int64_t end) {
  constexpr int64_t dim = kVecs * kLanes;
  const int64_t pw = l.padded_width, cols = l.cols, features = l.features, width = l.width;
  const int64_t* __restrict heads = l.heads;
  const int64_t* __restrict columns = l.columns;
  const int64_t* __restrict count = l.count.data();
  const int64_t* __restrict uncovered = l.uncovered.data();
  const int64_t num_uncovered = static_cast<int64_t>(l.uncovered.size());
  for (int64_t b = begin; b < end; ++b) {
    const float* xr = x + b * cols;
    float* gx = grad_x + b * cols;
    for (int64_t i = 0; i < num_uncovered; ++i) gx[uncovered[i]] = 0.f;
    for (int64_t f = 0; f < features; ++f) {
      const float* g = grad + (b * features + f) * dim;
      Vec gv[kVecs];
      for (int64_t k = 0; k < kVecs; ++k) gv[k] = load(g + k * kLanes);
      if (heads[f] >= 0) {
        for (int64_t k = 0; k < kVecs; ++k) store(gx + heads[f] + k * kLanes, gv[k]);
      }
      const int64_t n = count[f];
      const float* pt = proj_t + f * dim * pw;
      for (int64_t j = 0; j < n; j += kLanes) {
        Vec even = Vec{} + g[0] * load(pt + j), odd = Vec{} + g[1] * load(pt + pw + j);
        for (int64_t d = 2; d < dim; d += 2) {
          even += g[d] * load(pt + d * pw + j);
          odd += g[d + 1] * load(pt + (d + 1) * pw + j);
        }
        store(scratch + j, even + odd);
      }
      const int64_t* fc = columns + f * width;
      float* fgp = grad_proj + f * width * dim;
      for (int64_t w = 0; w < n; ++w) {
        gx[fc[w]] = scratch[w];
        const float xv = xr[fc[w]];
        if (xv == 0.f) continue;
        for (int64_t k = 0; k < kVecs; ++k) store(fgp + w * dim + k * kLanes, load(fgp + w * dim + k * kLanes) + xv * gv[k]);
      }
    }
  }
}

// Any other model dim: the same arithmetic one float at a time.
void forward_rows_scalar(const Layout& l, const float* __restrict x, const float* __restrict proj,
                         float* __restrict out, int64_t begin, int64_t end) {
  for (int64_t b = begin; b < end; ++b) {
    const float* xr = x + b * l.cols;
    for (int64_t f = 0; f < l.features; ++f) {
      float* o = out + (b * l.features + f) * l.dim;
      for (int64_t d = 0; d < l.dim; ++d) o[d] = l.heads[f] >= 0 ? xr[l.heads[f] + d] : 0.f;
      for (int64_t w = 0; w < l.count[f]; ++w) {
        const float v = xr[l.columns[f * l.width + w]];
        if (v == 0.f) continue;
        const float* p = proj + (f * l.width + w) * l.dim;
        for (int64_t d = 0; d < l.dim; ++d) o[d] += v * p[d];
      }
    }
  }
}

void backward_rows_scalar(const Layout& l, const float* __restrict grad, const float* __restrict x,
                          const float* __restrict proj_t, float* __restrict grad_x, float* __restrict grad_proj,
                          float* /*scratch*/, int64_t begin, int64_t end) {
  const int64_t pw = l.padded_width;
  for (int64_t b = begin; b < end; ++b) {
    const float* xr = x + b * l.cols;
    float* gx = grad_x + b * l.cols;
    for (const int64_t c : l.uncovered) gx[c] = 0.f;
    for (int64_t f = 0; f < l.features; ++f) {
      const float* g = grad + (b * l.features + f) * l.dim;
      for (int64_t d = 0; l.heads[f] >= 0 && d < l.dim; ++d) gx[l.heads[f] + d] = g[d];
      for (int64_t w = 0; w < l.count[f]; ++w) {
        const int64_t c = l.columns[f * l.width + w];
        float* gp = grad_proj + (f * l.width + w) * l.dim;
        float dot = 0.f;
        for (int64_t d = 0; d < l.dim; ++d) {
          dot += g[d] * proj_t[(f * l.dim + d) * pw + w];
          gp[d] += xr[c] * g[d];
        }
        gx[c] = dot;
      }
    }
  }
}

#define RECSYS_DISPATCH_DIM(FN, ...)               \
  switch (l.dim) {                                 \
    case 8: return FN##_vec<1>(l, __VA_ARGS__);    \
    case 16: return FN##_vec<2>(l, __VA_ARGS__);   \
    case 32: return FN##_vec<4>(l, __VA_ARGS__);   \
    case 64: return FN##_vec<8>(l, __VA_ARGS__);   \
    case 128: return FN##_vec<16>(l, __VA_ARGS__); \
    default: return FN##_scalar(l, __VA_ARGS__);   \
  }

RECSYS_CPU_CLONES void forward_rows(const Layout& l, const float* x, const float* proj, float* out, int64_t begin,
                                      int64_t end) {
  RECSYS_DISPATCH_DIM(forward_rows, x, proj, out, begin, end)
}

RECSYS_CPU_CLONES void backward_rows(
    const Layout& l, const float* grad, const float* x, const float* proj_t, float* grad_x, float* grad_proj,
    float* scratch, int64_t begin, int64_t end) {
  RECSYS_DISPATCH_DIM(backward_rows, grad, x, proj_t, grad_x, grad_proj, scratch, begin, end)
}

at::Tensor grouped_projection_cpu(const at::Tensor& x_in, const at::Tensor& columns_in, const at::Tensor& heads_in,
                                  const at::Tensor& projection_in) {
  const at::Tensor x = x_in.contiguous(), columns = columns_in.contiguous(), heads = heads_in.contiguous();
  const at::Tensor projection = projection_in.contiguous();
  const Layout l = check_inputs(x, columns, heads, projection);
  at::Tensor out = at::empty({l.rows, l.features * l.dim}, x.options());
  const float* xp = x.data_ptr<float>();
  const float* proj = projection.data_ptr<float>();
  float* op = out.data_ptr<float>();
  at::parallel_for(0, l.rows, kGrain, [&](int64_t begin, int64_t end) { forward_rows(l, xp, proj, op, begin, end); });
  return out;
}

std::tuple<at::Tensor, at::Tensor> grouped_projection_backward_cpu(const at::Tensor& grad_in, const at::Tensor& x_in,
                                                                  const at::Tensor& columns_in,
                                                                  const at::Tensor& heads_in,
                                                                  const at::Tensor& projection_in) {
  const at::Tensor x = x_in.contiguous(), columns = columns_in.contiguous(), heads = heads_in.contiguous();
  const at::Tensor grad = grad_in.contiguous();
  const Layout l = check_inputs(x, columns, heads, projection_in);
  TORCH_CHECK(grad.scalar_type() == at::kFloat && grad.sizes() == at::IntArrayRef({l.rows, l.features * l.dim}),
              "grouped_projection_backward: grad must be float32 of shape (", l.rows, ", ", l.features * l.dim,
              "), got ", grad.sizes());
  // (F, D, W) zero-padded to whole vectors of W
  const at::Tensor proj_t =
      at::constant_pad_nd(projection_in.transpose(1, 2), {0, l.padded_width - l.width}).contiguous();
  at::Tensor grad_x = at::empty_like(x);
  // one projection-gradient buffer per task, and a scratch row of each task's own (rows of one
  // tensor would share cache lines between threads)
  const RowTasks tasks(l.rows, kGrain);
  at::Tensor partial = at::zeros({tasks.count, l.features, l.width, l.dim}, x.options());
  const float* gp = grad.data_ptr<float>();
  const float* xp = x.data_ptr<float>();
  const float* pt = proj_t.data_ptr<float>();
  float* gxp = grad_x.data_ptr<float>();
  float* partial_p = partial.data_ptr<float>();
  const int64_t proj_numel = l.features * l.width * l.dim;
  tasks.run([&](int64_t t, int64_t begin, int64_t end) {
    std::vector<float> scratch(l.padded_width);
    backward_rows(l, gp, xp, pt, gxp, partial_p + t * proj_numel, scratch.data(), begin, end);
  });
  return {grad_x, tasks.count == 1 ? partial[0] : partial.sum(0)};
}

}  // namespace

TORCH_LIBRARY_IMPL(recsys, CPU, m) {
  m.impl("grouped_projection", &grouped_projection_cpu);
  m.impl("grouped_projection_backward", &grouped_projection_backward_cpu);
}

}  // namespace recsys
