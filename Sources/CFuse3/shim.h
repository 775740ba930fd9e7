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

/// Replies to a read with `size` bytes of `fd` from `offset`; FUSE_BUFVEC_INIT is a macro, and libfuse
/// splices the range to the kernel when the session negotiated splice, instead of copying it through
/// user space.
static inline int CFuse3_reply_descriptor(fuse_req_t req, int fd, int64_t offset, size_t size) {
    struct fuse_bufvec buffer = FUSE_BUFVEC_INIT(size);
    buffer.buf[0].flags = (enum fuse_buf_flags)(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
    buffer.buf[0].fd = fd;
    buffer.buf[0].pos = offset;
    return fuse_reply_data(req, &buffer, FUSE_BUF_SPLICE_MOVE);
}
/// Copies a write request's data (in memory, or in a pipe when libfuse spliced the request from the
/// device) to `fd` at `offset`: from a pipe the kernel moves the pages without a user-space copy.
static inline ssize_t CFuse3_copy_to_descriptor(struct fuse_bufvec *source, int fd, int64_t offset) {
    struct fuse_bufvec destination = FUSE_BUFVEC_INIT(fuse_buf_size(source));
    destination.buf[0].flags = (enum fuse_buf_flags)(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK | FUSE_BUF_FD_RETRY);
    destination.buf[0].fd = fd;
    destination.buf[0].pos = offset;
    return fuse_buf_copy(&destination, source, (enum fuse_buf_copy_flags)0);
}

/// Copies a write request's data into `memory` (for writes that cannot be spliced).
static inline ssize_t CFuse3_copy_to_memory(struct fuse_bufvec *source, void *memory, size_t size) {
    struct fuse_bufvec destination = FUSE_BUFVEC_INIT(size);
    destination.buf[0].mem = memory;
    return fuse_buf_copy(&destination, source, (enum fuse_buf_copy_flags)0);
}
#endif
