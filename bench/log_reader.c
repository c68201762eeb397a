/* The `plain-reader` variant's thread (bench.py, ab.py --log-reader, profile.py): plain SQLite's
 * writer with one native thread that follows the database's log as a capture thread does, and
 * does nothing else. Every 500 us it reads the WAL index header (from the -shm, mapped
 * read-only) and then, in one pread, the frames committed since its last look; a restart (new
 * salts) starts it again from frame 1. Unlike libreplica it neither verifies the frames nor
 * holds a restart back until it has read them: it measures only what reading the log on
 * another core costs the committing thread. Start it once the database is open in WAL mode
 * (the -shm must exist and be initialized). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define WAL_HEADER 32
#define FRAME_HEADER 24
#define MAX_READ (8 << 20)

static char wal_path[4096], shm_path[4096];

/* The WAL index header's first copy, as 32-bit words (SQLite's WalIndexHdr). */
enum { HDR_PAGE_SIZE = 3, HDR_MX_FRAME = 4, HDR_SALT1 = 8, HDR_SALT2 = 9 };

/* The -shm's first page, mapped read-only, or NULL. Its descriptor stays open: closing any
 * descriptor of a file drops every fcntl lock the process holds on it, SQLite's included. */
static const volatile uint32_t *map_index(void) {
    static int fd = -1;
    struct stat st;
    if (fd < 0)
        fd = open(shm_path, O_RDONLY | O_CLOEXEC);
    /* A shorter file would fault (SIGBUS) on the page's first read. */
    if (fd < 0 || fstat(fd, &st) != 0 || st.st_size < 4096)
        return NULL;
    void *m = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
    return m == MAP_FAILED ? NULL : m;
}

static void *follow(void *unused) {
    (void)unused;
    pthread_setname_np(pthread_self(), "log-reader");
    int wal = -1;
    const volatile uint32_t *index = NULL;
    uint32_t seen = 0, salt1 = 0, salt2 = 0;
    char *buf = malloc(MAX_READ);
    for (;;) {
        struct timespec pause = {0, 500000};
        nanosleep(&pause, NULL);
        if (wal < 0)
            wal = open(wal_path, O_RDONLY | O_CLOEXEC);
        if (!index)
            index = map_index();
        if (wal < 0 || !index || !buf)
            continue;
        uint32_t page_size = (index[HDR_PAGE_SIZE] >> 16) & 0xffff;
        uint32_t committed = index[HDR_MX_FRAME];
        if (page_size == 1)
            page_size = 65536;
        if (index[HDR_SALT1] != salt1 || index[HDR_SALT2] != salt2 || committed < seen) {
            salt1 = index[HDR_SALT1];
            salt2 = index[HDR_SALT2];
            seen = 0; /* the log restarted */
        }
        if (committed == seen || page_size < 512)
            continue;
        off_t frame = FRAME_HEADER + (off_t)page_size;
        off_t from = WAL_HEADER + (off_t)seen * frame, end = WAL_HEADER + (off_t)committed * frame;
        while (from < end) {
            size_t n = end - from > MAX_READ ? MAX_READ : (size_t)(end - from);
            ssize_t got = pread(wal, buf, n, from);
            if (got <= 0)
                break; /* truncated meanwhile: the rest is skipped */
            from += got;
        }
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
