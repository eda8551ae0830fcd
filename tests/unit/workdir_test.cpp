// The interrupt cleanup: on SIGINT the registered work dir is gone for good, even while another
// thread has a child process running that writes into it once more (as a runtime CLI recreates its
// state directory), and no child process starts after the cleanup began.
#include "slimtrace/workdir.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <thread>

namespace fs = std::filesystem;

namespace {

// Runs `body` in a forked child (the cleanup _exits the process) and returns its wait status.
template <typename F>
int in_child(F body) {
  pid_t pid = ::fork();
  if (pid == 0) {
    body();
    ::_exit(99);  // the cleanup should have exited first
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return status;
}

TEST(InterruptCleanup, WaitsForChildrenOtherThreadsStartedAndRefusesNewOnes) {
  auto base = slimtrace::WorkDir::create();
  ASSERT_TRUE(base.ok()) << base.error().message;
  const fs::path dir = base->path() / "run";
  const fs::path refused = base->path() / "refused";

  int status = in_child([&] {
    slimtrace::install_interrupt_cleanup();
    fs::create_directories(dir);
    slimtrace::register_cleanup_path(dir);
    std::atomic<bool> started{false};
    // A child process in flight when the signal comes, which outlives this process if nothing
    // waits for it: it writes into the dir after the cleanup's actions ran, and only then ends.
    std::thread([&] {
      if (!slimtrace::begin_child_process()) ::_exit(98);
      pid_t writer = ::fork();
      if (writer == 0) {
        ::usleep(600000);
        std::error_code ec;
        fs::create_directories(dir / "state", ec);
        ::_exit(0);
      }
      started = true;
      int ws = 0;
      ::waitpid(writer, &ws, 0);
      slimtrace::end_child_process();
      std::error_code ec;
      // Too late now: the cleanup has begun, so no new child may start.
      if (slimtrace::begin_child_process()) fs::create_directories(refused, ec);
    }).detach();
    while (!started) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    ::kill(::getpid(), SIGINT);
    for (;;) ::pause();
  });
  // Time for a writer left running to do its damage.
  std::this_thread::sleep_for(std::chrono::milliseconds(1200));
  ASSERT_TRUE(WIFEXITED(status)) << "status " << status;
  EXPECT_EQ(WEXITSTATUS(status), 128 + SIGINT);
  EXPECT_FALSE(fs::exists(dir)) << "the work dir came back after the cleanup removed it";
  EXPECT_FALSE(fs::exists(refused)) << "a child process started after the cleanup began";
}

}  // namespace
