/* LD_PRELOAD shim of the slow-fsync benchmark (benchmarks/slow_fsync.py): every fsync and fdatasync of the
 * process first sleeps GRIDD_SLOW_FSYNC_MS milliseconds (default 200), then syncs for real. A disk that
 * takes that long to make a commit durable, without needing such a disk. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <time.h>

static void slow_down(void) {
    const char *text = getenv("GRIDD_SLOW_FSYNC_MS");
    long ms = text ? atol(text) : 200;
    struct timespec left = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&left, &left) == -1 && errno == EINTR) {
    }
}

int fsync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    slow_down();
    return real(fd);
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    slow_down();
    return real(fd);
}
