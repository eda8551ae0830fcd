// Reaching the container's network namespace from slimtrace itself: sockets created inside it, and
// the TCP ports its processes listen on.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "slimtrace/result.hpp"

namespace slimtrace::probe {

// Creates a socket inside the network namespace bound at `netns` (a file under /proc/*/ns/net or a
// bind mount of one). setns() runs on a short-lived thread of its own, so no other code of ours ever
// runs in the container's namespace. The socket is close-on-exec.
Result<int> socket_in_netns(const std::filesystem::path& netns, int domain, int type, int protocol);

struct ListeningSocket {
  int port = 0;
  bool ipv6 = false;
  bool loopback_only = false;  // bound to 127.0.0.0/8 or ::1, not a wildcard
  bool v6_loopback = false;    // bound to ::1 exactly: 127.0.0.1 does not reach it
};

// Parses the text of /proc/<pid>/net/tcp or tcp6 and returns its sockets in LISTEN state.
std::vector<ListeningSocket> parse_proc_net_tcp(std::string_view text, bool ipv6);

// The listening TCP sockets of the network namespace that process `pid` is in (its own view of
// /proc/<pid>/net/tcp and tcp6). Empty when the process is gone.
std::vector<ListeningSocket> listening_sockets(int pid);

// Distinct listening ports, sorted.
std::vector<int> listening_ports(const std::vector<ListeningSocket>& sockets);

}  // namespace slimtrace::probe
