// A tiny program built against an installed Stoa: opens (creating) a store
// under the directory given as argv[1], opens a session, prints the file size.
#include <stoa/store.h>

#include <cstdio>
#include <string>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  auto store = stoa::Store::open(std::string(argv[1]) + "/consumer.stoa");
  if (!store.ok()) {
    std::fprintf(stderr, "open: %s\n", store.error().to_string().c_str());
    return 1;
  }
  auto session = (*store)->session();
  if (!session.ok()) {
    std::fprintf(stderr, "session: %s\n", session.error().to_string().c_str());
    return 1;
  }
  auto stats = (*store)->stats();
  if (!stats.ok()) {
    std::fprintf(stderr, "stats: %s\n", stats.error().to_string().c_str());
    return 1;
  }
  std::printf("file_size %llu\n", static_cast<unsigned long long>(stats->file_size));
  return 0;
}
