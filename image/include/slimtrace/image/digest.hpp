// Content digests ("sha256:<64 hex>") and a streaming SHA-256.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "slimtrace/result.hpp"

namespace slimtrace::image {

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(Sha256&&) noexcept;
  Sha256& operator=(Sha256&&) noexcept;
  void update(const void* data, size_t len);
  // "sha256:<hex>"; the hasher must not be used afterwards.
  std::string finish();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

std::string sha256_digest(std::string_view data);
Result<std::string> sha256_file(const std::string& path);

// Checks the form "sha256:<64 lowercase hex>" (the only algorithm accepted); returns the hex part.
Result<std::string> digest_hex(std::string_view digest);

}  // namespace slimtrace::image
