// Links and assets found in HTML (href, src, inline url()) and CSS (url(), @import), kept only when
// they stay on the origin being probed.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace slimtrace::probe {

// Raw link strings as written in the document, entity-decoded (&amp;), at most `max_links`.
std::vector<std::string> extract_html_links(std::string_view html, size_t max_links = 1000);
std::vector<std::string> extract_css_links(std::string_view css, size_t max_links = 1000);

// The origin a page was fetched from.
struct Origin {
  std::string scheme;  // http or https
  int port = 0;
};

// Resolves `link` found on the page at `base_path` (path and query) against the origin and returns
// the path and query to request, without the fragment, with "." and ".." segments removed; nullopt
// for another origin (host other than 127.0.0.1, localhost or [::1]; other scheme or port) and for
// mailto:, javascript:, data: and similar links.
std::optional<std::string> same_origin_path(std::string_view link, std::string_view base_path,
                                            const Origin& origin);

// Removes "." and ".." segments of an absolute path (the query, if any, is kept as is).
std::string normalize_path(std::string_view path);

}  // namespace slimtrace::probe
