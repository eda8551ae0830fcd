#include "elf.hpp"

#include <algorithm>
#include <cstring>

namespace slimtrace::packer::elf {
namespace {

// The first bytes are always retained: the dynamic string table of ordinary binaries sits right
// after the headers, before the (possibly huge) code, but is referenced from .dynamic, which
// comes after the code.
constexpr uint64_t kPrefixBytes = 4u << 20;
constexpr uint64_t kMaxRange = 16u << 20;
constexpr uint64_t kMaxInterp = 4096;
constexpr size_t kShebangMax = 256;

constexpr uint32_t kPtLoad = 1, kPtDynamic = 2, kPtInterp = 3;
constexpr int64_t kDtNull = 0, kDtNeeded = 1, kDtStrtab = 5, kDtStrsz = 10, kDtRpath = 15, kDtRunpath = 29;

uint16_t u16(std::string_view b, size_t o) {
  uint16_t v = 0;
  std::memcpy(&v, b.data() + o, sizeof v);
  return v;
}
uint32_t u32(std::string_view b, size_t o) {
  uint32_t v = 0;
  std::memcpy(&v, b.data() + o, sizeof v);
  return v;
}
uint64_t u64(std::string_view b, size_t o) {
  uint64_t v = 0;
  std::memcpy(&v, b.data() + o, sizeof v);
  return v;
}

std::vector<std::string> split_colon(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  for (;;) {
    size_t c = s.find(':', start);
    std::string part = s.substr(start, c == std::string::npos ? std::string::npos : c - start);
    if (!part.empty()) out.push_back(part);
    if (c == std::string::npos) break;
    start = c + 1;
  }
  return out;
}

std::string trim(std::string_view s) {
  size_t a = s.find_first_not_of(" \t\r");
  if (a == std::string_view::npos) return "";
  size_t b = s.find_last_not_of(" \t\r");
  return std::string(s.substr(a, b - a + 1));
}

}  // namespace

HeaderScanner::HeaderScanner(int64_t file_size)
    : size_(file_size < 0 ? 0 : static_cast<uint64_t>(file_size)) {
  if (size_ == 0) done_ = true;
}

void HeaderScanner::fill(Range& r) {
  if (r.lost || r.data.size() >= r.len || chunk_ == nullptr) return;
  uint64_t want = r.off + r.data.size();  // next byte this range needs
  if (want < chunk_start_) {
    r.lost = true;
    return;
  }
  if (want >= pos_) return;
  uint64_t end = std::min(r.off + r.len, pos_);
  r.data.append(chunk_ + (want - chunk_start_), static_cast<size_t>(end - want));
}

std::optional<std::string_view> HeaderScanner::get(uint64_t off, uint64_t len) {
  if (off > size_ || len > size_ - off) {
    if (lost_what_.empty()) lost_what_ = "points outside the file";
    return std::nullopt;
  }
  if (off + len <= kPrefixBytes) {
    if (prefix_.size() >= off + len) return std::string_view(prefix_).substr(off, len);
    need_more_ = true;
    return std::nullopt;
  }
  if (len > kMaxRange) {
    if (lost_what_.empty()) lost_what_ = "section too large";
    return std::nullopt;
  }
  for (auto& r : ranges_) {
    if (r.off != off || r.len != len) continue;
    if (r.lost) break;
    if (r.data.size() == r.len) return std::string_view(r.data);
    need_more_ = true;
    return std::nullopt;
  }
  Range r;
  r.off = off;
  r.len = len;
  if (off < chunk_start_) r.lost = true;
  fill(r);
  ranges_.push_back(std::move(r));
  const Range& back = ranges_.back();
  if (back.lost) {
    if (lost_what_.empty())
      lost_what_ = "dynamic string table lies before the dynamic section, beyond the bytes kept";
    return std::nullopt;
  }
  if (back.data.size() == back.len) return std::string_view(back.data);
  need_more_ = true;
  return std::nullopt;
}

void HeaderScanner::feed(const char* data, size_t n) {
  if (done_ || n == 0) return;
  chunk_ = data;
  chunk_start_ = pos_;
  pos_ += n;
  if (prefix_.size() < kPrefixBytes) {
    size_t take = static_cast<size_t>(std::min<uint64_t>(n, kPrefixBytes - prefix_.size()));
    prefix_.append(data, take);
  }
  for (auto& r : ranges_) fill(r);
  parse();
  chunk_ = nullptr;
}

void HeaderScanner::parse() {
  info_ = FileInfo{};
  need_more_ = false;
  lost_what_.clear();
  auto finish_with = [&](bool d) { done_ = d; };

  auto magic = get(0, std::min<uint64_t>(size_, 4));
  if (!magic) return finish_with(false);
  if (magic->size() >= 2 && (*magic)[0] == '#' && (*magic)[1] == '!') {
    info_.is_script = true;
    uint64_t want = std::min<uint64_t>(size_, kShebangMax);
    std::string_view line;
    if (prefix_.size() >= want) {
      line = std::string_view(prefix_).substr(0, static_cast<size_t>(want));
    } else {
      // The line may end before `want` bytes: enough when a newline is already there.
      line = prefix_;
      if (line.find('\n') == std::string_view::npos) return finish_with(false);
    }
    line = line.substr(2);
    line = line.substr(0, line.find('\n'));
    std::string l = trim(line);
    size_t sp = l.find_first_of(" \t");
    info_.script_interp = l.substr(0, sp);
    if (sp != std::string::npos) info_.script_arg = trim(std::string_view(l).substr(sp));
    return finish_with(true);
  }
  if (magic->size() < 4 || std::memcmp(magic->data(),
                                       "\x7f"
                                       "ELF",
                                       4) != 0)
    return finish_with(true);
  info_.is_elf = true;
  if (size_ < 64) {
    info_.problem = "truncated ELF header";
    return finish_with(true);
  }
  auto hdr = get(0, 64);
  if (!hdr) return finish_with(false);
  std::string_view h = *hdr;
  if (h[4] != 2 || h[5] != 1) {
    info_.problem = "not a 64-bit little-endian ELF file";
    return finish_with(true);
  }
  info_.supported = true;
  uint64_t phoff = u64(h, 32);
  uint16_t phentsize = u16(h, 54);
  uint16_t phnum = u16(h, 56);
  if (phnum == 0) return finish_with(true);  // nothing to load: no dependencies
  if (phentsize < 56 || phnum == 0xffff) {
    info_.problem = "bad program header table";
    return finish_with(true);
  }
  auto ph = get(phoff, uint64_t{phentsize} * phnum);
  if (!ph) {
    if (!need_more_) info_.problem = "program header table " + lost_what_;
    return finish_with(!need_more_);
  }
  struct Seg {
    uint32_t type;
    uint64_t off, vaddr, filesz;
  };
  std::vector<Seg> segs;
  for (size_t i = 0; i < phnum; ++i) {
    size_t b = i * phentsize;
    segs.push_back(Seg{u32(*ph, b), u64(*ph, b + 8), u64(*ph, b + 16), u64(*ph, b + 32)});
  }
  bool waiting = false;
  for (const auto& s : segs) {
    if (s.type != kPtInterp) continue;
    auto in = get(s.off, std::min(s.filesz, kMaxInterp));
    if (!in) {
      if (need_more_)
        waiting = true;
      else
        info_.problem = "PT_INTERP " + lost_what_;
      break;
    }
    info_.interp = std::string(in->substr(0, in->find('\0')));
    break;
  }
  const Seg* dyn = nullptr;
  for (const auto& s : segs)
    if (s.type == kPtDynamic) dyn = &s;
  if (dyn == nullptr || dyn->filesz == 0) return finish_with(!waiting);  // static
  auto d = get(dyn->off, dyn->filesz);
  if (!d) {
    if (!need_more_) info_.problem = "dynamic section " + lost_what_;
    return finish_with(!need_more_);
  }
  std::vector<uint64_t> needed, rpath, runpath;
  std::optional<uint64_t> strtab, strsz;
  for (size_t o = 0; o + 16 <= d->size(); o += 16) {
    auto tag = static_cast<int64_t>(u64(*d, o));
    uint64_t val = u64(*d, o + 8);
    if (tag == kDtNull) break;
    if (tag == kDtNeeded)
      needed.push_back(val);
    else if (tag == kDtRpath)
      rpath.push_back(val);
    else if (tag == kDtRunpath)
      runpath.push_back(val);
    else if (tag == kDtStrtab)
      strtab = val;
    else if (tag == kDtStrsz)
      strsz = val;
  }
  if (needed.empty() && rpath.empty() && runpath.empty()) return finish_with(!waiting);
  if (!strtab || !strsz) {
    info_.problem = "dynamic section without a string table";
    return finish_with(!waiting);
  }
  std::optional<uint64_t> str_off;
  for (const auto& s : segs) {
    if (s.type == kPtLoad && *strtab >= s.vaddr && *strtab - s.vaddr < s.filesz) {
      str_off = s.off + (*strtab - s.vaddr);
      break;
    }
  }
  if (!str_off) {
    info_.problem = "dynamic string table is not in a loaded segment";
    return finish_with(!waiting);
  }
  auto st = get(*str_off, *strsz);
  if (!st) {
    if (!need_more_) info_.problem = lost_what_;
    return finish_with(!need_more_);
  }
  auto str_at = [&](uint64_t o) -> std::optional<std::string> {
    if (o >= st->size()) return std::nullopt;
    std::string_view rest = st->substr(static_cast<size_t>(o));
    size_t nul = rest.find('\0');
    if (nul == std::string_view::npos) return std::nullopt;
    return std::string(rest.substr(0, nul));
  };
  for (uint64_t o : needed) {
    auto s = str_at(o);
    if (s && !s->empty())
      info_.needed.push_back(*s);
    else
      info_.problem = "DT_NEEDED outside the string table";
  }
  for (uint64_t o : runpath)
    if (auto s = str_at(o))
      for (auto& p : split_colon(*s)) info_.runpath.push_back(p);
  for (uint64_t o : rpath)
    if (auto s = str_at(o))
      for (auto& p : split_colon(*s)) info_.rpath.push_back(p);
  finish_with(!waiting);
}

FileInfo HeaderScanner::finish() {
  if (!done_) {
    parse();
    if (!done_ && info_.is_elf && info_.problem.empty()) info_.problem = "file ends before its headers";
    done_ = true;
  }
  return info_;
}

FileInfo scan(std::string_view content, int64_t file_size) {
  HeaderScanner s(file_size < 0 ? static_cast<int64_t>(content.size()) : file_size);
  s.feed(content.data(), content.size());
  return s.finish();
}

std::vector<std::string> expand_search_path(const std::vector<std::string>& entries,
                                            const std::string& origin_dir) {
  std::vector<std::string> out;
  for (std::string e : entries) {
    auto repl = [&](const std::string& token, const std::string& value) {
      for (size_t p = e.find(token); p != std::string::npos; p = e.find(token, p + value.size()))
        e.replace(p, token.size(), value);
    };
    repl("${ORIGIN}", origin_dir);
    repl("$ORIGIN", origin_dir);
    repl("${LIB}", "lib/x86_64-linux-gnu");
    repl("$LIB", "lib/x86_64-linux-gnu");
    repl("${PLATFORM}", "x86_64");
    repl("$PLATFORM", "x86_64");
    if (!e.empty() && e[0] == '/') out.push_back(e);
  }
  return out;
}

}  // namespace slimtrace::packer::elf
