// Reading ELF interpreters and dependencies from streamed bytes, including hostile input.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "elf.hpp"

namespace elf = slimtrace::packer::elf;

namespace {

void put(std::string& b, size_t off, const void* v, size_t n) {
  if (b.size() < off + n) b.resize(off + n);
  std::memcpy(b.data() + off, v, n);
}
template <typename T>
void put_int(std::string& b, size_t off, T v) {
  put(b, off, &v, sizeof v);
}

}  // namespace

// A minimal ELF64 executable: one PT_LOAD mapping the file at vaddr 0, PT_INTERP, PT_DYNAMIC.
std::string make_elf(const std::string& interp, const std::vector<std::string>& needed,
                     const std::string& runpath = "", const std::string& rpath = "");

std::string make_elf(const std::string& interp, const std::vector<std::string>& needed,
                     const std::string& runpath, const std::string& rpath) {
  std::string b(64, '\0');
  std::memcpy(b.data(),
              "\x7f"
              "ELF",
              4);
  b[4] = 2;  // ELFCLASS64
  b[5] = 1;  // little-endian
  b[6] = 1;
  put_int<uint16_t>(b, 16, 3);   // ET_DYN
  put_int<uint16_t>(b, 18, 62);  // x86-64
  put_int<uint64_t>(b, 32, 64);  // e_phoff
  put_int<uint16_t>(b, 52, 64);
  put_int<uint16_t>(b, 54, 56);
  put_int<uint16_t>(b, 56, 3);
  size_t interp_off = 64 + 3 * 56;
  std::string strtab(1, '\0');
  std::vector<uint64_t> needed_off;
  for (const auto& n : needed) {
    needed_off.push_back(strtab.size());
    strtab += n + '\0';
  }
  uint64_t runpath_off = strtab.size();
  strtab += runpath + '\0';
  uint64_t rpath_off = strtab.size();
  strtab += rpath + '\0';
  size_t str_off = interp_off + interp.size() + 1;
  size_t dyn_off = (str_off + strtab.size() + 7) & ~size_t{7};
  std::vector<std::pair<int64_t, uint64_t>> dyn;
  for (auto o : needed_off) dyn.emplace_back(1, o);
  if (!runpath.empty()) dyn.emplace_back(29, runpath_off);
  if (!rpath.empty()) dyn.emplace_back(15, rpath_off);
  dyn.emplace_back(5, str_off);
  dyn.emplace_back(10, strtab.size());
  dyn.emplace_back(0, 0);
  size_t end = dyn_off + dyn.size() * 16;
  auto phdr = [&](int i, uint32_t type, uint64_t off, uint64_t size) {
    size_t p = 64 + static_cast<size_t>(i) * 56;
    put_int<uint32_t>(b, p, type);
    put_int<uint32_t>(b, p + 4, 4);
    put_int<uint64_t>(b, p + 8, off);
    put_int<uint64_t>(b, p + 16, off);
    put_int<uint64_t>(b, p + 24, off);
    put_int<uint64_t>(b, p + 32, size);
    put_int<uint64_t>(b, p + 40, size);
  };
  phdr(0, 1, 0, end);
  phdr(1, 3, interp_off, interp.size() + 1);
  phdr(2, 2, dyn_off, dyn.size() * 16);
  put(b, interp_off, interp.c_str(), interp.size() + 1);
  put(b, str_off, strtab.data(), strtab.size());
  for (size_t i = 0; i < dyn.size(); ++i) {
    put_int<int64_t>(b, dyn_off + i * 16, dyn[i].first);
    put_int<uint64_t>(b, dyn_off + i * 16 + 8, dyn[i].second);
  }
  b.resize(end);
  return b;
}

TEST(PackerElf, ReadsInterpreterNeededAndRunpath) {
  auto bin = make_elf("/lib64/ld-linux-x86-64.so.2", {"libfoo.so.1", "libc.so.6"}, "$ORIGIN/../lib:/opt/x");
  auto info = elf::scan(bin);
  EXPECT_TRUE(info.is_elf);
  EXPECT_TRUE(info.supported);
  EXPECT_EQ(info.problem, "");
  EXPECT_EQ(info.interp, "/lib64/ld-linux-x86-64.so.2");
  EXPECT_EQ(info.needed, (std::vector<std::string>{"libfoo.so.1", "libc.so.6"}));
  EXPECT_EQ(info.runpath, (std::vector<std::string>{"$ORIGIN/../lib", "/opt/x"}));
  EXPECT_EQ(elf::expand_search_path(info.runpath, "/app/bin"),
            (std::vector<std::string>{"/app/bin/../lib", "/opt/x"}));
}

TEST(PackerElf, StreamedInSmallChunksStopsEarly) {
  auto bin = make_elf("/ld.so", {"liba.so"}, "", "/r");
  std::string padded = bin + std::string(1 << 20, 'x');
  elf::HeaderScanner s(static_cast<int64_t>(padded.size()));
  size_t fed = 0;
  while (!s.done() && fed < padded.size()) {
    size_t n = std::min<size_t>(7, padded.size() - fed);
    s.feed(padded.data() + fed, n);
    fed += n;
  }
  EXPECT_LT(fed, bin.size() + 8) << "must not read past what it needs";
  auto info = s.finish();
  EXPECT_EQ(info.needed, std::vector<std::string>{"liba.so"});
  EXPECT_EQ(info.rpath, std::vector<std::string>{"/r"});
}

TEST(PackerElf, ShebangAndPlainFiles) {
  auto s = elf::scan("#!/usr/bin/env  python3 -u\nprint(1)\n");
  EXPECT_TRUE(s.is_script);
  EXPECT_EQ(s.script_interp, "/usr/bin/env");
  EXPECT_EQ(s.script_arg, "python3 -u");
  auto t = elf::scan("hello world");
  EXPECT_FALSE(t.is_elf);
  EXPECT_FALSE(t.is_script);
  EXPECT_FALSE(elf::scan("").is_elf);
}

TEST(PackerElf, ThirtyTwoBitIsRecognisedButNotRead) {
  auto bin = make_elf("/ld", {"x"});
  bin[4] = 1;
  auto info = elf::scan(bin);
  EXPECT_TRUE(info.is_elf);
  EXPECT_FALSE(info.supported);
  EXPECT_TRUE(info.needed.empty());
}

TEST(PackerElf, MalformedInputNeverCrashes) {
  auto good = make_elf("/lib64/ld-linux-x86-64.so.2", {"liba.so", "libb.so"}, "$ORIGIN");
  std::mt19937 rng(42);
  // Every truncation.
  for (size_t n = 0; n <= good.size(); ++n) {
    auto info = elf::scan(std::string_view(good).substr(0, n));
    if (n < good.size() && n >= 4) {
      EXPECT_TRUE(info.is_elf);
    }
  }
  // Truncated data but a size claiming more (a stream that ends early).
  for (size_t n = 0; n < good.size(); n += 5) (void)elf::scan(std::string_view(good).substr(0, n), 1 << 20);
  // Random byte flips and random fields, fed in random chunks.
  for (int iter = 0; iter < 20000; ++iter) {
    std::string b = good;
    int flips = 1 + static_cast<int>(rng() % 8);
    for (int f = 0; f < flips; ++f) b[rng() % b.size()] = static_cast<char>(rng());
    if (iter % 3 == 0) put_int<uint64_t>(b, 64 + 2 * 56 + 8, rng() % 2 ? ~uint64_t{0} - 3 : rng());
    if (iter % 5 == 0) put_int<uint64_t>(b, 32, ~uint64_t{0} - static_cast<uint64_t>(rng() % 100));
    elf::HeaderScanner s(static_cast<int64_t>(b.size()) + static_cast<int64_t>(rng() % 3));
    size_t fed = 0;
    while (!s.done() && fed < b.size()) {
      size_t n = std::min<size_t>(1 + rng() % 64, b.size() - fed);
      s.feed(b.data() + fed, n);
      fed += n;
    }
    auto info = s.finish();
    for (const auto& n : info.needed) EXPECT_LE(n.size(), b.size());
  }
  // Pure garbage after a valid magic.
  for (int iter = 0; iter < 2000; ++iter) {
    std::string b =
        "\x7f"
        "ELF";
    size_t len = rng() % 600;
    for (size_t i = 0; i < len; ++i) b.push_back(static_cast<char>(rng()));
    (void)elf::scan(b);
  }
}
