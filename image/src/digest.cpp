#include "slimtrace/image/digest.hpp"

#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <array>
#include <stdexcept>
#include <vector>

#include "slimtrace/fd.hpp"

namespace slimtrace::image {

struct Sha256::Impl {
  EVP_MD_CTX* ctx = nullptr;
  ~Impl() { EVP_MD_CTX_free(ctx); }
};

Sha256::Sha256() : impl_(std::make_unique<Impl>()) {
  impl_->ctx = EVP_MD_CTX_new();
  if (!impl_->ctx || EVP_DigestInit_ex(impl_->ctx, EVP_sha256(), nullptr) != 1)
    throw std::runtime_error("OpenSSL SHA-256 unavailable");
}
Sha256::~Sha256() = default;
Sha256::Sha256(Sha256&&) noexcept = default;
Sha256& Sha256::operator=(Sha256&&) noexcept = default;

void Sha256::update(const void* data, size_t len) {
  if (len) EVP_DigestUpdate(impl_->ctx, data, len);
}

std::string Sha256::finish() {
  std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
  unsigned int n = 0;
  EVP_DigestFinal_ex(impl_->ctx, md.data(), &n);
  static const char* hex = "0123456789abcdef";
  std::string out = "sha256:";
  for (unsigned i = 0; i < n; ++i) {
    out += hex[md[i] >> 4];
    out += hex[md[i] & 15];
  }
  return out;
}

std::string sha256_digest(std::string_view data) {
  Sha256 h;
  h.update(data.data(), data.size());
  return h.finish();
}

Result<std::string> sha256_file(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Error::from_errno("open '" + path + "'");
  Sha256 h;
  std::vector<char> buf(1 << 20);
  for (;;) {
    ssize_t n = ::read(fd.get(), buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error::from_errno("read '" + path + "'");
    }
    if (n == 0) break;
    h.update(buf.data(), static_cast<size_t>(n));
  }
  return h.finish();
}

Result<std::string> digest_hex(std::string_view digest) {
  constexpr std::string_view prefix = "sha256:";
  if (digest.substr(0, prefix.size()) != prefix) {
    return Error{"unsupported or malformed digest '" + std::string(digest) + "' (expected sha256:<64 hex>)"};
  }
  auto hex = digest.substr(prefix.size());
  bool ok = hex.size() == 64;
  for (char c : hex) ok = ok && ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'));
  if (!ok) return Error{"malformed digest '" + std::string(digest) + "' (expected sha256:<64 hex>)"};
  return std::string(hex);
}

}  // namespace slimtrace::image
