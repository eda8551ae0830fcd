#include "slimtrace/probe/netns.hpp"

#include <fcntl.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <thread>

#include "slimtrace/fd.hpp"
#include "slimtrace/read_file.hpp"

namespace slimtrace::probe {

Result<int> socket_in_netns(const std::filesystem::path& netns, int domain, int type, int protocol) {
  UniqueFd ns(::open(netns.c_str(), O_RDONLY | O_CLOEXEC));
  if (!ns.valid()) return Error::from_errno("open network namespace '" + netns.string() + "'");
  Result<int> out = Error{"socket in network namespace '" + netns.string() + "': not created"};
  // The thread ends right after: it never returns to the host namespace, so nothing else can run
  // in the container's namespace by mistake.
  std::thread([&] {
    if (::setns(ns.get(), CLONE_NEWNET) != 0) {
      out = Error::from_errno("enter network namespace '" + netns.string() + "'");
      return;
    }
    int s = ::socket(domain, type | SOCK_CLOEXEC, protocol);
    if (s < 0) {
      out = Error::from_errno("socket in network namespace '" + netns.string() + "'");
      return;
    }
    out = s;
  }).join();
  return out;
}

namespace {

// "0100007F" (little-endian u32 as hex) or the 32-hex-digit IPv6 form; returns loopback/wildcard.
void classify_address(std::string_view hex, bool ipv6, ListeningSocket& s) {
  if (!ipv6) {
    if (hex.size() != 8) return;
    // The low byte of the first word in memory order is the first octet: the last two hex digits.
    s.loopback_only = hex.substr(6, 2) == "7F";
    return;
  }
  if (hex.size() != 32) return;
  static constexpr std::string_view kV6Loopback = "00000000000000000000000001000000";
  static constexpr std::string_view kV4MappedPrefix = "0000000000000000FFFF0000";
  if (hex == kV6Loopback) {
    s.loopback_only = true;
    s.v6_loopback = true;
  } else if (hex.substr(0, 24) == kV4MappedPrefix && hex.substr(30, 2) == "7F") {
    s.loopback_only = true;
  }
}

}  // namespace

std::vector<ListeningSocket> parse_proc_net_tcp(std::string_view text, bool ipv6) {
  std::vector<ListeningSocket> out;
  std::istringstream in{std::string(text)};
  std::string line;
  bool header = true;
  while (std::getline(in, line)) {
    if (header) {
      header = false;
      continue;
    }
    std::istringstream fields(line);
    std::string slot, local, remote, state;
    if (!(fields >> slot >> local >> remote >> state)) continue;
    if (state != "0A") continue;  // TCP_LISTEN
    auto colon = local.rfind(':');
    if (colon == std::string::npos) continue;
    ListeningSocket s;
    s.ipv6 = ipv6;
    try {
      s.port = std::stoi(local.substr(colon + 1), nullptr, 16);
    } catch (...) {
      continue;
    }
    if (s.port <= 0 || s.port > 65535) continue;
    classify_address(std::string_view(local).substr(0, colon), ipv6, s);
    out.push_back(s);
  }
  return out;
}

std::vector<ListeningSocket> listening_sockets(int pid) {
  std::vector<ListeningSocket> out;
  if (pid <= 0) return out;
  for (bool v6 : {false, true}) {
    auto text = read_whole_file("/proc/" + std::to_string(pid) + "/net/" + (v6 ? "tcp6" : "tcp"));
    if (!text) continue;  // the container is gone, or this family is not there
    auto part = parse_proc_net_tcp(*text, v6);
    out.insert(out.end(), part.begin(), part.end());
  }
  return out;
}

std::vector<int> listening_ports(const std::vector<ListeningSocket>& sockets) {
  std::vector<int> ports;
  for (const auto& s : sockets) ports.push_back(s.port);
  std::sort(ports.begin(), ports.end());
  ports.erase(std::unique(ports.begin(), ports.end()), ports.end());
  return ports;
}

}  // namespace slimtrace::probe
