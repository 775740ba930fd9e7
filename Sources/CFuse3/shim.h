#ifndef TIERGATE_CFUSE3_SHIM_H
#define TIERGATE_CFUSE3_SHIM_H
/// libfuse3 requires the API level to be chosen before its headers are included.
#define FUSE_USE_VERSION 35
#include <fuse_lowlevel.h>
#include <errno.h>
#include <stdint.h>
#include <unistd.h>
#include <sys/syscall.h>
/// The passthrough core forwards extended attributes; Swift's Glibc module leaves this header out.
#include <sys/xattr.h>

/// The 3.12 loop entry point takes the opaque, settable config (thread limit, clone_fd); at API level 35
/// the header only declares the older entry point, whose fixed struct cannot raise the thread limit.
int fuse_session_loop_mt_312(struct fuse_session *se, struct fuse_loop_config *config);

/// Runs the multithreaded loop with clone_fd and a thread limit, hiding the config's lifetime from Swift.
static inline int CFuse3_session_loop_mt(struct fuse_session *se, unsigned int max_threads, int clone_fd) {
    struct fuse_loop_config *config = fuse_loop_cfg_create();
    if (config == NULL) return -ENOMEM;
    fuse_loop_cfg_set_clone_fd(config, clone_fd ? 1 : 0);
    fuse_loop_cfg_set_max_threads(config, max_threads);
    int result = fuse_session_loop_mt_312(se, config);
    fuse_loop_cfg_destroy(config);
    return result;
}

/// renameat2 has no glibc declaration without _GNU_SOURCE, which a shared module header cannot set.
static inline int CFuse3_renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned int flags) {
    return (int)syscall(SYS_renameat2, olddirfd, oldpath, newdirfd, newpath, flags);
}

/// fallocate is likewise a _GNU_SOURCE declaration.
static inline int CFuse3_fallocate(int fd, int mode, int64_t offset, int64_t length) {
    return (int)syscall(SYS_fallocate, fd, mode, (long)offset, (long)length);
}

#endif
