// The name of the project's JSON tree, for headers that only pass it around: <nlohmann/json.hpp> costs about two
// seconds of compile time per file, and model_config.h (which names the tree) is included by most of the project,
// CUDA files among them. Code that builds, reads, parses or writes a tree includes runtime/json.h.
#pragma once

#include <nlohmann/json_fwd.hpp>

namespace mlarun::json {

// nlohmann-json's tree with objects kept in file order (safetensors tensors, config keys, output fields).
using Value = nlohmann::ordered_json;

}  // namespace mlarun::json
