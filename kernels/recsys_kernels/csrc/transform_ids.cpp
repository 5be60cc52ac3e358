// recsys::transform_ids — the id transforms of every feature of an embedding plan in one call.
//
// Input: a KeyedJaggedTensor's values (N,) and lengths (F*B,), features major, and one row of
// slot_params per lookup slot: [kind, feature, per_id, a, b], and optionally each slot's table
// rows (slot_rows), which every emitted row is checked against. Output: the slot KJT (slots
// major) that FBGEMM's table-batched lookup takes — values, offsets — plus the bag count of
// each slot and the bag (0..B-1) every emitted id came from. The arithmetic of each kind is
// exactly that of the per-feature torch modules in recsys/embeddings/transforms.py (the hash
// is MurmurHash3's fmix32 on the id's two 32-bit halves, as recsys/embeddings/hash_functions.py).

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstdint>
#include <limits>
#include <optional>
#include <utility>
#include <vector>

namespace recsys {
namespace {

// Keep in sync with the kind codes of recsys_kernels/__init__.py (SlotKind).
enum Kind : int64_t {
  kIdentity = 0,  // row = id
  kModulo = 1,    // row = id % a
  kHash = 2,      // row = hash32(id, key=a) % b
  kDigit = 3,     // row = (id / a) % b, or id / a when b == 0 (a mixed-radix digit)
  kRemap = 4,     // row = aux[a + id], id < b
  kBlock = 5,     // ids in [a, b) only, row = id - a (a frequency block)
  kKeep = 6,      // ids with aux[a + id] != 0 only, row = id (id < b)
};

inline uint32_t fmix32(uint32_t h) {
  h ^= h >> 16;
  h *= 0x85EBCA6Bu;
  h ^= h >> 13;
  h *= 0xC2B2AE35u;
  return h ^ (h >> 16);
}

inline int64_t hash32(int64_t id, int64_t key) {
  const uint32_t k = static_cast<uint32_t>(key);
  const uint32_t low = static_cast<uint32_t>(id);
  const uint32_t high = static_cast<uint32_t>(static_cast<uint64_t>(id) >> 32);
  const uint32_t h = fmix32(low ^ k);
  return static_cast<int64_t>(fmix32(h ^ (high + k)));
}

inline bool is_filter(int64_t kind) { return kind == kBlock || kind == kKeep; }

inline bool is_pooled_block(const int64_t* p) { return p[0] == kBlock && !p[2]; }

// Whether block slot p's rank range [a, b) holds `id`.
inline bool in_block(const int64_t* p, int64_t id) { return id >= p[3] && id < p[4]; }

// The units the passes run: a run of consecutive pooled block slots of one feature (a
// mixed-dimension feature's frequency blocks), whose ids are read once for all of them, or
// one slot of any other kind.
std::vector<std::pair<int64_t, int64_t>> slot_units(const int64_t* params, int64_t num_slots) {
  std::vector<std::pair<int64_t, int64_t>> units;
  for (int64_t s = 0; s < num_slots;) {
    int64_t e = s + 1;
    while (is_pooled_block(params + 5 * s) && e < num_slots && is_pooled_block(params + 5 * e) &&
           params[5 * e + 1] == params[5 * s + 1]) {
      ++e;
    }
    units.emplace_back(s, e);
    s = e;
  }
  return units;
}

// Whether slot s keeps `id`, and its row.
inline bool apply(const int64_t* p, const int64_t* aux, int64_t id, int64_t* row) {
  const int64_t a = p[3], b = p[4];
  switch (p[0]) {
    case kIdentity: *row = id; return true;
    case kModulo: *row = id % a; return true;
    case kHash: *row = hash32(id, a) % b; return true;
    case kDigit: *row = b ? (id / a) % b : id / a; return true;
    case kRemap: *row = aux[a + id]; return true;
    case kBlock: *row = id - a; return in_block(p, id);
    case kKeep: *row = id; return aux[a + id] != 0;
  }
  return false;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> transform_ids_cpu(
    const at::Tensor& values_in, const at::Tensor& lengths_in, int64_t batch, const at::Tensor& slot_params_in,
    const at::Tensor& aux_in, const std::optional<at::Tensor>& slot_rows_in) {
  TORCH_CHECK(values_in.dim() == 1, "transform_ids: values must be 1-D, got ", values_in.sizes());
  TORCH_CHECK(slot_params_in.dim() == 2 && slot_params_in.size(1) == 5,
              "transform_ids: slot_params must be (S, 5), got ", slot_params_in.sizes());
  TORCH_CHECK(batch > 0 && lengths_in.numel() % batch == 0, "transform_ids: lengths (", lengths_in.numel(),
              ") is not a multiple of the batch size ", batch);
  // No dtype conversions: at::Tensor::to() splits a 50K-element copy over the intra-op thread
  // pool, which cost 20x the whole op on a busy 2-core machine. Lengths are read as they come.
  TORCH_CHECK(values_in.scalar_type() == at::kLong, "transform_ids: values must be int64, got ", values_in.scalar_type());
  TORCH_CHECK(slot_params_in.scalar_type() == at::kLong && aux_in.scalar_type() == at::kLong,
              "transform_ids: slot_params and aux must be int64");
  const at::Tensor values = values_in.contiguous();
  const at::Tensor lengths = lengths_in.contiguous();
  const at::Tensor params_t = slot_params_in.contiguous();
  const at::Tensor aux_t = aux_in.contiguous();
  const int64_t num_features = lengths.numel() / batch;
  const int64_t num_slots = params_t.size(0);
  const int64_t* ids = values.data_ptr<int64_t>();
  const int64_t* params = params_t.data_ptr<int64_t>();
  const int64_t* aux = aux_t.data_ptr<int64_t>();
  const int64_t aux_size = aux_t.numel();
  // each slot's table rows, when given: every emitted row is checked against them
  at::Tensor limits_t;
  if (slot_rows_in.has_value()) {
    limits_t = slot_rows_in->contiguous();
    TORCH_CHECK(limits_t.scalar_type() == at::kLong && limits_t.dim() == 1 && limits_t.numel() == num_slots,
                "transform_ids: slot_rows must be int64 of shape (", num_slots, "), got ", limits_t.scalar_type(), " ",
                limits_t.sizes());
  }
  const int64_t* limits = limits_t.defined() ? limits_t.data_ptr<int64_t>() : nullptr;

  // where each bag starts in `values`: (F*B + 1,)
  std::vector<int64_t> bag_start(num_features * batch + 1, 0);
  AT_DISPATCH_INDEX_TYPES(lengths.scalar_type(), "transform_ids_lengths", [&] {
    const index_t* len = lengths.data_ptr<index_t>();
    for (int64_t i = 0; i < num_features * batch; ++i) {
      TORCH_CHECK(len[i] >= 0, "transform_ids: negative length ", len[i], " at feature #", i / batch, ", bag ", i % batch);
      bag_start[i + 1] = bag_start[i] + len[i];
    }
  });
  TORCH_CHECK(bag_start.back() == values.numel(), "transform_ids: lengths sum to ", bag_start.back(), " but there are ",
              values.numel(), " values");
  for (int64_t i = 0; i < values.numel(); ++i) {
    TORCH_CHECK(ids[i] >= 0, "transform_ids: negative id ", ids[i], " at position ", i,
                " (ids are frequency ranks, >= 0)");
  }
  for (int64_t s = 0; s < num_slots; ++s) {
    const int64_t* p = params + 5 * s;
    TORCH_CHECK(p[1] >= 0 && p[1] < num_features, "transform_ids: slot ", s, " reads feature #", p[1], " of ", num_features);
    TORCH_CHECK(p[0] >= kIdentity && p[0] <= kKeep, "transform_ids: slot ", s, " has unknown kind ", p[0]);
    TORCH_CHECK(!(p[0] == kRemap || p[0] == kKeep) || (p[3] >= 0 && p[3] + p[4] <= aux_size), "transform_ids: slot ", s,
                " reads aux beyond its end");
    TORCH_CHECK(!(p[0] == kModulo || p[0] == kHash || p[0] == kDigit) || (p[0] == kHash ? p[4] : p[3]) > 0,
                "transform_ids: slot ", s, " has a non-positive modulus or divisor");
  }

  // Both passes run unit by unit (slot_units), the units split over OpenMP threads
  // (at::parallel_for; the kernels are built with -fopenmp): every unit reads its feature's ids
  // and writes its slots' own ranges of the output. A mixed-dimension feature's ~4 block slots
  // are one unit: its ids are read once, not once a block.
  const std::vector<std::pair<int64_t, int64_t>> units = slot_units(params, num_slots);
  const int64_t num_units = static_cast<int64_t>(units.size());
  // pass 1: ids and bags each slot emits
  std::vector<int64_t> slot_ids(num_slots), slot_bags(num_slots);
  at::parallel_for(0, num_units, 1, [&](int64_t u0, int64_t u1) {
    for (int64_t u = u0; u < u1; ++u) {
      const auto [s, e] = units[u];
      const int64_t* p = params + 5 * s;
      const int64_t f = p[1];
      const int64_t first = bag_start[f * batch], last = bag_start[(f + 1) * batch];
      if (e - s > 1) {  // blocks: count each id into every block that holds it
        for (int64_t k = s; k < e; ++k) slot_ids[k] = 0, slot_bags[k] = batch;
        for (int64_t i = first; i < last; ++i) {
          for (int64_t k = s; k < e; ++k) slot_ids[k] += in_block(params + 5 * k, ids[i]);
        }
        continue;
      }
      if (p[0] == kRemap || p[0] == kKeep) {
        for (int64_t i = first; i < last; ++i) {
          TORCH_CHECK(ids[i] < p[4], "transform_ids: id ", ids[i], " of feature #", f, " (slot ", s,
                      ") is beyond the ", p[4], " rows of its map");
        }
      }
      int64_t n = last - first;
      if (is_filter(p[0])) {
        n = 0;
        int64_t row;
        for (int64_t i = first; i < last; ++i) n += apply(p, aux, ids[i], &row);
      }
      slot_ids[s] = n;
      slot_bags[s] = p[2] ? n : batch;
    }
  });
  std::vector<int64_t> id_base(num_slots + 1, 0), bag_base(num_slots + 1, 0);
  for (int64_t s = 0; s < num_slots; ++s) {
    id_base[s + 1] = id_base[s] + slot_ids[s];
    bag_base[s + 1] = bag_base[s] + slot_bags[s];
  }

  at::Tensor out_values = at::empty({id_base.back()}, values.options());
  at::Tensor out_offsets = at::empty({bag_base.back() + 1}, values.options());
  at::Tensor out_bags_per_slot = at::empty({num_slots}, values.options());
  at::Tensor out_id_bags = at::empty({id_base.back()}, values.options());
  int64_t* rows = out_values.data_ptr<int64_t>();
  int64_t* offsets = out_offsets.data_ptr<int64_t>();
  int64_t* id_bags = out_id_bags.data_ptr<int64_t>();
  std::copy(slot_bags.begin(), slot_bags.end(), out_bags_per_slot.data_ptr<int64_t>());
  offsets[bag_base.back()] = id_base.back();

  // pass 2: fill; every row checked against its slot's table rows (compared unsigned: a negative
  // row, from a corrupt map, is out of range too)
  auto limit_of = [&](int64_t s) {
    return limits ? static_cast<uint64_t>(limits[s]) : std::numeric_limits<uint64_t>::max();
  };
  auto out_of_range = [&](int64_t id, int64_t f, int64_t b, int64_t row, int64_t s) {
    TORCH_CHECK(false, "transform_ids: id ", id, " of feature #", f, " (bag ", b, ") maps to row ", row, " of slot ", s,
                ", beyond its table's ", limits ? limits[s] : 0, " rows");
  };
  at::parallel_for(0, num_units, 1, [&](int64_t u0, int64_t u1) {
    for (int64_t u = u0; u < u1; ++u) {
      const auto [s, e] = units[u];
      const int64_t* p = params + 5 * s;
      const int64_t f = p[1];
      if (e - s > 1) {  // blocks: each id into every block that holds it, bag by bag
        std::vector<int64_t> at_id(id_base.begin() + s, id_base.begin() + e);
        for (int64_t b = 0; b < batch; ++b) {
          for (int64_t k = s; k < e; ++k) offsets[bag_base[k] + b] = at_id[k - s];
          for (int64_t i = bag_start[f * batch + b]; i < bag_start[f * batch + b + 1]; ++i) {
            for (int64_t k = s; k < e; ++k) {
              if (!in_block(params + 5 * k, ids[i])) continue;
              const int64_t row = ids[i] - params[5 * k + 3];
              if (static_cast<uint64_t>(row) >= limit_of(k)) out_of_range(ids[i], f, b, row, k);
              rows[at_id[k - s]] = row;
              id_bags[at_id[k - s]] = b;
              ++at_id[k - s];
            }
          }
        }
        continue;
      }
      const uint64_t limit = limit_of(s);
      int64_t at_id = id_base[s];
      int64_t* off = offsets + bag_base[s];
      for (int64_t b = 0; b < batch; ++b) {
        if (!p[2]) off[b] = at_id;
        for (int64_t i = bag_start[f * batch + b]; i < bag_start[f * batch + b + 1]; ++i) {
          int64_t row;
          if (!apply(p, aux, ids[i], &row)) continue;
          if (static_cast<uint64_t>(row) >= limit) out_of_range(ids[i], f, b, row, s);
          if (p[2]) off[at_id - id_base[s]] = at_id;
          rows[at_id] = row;
          id_bags[at_id] = b;
          ++at_id;
        }
      }
    }
  });
  return {out_values, out_offsets, out_bags_per_slot, out_id_bags};
}

}  // namespace

TORCH_LIBRARY_IMPL(recsys, CPU, m) { m.impl("transform_ids", &transform_ids_cpu); }

}  // namespace recsys
