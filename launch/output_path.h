// Output files are checked before any work starts: a command must not compute for minutes (load the weights,
// generate, measure) and only then find that it cannot write its result. check_output_path asks the kernel
// whether the path can be opened for writing, without truncating a file that exists or leaving a new one behind;
// the content itself is still written at the end. Header-only: every command of launch/ includes it.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "launch/distributed.h"
#include "parallel/bootstrap.h"
#include "runtime/error.h"

namespace mlarun::cli {

// The directory a file path lives in ("." for a bare name).
inline std::string directory_of(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

// Only rank 0 writes files (README, Multi-rank runs), so only rank 0 checks them. This runs before a command
// builds its communicator, so the rank comes from the MPI job itself (0 when not started by mpirun).
inline bool is_driver_process() { return !launched_by_mpi() || init_distributed().rank == 0; }

// Throws "option OPTION: cannot write 'PATH': WHY" unless PATH can be opened for writing now. An empty path
// (the option not given) passes.
inline void check_output_path(const std::string& option, const std::string& path) {
  if (path.empty()) return;
  struct stat st {};
  const bool exists = ::stat(path.c_str(), &st) == 0;
  if (exists && S_ISDIR(st.st_mode)) fail("option ", option, ": cannot write '", path, "': it is a directory");
  // A FIFO is only asked (opening it for writing would wait for its reader); anything else is opened, an existing
  // file without O_TRUNC (it keeps its content until the end), a new one created and removed again.
  const bool fifo = exists && S_ISFIFO(st.st_mode);
  int fd = -1;
  if (fifo)
    fd = ::access(path.c_str(), W_OK) == 0 ? 0 : -1;
  else
    fd = exists ? ::open(path.c_str(), O_WRONLY | O_CLOEXEC)
                : ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) {
    const int err = errno;
    const std::string dir = directory_of(path);
    std::string why;
    if (err == ENOENT)
      why = "no such directory '" + dir + "'";
    else if (err == ENOTDIR)
      why = "'" + dir + "' is not a directory (a part of the path is a file)";
    else if (err == EACCES || err == EPERM)
      why = std::string("permission denied (") + (exists ? "the file" : "directory '" + dir + "'") +
            " is not writable)";
    else if (err == EROFS)
      why = "read-only file system";
    else
      why = std::strerror(err);
    fail("option ", option, ": cannot write '", path, "': ", why);
  }
  if (fifo) return;
  ::close(fd);
  if (!exists) ::unlink(path.c_str());
}

}  // namespace mlarun::cli
