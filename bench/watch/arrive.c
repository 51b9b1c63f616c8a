/*
 * arrive: timestamps each benchmark file's arrival in the backup.
 *
 *   arrive DIR NDIRS COUNTFILE OUT
 *
 * Watches DIR/dNN (NN < NDIRS) for IN_MOVED_TO and IN_CLOSE_WRITE (rsync writes ".name.XXXXXX" and renames it; an
 * --inplace writer only closes). Names are "fIIIIIIII_SSSSSS": an event counts as an arrival only when the file
 * now has its full size S, so a copy taken while the writer was still writing does not count. For each file the
 * LAST complete arrival (CLOCK_REALTIME ns) is kept. Every 100 ms the number of distinct arrived files is written
 * to COUNTFILE (atomically). On SIGTERM/SIGINT: OUT gets "i ns arrivals" lines, then it exits.
 * Prints "overflow" on stderr and counts it if the kernel queue overflows (then arrivals can be missed:
 * the harness reports it).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static void on_sig(int s) { (void)s; stop = 1; }

static int64_t *last_ns;
static uint32_t *hits;
static long cap, distinct, overflows;

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void grow(long need) {
  long n = cap ? cap : 1 << 16;
  while (n <= need) n *= 2;
  last_ns = realloc(last_ns, (size_t)n * sizeof *last_ns);
  hits = realloc(hits, (size_t)n * sizeof *hits);
  if (!last_ns || !hits) {
    perror("arrive: realloc");
    exit(1);
  }
  memset(last_ns + cap, 0, (size_t)(n - cap) * sizeof *last_ns);
  memset(hits + cap, 0, (size_t)(n - cap) * sizeof *hits);
  cap = n;
}

static void write_count(const char *path) {
  char tmp[PATH_MAX];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *f = fopen(tmp, "w");
  if (!f) return;
  fprintf(f, "%ld %ld\n", distinct, overflows);
  fclose(f);
  rename(tmp, path);
}

int main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: arrive DIR NDIRS COUNTFILE OUT\n");
    return 2;
  }
  long ndirs = atol(argv[2]);
  int fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  if (fd < 0) {
    perror("arrive: inotify_init1");
    return 1;
  }
  int *dirfd_of = calloc((size_t)ndirs + 1, sizeof(int));
  int maxwd = 0;
  int *wd2dir = NULL;
  char p[PATH_MAX];
  for (long d = 0; d < ndirs; d++) {
    snprintf(p, sizeof p, "%s/d%02ld", argv[1], d);
    int wd = inotify_add_watch(fd, p, IN_MOVED_TO | IN_CLOSE_WRITE | IN_ONLYDIR);
    dirfd_of[d] = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (wd < 0 || dirfd_of[d] < 0) {
      fprintf(stderr, "arrive: watch %s: %s\n", p, strerror(errno));
      return 1;
    }
    if (wd >= maxwd) {
      wd2dir = realloc(wd2dir, (size_t)(wd + 1) * sizeof(int));
      for (int k = maxwd; k <= wd; k++) wd2dir[k] = -1;
      maxwd = wd + 1;
    }
    wd2dir[wd] = (int)d;
  }
  struct sigaction sa = {.sa_handler = on_sig};
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  grow(0);
  write_count(argv[3]);
  static char ev[1 << 20] __attribute__((aligned(__alignof__(struct inotify_event))));
  int64_t last_count = 0;
  while (!stop) {
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    poll(&pfd, 1, 100);
    for (;;) {
      ssize_t n = read(fd, ev, sizeof ev);
      if (n <= 0) break;
      int64_t t = now_ns();
      for (char *q = ev; q < ev + n;) {
        struct inotify_event *e = (struct inotify_event *)q;
        q += sizeof *e + e->len;
        if (e->mask & IN_Q_OVERFLOW) {
          overflows++;
          fprintf(stderr, "arrive: overflow\n");
          continue;
        }
        if (!e->len || e->name[0] != 'f' || e->wd < 0 || e->wd >= maxwd || wd2dir[e->wd] < 0) continue;
        char *us = strchr(e->name, '_');
        if (!us || strchr(e->name, '.')) continue;
        long i = atol(e->name + 1);
        long size = atol(us + 1);
        struct stat st;
        if (fstatat(dirfd_of[wd2dir[e->wd]], e->name, &st, AT_SYMLINK_NOFOLLOW) != 0 || st.st_size != size) continue;
        if (i >= cap) grow(i);
        if (!hits[i]) distinct++;
        hits[i]++;
        last_ns[i] = t;
      }
    }
    int64_t t = now_ns();
    if (t - last_count >= 100000000) {
      write_count(argv[3]);
      last_count = t;
    }
  }
  write_count(argv[3]);
  FILE *out = fopen(argv[4], "w");
  if (!out) {
    perror("arrive: out");
    return 1;
  }
  for (long i = 0; i < cap; i++)
    if (hits[i]) fprintf(out, "%ld %lld %u\n", i, (long long)last_ns[i], hits[i]);
  fclose(out);
  return 0;
}
