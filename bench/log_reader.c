/* The `plain-reader` variant's thread (bench.py, ab.py --log-reader): plain SQLite's writer
 * with one native thread that follows the database's log as a capture thread does, and does
 * nothing else. Every 500 us it reads the WAL index's last committed frame (mxFrame, from the
 * -shm it maps read-only) and reads the frames committed since its last look in one pread.
 * What this costs the committing thread is what any design that ships from the log, on a
 * thread or in a process of its own, costs it: the page cache's lines the writer rewrites
 * after the log restarts were last read on another core. Assumes 4 KiB pages (the bench's). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define FRAME (24 + 4096)
#define MAX_READ (8 << 20)

static char wal_path[4096], shm_path[4096];

static void *follow(void *unused) {
    (void)unused;
    pthread_setname_np(pthread_self(), "log-reader");
    int wal = -1;
    const volatile uint32_t *index = NULL;
    uint32_t seen = 0;
    char *buf = malloc(MAX_READ);
    for (;;) {
        struct timespec pause = {0, 500000};
        nanosleep(&pause, NULL);
        if (wal < 0)
            wal = open(wal_path, O_RDONLY);
        if (!index) {
            int shm = open(shm_path, O_RDONLY);
            if (shm >= 0) {
                void *m = mmap(NULL, 4096, PROT_READ, MAP_SHARED, shm, 0);
                close(shm);
                index = m == MAP_FAILED ? NULL : m;
            }
        }
        if (wal < 0 || !index || !buf)
            continue;
        uint32_t committed = index[4]; /* the index header's mxFrame */
        if (committed < seen)
            seen = 0; /* the log restarted */
        if (committed == seen)
            continue;
        size_t n = (size_t)(committed - seen) * FRAME;
        if (pread(wal, buf, n > MAX_READ ? MAX_READ : n, 32 + (off_t)seen * FRAME) < 0)
            perror("log-reader: pread");
        seen = committed;
    }
    return NULL;
}

int start_log_reader(const char *db_path) {
    snprintf(wal_path, sizeof wal_path, "%s-wal", db_path);
    snprintf(shm_path, sizeof shm_path, "%s-shm", db_path);
    pthread_t t;
    return pthread_create(&t, NULL, follow, NULL);
}
