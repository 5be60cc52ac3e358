// Row loops whose tasks each sum their own share of a parameter's gradient (the backward of
// recsys's CPU kernels): the rows split into at most one task per thread, each at least `grain`
// rows, so that a task's partial sum is worth its buffer; the caller adds the partial sums up.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>

namespace recsys {

struct RowTasks {
  int64_t rows, count, per_task;

  RowTasks(int64_t rows, int64_t grain)
      : rows(rows), count(std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), (rows + grain - 1) / grain))),
        per_task((rows + count - 1) / count) {}

  // fn(task, begin, end) for every task, the tasks in parallel.
  template <typename Fn>
  void run(const Fn& fn) const {
    at::parallel_for(0, count, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) fn(t, std::min(rows, t * per_task), std::min(rows, (t + 1) * per_task));
    });
  }
};

}  // namespace recsys
