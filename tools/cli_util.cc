// tools/cli_util.cc — the helpers every `stoa` command shares (cli_util.h).
#include "cli_util.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>

#include <fmt/format.h>

namespace stoa::cli {

int report(const Error& error, int exit_code) {
  std::fflush(stdout);
  fmt::print(stderr, "stoa: {}: {}\n", code_name(error.code()), error.message());
  return exit_code;
}

int report(Code code, const std::string& message, int exit_code) {
  return report(Error(code, message), exit_code);
}

std::string human_bytes(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  if (bytes < 1024) return fmt::format("{} B", bytes);
  double v = double(bytes);
  int u = 0;
  while (v >= 1024 && u < 5) {
    v /= 1024;
    u++;
  }
  return fmt::format("{:.1f} {}", v, kUnits[u]);
}

void escape_append(std::string& out, std::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (char c : bytes) {
    const auto u = uint8_t(c);
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        if (u < 0x20 || u == 0x7f) {
          out += "\\x";
          out += kHex[u >> 4];
          out += kHex[u & 15];
        } else {
          out += c;
        }
    }
  }
}

std::string escape_field(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  escape_append(out, bytes);
  return out;
}

Result<std::string> unescape_field(std::string_view text, size_t first_column) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); i++) {
    if (text[i] != '\\') {
      out += text[i];
      continue;
    }
    if (i + 1 == text.size()) {
      return Error(Code::kInvalidArgument,
                   fmt::format("column {}: a lone backslash at the end of a field (write \\\\)",
                               first_column + i));
    }
    switch (text[i + 1]) {
      case '\\':
        out += '\\';
        break;
      case 't':
        out += '\t';
        break;
      case 'n':
        out += '\n';
        break;
      case 'r':
        out += '\r';
        break;
      case 'x': {
        int hi = i + 2 < text.size() ? hex(text[i + 2]) : -1;
        int lo = i + 3 < text.size() ? hex(text[i + 3]) : -1;
        if (hi < 0 || lo < 0) {
          return Error(Code::kInvalidArgument,
                       fmt::format("column {}: \\x needs two hex digits", first_column + i));
        }
        out += char(hi << 4 | lo);
        i += 2;
        break;
      }
      default:
        return Error(
            Code::kInvalidArgument,
            fmt::format("column {}: unknown escape \"\\{}\" (known: \\\\ \\t \\n \\r \\xHH)",
                        first_column + i, escape_field(text.substr(i + 1, 1))));
    }
    i++;
  }
  return out;
}

std::string sized(uint64_t b) { return fmt::format("{} ({} bytes)", human_bytes(b), b); }

uint64_t mono_ns() {
  return uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
                      std::chrono::steady_clock::now().time_since_epoch())
                      .count());
}

Result<std::unique_ptr<Store>> open_existing(const std::string& dir, Durability durability) {
  Options o;
  o.create_if_missing = false;
  o.watchdog_interval = std::chrono::milliseconds(0);
  o.log_threads = false;
  o.durability = durability;
  return Store::open(dir, o);
}

Result<Opened> open_session(const std::string& dir, Durability durability) {
  STOA_ASSIGN(auto store, open_existing(dir, durability));
  STOA_ASSIGN(Session session, store->session());
  return Opened{std::move(store), std::move(session)};
}

Error os_error(int err, const std::string& what) {
  Code code = Code::kIo;
  if (err == ENOENT) code = Code::kNotFound;
  if (err == EACCES || err == EPERM) code = Code::kPermission;
  return Error(code, fmt::format("{}: {}", what, std::strerror(err)));
}

Result<std::string> read_all(int fd, const std::string& what) {
  std::string data;
  struct stat st {};
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0) {
    data.reserve(size_t(st.st_size));
  }
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return os_error(errno, "read " + what);
    if (n == 0) return data;
    data.append(buf, size_t(n));
  }
}

}  // namespace stoa::cli
