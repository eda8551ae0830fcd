#include "slimtrace/probe/links.hpp"

#include <algorithm>
#include <cctype>

namespace slimtrace::probe {
namespace {

char lower(char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); }

bool iequals_at(std::string_view text, size_t pos, std::string_view word) {
  if (pos + word.size() > text.size()) return false;
  for (size_t i = 0; i < word.size(); ++i)
    if (lower(text[pos + i]) != word[i]) return false;
  return true;
}

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f'; }

std::string trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && is_space(s[b])) ++b;
  while (e > b && is_space(s[e - 1])) --e;
  return std::string(s.substr(b, e - b));
}

std::string decode_entities(std::string s) {
  for (auto [from, to] : {std::pair<std::string_view, std::string_view>{"&amp;", "&"},
                          {"&#38;", "&"},
                          {"&quot;", "\""},
                          {"&#47;", "/"}}) {
    size_t pos = 0;
    while ((pos = s.find(from, pos)) != std::string::npos) {
      s.replace(pos, from.size(), to);
      pos += to.size();
    }
  }
  return s;
}

// Appends the links of `url(...)` and `@import "..."` in CSS text.
void css_links(std::string_view css, size_t max_links, std::vector<std::string>& out) {
  size_t pos = 0;
  while (out.size() < max_links && pos < css.size()) {
    size_t u = css.find("url(", pos);
    size_t imp = css.find("@import", pos);
    if (u == std::string_view::npos && imp == std::string_view::npos) break;
    if (imp != std::string_view::npos && (u == std::string_view::npos || imp < u)) {
      size_t p = imp + 7;
      while (p < css.size() && is_space(css[p])) ++p;
      pos = p;
      if (p < css.size() && (css[p] == '"' || css[p] == '\'')) {
        size_t end = css.find(css[p], p + 1);
        if (end == std::string_view::npos) break;
        out.push_back(trim(css.substr(p + 1, end - p - 1)));
        pos = end + 1;
      }
      continue;
    }
    size_t p = u + 4;
    size_t end = css.find(')', p);
    if (end == std::string_view::npos) break;
    std::string v = trim(css.substr(p, end - p));
    if (v.size() >= 2 && (v.front() == '"' || v.front() == '\'') && v.back() == v.front())
      v = v.substr(1, v.size() - 2);
    if (!v.empty()) out.push_back(decode_entities(v));
    pos = end + 1;
  }
}

bool is_local_host(std::string host) {
  std::transform(host.begin(), host.end(), host.begin(), lower);
  return host == "127.0.0.1" || host == "localhost" || host == "[::1]";
}

}  // namespace

std::vector<std::string> extract_html_links(std::string_view html, size_t max_links) {
  std::vector<std::string> out;
  for (size_t i = 0; i < html.size() && out.size() < max_links; ++i) {
    if (!is_space(html[i])) continue;
    size_t name_len = 0;
    if (iequals_at(html, i + 1, "href"))
      name_len = 4;
    else if (iequals_at(html, i + 1, "src"))
      name_len = 3;
    else
      continue;
    size_t p = i + 1 + name_len;
    while (p < html.size() && is_space(html[p])) ++p;
    if (p >= html.size() || html[p] != '=') continue;
    ++p;
    while (p < html.size() && is_space(html[p])) ++p;
    if (p >= html.size()) break;
    std::string value;
    if (html[p] == '"' || html[p] == '\'') {
      size_t end = html.find(html[p], p + 1);
      if (end == std::string_view::npos) break;
      value = html.substr(p + 1, end - p - 1);
      i = end;
    } else {
      size_t end = p;
      while (end < html.size() && !is_space(html[end]) && html[end] != '>') ++end;
      value = html.substr(p, end - p);
      i = end - 1;
    }
    value = decode_entities(trim(value));
    if (!value.empty()) out.push_back(value);
  }
  // Inline styles and <style> blocks.
  if (out.size() < max_links) css_links(html, max_links, out);
  return out;
}

std::vector<std::string> extract_css_links(std::string_view css, size_t max_links) {
  std::vector<std::string> out;
  css_links(css, max_links, out);
  return out;
}

std::string normalize_path(std::string_view path) {
  std::string_view query;
  if (auto q = path.find('?'); q != std::string_view::npos) {
    query = path.substr(q);
    path = path.substr(0, q);
  }
  std::vector<std::string_view> segs;
  size_t pos = 0;
  bool trailing = !path.empty() && path.back() == '/';
  while (pos <= path.size()) {
    size_t next = path.find('/', pos);
    if (next == std::string_view::npos) next = path.size();
    std::string_view seg = path.substr(pos, next - pos);
    if (seg == "..") {
      if (!segs.empty()) segs.pop_back();
      trailing = true;
    } else if (seg == ".") {
      trailing = true;
    } else if (!seg.empty()) {
      segs.push_back(seg);
      trailing = false;
    }
    pos = next + 1;
  }
  if (!path.empty() && path.back() == '/') trailing = true;
  std::string out;
  for (auto s : segs) {
    out += '/';
    out += s;
  }
  if (out.empty() || trailing) out += '/';
  out += query;
  return out;
}

std::optional<std::string> same_origin_path(std::string_view link_in, std::string_view base_path,
                                            const Origin& origin) {
  std::string link = trim(link_in);
  if (auto h = link.find('#'); h != std::string::npos) link.resize(h);
  if (link.empty()) return std::nullopt;  // a fragment of the same page

  std::string rest;
  auto colon = link.find(':');
  auto first_slash = link.find('/');
  bool has_scheme = colon != std::string::npos && (first_slash == std::string::npos || colon < first_slash) &&
                    colon > 0 && std::isalpha(static_cast<unsigned char>(link[0]));
  if (has_scheme) {
    std::string scheme = link.substr(0, colon);
    std::transform(scheme.begin(), scheme.end(), scheme.begin(), lower);
    if (scheme != origin.scheme) return std::nullopt;  // mailto:, data:, another scheme
    if (link.compare(colon + 1, 2, "//") != 0) return std::nullopt;
    rest = link.substr(colon + 1);
  } else {
    rest = link;
  }
  if (rest.rfind("//", 0) == 0) {
    // Authority: host[:port], then the path.
    size_t end = rest.find_first_of("/?", 2);
    std::string authority = rest.substr(2, end == std::string::npos ? std::string::npos : end - 2);
    if (authority.find('@') != std::string::npos) return std::nullopt;
    std::string host = authority;
    int port = origin.scheme == "https" ? 443 : 80;
    size_t pc = authority.rfind(':');
    if (pc != std::string::npos && authority.find(']', pc) == std::string::npos) {
      host = authority.substr(0, pc);
      std::string ps = authority.substr(pc + 1);
      if (ps.empty() || ps.size() > 5 || !std::all_of(ps.begin(), ps.end(), ::isdigit)) return std::nullopt;
      port = std::stoi(ps);
    }
    if (!is_local_host(host) || port != origin.port) return std::nullopt;
    std::string path = end == std::string::npos ? "/" : rest.substr(end);
    if (path[0] == '?') path = "/" + path;
    return normalize_path(path);
  }
  if (rest[0] == '/') return normalize_path(rest);
  // Relative to the base page's directory (or the page itself for a bare query).
  std::string base(base_path);
  if (auto q = base.find('?'); q != std::string::npos) base.resize(q);
  if (rest[0] == '?') return normalize_path(base + rest);
  auto dir_end = base.rfind('/');
  std::string dir = dir_end == std::string::npos ? "/" : base.substr(0, dir_end + 1);
  return normalize_path(dir + rest);
}

}  // namespace slimtrace::probe
