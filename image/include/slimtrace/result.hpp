// Result<T>: the return type of every operation that can fail for expected reasons (bad input,
// missing files, refused syscalls). Exceptions are reserved for programming errors.
#pragma once

#include <cerrno>
#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace slimtrace {

// One line a user can act on: what failed, on what, and why (crun style:
// "open '/x': Permission denied").
struct Error {
  std::string message;
  int errnum = 0;  // errno when the cause was a syscall, else 0

  static Error from_errno(const std::string& what, int e = errno) {
    return Error{what + ": " + std::strerror(e), e};
  }
  // Prefixes context, e.g. "layer 2 (sha256:ab..)" + ": " + message.
  Error context(const std::string& where) const { return Error{where + ": " + message, errnum}; }
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}      // NOLINT(google-explicit-constructor)
  Result(Error error) : v_(std::move(error)) {}  // NOLINT(google-explicit-constructor)

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : err_(std::move(error)) {}  // NOLINT(google-explicit-constructor)
  bool ok() const { return !err_; }
  explicit operator bool() const { return ok(); }
  const Error& error() const { return *err_; }

 private:
  std::optional<Error> err_;
};

using Status = Result<void>;

}  // namespace slimtrace

// Propagates an error from an expression returning Result/Status.
#define SLIMTRACE_TRY(expr)                                 \
  do {                                                      \
    auto slimtrace_try_r_ = (expr);                         \
    if (!slimtrace_try_r_) return slimtrace_try_r_.error(); \
  } while (0)

#define SLIMTRACE_CONCAT_INNER(a, b) a##b
#define SLIMTRACE_CONCAT(a, b) SLIMTRACE_CONCAT_INNER(a, b)
// auto x = SLIMTRACE_ASSIGN(expr) is not portable; use: SLIMTRACE_ASSIGN_OR_RETURN(auto x, expr);
#define SLIMTRACE_ASSIGN_OR_RETURN(decl, expr) \
  SLIMTRACE_ASSIGN_OR_RETURN_IMPL(SLIMTRACE_CONCAT(slimtrace_r_, __LINE__), decl, expr)
#define SLIMTRACE_ASSIGN_OR_RETURN_IMPL(tmp, decl, expr) \
  auto tmp = (expr);                                     \
  if (!tmp) return tmp.error();                          \
  decl = std::move(tmp).value()
