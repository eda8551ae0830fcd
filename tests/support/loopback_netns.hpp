// For tests that serve from a network namespace of their own: probes must reach the container's
// loopback, so the test servers live on one that the host cannot see.
#pragma once

#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

namespace slimtrace::testing {

// Moves the calling thread into a new network namespace and brings its loopback up.
inline bool enter_new_netns_with_loopback() {
  if (::unshare(CLONE_NEWNET) != 0) return false;
  int u = ::socket(AF_INET, SOCK_DGRAM, 0);
  if (u < 0) return false;
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  bool ok = ::ioctl(u, SIOCGIFFLAGS, &ifr) == 0;
  ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP);
  ok = ok && ::ioctl(u, SIOCSIFFLAGS, &ifr) == 0;
  ::close(u);
  return ok;
}

// A TCP socket listening on 127.0.0.1:port, or -1.
inline int listen_on_loopback(int port) {
  int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) return -1;
  int one = 1;
  ::setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(s, 16) != 0) {
    ::close(s);
    return -1;
  }
  return s;
}

}  // namespace slimtrace::testing
