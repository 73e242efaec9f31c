// Whether the client of a non-streamed request is still there. A streamed request learns it from a failed write,
// but a non-streamed one writes nothing until its generation ends, and cpp-httplib 0.11.4 hands handlers no
// socket (its per-connection hook, Server::process_and_close_socket, is private and cannot be wrapped). The
// Request does carry both ends' addresses, and a TCP connection is the only socket of this process with that
// pair, so the handler finds the socket by matching getsockname/getpeername over its file descriptors, then peeks
// at it: an orderly close (recv returns 0) or a reset means the client went away; pending bytes (a pipelined
// request) or nothing to read mean it is still waiting.
#pragma once

#include <string>

namespace mlarun::cli {

class ClientConnection {
 public:
  // Finds the socket connecting `local` (this server's address and port) with `remote` (the client's), as
  // cpp-httplib spells them (numeric host, port). Not found (another transport, a changed spelling): gone() is
  // always false, and the request simply runs to its end.
  ClientConnection(const std::string& local_addr, int local_port, const std::string& remote_addr, int remote_port);
  bool found() const { return fd_ >= 0; }
  // Non-blocking; true once the client closed or reset the connection.
  bool gone() const;

 private:
  int fd_ = -1;  // cpp-httplib's socket: it stays open (and ours) until the handler returns
};

}  // namespace mlarun::cli
