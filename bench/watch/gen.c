/*
 * gen: create the pre-existing source tree for the watcher benchmark.
 *
 *   gen ROOT NFILES PER_DIR      files:  ROOT/pre/dNNNN/fNNNN, 1..512 random bytes each
 *   gen -d ROOT TOP SUB          dirs:   ROOT/tNNN/sNNNN (TOP * (1 + SUB) directories, no files)
 *
 * Plain POSIX calls, no stdio per file: about 1M small files in well under a minute.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t next(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

static void mkdir_or_die(const char *p) {
  if (mkdir(p, 0755) != 0 && errno != EEXIST) {
    fprintf(stderr, "gen: mkdir %s: %s\n", p, strerror(errno));
    exit(1);
  }
}

static int make_dirs(const char *root, long top, long sub) {
  char p[4096];
  mkdir_or_die(root);
  for (long t = 0; t < top; t++) {
    snprintf(p, sizeof p, "%s/t%03ld", root, t);
    mkdir_or_die(p);
    for (long s = 0; s < sub; s++) {
      snprintf(p, sizeof p, "%s/t%03ld/s%04ld", root, t, s);
      mkdir_or_die(p);
    }
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 5 && strcmp(argv[1], "-d") == 0) return make_dirs(argv[2], atol(argv[3]), atol(argv[4]));
  if (argc != 4) {
    fprintf(stderr, "usage: gen ROOT NFILES PER_DIR | gen -d ROOT TOP SUB\n");
    return 2;
  }
  const char *root = argv[1];
  long n = atol(argv[2]), per = atol(argv[3]);
  if (n < 0 || per <= 0) return 2;
  char p[4096], buf[512];
  mkdir_or_die(root);
  snprintf(p, sizeof p, "%s/pre", root);
  mkdir_or_die(p);
  for (long i = 0; i < n; i++) {
    if (i % per == 0) {
      snprintf(p, sizeof p, "%s/pre/d%04ld", root, i / per);
      mkdir_or_die(p);
    }
    snprintf(p, sizeof p, "%s/pre/d%04ld/f%04ld", root, i / per, i % per);
    size_t len = 1 + next() % sizeof buf;
    for (size_t k = 0; k < len; k += 8) {
      uint64_t v = next();
      memcpy(buf + k, &v, len - k < 8 ? len - k : 8);
    }
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, buf, len) != (ssize_t)len || close(fd) != 0) {
      fprintf(stderr, "gen: %s: %s\n", p, strerror(errno));
      return 1;
    }
  }
  return 0;
}
