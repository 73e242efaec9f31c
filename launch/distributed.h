// Creating the communicator a command runs with, from --comm and --tp (see parallel/ for the backends).
#pragma once

#include <memory>
#include <string>

#include "parallel/communicator.h"

namespace mlarun::cli {

std::unique_ptr<Communicator> make_session_communicator(const std::string& kind, int64_t tp);

}  // namespace mlarun::cli
