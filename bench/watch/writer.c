/*
 * writer: rate-paced load for the watcher benchmark.
 *
 *   writer DIR RATE SECONDS NDIRS LOG
 *
 * Writes files of 10..100 KB of random bytes into DIR/dNN (NN < NDIRS, created beforehand) at RATE files/s for
 * SECONDS seconds. File i is DIR/d(i % NDIRS)/fIIIIIIII_SSSSSS (S = size in bytes, so the arrival probe can tell
 * a complete copy from a partial one). Each file is open+write+close (one close_write), then "i ns" is logged,
 * ns = CLOCK_REALTIME after close. Pacing: file i is due at t0 + i/RATE (absolute clock_nanosleep); when the disk
 * cannot keep up the writer does not sleep, and the achieved rate is reported on stdout as
 * "files N first_ns F last_ns L achieved_per_s A".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint64_t rng;
static inline uint64_t next(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

static int64_t now_ns(clockid_t c) {
  struct timespec ts;
  clock_gettime(c, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: writer DIR RATE SECONDS NDIRS LOG\n");
    return 2;
  }
  const char *dir = argv[1];
  double rate = atof(argv[2]), secs = atof(argv[3]);
  long ndirs = atol(argv[4]);
  if (rate <= 0 || secs <= 0 || ndirs <= 0) return 2;
  FILE *log = fopen(argv[5], "w");
  if (!log) {
    perror("writer: log");
    return 1;
  }
  setvbuf(log, NULL, _IOFBF, 1 << 20);
  rng = (uint64_t)now_ns(CLOCK_REALTIME) | 1;
  // Content: a slice of a 16 MiB random pool at a random offset, its first 16 bytes replaced by the file number
  // and a fresh random word: incompressible and distinct per file, without generating 55 KB per file (which at
  // 5,000 files/s would cost the writer a good part of a core the tools need).
  enum { POOL = 16 << 20 };
  static uint64_t pool[POOL / 8];
  for (size_t k = 0; k < POOL / 8; k++) pool[k] = next();
  long total = (long)(rate * secs + 0.5);
  char p[4096];
  int64_t t0 = now_ns(CLOCK_MONOTONIC) + 1000000;  // start 1 ms from now
  int64_t first = 0, last = 0;
  for (long i = 0; i < total; i++) {
    int64_t due = t0 + (int64_t)((double)i * 1e9 / rate);
    struct timespec ts = {.tv_sec = due / 1000000000, .tv_nsec = due % 1000000000};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
    size_t size = 10 * 1024 + next() % (90 * 1024 + 1);
    uint64_t *buf = pool + next() % ((POOL - 100 * 1024 - 8) / 8);
    uint64_t saved[2] = {buf[0], buf[1]};
    buf[0] = (uint64_t)i;
    buf[1] = next();
    snprintf(p, sizeof p, "%s/d%02ld/f%08ld_%06zu", dir, i % ndirs, i, size);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
      fprintf(stderr, "writer: %s: %s\n", p, strerror(errno));
      return 1;
    }
    const char *b = (const char *)buf;
    size_t off = 0;
    while (off < size) {
      ssize_t w = write(fd, b + off, size - off);
      if (w < 0) {
        if (errno == EINTR) continue;
        fprintf(stderr, "writer: write %s: %s\n", p, strerror(errno));
        return 1;
      }
      off += (size_t)w;
    }
    buf[0] = saved[0];
    buf[1] = saved[1];
    if (close(fd) != 0) {
      fprintf(stderr, "writer: close %s: %s\n", p, strerror(errno));
      return 1;
    }
    last = now_ns(CLOCK_REALTIME);
    if (i == 0) first = last;
    fprintf(log, "%ld %lld\n", i, (long long)last);
  }
  fclose(log);
  double span = (last - first) / 1e9;
  printf("files %ld first_ns %lld last_ns %lld achieved_per_s %.1f\n", total, (long long)first, (long long)last,
         span > 0 ? (total - 1) / span : 0.0);
  return 0;
}
