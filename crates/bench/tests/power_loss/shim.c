/*
 * Power-loss simulation for the store's power-loss test, loaded with LD_PRELOAD into the
 * crash-writer child. It keeps, for every regular file under $FLEETDB_POWERLOSS_DIR, a copy
 * of the file as of its last successful fsync or fdatasync (in $FLEETDB_POWERLOSS_SHADOW),
 * follows renames and unlinks, and touches nothing else. After the child is killed, the test
 * puts every file back to that copy (or empties it when it was never synced): what a power
 * cut leaves of a file system that loses every write not yet synced.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_rename)(const char *, const char *);
static int (*real_renameat)(int, const char *, int, const char *);
static int (*real_unlink)(const char *);
static int (*real_unlinkat)(int, const char *, int);

static void resolve(void) {
    if (!real_fsync) {
        real_fsync = dlsym(RTLD_NEXT, "fsync");
        real_fdatasync = dlsym(RTLD_NEXT, "fdatasync");
        real_rename = dlsym(RTLD_NEXT, "rename");
        real_renameat = dlsym(RTLD_NEXT, "renameat");
        real_unlink = dlsym(RTLD_NEXT, "unlink");
        real_unlinkat = dlsym(RTLD_NEXT, "unlinkat");
    }
}

/* The shadow of an absolute path under the watched directory: the relative path with '/'
 * turned into '%'. Returns 0 for paths outside it. */
static int shadow_of(const char *path, char *out, size_t size) {
    const char *dir = getenv("FLEETDB_POWERLOSS_DIR");
    const char *shadows = getenv("FLEETDB_POWERLOSS_SHADOW");
    if (!dir || !shadows || !path) return 0;
    size_t len = strlen(dir);
    if (strncmp(path, dir, len) != 0 || path[len] != '/') return 0;
    int written = snprintf(out, size, "%s/", shadows);
    if (written < 0 || (size_t)written >= size) return 0;
    size_t at = (size_t)written;
    for (const char *c = path + len + 1; *c; c++) {
        if (at + 1 >= size) return 0;
        out[at++] = *c == '/' ? '%' : *c;
    }
    out[at] = 0;
    return 1;
}

/* The absolute path of a relative one given against a directory fd. */
static int absolute(int dirfd, const char *path, char *out, size_t size) {
    if (path[0] == '/') {
        snprintf(out, size, "%s", path);
        return 1;
    }
    char base[PATH_MAX];
    if (dirfd == AT_FDCWD) {
        if (!getcwd(base, sizeof base)) return 0;
    } else {
        char link[64];
        snprintf(link, sizeof link, "/proc/self/fd/%d", dirfd);
        ssize_t n = readlink(link, base, sizeof base - 1);
        if (n <= 0) return 0;
        base[n] = 0;
    }
    snprintf(out, size, "%s/%s", base, path);
    return 1;
}

/* Copies the file behind `fd` to its shadow, atomically (a temporary file renamed over it),
 * so that a kill during the copy leaves the previous shadow. */
static void snapshot(int fd) {
    char link[64], path[PATH_MAX], shadow[PATH_MAX], partial[PATH_MAX + 16];
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return;
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n <= 0) return;
    path[n] = 0;
    if (!shadow_of(path, shadow, sizeof shadow)) return;
    snprintf(partial, sizeof partial, "%s.partial", shadow);
    int in = open(path, O_RDONLY | O_CLOEXEC);
    if (in < 0) return;
    int out = open(partial, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (out < 0) {
        close(in);
        return;
    }
    char buffer[1 << 16];
    ssize_t got;
    int ok = 1;
    while ((got = read(in, buffer, sizeof buffer)) > 0) {
        if (write(out, buffer, (size_t)got) != got) {
            ok = 0;
            break;
        }
    }
    if (got < 0) ok = 0;
    close(in);
    close(out);
    if (ok) real_rename(partial, shadow);
    else real_unlink(partial);
}

int fsync(int fd) {
    resolve();
    int saved, result = real_fsync(fd);
    saved = errno;
    if (result == 0) snapshot(fd);
    errno = saved;
    return result;
}

int fdatasync(int fd) {
    resolve();
    int saved, result = real_fdatasync(fd);
    saved = errno;
    if (result == 0) snapshot(fd);
    errno = saved;
    return result;
}

/* A rename moves the shadow along (renames are taken as durable at once); a file renamed
 * without one leaves none behind under its new name. */
static void renamed(const char *from, const char *to) {
    char a[PATH_MAX], b[PATH_MAX];
    if (!shadow_of(to, b, sizeof b)) return;
    if (shadow_of(from, a, sizeof a) && real_rename(a, b) == 0) return;
    real_unlink(b);
}

int rename(const char *from, const char *to) {
    resolve();
    int saved, result = real_rename(from, to);
    saved = errno;
    if (result == 0) {
        char a[PATH_MAX], b[PATH_MAX];
        if (absolute(AT_FDCWD, from, a, sizeof a) && absolute(AT_FDCWD, to, b, sizeof b))
            renamed(a, b);
    }
    errno = saved;
    return result;
}

int renameat(int fromfd, const char *from, int tofd, const char *to) {
    resolve();
    int saved, result = real_renameat(fromfd, from, tofd, to);
    saved = errno;
    if (result == 0) {
        char a[PATH_MAX], b[PATH_MAX];
        if (absolute(fromfd, from, a, sizeof a) && absolute(tofd, to, b, sizeof b))
            renamed(a, b);
    }
    errno = saved;
    return result;
}

static void unlinked(const char *path) {
    char shadow[PATH_MAX];
    if (shadow_of(path, shadow, sizeof shadow)) real_unlink(shadow);
}

int unlink(const char *path) {
    resolve();
    int saved, result = real_unlink(path);
    saved = errno;
    if (result == 0) {
        char a[PATH_MAX];
        if (absolute(AT_FDCWD, path, a, sizeof a)) unlinked(a);
    }
    errno = saved;
    return result;
}

int unlinkat(int dirfd, const char *path, int flags) {
    resolve();
    int saved, result = real_unlinkat(dirfd, path, flags);
    saved = errno;
    if (result == 0 && !(flags & AT_REMOVEDIR)) {
        char a[PATH_MAX];
        if (absolute(dirfd, path, a, sizeof a)) unlinked(a);
    }
    errno = saved;
    return result;
}
