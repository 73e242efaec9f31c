// StepTensors::build (see step_tensors.h): host arrays first, checked, then packed into one buffer (256-byte
// aligned pieces) that becomes one device allocation through one asynchronous copy, or stays on the host.
#include "runtime/step_tensors.h"

#include <algorithm>
#include <cstring>
#include <memory>

#include "runtime/error.h"

namespace mlarun {

bool uses_absorbed_path(const ForwardBatch& batch, const BatchSequence& s) {
  return batch.mla_path == MlaPath::Absorbed ||
         (batch.mla_path == MlaPath::Auto && batch.mla_rule.absorbed(s.num_tokens, s.start_pos));
}

int64_t context_parallel_local_len(int64_t len, const ContextParallel& cp) {
  return len > cp.rank ? (len - cp.rank + cp.size - 1) / cp.size : 0;
}

int64_t context_parallel_local_slot(int64_t virtual_slot, int64_t block_size, const ContextParallel& cp) {
  if (virtual_slot < 0) return -1;
  const int64_t group_block = block_size * cp.size, offset = virtual_slot % group_block;
  if (offset % cp.size != cp.rank) return -1;
  return virtual_slot / group_block * block_size + offset / cp.size;
}

namespace {

// Host arrays waiting to be packed: each becomes one typed view of the packed buffer.
class Packer {
 public:
  template <typename T>
  void add(Tensor* out, std::vector<T> values, Shape shape) {
    auto owned = std::make_shared<std::vector<T>>(std::move(values));
    const size_t bytes = owned->size() * sizeof(T);
    pieces_.push_back({out, owned, owned->data(), bytes, std::move(shape), DTypeOf<T>::value, total_});
    total_ += (std::max<size_t>(bytes, 1) + 255) / 256 * 256;
  }

  // Packs into a new buffer, or into `*into` when given: allocated on first use, then reused (same layout).
  void finish(Device device, HostStaging* staging, FixedStepBuffer* into = nullptr) {
    HostStaging local;
    HostStaging& st = staging ? *staging : local;
    std::vector<std::pair<size_t, Shape>> layout;
    for (const Piece& p : pieces_) layout.emplace_back(p.offset, p.shape);
    if (into && into->bytes.defined())
      MLARUN_CHECK(layout == into->layout && into->bytes.device() == device, "step: a fixed layout of ",
                   into->bytes.nbytes(), " bytes for a step of other sizes");
    // Raw storage: one byte per element.
    Tensor buffer = into && into->bytes.defined() ? into->bytes
                                                  : Tensor::empty({int64_t(total_)}, DType::F8_E4M3, device);
    if (into) *into = {buffer, std::move(layout)};
    uint8_t* host = static_cast<uint8_t*>(device == Device::CPU ? buffer.raw() : st.reserve(total_));
    for (const Piece& p : pieces_)
      if (p.bytes) std::memcpy(host + p.offset, p.data, p.bytes);
    if (device != Device::CPU) {
      st.upload(buffer.raw(), total_);
      if (!staging) device_synchronize_if_needed(st);
    }
    for (const Piece& p : pieces_) *p.out = buffer.view_bytes(p.offset, p.shape, p.dtype);
  }

 private:
  // A temporary staging buffer dies at the end of finish(): its copy must be done by then.
  static void device_synchronize_if_needed(HostStaging& st) { st.reserve(0); }

  struct Piece {
    Tensor* out;
    std::shared_ptr<void> owner;
    const void* data;
    size_t bytes;
    Shape shape;
    DType dtype;
    size_t offset;
  };
  std::vector<Piece> pieces_;
  size_t total_ = 0;
};

// StepPart::decode_view_*: every sequence of the absorbed part cut into pseudo-sequences of at most
// kDecodeViewMaxQ rows, each ending where its last row's causal window ends, each with the sequence's table row.
void add_decode_view(Packer& pk, StepPart& part, const ForwardBatch& batch, int64_t block_size, int64_t blocks) {
  constexpr int64_t kMaxQ = StepPart::kDecodeViewMaxQ;
  std::vector<int32_t> tables, lens, cu_q{0};
  for (int64_t i : part.seqs) {
    const BatchSequence& s = batch.sequences[size_t(i)];
    const int64_t need = (s.start_pos + s.num_tokens + block_size - 1) / block_size;  // as the part's own table
    for (int64_t first = 0; first < s.num_tokens; first += kMaxQ) {
      const int64_t rows = std::min(kMaxQ, s.num_tokens - first);
      lens.push_back(int32_t(s.start_pos + first + rows));
      cu_q.push_back(int32_t(cu_q.back() + rows));
      const size_t at = tables.size();
      tables.resize(at + size_t(blocks), 0);
      std::copy(s.block_table.begin(), s.block_table.begin() + need, tables.begin() + std::ptrdiff_t(at));
    }
  }
  const int64_t v = int64_t(lens.size());
  part.decode_view_seqs = v;
  pk.add(&part.decode_view_tables, std::move(tables), {v, blocks});
  pk.add(&part.decode_view_seq_lens, std::move(lens), {v});
  pk.add(&part.decode_view_cu_q, std::move(cu_q), {v + 1});
}

void add_part(Packer& pk, StepPart& part, const ForwardBatch& batch, bool absorbed, int64_t block_size,
              const ContextParallel& cp, int64_t min_blocks) {
  const int64_t T = batch.num_tokens(), group_block = block_size * cp.size;
  for (size_t i = 0; i < batch.sequences.size(); ++i)
    if (uses_absorbed_path(batch, batch.sequences[i]) == absorbed) part.seqs.push_back(int64_t(i));
  int64_t blocks = std::max<int64_t>(1, min_blocks);
  for (int64_t i : part.seqs) {
    const BatchSequence& s = batch.sequences[size_t(i)];
    blocks = std::max(blocks, (s.start_pos + s.num_tokens + group_block - 1) / group_block);
  }
  part.max_blocks = blocks;
  part.dcp_size = cp.size;
  // On the absorbed path under DCP a rank attends over its own rows only: its counts are local.
  const bool local = absorbed && cp.on();
  auto count = [&](int64_t len) { return local ? context_parallel_local_len(len, cp) : len; };
  const int64_t S = part.num_seqs();
  std::vector<int64_t> rows, slots, context_rows;
  std::vector<int32_t> tables(size_t(S * blocks), 0), lens, cu_q{0}, cu_k{0}, table_start, keys;
  int64_t padded = 0;  // naive under DCP: this rank's padded rows so far
  for (int64_t j = 0; j < S; ++j) {
    const BatchSequence& s = batch.sequences[size_t(part.seqs[size_t(j)])];
    const int64_t ctx = s.start_pos + s.num_tokens, need = (ctx + group_block - 1) / group_block;
    for (int64_t b = 0; b < need; ++b) tables[size_t(j * blocks + b)] = s.block_table[size_t(b)];
    lens.push_back(int32_t(count(ctx)));
    cu_q.push_back(int32_t(cu_q.back() + s.num_tokens));
    cu_k.push_back(int32_t(cu_k.back() + count(ctx)));
    for (int64_t i = 0; i < s.num_tokens; ++i) {
      rows.push_back(s.token_start + i);
      table_start.push_back(int32_t(j * blocks));
      keys.push_back(int32_t(count(s.start_pos + i + 1)));
    }
    if (!absorbed && !cp.on())
      for (int64_t p = 0; p < ctx; ++p)
        slots.push_back(int64_t(s.block_table[size_t(p / block_size)]) * block_size + p % block_size);
    if (!absorbed && cp.on()) {
      // Local row k holds position k * N + rank; every rank sends ceil(ctx / N) rows so the gather lines up.
      const int64_t per_rank = (ctx + cp.size - 1) / cp.size, mine = context_parallel_local_len(ctx, cp);
      const int64_t pad = int64_t(s.block_table[0]) * block_size;
      for (int64_t k = 0; k < per_rank; ++k)
        slots.push_back(k < mine ? int64_t(s.block_table[size_t(k / block_size)]) * block_size + k % block_size : pad);
      for (int64_t p = 0; p < ctx; ++p) context_rows.push_back(padded * cp.size + p);  // (padded + p / N) * N + p % N
      padded += per_rank;
    }
    part.max_q = std::max(part.max_q, s.num_tokens);
  }
  part.num_tokens = int64_t(rows.size());
  part.total_k = cu_k.back();
  part.whole_step = part.num_tokens == T;
  for (int64_t t = 0; part.whole_step && t < T; ++t) part.whole_step = rows[size_t(t)] == t;
  part.cu_seqlens_q_host = cu_q;
  part.cu_seqlens_k_host = cu_k;
  const int64_t n = part.num_tokens;
  pk.add(&part.rows, std::move(rows), {n});
  pk.add(&part.block_tables, std::move(tables), {S, blocks});
  pk.add(&part.seq_lens, std::move(lens), {S});
  pk.add(&part.cu_seqlens_q, std::move(cu_q), {S + 1});
  pk.add(&part.cu_seqlens_k, std::move(cu_k), {S + 1});
  pk.add(&part.token_table_start, std::move(table_start), {n});
  pk.add(&part.token_keys, std::move(keys), {n});
  const int64_t k = int64_t(slots.size()), c = int64_t(context_rows.size());
  pk.add(&part.kv_slots, std::move(slots), {k});
  pk.add(&part.context_rows, std::move(context_rows), {c});
  if (absorbed && !cp.on() && part.max_q > StepPart::kDecodeViewMaxQ)
    add_decode_view(pk, part, batch, block_size, blocks);
}

}  // namespace

StepTensors StepTensors::build(const ForwardBatch& batch, Device device, int64_t block_size, int64_t num_blocks,
                               HostStaging* staging, ContextParallel cp) {
  return build_impl(batch, device, block_size, num_blocks, staging, cp, 1, nullptr);
}

StepTensors StepTensors::build_fixed(const ForwardBatch& batch, Device device, int64_t block_size, int64_t num_blocks,
                                     int64_t table_blocks, FixedStepBuffer& buffer, HostStaging* staging) {
  MLARUN_CHECK(table_blocks >= 1, "step: a fixed layout of ", table_blocks, " block-table columns");
  for (const BatchSequence& s : batch.sequences)
    MLARUN_CHECK(s.start_pos + s.num_tokens <= table_blocks * block_size, "step: ", s.start_pos + s.num_tokens,
                 " tokens of context in a fixed layout of ", table_blocks, " blocks of ", block_size);
  return build_impl(batch, device, block_size, num_blocks, staging, {}, table_blocks, &buffer);
}

StepTensors StepTensors::build_impl(const ForwardBatch& batch, Device device, int64_t block_size, int64_t num_blocks,
                                    HostStaging* staging, ContextParallel cp, int64_t min_blocks,
                                    FixedStepBuffer* into) {
  const int64_t T = batch.num_tokens(), S = int64_t(batch.sequences.size());
  MLARUN_CHECK(block_size >= 1 && num_blocks >= 0, "step: a cache of ", num_blocks, " blocks of ", block_size,
               " tokens");
  MLARUN_CHECK(cp.size >= 1 && cp.rank >= 0 && cp.rank < cp.size, "step: rank ", cp.rank,
               " of a decode-context-parallel group of ", cp.size);
  const int64_t rank_block_size = block_size;
  block_size *= cp.size;  // from here on: the group's (virtual) blocks the batch speaks of
  MLARUN_CHECK(int64_t(batch.positions.size()) == T && int64_t(batch.slot_mapping.size()) == T, "step: ", T,
               " tokens but ", batch.positions.size(), " positions and ", batch.slot_mapping.size(), " slots");
  const int64_t slots = num_blocks * block_size;
  for (int64_t slot : batch.slot_mapping)
    MLARUN_CHECK(slot < slots, "step: slot ", slot, " outside the cache of ", slots, " slots");
  for (int64_t r : batch.logit_rows) MLARUN_CHECK(r >= 0 && r < T, "step: logit row ", r, " outside the ", T, " tokens");
  int64_t blocks = min_blocks;
  for (const BatchSequence& s : batch.sequences) {
    MLARUN_CHECK(s.token_start >= 0 && s.num_tokens >= 0 && s.start_pos >= 0 && s.token_start + s.num_tokens <= T,
                 "step: a sequence owns rows [", s.token_start, ", ", s.token_start + s.num_tokens, ") of ", T,
                 " tokens, from position ", s.start_pos);
    const int64_t ctx = s.start_pos + s.num_tokens, need = (ctx + block_size - 1) / block_size;
    MLARUN_CHECK(need <= int64_t(s.block_table.size()), "step: ", ctx, " tokens but the block table covers ",
                 int64_t(s.block_table.size()) * block_size);
    for (int64_t b = 0; b < need; ++b)
      MLARUN_CHECK(s.block_table[size_t(b)] >= 0 && s.block_table[size_t(b)] < num_blocks, "step: block ",
                   s.block_table[size_t(b)], " outside the pool of ", num_blocks, " blocks");
    blocks = std::max(blocks, need);
  }

  StepTensors st;
  st.device = device;
  st.num_tokens = T;
  st.block_size = rank_block_size;
  st.dcp = cp;
  Packer pk;
  pk.add(&st.token_ids, batch.token_ids, {T});
  pk.add(&st.positions, batch.positions, {T});
  std::vector<int64_t> slot_mapping = batch.slot_mapping;
  if (cp.on())
    for (int64_t& slot : slot_mapping) slot = context_parallel_local_slot(slot, rank_block_size, cp);
  pk.add(&st.slot_mapping, std::move(slot_mapping), {T});
  pk.add(&st.logit_rows, batch.logit_rows, {int64_t(batch.logit_rows.size())});
  std::vector<int32_t> tables(size_t(S * blocks), 0), lens, cu_q{0}, cu_k{0};
  for (int64_t j = 0; j < S; ++j) {
    const BatchSequence& s = batch.sequences[size_t(j)];
    const int64_t ctx = s.start_pos + s.num_tokens;
    for (int64_t b = 0; b < (ctx + block_size - 1) / block_size; ++b)
      tables[size_t(j * blocks + b)] = s.block_table[size_t(b)];
    lens.push_back(int32_t(ctx));
    cu_q.push_back(int32_t(cu_q.back() + s.num_tokens));
    cu_k.push_back(int32_t(cu_k.back() + ctx));
  }
  pk.add(&st.block_tables, std::move(tables), {S, blocks});
  pk.add(&st.seq_lens, std::move(lens), {S});
  pk.add(&st.cu_seqlens_q, std::move(cu_q), {S + 1});
  pk.add(&st.cu_seqlens_k, std::move(cu_k), {S + 1});
  add_part(pk, st.absorbed, batch, true, rank_block_size, cp, min_blocks);
  add_part(pk, st.naive, batch, false, rank_block_size, cp, min_blocks);
  pk.finish(device, staging, into);
  return st;
}

}  // namespace mlarun
