#define _GNU_SOURCE
#include "CLinux.h"
#include <malloc.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <sys/fanotify.h>
#include <stddef.h>
#include <pthread.h>
#include <sys/vfs.h>
#include <linux/openat2.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/mman.h>

int CLinux_renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned int flags) {
    return renameat2(olddirfd, oldpath, newdirfd, newpath, flags);
}

/// openat2 with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS: the kernel refuses any
/// path that would leave dirfd's tree or pass through a symlink.
int CLinux_openat2_beneath(int dirfd, const char *path, int flags, unsigned int mode) {
    struct open_how how = {0};
    how.flags = (uint64_t)flags;
    how.mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
}

int CLinux_fcntl_int(int fd, int cmd, int arg) {
    return fcntl(fd, cmd, arg);
}

int CLinux_punch_hole(int fd, int64_t offset, int64_t length) {
    return fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)offset, (off_t)length);
}

/// syncfs flushes one filesystem: a batch of staged files becomes durable with one call, not one fsync each.
int CLinux_syncfs(int fd) {
    return syncfs(fd);
}

int CLinux_fanotify_init(unsigned int flags, unsigned int event_f_flags) {
    return fanotify_init(flags, event_f_flags);
}

int CLinux_fanotify_mark(int fanotify_fd, unsigned int flags, uint64_t mask, int dirfd, const char *pathname) {
    return fanotify_mark(fanotify_fd, flags, mask, dirfd, pathname);
}

int CLinux_open_by_handle(int mount_fd, const void *handle, int flags) {
    return open_by_handle_at(mount_fd, (struct file_handle *)handle, flags);
}

int CLinux_reopen_by_own_handle(int fd) {
    union { struct file_handle handle; char space[sizeof(struct file_handle) + MAX_HANDLE_SZ]; } buffer;
    buffer.handle.handle_bytes = MAX_HANDLE_SZ;
    int mount_id;
    if (name_to_handle_at(fd, "", &buffer.handle, &mount_id, AT_EMPTY_PATH) < 0) return -1;
    return open_by_handle_at(fd, &buffer.handle, O_PATH | O_CLOEXEC);
}

int CLinux_pipe_cloexec_nonblock(int fds[2]) {
    return pipe2(fds, O_CLOEXEC | O_NONBLOCK);
}

int CLinux_gettid(void) {
    return (int)gettid();
}

int CLinux_syscall_only_reads(long number, unsigned long arg2, unsigned long arg3, unsigned long arg4) {
    (void)arg2;
    switch (number) {
    case -1:
    case SYS_read:
    case SYS_pread64:
    case SYS_readv:
    case SYS_preadv:
    case SYS_preadv2:
    case SYS_execve:
    case SYS_execveat:
        return 1;
    case SYS_mmap:
        return !((arg3 & PROT_WRITE) && (arg4 & MAP_SHARED));   // MAP_SHARED_VALIDATE has this bit too
    default:
        return 0;
    }
}

int CLinux_set_thread_name(const char *name) {
    return pthread_setname_np(pthread_self(), name);
}

int64_t CLinux_filesystem_type(const char *path) {
    struct statfs info;
    if (statfs(path, &info) != 0) return -1;
    return (int64_t)info.f_type;
}

_Static_assert(F_SETLEASE == CLINUX_F_SETLEASE && F_GETLEASE == CLINUX_F_GETLEASE, "F_SETLEASE/F_GETLEASE");
_Static_assert(SEEK_DATA == CLINUX_SEEK_DATA && SEEK_HOLE == CLINUX_SEEK_HOLE, "SEEK_DATA/SEEK_HOLE");

// The record layouts above are parsed from raw bytes; these pin them to the kernel's ABI.
_Static_assert(sizeof(struct CLinux_fanotify_event_metadata) == 24, "fanotify_event_metadata layout");
_Static_assert(offsetof(struct CLinux_fanotify_event_metadata, fd) == 16, "fanotify_event_metadata.fd");
_Static_assert(sizeof(struct CLinux_fanotify_event_info_range) == 24, "fanotify_event_info_range layout");
_Static_assert(offsetof(struct CLinux_fanotify_event_info_range, offset) == 8, "fanotify_event_info_range.offset");
_Static_assert(sizeof(struct CLinux_fanotify_response) == 8, "fanotify_response layout");
_Static_assert(CLINUX_O_PATH == O_PATH, "O_PATH");
_Static_assert(CLINUX_FAN_REPORT_DFID_NAME == FAN_REPORT_DFID_NAME, "FAN_REPORT_DFID_NAME");
_Static_assert(CLINUX_FAN_ONDIR == FAN_ONDIR && CLINUX_FAN_Q_OVERFLOW == FAN_Q_OVERFLOW, "fanotify event bits");
_Static_assert(CLINUX_FAN_EVENT_INFO_TYPE_DFID_NAME == FAN_EVENT_INFO_TYPE_DFID_NAME, "FAN_EVENT_INFO_TYPE_DFID_NAME");
_Static_assert(offsetof(struct fanotify_event_info_fid, handle) == 12, "fanotify_event_info_fid.handle");
_Static_assert(FAN_CLASS_PRE_CONTENT == CLINUX_FAN_CLASS_PRE_CONTENT, "FAN_CLASS_PRE_CONTENT");
_Static_assert(FAN_MARK_FILESYSTEM == CLINUX_FAN_MARK_FILESYSTEM, "FAN_MARK_FILESYSTEM");
_Static_assert(FANOTIFY_METADATA_VERSION == CLINUX_FANOTIFY_METADATA_VERSION, "FANOTIFY_METADATA_VERSION");

int CLinux_die_with_parent(void) {
    return prctl(PR_SET_PDEATHSIG, SIGKILL);
}

int CLinux_malloc_trim(void) {
    return malloc_trim(0);
}
