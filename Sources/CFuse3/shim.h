#ifndef TIERGATE_CFUSE3_SHIM_H
#define TIERGATE_CFUSE3_SHIM_H
/// libfuse3 requires the API level to be chosen before its headers are included.
#define FUSE_USE_VERSION 35
#include <fuse_lowlevel.h>
#include <errno.h>
#include <stdint.h>
#include <stddef.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
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

// MARK: FUSE passthrough (Linux 6.9, protocol 7.40) under libfuse 3.14
//
// libfuse 3.14 predates passthrough (3.16 added it), so the session's device I/O goes through
// fuse_session_custom_io: the INIT exchange is read and patched on its way, and passthrough opens are
// answered with hand-built replies. The layouts below are the kernel's wire format (uapi
// <linux/fuse.h> 7.40), spelled out because Debian 12's header (7.38) lacks the passthrough fields.

#define CFUSE3_OPCODE_INIT 26u
/// fuse_init_in/out `flags`: flags2 is valid; the kernel's writeback cache (never with passthrough).
#define CFUSE3_INIT_EXT (1u << 30)
#define CFUSE3_WRITEBACK_CACHE (1u << 16)
/// FUSE_PASSTHROUGH is bit 37 of the 64 INIT flags: bit 5 of flags2.
#define CFUSE3_PASSTHROUGH_FLAGS2 (1u << 5)
/// fuse_open_out `open_flags`.
#define CFUSE3_FOPEN_DIRECT_IO (1u << 0)
#define CFUSE3_FOPEN_KEEP_CACHE (1u << 1)
#define CFUSE3_FOPEN_NOFLUSH (1u << 5)
#define CFUSE3_FOPEN_PASSTHROUGH (1u << 7)

struct CFuse3_in_header {
    uint32_t len; uint32_t opcode; uint64_t unique; uint64_t nodeid;
    uint32_t uid; uint32_t gid; uint32_t pid; uint16_t total_extlen; uint16_t padding;
};
struct CFuse3_out_header { uint32_t len; int32_t error; uint64_t unique; };
struct CFuse3_init_in { uint32_t major; uint32_t minor; uint32_t max_readahead; uint32_t flags; uint32_t flags2; uint32_t unused[11]; };
struct CFuse3_init_out {
    uint32_t major; uint32_t minor; uint32_t max_readahead; uint32_t flags;
    uint16_t max_background; uint16_t congestion_threshold; uint32_t max_write; uint32_t time_gran;
    uint16_t max_pages; uint16_t map_alignment; uint32_t flags2; uint32_t max_stack_depth;
    uint16_t request_timeout; uint16_t unused[11];
};
struct CFuse3_attr {
    uint64_t ino; uint64_t size; uint64_t blocks; uint64_t atime; uint64_t mtime; uint64_t ctime;
    uint32_t atimensec; uint32_t mtimensec; uint32_t ctimensec; uint32_t mode; uint32_t nlink;
    uint32_t uid; uint32_t gid; uint32_t rdev; uint32_t blksize; uint32_t flags;
};
struct CFuse3_entry_out {
    uint64_t nodeid; uint64_t generation; uint64_t entry_valid; uint64_t attr_valid;
    uint32_t entry_valid_nsec; uint32_t attr_valid_nsec; struct CFuse3_attr attr;
};
/// 7.40: the padding of fuse_open_out became the backing id.
struct CFuse3_open_out { uint64_t fh; uint32_t open_flags; int32_t backing_id; };
struct CFuse3_backing_map { int32_t fd; uint32_t flags; uint64_t padding; };

_Static_assert(sizeof(struct CFuse3_init_out) == 64, "fuse_init_out is 64 bytes");
_Static_assert(sizeof(struct CFuse3_entry_out) == 128, "fuse_entry_out is 128 bytes");
_Static_assert(sizeof(struct CFuse3_open_out) == 16, "fuse_open_out is 16 bytes");

/// Looks at a request read from the device: -1 when it is not INIT, else 1 when the kernel offers
/// passthrough and 0 when it does not; `unique` receives the INIT's request id.
static inline int CFuse3_inspect_init(const void *buffer, size_t length, uint64_t *unique) {
    const struct CFuse3_in_header *header = (const struct CFuse3_in_header *)buffer;
    if (length < sizeof(*header) || header->opcode != CFUSE3_OPCODE_INIT) return -1;
    *unique = header->unique;
    const struct CFuse3_init_in *init = (const struct CFuse3_init_in *)(header + 1);
    if (length < sizeof(*header) + offsetof(struct CFuse3_init_in, unused)) return 0;
    return (init->flags & CFUSE3_INIT_EXT) && (init->flags2 & CFUSE3_PASSTHROUGH_FLAGS2) ? 1 : 0;
}

/// Turns passthrough on in libfuse's INIT reply to request `unique` before it is written: flags2 bit
/// and a stack depth of 1 (backing files on a plain file system, and the mount itself may be stacked
/// under an overlay). Returns 1 when it did; 0 for any other reply, a failed INIT, or one that asks
/// for the writeback cache (the kernel refuses that combination).
static inline int CFuse3_enable_passthrough_in_init_reply(struct iovec *iov, int count, uint64_t unique) {
    if (count < 2 || iov[0].iov_len < sizeof(struct CFuse3_out_header)) return 0;
    struct CFuse3_out_header *header = (struct CFuse3_out_header *)iov[0].iov_base;
    if (header->unique != unique || header->error != 0) return 0;
    if (iov[1].iov_len < sizeof(struct CFuse3_init_out)) return 0;
    struct CFuse3_init_out *reply = (struct CFuse3_init_out *)iov[1].iov_base;
    if (reply->flags & CFUSE3_WRITEBACK_CACHE) return 0;
    reply->flags |= CFUSE3_INIT_EXT;
    reply->flags2 |= CFUSE3_PASSTHROUGH_FLAGS2;
    reply->max_stack_depth = 1;
    return 1;
}

/// FUSE_DEV_IOC_BACKING_OPEN: registers `backing_fd` with the connection; returns the backing id
/// (> 0) or -1 with errno (needs CAP_SYS_ADMIN and a connection that negotiated passthrough).
static inline int CFuse3_backing_open(int session_fd, int backing_fd) {
    struct CFuse3_backing_map map = { .fd = backing_fd, .flags = 0, .padding = 0 };
    return ioctl(session_fd, _IOW(229, 1, struct CFuse3_backing_map), &map);
}

/// FUSE_DEV_IOC_BACKING_CLOSE: drops the id; files the kernel opened through it keep their own reference.
static inline int CFuse3_backing_close(int session_fd, int32_t backing_id) {
    uint32_t id = (uint32_t)backing_id;
    return ioctl(session_fd, _IOW(229, 2, uint32_t), &id);
}

/// libfuse's calc_timeout_sec/nsec, for replies built here.
static inline void CFuse3_timeout(double timeout, uint64_t *seconds, uint32_t *nanoseconds) {
    if (timeout <= 0) { *seconds = 0; *nanoseconds = 0; return; }
    *seconds = timeout > (double)UINT64_MAX ? UINT64_MAX : (uint64_t)timeout;
    double fraction = timeout - (double)*seconds;
    *nanoseconds = fraction >= 0.999999999 ? 999999999u : fraction < 0 ? 0 : (uint32_t)(fraction * 1.0e9);
}

/// Answers OPEN with a file passed through to the backing file registered as `backing_id`
/// (fuse_reply_open cannot: libfuse 3.14's fuse_open_out has no backing id).
static inline int CFuse3_reply_open_passthrough(fuse_req_t req, uint64_t fh, uint32_t open_flags, int32_t backing_id) {
    struct CFuse3_open_out out = { .fh = fh, .open_flags = open_flags | CFUSE3_FOPEN_PASSTHROUGH, .backing_id = backing_id };
    return fuse_reply_buf(req, (const char *)&out, sizeof(out));
}

/// Answers CREATE likewise: the entry as libfuse's fill_entry/convert_stat encode it, then the open.
static inline int CFuse3_reply_create_passthrough(fuse_req_t req, const struct fuse_entry_param *entry, uint64_t fh,
                                                  uint32_t open_flags, int32_t backing_id) {
    struct { struct CFuse3_entry_out entry; struct CFuse3_open_out open; } out;
    memset(&out, 0, sizeof(out));
    out.entry.nodeid = entry->ino;
    out.entry.generation = entry->generation;
    CFuse3_timeout(entry->entry_timeout, &out.entry.entry_valid, &out.entry.entry_valid_nsec);
    CFuse3_timeout(entry->attr_timeout, &out.entry.attr_valid, &out.entry.attr_valid_nsec);
    const struct stat *status = &entry->attr;
    struct CFuse3_attr *attr = &out.entry.attr;
    attr->ino = status->st_ino;
    attr->mode = status->st_mode;
    attr->nlink = (uint32_t)status->st_nlink;
    attr->uid = status->st_uid;
    attr->gid = status->st_gid;
    attr->rdev = (uint32_t)status->st_rdev;
    attr->size = (uint64_t)status->st_size;
    attr->blksize = (uint32_t)status->st_blksize;
    attr->blocks = (uint64_t)status->st_blocks;
    attr->atime = (uint64_t)status->st_atim.tv_sec;
    attr->mtime = (uint64_t)status->st_mtim.tv_sec;
    attr->ctime = (uint64_t)status->st_ctim.tv_sec;
    attr->atimensec = (uint32_t)status->st_atim.tv_nsec;
    attr->mtimensec = (uint32_t)status->st_mtim.tv_nsec;
    attr->ctimensec = (uint32_t)status->st_ctim.tv_nsec;
    out.open.fh = fh;
    out.open.open_flags = open_flags | CFUSE3_FOPEN_PASSTHROUGH;
    out.open.backing_id = backing_id;
    return fuse_reply_buf(req, (const char *)&out, sizeof(out));
}

/// splice(2) between the device and libfuse's pipes, for a session with custom I/O (libfuse only
/// splices there when these are set); the raw system call, since splice needs _GNU_SOURCE.
static ssize_t CFuse3_splice(int fdin, off_t *offin, int fdout, off_t *offout, size_t len, unsigned int flags, void *userdata) {
    (void)userdata;
    return syscall(SYS_splice, fdin, offin, fdout, offout, len, flags);
}

static inline void CFuse3_set_splice_io(struct fuse_custom_io *io) {
    io->splice_receive = CFuse3_splice;
    io->splice_send = CFuse3_splice;
}
#endif
