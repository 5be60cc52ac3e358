// recsys_serve: load a recsys TorchScript artifact (model.ts) in C++, score raw Criteo rows,
// print one click probability per row.
//
// The model's table-batched lookup is FBGEMM's inference operator, which lives in the
// fbgemm_gpu operator libraries: they are loaded (dlopen, global symbols) before the model,
// as `import fbgemm_gpu` does in Python. Usage:
//
//   recsys_serve model.ts rows.txt fbgemm_gpu_config.so ... fbgemm_gpu_py.so
//
// rows.txt: a header line "B D S" (rows, dense width, sparse width), then B lines of D raw
// dense integers (negative = missing) followed by S raw categorical ids (-1 = missing).

#include <dlfcn.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>

#include <torch/script.h>

namespace {

bool read_rows(const std::string& path, torch::Tensor& dense, torch::Tensor& sparse) {
  std::ifstream in(path);
  int64_t rows = 0, d = 0, s = 0;
  if (!(in >> rows >> d >> s) || rows < 0 || d <= 0 || s <= 0) {
    std::cerr << path << ":1: expected a header \"B D S\" with B >= 0, D > 0, S > 0\n";
    return false;
  }
  dense = torch::empty({rows, d}, torch::kInt64);
  sparse = torch::empty({rows, s}, torch::kInt64);
  auto dv = dense.accessor<int64_t, 2>();
  auto sv = sparse.accessor<int64_t, 2>();
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < d + s; ++j) {
      int64_t value = 0;
      if (!(in >> value)) {
        std::cerr << path << ":" << r + 2 << ": expected " << d + s << " integers\n";
        return false;
      }
      if (j < d) dv[r][j] = value; else sv[r][j - d] = value;
    }
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::cerr << "usage: " << argv[0] << " model.ts rows.txt fbgemm_gpu_lib.so [more .so ...]\n";
    return 2;
  }
  for (int i = 3; i < argc; ++i) {
    if (dlopen(argv[i], RTLD_NOW | RTLD_GLOBAL) == nullptr) {
      std::cerr << "cannot load operator library " << argv[i] << ": " << dlerror() << "\n";
      return 2;
    }
  }
  torch::Tensor dense, sparse;
  if (!read_rows(argv[2], dense, sparse)) return 2;
  try {
    torch::jit::Module model = torch::jit::load(argv[1]);
    model.eval();
    torch::NoGradGuard no_grad;
    torch::Tensor probabilities = model.forward({dense, sparse}).toTensor().contiguous();
    auto p = probabilities.accessor<float, 1>();
    for (int64_t r = 0; r < p.size(0); ++r) std::printf("%.9g\n", p[r]);
  } catch (const c10::Error& e) {
    std::cerr << "recsys_serve: " << e.what_without_backtrace() << "\n";
    return 1;
  }
  return 0;
}
