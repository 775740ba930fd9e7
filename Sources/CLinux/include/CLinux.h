#ifndef TIERGATE_CLINUX_H
#define TIERGATE_CLINUX_H
/// Linux interfaces Swift cannot reach through Glibc: calls without a glibc wrapper (openat2,
/// renameat2 need _GNU_SOURCE), variadic calls, and constants newer than the build machine's headers.
#include <stdint.h>
#include <sys/types.h>
#include <sys/xattr.h>

int CLinux_renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned int flags);
int CLinux_openat2_beneath(int dirfd, const char *path, int flags, unsigned int mode);
int CLinux_fcntl_int(int fd, int cmd, int arg);
int CLinux_punch_hole(int fd, int64_t offset, int64_t length);
int CLinux_syncfs(int fd);

#define CLINUX_RENAME_NOREPLACE 1
#define CLINUX_RENAME_EXCHANGE 2
#endif
