/* The syscall-heavy workload of the tracer benchmark, built static and run inside the container:
 * ITERATIONS times open+close of a file, stat of it and getpid, optionally paced to RATE
 * iterations per second (0: as fast as it goes). Each iteration makes two path syscalls, i.e. two
 * tracer events. Prints one line: "iterations N seconds S iterations_per_s R".
 * With "distinct", each iteration opens and stats PATH.<i>, which does not exist: two lookups no
 * earlier one repeats, so the tracer reports each (a repeated identical lookup is only counted).
 * Usage: syscall_loop ITERATIONS [RATE] [PATH] [distinct] */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char** argv) {
  long iterations = argc > 1 ? atol(argv[1]) : 100000;
  double rate = argc > 2 ? atof(argv[2]) : 0;
  const char* path = argc > 3 ? argv[3] : "/data/file";
  int distinct = argc > 4 && strcmp(argv[4], "distinct") == 0;
  char name[4096];
  struct stat st;
  double start = now();
  for (long i = 0; i < iterations; i++) {
    if (distinct) {
      snprintf(name, sizeof name, "%s.%ld", path, i);
      if (open(name, O_RDONLY | O_CLOEXEC) >= 0 || stat(name, &st) == 0) {
        fprintf(stderr, "%s: exists\n", name);
        return 1;
      }
      goto paced;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      perror(path);
      return 1;
    }
    close(fd);
    if (stat(path, &st) != 0) {
      perror(path);
      return 1;
    }
    /* glibc no longer caches getpid, but call the syscall directly to be sure it is one. */
    (void)syscall(SYS_getpid);
  paced:
    /* Pacing: every 256 iterations, sleep off any lead over the target rate. */
    if (rate > 0 && (i & 255) == 255) {
      double ahead = (double)(i + 1) / rate - (now() - start);
      if (ahead > 0) {
        struct timespec ts = {(time_t)ahead, (long)((ahead - (double)(time_t)ahead) * 1e9)};
        nanosleep(&ts, NULL);
      }
    }
  }
  double seconds = now() - start;
  printf("iterations %ld seconds %.6f iterations_per_s %.1f\n", iterations, seconds,
         (double)iterations / seconds);
  return 0;
}
